// An int8 GEMM on AVX512-VNNI's u8 x s8 dot product, run inside IREE as a custom dispatch (bench/perf/NOTES.md,
// twenty-second session). A probe, not part of effc's build.
//
// IREE 3.13's int8 tile for AVX-512 widens i8 to i16 pairs (`vpdpwssd`, 32 multiply-adds an instruction, as many as
// bf16's `vdpbf16ps`); `vpdpbusd` multiplies u8 by s8 in fours, 64 an instruction. It needs one unsigned operand, so
// the weights are stored as u8 (w + 128) and each row's sum of activations times 128 is taken back:
//   C[m][n] = sum_k A[m][k] * (W[n][k] + 128) - 128 * sum_k A[m][k].
// Weights come packed in panels of 32 columns, [N/32][K/4][32][4], so that one 64-byte load holds 16 columns' four
// consecutive k; activations stay row-major and are broadcast four bytes at a time. Register tile: 8 rows x 32
// columns (16 zmm accumulators). K a multiple of 4, M of 8, N of 64.
//
// Standalone (OpenMP over 64-column panels, checked exactly against a plain loop):
//   gcc -O3 -march=native -fopenmp -DSTANDALONE qgemm.c -o /tmp/qgemm && /tmp/qgemm 128 1536 384
// As an IREE custom dispatch: python bench/perf/probes/avx512_vnni_qgemm/run.py
#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

static inline void tile_8x32(const int8_t* a, size_t k_size, const uint8_t* panel, const int32_t* row_fix, int32_t* c,
                             size_t n_size) {
  __m512i acc[8][2];
  for (int r = 0; r < 8; ++r) acc[r][0] = acc[r][1] = _mm512_setzero_si512();
  for (size_t k = 0; k < k_size; k += 4) {
    __m512i w0 = _mm512_loadu_si512((const void*)(panel + k * 32));
    __m512i w1 = _mm512_loadu_si512((const void*)(panel + k * 32 + 64));
    for (int r = 0; r < 8; ++r) {
      __m512i x = _mm512_set1_epi32(*(const int32_t*)(a + r * k_size + k));
      acc[r][0] = _mm512_dpbusd_epi32(acc[r][0], w0, x);
      acc[r][1] = _mm512_dpbusd_epi32(acc[r][1], w1, x);
    }
  }
  for (int r = 0; r < 8; ++r) {
    __m512i fix = _mm512_set1_epi32(row_fix[r]);
    _mm512_storeu_si512((void*)(c + r * n_size), _mm512_sub_epi32(acc[r][0], fix));
    _mm512_storeu_si512((void*)(c + r * n_size + 16), _mm512_sub_epi32(acc[r][1], fix));
  }
}

// Columns [n0, n0 + 64) of C for every row.
static void qgemm_panel(const int8_t* a, const uint8_t* packed_w, int32_t* c, size_t m_size, size_t n_size,
                        size_t k_size, size_t n0) {
  int32_t row_fix[8];
  for (size_t m = 0; m < m_size; m += 8) {
    for (int r = 0; r < 8; ++r) {
      int32_t sum = 0;
      for (size_t k = 0; k < k_size; ++k) sum += a[(m + r) * k_size + k];
      row_fix[r] = 128 * sum;
    }
    for (size_t n = n0; n < n0 + 64; n += 32)
      tile_8x32(a + m * k_size, k_size, packed_w + (n / 32) * k_size * 32, row_fix, c + m * n_size + n, n_size);
  }
}

// IREE's entry for one workgroup (64 columns): each memref<?xT> arrives as (allocated, aligned, offset, size, stride),
// then the dispatch's index operands and the workgroup id, in the order qgemm.mlir's func.call passes them.
void effc_qgemm_workgroup(const int8_t* a_alloc, const int8_t* a, size_t a_offset, size_t a_size, size_t a_stride,
                          const uint8_t* w_alloc, const uint8_t* w, size_t w_offset, size_t w_size, size_t w_stride,
                          int32_t* c_alloc, int32_t* c, size_t c_offset, size_t c_size, size_t c_stride, size_t m_size,
                          size_t n_size, size_t k_size, size_t workgroup) {
  qgemm_panel(a + a_offset, w + w_offset, c + c_offset, m_size, n_size, k_size, workgroup * 64);
}

#ifdef STANDALONE
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

int main(int argc, char** argv) {
  if (argc != 4) return fprintf(stderr, "usage: %s M N K\n", argv[0]), 2;
  size_t m_size = atoi(argv[1]), n_size = atoi(argv[2]), k_size = atoi(argv[3]);
  int8_t* a = malloc(m_size * k_size);
  int8_t* w = malloc(n_size * k_size);
  uint8_t* packed = malloc(n_size * k_size);
  int32_t* c = malloc(m_size * n_size * sizeof(int32_t));
  srand(1);
  for (size_t i = 0; i < m_size * k_size; ++i) a[i] = (int8_t)(rand() % 255 - 127);
  for (size_t i = 0; i < n_size * k_size; ++i) w[i] = (int8_t)(rand() % 255 - 127);
  for (size_t n = 0; n < n_size; ++n)
    for (size_t k = 0; k < k_size; ++k)
      packed[(n / 32) * k_size * 32 + (k / 4) * 128 + (n % 32) * 4 + k % 4] = (uint8_t)(w[n * k_size + k] + 128);
  double best = 1e9;
  for (int repeat = 0; repeat < 200; ++repeat) {
    double start = now();
#pragma omp parallel for schedule(static)
    for (size_t n0 = 0; n0 < n_size; n0 += 64) qgemm_panel(a, packed, c, m_size, n_size, k_size, n0);
    double took = now() - start;
    if (took < best) best = took;
  }
  long wrong = 0;
  for (size_t m = 0; m < m_size; ++m)
    for (size_t n = 0; n < n_size; ++n) {
      int32_t sum = 0;
      for (size_t k = 0; k < k_size; ++k) sum += a[m * k_size + k] * w[n * k_size + k];
      wrong += sum != c[m * n_size + n];
    }
  printf("%zux%zux%zu: best of 200 %.1f us, %.0f G multiply-adds/s on %d threads, %ld wrong\n", m_size, n_size, k_size,
         best * 1e6, m_size * n_size * k_size / best / 1e9, omp_get_max_threads(), wrong);
  return wrong != 0;
}
#endif
