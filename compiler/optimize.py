"""`-O` and `--matmul-precision`: the best-known compile configuration per target, backed by measurements in
bench/perf/NOTES.md.

An option enters these tables only after it was measured on the performance set and helped there on
balance; NOTES.md records each option tried, with its measured effect, including where it hurt (data
tiling: SmolLM2 prefill 18% faster on the 2-core CPU, MiniLM 15% slower). Options that IREE 3.13 fails to
compile for some graphs go in `optional_iree_flags`: tried first, dropped with a note when rejected.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from effc.compiler.dispatch_configs import ConfigEdit
from effc.compiler.errors import EffcError
from effc.compiler.host_cpu import cpu_model, has_bf16_dot, has_int8_dot_u8s8
from effc.compiler.iree_backend import BF16_DEMOTION_FLAG, DEFAULT_CUDA_ARCH, HOPPER_ARCHES, check_target

_MMA_SYNC = r"mma_kind = #iree_gpu.mma_layout<NV_MMA_SYNC"
_SIXTEEN_WIDE = r"thread = \[[1, ]*16, 0\]"  # IREE's thread tile for f32 matmuls on sm_80
# A matmul reading its weight as [N, K] (nn.Linear's layout), K contiguous.
_WEIGHT_N_BY_K = r"affine_map<\(d0, d1, d2\) -> \(d1, d2\)>"


def f32_matmul_tiles(
    per_thread: tuple[int, int],
    tile: tuple[int, int] | None = None,
    *,
    below_workgroups: int | None = None,
    promote_operands: tuple[int, ...] | None = None,
) -> ConfigEdit:
    """An edit of the f32 matmuls IREE gives 1x16 outputs per thread: rows x columns per thread, and per
    workgroup (`tile`; None keeps IREE's 32x128)."""
    lowering = {"thread": {-3: per_thread[0], -2: per_thread[1]}}
    if tile is not None:
        lowering["workgroup"] = {-3: tile[0], -2: tile[1]}
    return ConfigEdit(
        "matmul",
        lowering,
        requires=_SIXTEEN_WIDE,
        below_workgroups=below_workgroups,
        promote_operands=promote_operands,
    )


# IREE's mmt4d ukernels (the data-tiled matmuls), without its pack and unpack ones: where a data-tiled result is
# unpacked after a fused epilogue (attention's q·kᵀ plus the mask), bufferizing IREE 3.13's `iree_uk_unpack` copies
# every 16x16 tile out and back with scalar loads and stores, four times as long as the tile's dot products. MiniLM's
# q·kᵀ dispatch 180 -> 39 us a launch; whole calls, alternating rounds on the Zen 4, outputs bit-identical: MiniLM
# `medium` 7-11% faster, f32 4%, int8 1-2%, SmolLM2 prefill 2-3%, the decode step unchanged (NOTES.md, twenty-second
# session).
UKERNELS_FLAG = "--iree-llvmcpu-enable-ukernels=mmt4d"

# Keyword arguments for `compile_model` per target.
BEST_KNOWN: dict[str, dict[str, Any]] = {
    "llvm-cpu": {
        "attention": "decomposed",
        # A decode step's attention on repeated KV heads computed from the KV heads (fold_gqa.py): SmolLM2's step at
        # 2048 context 53.4-68.6 -> 36.1-52.5 ms in three runs, the repeats' copies gone (NOTES.md).
        "fold_gqa": True,
        # torch's safe-softmax guard tested once on the mask instead of per head (its reduction over every
        # head's scores goes away): with bf16 matmuls MiniLM 12.5 -> 12.0 ms, SmolLM2 prefill 109 -> 105 ms.
        # torch's sqrt(scale) on the keys moved onto the query row where that is smaller (a decode step), so the KV
        # cache is not rescaled every call: SmolLM2's f32 step 49.1 -> 43.9 ms (Zen 3; prefill and MiniLM unchanged).
        # GELU's erf as one rational function instead of IREE's piecewise one (as accurate as torch's f32 GELU):
        # MiniLM's up-projection and GELU with the down-projection 867 -> 828 us in bf16, 1743 -> 1704 us in f32
        # (Zen 4, 30 alternating rounds; NOTES.md, twenty-first session).
        # A decode step's attention matmuls split over cat([KV cache, new row]), so the cache is not copied into a new
        # tensor every layer: SmolLM2's f32 step 27.8 -> 23.1 ms of dispatch time (Zen 4; NOTES.md, twenty-third
        # session). After effc-move-matmul-scale, which takes the keys' scale from between the cat and the matmul.
        # Then the repeated KV heads the import could not fold (a pipeline with effc-chai) folded at the matmuls:
        # SmolLM2's CHAI decode step (f32) 29.3 -> 21.3 ms with the split, the step without CHAI 22.9 (Zen 4, 12
        # alternating rounds; NOTES.md, twenty-fourth session). Nothing to fold elsewhere (fold_gqa did it).
        "pipeline": (
            "builtin.module(effc-hoist-softmax-guard,effc-move-matmul-scale,effc-rational-gelu,"
            "effc-split-concat-matmul,effc-fold-broadcast-bmm)"
        ),
        # Row reductions (softmax, LayerNorm) as vector code instead of in-order scalar sums and NaN-checking maxes:
        # the attention block's softmax 32.1 -> 24.7 ms. In one run of the whole set (2-core CPU, freed memory kept)
        # every workload was 3-9% faster, the block 154.8 -> 140.7 ms (NOTES.md, eighth CPU session). Only the
        # summation order changes, as in torch.compile's vectorized reductions.
        "iree_flags": ("--iree-llvmcpu-reassociate-fp-reductions",),
        # Data tiling fails on the SmolLM2 decode step ("'linalg.pack' op expected padding_value has 'i8'
        # but got: 'i1'", the attention mask) and on some folded attention: optional, dropped with a note where IREE
        # rejects it. In f32 the decode step is faster without it in any case (37 vs 49 ms with GlobalOptimization's
        # data tiling, which compiles it; NOTES.md, seventh CPU session).
        "optional_iree_flags": ("--iree-dispatch-creation-data-tiling", UKERNELS_FLAG),
        "dispatch_edits": (
            # One-row matmuls by an [N, K] weight (a decode step's projections, without data tiling): IREE 3.13 steps
            # 8 output columns by 8 of K, which LLVM turns into 8x8 transposes and one chain of dependent FMAs. One
            # column by 32 of K is a dot product on four accumulators: 30 one-row 576 -> 1536 projections 7.7 -> 6.4
            # ms, SmolLM2's f32 decode step 49.9 -> 41.8 ms (Zen 3, 8 alternating rounds; NOTES.md, seventeenth CPU
            # session). Only the summation order changes.
            ConfigEdit(
                r"_matmul_1x\d+x\d+_",
                {"vector_common_parallel": {1: 1}, "vector_reduction": {2: 32}},
                requires=_WEIGHT_N_BY_K,
                every_op=True,
            ),
        ),
    },
    "cuda": {
        "attention": "auto",
        # As on llvm-cpu, the safe-softmax guard tested on the mask, and a decode step's attention matmuls split over
        # cat([KV cache, new row]): SmolLM2's f16 step 5.84 -> 4.19 ms with the split (H200 run 27), 4.12 -> 3.65 ms
        # with the guard on top (run 30). Folding the repeated KV heads at the matmuls as well made it 11.8 ms (run 27).
        # CHAI's step with the split: 6.17 ms, without it 5.60 (runs 30 and 27).
        "pipeline": "builtin.module(effc-hoist-softmax-guard,effc-move-matmul-scale,effc-split-concat-matmul)",
        # A decode step's keys padded to a multiple of 128, masked out (importer.pad_cache_keys). At 2048
        # context it attends over 2049 keys, and IREE 3.13 reduces rows of a length that is no multiple of 32 with
        # one thread per row: SmolLM2's 9x2049 softmaxes took 9.3 of the step's 16.1 ms of kernels (H200 run 20).
        # Padded to 2176, IREE gives them the subgroup reduction it gives 2048 (VectorDistribute, 544 threads).
        # Not yet timed on a GPU (bench/perf/NOTES.md, twentieth session).
        "key_multiple": 128,
        "iree_flags": ("--iree-dispatch-creation-enable-fuse-horizontal-contractions",),
        # O3 fails on decode steps (decomposed attention: "failed to bufferize op"); elsewhere it won 10-57%
        # on an H200. hfuse: MiniLM 13-20% faster, +-3% elsewhere.
        "optional_iree_flags": ("--iree-opt-level=O3",),
        "dispatch_edits": (
            # IREE 3.13 tiles a fused attention's head dim (-3) in halves on sm_80, so each workgroup redoes
            # Q·Kᵀ and the softmax for half the output; whole head dim: f16 block 0.335 -> 0.291 ms (H100).
            ConfigEdit("attention", {"workgroup": {-3: 0}}, requires=_MMA_SYNC),
            # mma.sync matmuls given a K step of 2 intrinsics (32): 4 instead, the QKV projection of the f16 block
            # 0.335 -> 0.292 ms (H100); both: 0.242 ms. Neutral where IREE picked 8 (0.334 vs 0.335), left alone.
            ConfigEdit("matmul_like", {"reduction": {-1: 4}}, requires=_MMA_SYNC + r"[^\n]*reduction = \[[0, ]*2\]"),
            # f32 matmuls (no MMA: TileAndFuse, no shared memory) get 32x128 tiles with 1x16 outputs per thread:
            # a warp reads 16 rows of the transposed weight at once. Where those tiles leave SMs idle (a 128x384
            # matmul: 12 workgroups, the H100/H200 have 132 SMs), 16x32 tiles with 1x2 per thread; elsewhere 4x4 per
            # thread. MiniLM f32 8.37 -> 2.30 ms (4x4 alone 3.12), f32 block 4.19 -> 2.18 ms (16x32 there: 3.95).
            # Where halving the workgroups still fills the SMs, 8x4 per thread in 64x128 tiles, fewer loads per
            # multiply-add: the f32 block 2.17 -> 1.90 ms (H100 run 19; 8x8 in 128x128 2.03, 4x8 in 64x128 2.12).
            f32_matmul_tiles((1, 2), (16, 32), below_workgroups=132),
            f32_matmul_tiles((4, 4), below_workgroups=2 * 132),
            f32_matmul_tiles((8, 4), (64, 128)),
            # IREE's f32 fused QKV projection (hfuse) in 1x128 tiles of 32 threads: 16x32 tiles, 4x4 per thread,
            # 3-5% faster (MiniLM f32 2.30 -> 2.20 ms, runs 9 and 10).
            ConfigEdit(
                "multi_contract",
                {"workgroup": {-3: 16, -2: 32}, "thread": {-3: 4, -2: 4}},
                requires=r"thread = \[1, 4, 0\]",
            ),
        ),
    },
}

# torch.set_float32_matmul_precision's names. "highest": f32 contractions. "high": each f32 operand as a sum of bf16
# pieces, three bf16 products accumulated in f32 (effc-split-bf16), on CUDA only. "medium": contraction inputs
# rounded to bf16, accumulation in f32 (IREE's demotion; constant matmul weights are stored in bf16).
# "int8", effc's own: matmuls by constant weights in int8 with int32 accumulation, activations quantized per row
# at run time (torch.ao's dynamic quantization; passes/quantize_dynamic.py).
MatmulPrecision = Literal["highest", "high", "medium", "int8"]
MATMUL_PRECISIONS: tuple[str, ...] = ("highest", "high", "medium", "int8")
_DEMOTE_TO_BF16 = (
    BF16_DEMOTION_FLAG,
    "--iree-global-opt-demote-contraction-inputs-operations=all",
)
# Optional flags per target for "medium". On the CPU bf16 pays only through data tiling and the mmt4d ukernels
# (AVX512-BF16): MiniLM 22.6 -> 12.5 ms, SmolLM2 prefill 188 -> 109 ms. Without bf16 dot products (a Zen 3 host, AVX2)
# the same flags made MiniLM 85x slower than f32 (3367 against 39.6 ms), so there "medium" stays f32
# (`precision_flags`). Demotion alone made MiniLM 1.8x slower,
# and a decode step (no data tiling: i1 mask) 1.3x slower. So all of them or none. On cuda it is unmeasured
# with these flags (an earlier H200 run of the demoted f32 block: 0.46 ms against 9.7 ms in f32; NOTES.md).
# The ukernels' bf16 tiles need a larger stack than IREE's 32 KiB default on MiniLM.
MEDIUM_PRECISION: dict[str, tuple[str, ...]] = {
    "llvm-cpu": (
        *_DEMOTE_TO_BF16,
        "--iree-dispatch-creation-data-tiling",
        UKERNELS_FLAG,
        "--iree-llvmcpu-stack-allocation-limit=131072",
    ),
    "cuda": _DEMOTE_TO_BF16,
}
# Tried where IREE rejects MEDIUM_PRECISION. Data tiling from GlobalOptimization instead of DispatchCreation
# compiles the SmolLM2 decode step, whose boolean mask fails the latter ("'linalg.pack' op expected padding_value
# has 'i8' but got: 'i1'"), and with bf16 it pays there: 34.0 -> 18.4 ms against the f32 module. Not a default:
# MiniLM took 14-15 ms with it against 12-12.5 ms, and in f32 the decode step 49 ms against 37 (NOTES.md).
MEDIUM_PRECISION_FALLBACK: dict[str, tuple[str, ...]] = {
    "llvm-cpu": (
        *_DEMOTE_TO_BF16,
        "--iree-global-opt-data-tiling",
        UKERNELS_FLAG,
        "--iree-llvmcpu-stack-allocation-limit=131072",
    ),
    "cuda": (),
}
# "int8" on the CPU pays through data tiling and the mmt4d ukernels (i8 x i8 -> i32 tiles exist for AVX2 and up): a
# 128x384 by 384x1536 matmul 1.10-1.25 ms against 2.25-2.69 ms in f32 on a Zen 3. Data tiling from GlobalOptimization,
# in place of `-O`'s from DispatchCreation: MiniLM 23.7 against 27.3 ms, SmolLM2 prefill 240 against 252 ms
# (alternating rounds), and it compiles the decode step, whose boolean mask DispatchCreation's rejects (NOTES.md).
INT8_PRECISION: dict[str, tuple[str, ...]] = {
    "llvm-cpu": ("--iree-global-opt-data-tiling", UKERNELS_FLAG),
    "cuda": (),
}
INT8_PRECISION_FALLBACK: dict[str, tuple[str, ...]] = {
    "llvm-cpu": ("--iree-dispatch-creation-data-tiling", UKERNELS_FLAG),
    "cuda": (),
}
# IREE's two places to data-tile; a module gets one of them.
DISPATCH_CREATION_DATA_TILING = "--iree-dispatch-creation-data-tiling"
GLOBAL_OPT_DATA_TILING = "--iree-global-opt-data-tiling"
DATA_TILING_FLAGS = (DISPATCH_CREATION_DATA_TILING, GLOBAL_OPT_DATA_TILING)
# On llvm-cpu, data tiling does not pay for f32 matmuls of one row (a decode step): six SmolLM2 FFN layers at one row
# took 2.25 ms plain and 2.84 ms data-tiled, the SmolLM2 decode step 37 against 49 ms (NOTES.md, seventh CPU session).
# DispatchCreation's data tiling also fails on the step's boolean mask, after 18 s of a 35 s compile.
# The effc pipeline each precision adds after the user's passes.
PRECISION_PIPELINE: dict[str, str] = {"int8": "builtin.module(effc-quantize-dynamic)"}
# int8 on a CPU with AVX512-VNNI: effc's own kernel (u8 x s8 `vpdpbusd`, 64 multiply-adds an instruction) instead of
# IREE 3.13's i16-pair tile (32): MiniLM's matmul shapes 1.4-2.0x as fast in whole calls, results bit-identical
# (passes/vnni_matmul.py; NOTES.md, twenty-second session).
VNNI_INT8_PIPELINE = "builtin.module(effc-quantize-dynamic,effc-vnni-matmul)"
# "medium" on a CPU without bf16 dot products: matmul arithmetic stays f32, but one-row matmuls (a decode step, bound
# by reading its weights) read their constant weights stored in bf16: SmolLM2's decode step 45.9 -> 26.9 ms under -O
# on a Zen 3 (4.0x torch eager), its outputs 3.6e-3 off torch's f32 (NOTES.md, seventeenth CPU session).
NARROW_WEIGHTS_PIPELINE = "builtin.module(effc-narrow-weights)"
# "high" on CUDA: IREE 3.13 has no TF32 path for sm_80 and runs f32 matmuls on CUDA cores, 6x behind cuBLAS; bf16
# ones use tensor cores (the f32 block demoted to bf16 ran 0.54 ms against 2.2 ms in f32 on an H100, NOTES.md).
SPLIT_BF16_PIPELINE = "builtin.module(effc-split-bf16)"
# `--check`'s largest relative error against torch eager, per precision: bf16 keeps 8 significant bits
# (relative rounding 2^-9), and MiniLM/SmolLM2 outputs came out at 6-7e-3 in "medium". int8 rows lose more: MiniLM's
# hidden states 6.8% off, as torch's own dynamic quantization (6.9%), SmolLM2's logits 9%.
# "high" keeps about 16 significant bits (the BERT of tests/model_zoo.py: 8.5e-7 against torch's f32).
CHECK_TOLERANCE: dict[str, float] = {"highest": 1e-4, "high": 1e-3, "medium": 3e-2, "int8": 0.2}


# IREE 3.13 ignores the demotion flags at --iree-opt-level=O2 and O3 (the modules come out byte-identical).
DEMOTION_IGNORED_AT = ("--iree-opt-level=O2", "--iree-opt-level=O3")


HOPPER_PIPELINE = "builtin.module(effc-hopper-kernels{f32-precision=tf32x3})"


def best_known(target: str, cuda_arch: str = DEFAULT_CUDA_ARCH) -> dict[str, Any]:
    """The `compile_model` options `-O` selects for `target` (and, on cuda, the GPU's architecture)."""
    from effc.passes.pipeline import chain_pipelines

    options = dict(BEST_KNOWN[check_target(target)])
    if target == "cuda" and cuda_arch in HOPPER_ARCHES:
        # Linears and attention on effc's wgmma kernels: the f16 attention block's kernels 157 -> 52 us, the call
        # 0.236-0.252 -> 0.119-0.128 ms, 0.91-1.64x torch eager (H200 runs 27-29). f32 as three TF32 products: the
        # f32 block 1.93 -> 0.49 ms, 0.86x eager, 6.2e-7 from torch f32 (IEEE FMAs: 1.28 ms, 5.6e-7; run 29).
        options["pipeline"] = chain_pipelines(options["pipeline"], HOPPER_PIPELINE)
    return options


def precision_flags(target: str, precision: str, note: Callable[[str], None] | None = None) -> tuple[str, ...]:
    """Optional iree-compile flags that implement `precision` on `target` (none for "highest").

    As torch's "medium", bf16 only where the hardware multiplies it fast: on a CPU without bf16 dot products
    (`has_bf16_dot`) the matmuls stay f32 (one-row ones read bf16 weights: `with_precision_passes`), and `note` hears
    why.
    """
    if precision not in MATMUL_PRECISIONS:
        raise EffcError(f"unknown matmul precision '{precision}'; use one of: {', '.join(MATMUL_PRECISIONS)}")
    if precision == "int8":
        return INT8_PRECISION[check_target(target)]
    if precision == "high" and check_target(target) == "llvm-cpu" and note is not None:
        note(
            "matmul precision 'high' keeps f32 arithmetic on llvm-cpu: a CPU multiplies bf16 at most twice as fast "
            "as f32, so the three bf16 products that make up one f32 product cost more than it"
        )
    if precision != "medium":
        return ()
    if check_target(target) == "llvm-cpu" and has_bf16_dot() is False:
        if note is not None:
            note(
                f"matmul precision 'medium' keeps f32 arithmetic: this CPU ({cpu_model()}) has no bf16 dot products "
                "(AVX512-BF16, AMX-BF16 or Arm BF16), without which IREE's bf16 matmuls run far slower than f32; only "
                "one-row matmuls (a decode step's) read their weights stored in bf16"
            )
        return ()
    return MEDIUM_PRECISION[target]


def precision_fallback_flags(target: str, precision: str) -> tuple[str, ...]:
    """The flags to try for `precision` where iree-compile rejects `precision_flags` (none: without them)."""
    if not precision_flags(target, precision):
        return ()
    return (INT8_PRECISION_FALLBACK if precision == "int8" else MEDIUM_PRECISION_FALLBACK)[check_target(target)]


def with_precision_flags(optional_flags: tuple[str, ...], precision_options: tuple[str, ...]) -> tuple[str, ...]:
    """`optional_flags` (`-O`'s) plus a precision's own (`precision_flags`); where the precision picks where to
    data-tile, that choice replaces `-O`'s."""
    picked = [flag for flag in precision_options if flag in DATA_TILING_FLAGS]
    kept = [flag for flag in optional_flags if not (picked and flag in DATA_TILING_FLAGS and flag not in picked)]
    return tuple(dict.fromkeys((*kept, *precision_options)))


def for_one_row_matmuls(
    optional_flags: tuple[str, ...], target: str, weight_rows: list[int], note: Callable[[str], None]
) -> tuple[str, ...]:
    """`optional_flags` without data tiling, ukernels and bf16 demotion where every matmul by a constant weight on
    llvm-cpu has one row (`weight_rows`: a decode step, which reads its weights and KV cache once per call, where
    packing them reads them twice; "medium" reads the weights in bf16 there instead, effc-narrow-weights); unchanged
    anywhere else."""
    if check_target(target) != "llvm-cpu" or not weight_rows or max(weight_rows) != 1:
        return optional_flags
    left_out = (*DATA_TILING_FLAGS, UKERNELS_FLAG, *_DEMOTE_TO_BF16)
    dropped = [flag for flag in optional_flags if flag in left_out]
    if dropped:
        demoted = any(flag in _DEMOTE_TO_BF16 for flag in dropped)
        note(
            f"{' '.join(dropped)} left out: every matmul by a constant weight has one row (a decode step), where data "
            "tiling does not pay on llvm-cpu"
            + ("; its weights are read in bf16 (effc-narrow-weights) and multiplied in f32 instead" if demoted else "")
        )
    return tuple(flag for flag in optional_flags if flag not in dropped)


def with_precision_passes(pipeline: str | None, precision: str, target: str, *, for_iree: bool = True) -> str | None:
    """`pipeline` followed by the effc passes that implement `precision` on `target` (int8's quantization, on an
    AVX512-VNNI CPU with effc's kernel where the module goes to IREE, `for_iree`; "medium"'s bf16 weights for one-row
    matmuls on llvm-cpu; "high"'s bf16 pieces on CUDA), unless it runs them itself, with options
    of its own (`effc-quantize-dynamic{smooth=...}`)."""
    extra = PRECISION_PIPELINE.get(precision)
    if precision == "int8" and check_target(target) == "llvm-cpu" and for_iree and has_int8_dot_u8s8():
        extra = VNNI_INT8_PIPELINE
    if precision == "medium" and check_target(target) == "llvm-cpu":
        extra = NARROW_WEIGHTS_PIPELINE
    if precision == "high" and check_target(target) == "cuda":
        extra = SPLIT_BF16_PIPELINE
    if extra is None:
        return pipeline
    from effc.passes.pipeline import chain_pipelines, passes_in

    present = set(passes_in(pipeline)) if pipeline else set()
    missing = [name for name in passes_in(extra) if name not in present]  # the precision's passes take no options
    return chain_pipelines(pipeline, f"builtin.module({','.join(missing)})") if missing else pipeline
