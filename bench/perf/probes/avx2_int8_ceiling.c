// How fast can int8 matmuls run on an AVX2 CPU without VNNI? (bench/perf/NOTES.md, fifteenth CPU session)
//
// Two measurements, outside effc and IREE, to bound what a better int8 kernel could gain over IREE 3.13's mmt4d
// ukernel (8x8x2 tiles, `vpmaddwd` on sign-extended operands):
//   1. the throughput of the instructions an int8 or f32 kernel is built from, 12 independent ones per iteration;
//   2. a hand-written GEMM: i8 values pre-widened to i16 pairs, a 6x16 register tile, `vpmaddwd` on broadcast
//      loads, OpenMP over column panels, checked exactly against a plain loop.
//
// Build and run (gcc or clang with OpenMP; not part of effc's build):
//   gcc -O3 -march=native -fopenmp bench/perf/probes/avx2_int8_ceiling.c -o /tmp/avx2_int8_ceiling
//   OMP_NUM_THREADS=2 /tmp/avx2_int8_ceiling 128 1536 384
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

#define TWELVE(op) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11) op(12) op(13) op(14) op(15)
#define MADDWD(i) "vpmaddwd %%ymm1, %%ymm2, %%ymm" #i "\n"
#define MADDUBSW(i) "vpmaddubsw %%ymm1, %%ymm2, %%ymm" #i "\n"
#define FMA(i) "vfmadd231ps %%ymm1, %%ymm2, %%ymm" #i "\n"
#define ITERATIONS 100000000L
#define CLOBBERS "memory", "ymm1", "ymm2", "ymm4", "ymm5", "ymm6", "ymm7", "ymm8", "ymm9", "ymm10", "ymm11", \
                 "ymm12", "ymm13", "ymm14", "ymm15"
// Instructions per ns of one core, and multiply-adds per ns given `macs` per instruction.
#define THROUGHPUT(name, body, macs)                                                                        \
  {                                                                                                         \
    long n = ITERATIONS;                                                                                    \
    double t0 = now();                                                                                      \
    __asm__ volatile("vpxor %%ymm1, %%ymm1, %%ymm1\n vpxor %%ymm2, %%ymm2, %%ymm2\n 1:\n" body            \
                     "dec %0\n jnz 1b\n" : "+r"(n) : : CLOBBERS);                                           \
    double per_ns = 12.0 * ITERATIONS / (now() - t0) * 1e-9;                                                \
    printf("%-12s %.2f per ns, %.1f G multiply-adds/s per core\n", name, per_ns, per_ns * (macs));          \
  }

// C[6, 16] (row stride ldc) = A panel [kp][6] x B panel [kp][16], each int32 holding two i16 values of k. Written
// out row by row: with the accumulators in an array, gcc kept them in memory and the kernel ran at half the speed.
#define ROW(r)                                                  \
  x = _mm256_set1_epi32(a[6 * q + (r)]);                        \
  c##r##0 = _mm256_add_epi32(c##r##0, _mm256_madd_epi16(x, b0)); \
  c##r##1 = _mm256_add_epi32(c##r##1, _mm256_madd_epi16(x, b1));
#define STORE(r)                                                \
  _mm256_storeu_si256((__m256i *)(c + (r) * ldc), c##r##0);     \
  _mm256_storeu_si256((__m256i *)(c + (r) * ldc + 8), c##r##1);
static void tile6x16(const int32_t *a, const int32_t *b, int kp, int32_t *c, int ldc) {
  __m256i c00 = _mm256_setzero_si256(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00;
  __m256i c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int q = 0; q < kp; q++) {
    __m256i b0 = _mm256_load_si256((const __m256i *)(b + 16 * q));
    __m256i b1 = _mm256_load_si256((const __m256i *)(b + 16 * q + 8));
    __m256i x;
    ROW(0) ROW(1) ROW(2) ROW(3) ROW(4) ROW(5)
  }
  STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)
}

#define REPEATS 200
static int by_value(const void *x, const void *y) {
  double a = *(const double *)x, b = *(const double *)y;
  return (a > b) - (a < b);
}

static int32_t pair(int8_t lo, int8_t hi) {
  int16_t p[2] = {lo, hi};
  int32_t v;
  memcpy(&v, p, 4);
  return v;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s M N K   (N a multiple of 16, K even)\n", argv[0]);
    return 2;
  }
  THROUGHPUT("vpmaddwd", TWELVE(MADDWD), 16)
  // Its i16 sums need a second vpmaddwd to widen them, so a kernel gets half of this figure.
  THROUGHPUT("vpmaddubsw", TWELVE(MADDUBSW), 32)
  THROUGHPUT("vfmadd231ps", TWELVE(FMA), 8)

  int m = atoi(argv[1]), n = atoi(argv[2]), k = atoi(argv[3]);
  if (m <= 0 || n <= 0 || n % 16 || k <= 0 || k % 2) {
    fprintf(stderr, "M, N and K must be positive, N a multiple of 16 and K even\n");
    return 2;
  }
  int mp = (m + 5) / 6 * 6, kp = k / 2;
  int8_t *a = malloc((size_t)m * k), *b = malloc((size_t)k * n);
  for (long i = 0; i < (long)m * k; i++) a[i] = (int8_t)(rand() % 255 - 127);
  for (long i = 0; i < (long)k * n; i++) b[i] = (int8_t)(rand() % 255 - 127);
  // aligned_alloc wants a multiple of the alignment; B and C are (N is a multiple of 16), A's panels need not be.
  size_t a_bytes = ((size_t)mp * kp * 4 + 63) / 64 * 64;
  int32_t *ap = aligned_alloc(64, a_bytes), *bp = aligned_alloc(64, (size_t)n * kp * 4);
  int32_t *c = aligned_alloc(64, (size_t)mp * n * 4);
  if (!a || !b || !ap || !bp || !c) {
    fprintf(stderr, "out of memory\n");
    return 2;
  }
  memset(ap, 0, a_bytes);
  for (int r = 0; r < m; r++)
    for (int q = 0; q < kp; q++) ap[(size_t)(r / 6) * kp * 6 + q * 6 + r % 6] = pair(a[r * k + 2 * q], a[r * k + 2 * q + 1]);
  for (int j = 0; j < n; j++)
    for (int q = 0; q < kp; q++)
      bp[(size_t)(j / 16) * kp * 16 + q * 16 + j % 16] = pair(b[(2 * q) * n + j], b[(2 * q + 1) * n + j]);
  double times[REPEATS];
  for (int rep = 0; rep < REPEATS; rep++) {
    double t0 = now();
#pragma omp parallel for schedule(static)
    for (int col = 0; col < n / 16; col++)
      for (int row = 0; row < mp / 6; row++)
        tile6x16(ap + (size_t)row * kp * 6, bp + (size_t)col * kp * 16, kp, c + (size_t)row * 6 * n + col * 16, n);
    times[rep] = now() - t0;
  }
  qsort(times, REPEATS, sizeof times[0], by_value);
  double median = times[REPEATS / 2];
  long wrong = 0;
  for (int r = 0; r < m; r++)
    for (int j = 0; j < n; j++) {
      int32_t s = 0;
      for (int q = 0; q < k; q++) s += a[r * k + q] * b[q * n + j];
      wrong += s != c[(size_t)r * n + j];
    }
  printf("GEMM %dx%dx%d, %d threads: median of %d calls %.3f ms, %.1f G multiply-adds/s (best %.1f), %ld wrong\n", m,
         n, k, omp_get_max_threads(), REPEATS, median * 1e3, (double)m * n * k / median * 1e-9,
         (double)m * n * k / times[0] * 1e-9, wrong);
  free(a), free(b), free(ap), free(bp), free(c);
  return wrong != 0;
}
