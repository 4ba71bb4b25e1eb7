"""Issue 8's performance set on an NVIDIA GPU: compile here for sm_80, run there with only IREE's runtime.

Two halves, because the GPU machine has torch and CUDA but no IREE compiler, and at most 64 MiB travels:

    python -m effc.bench.perf.cuda prepare --pack bench/perf/cuda-pack          # host: compile
    python -m effc.bench.perf.cuda measure --pack bench/perf/cuda-pack --out DIR  # GPU: time and check
    python -m effc.bench.perf.cuda profile --pack bench/perf/cuda-pack --out DIR  # GPU: call vs kernels (ncu)

`prepare` compiles each workload with external weights (`compile_model(parameters=...)`) and keeps a
splat parameter archive of a few KB (all zeros) instead of the weights, so a 135M-parameter decoder
travels as a small module; GPU kernel times barely depend on weight values (see the results' note).
The attention block also keeps its real weights, so `measure` can check IREE's CUDA numerics against
torch on the GPU. For the models, whose weights cannot travel, `prepare` records which torch parameter each
archive key holds and ships the few weights left inside the module; `measure` then writes an archive from
the weights of the module it builds there, and checks the same way. `measure` builds the same
architectures in torch on the GPU (random weights, same precision), times torch eager with CUDA events (calls
queued) and with a host wait after each call, and IREE with iree-benchmark-module (synchronous calls) and with
calls chained on device fences (median of repetitions, warm-up excluded), reads NVML energy per call for both,
and writes cuda-<card>.json/.md with the card's name. `profile` says where a call's time goes: its kernels
(Nsight Compute) against the rest, for IREE and torch eager, and IREE's CUDA driver options; it writes
cuda-profile-<card>.json/.md.
"""

from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import json
import re
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effc.bench.perf import slug
from effc.compiler.dispatch_configs import DUMP_FLAG, ConfigEdit, substitution_flags
from effc.compiler.optimize import f32_matmul_tiles
from effc.compiler.parameters import named_tensor_bytes, named_tensors, restore_tensors

RESULTS = Path(__file__).parent / "results"
DTYPES = {"f32": torch.float32, "f16": torch.float16}
DECODE_CONTEXT = 2048
# IREE options tried on top of -O (config "O+x-NAME"): what might close the gap to torch on NVIDIA.
TRIAL_FLAGS = {
    "hfuse": "--iree-dispatch-creation-enable-fuse-horizontal-contractions",
    "aggressive-fusion": "--iree-dispatch-creation-enable-aggressive-fusion",
    "propagate-transposes": "--iree-opt-aggressively-propagate-transposes",
    "attention-v-transpose": "--iree-global-opt-enable-attention-v-transpose",
    "prefetch-3": "--iree-llvmgpu-prefetch-num-stages=3",
}

# Kernel configurations tried on the f16 attention block, one dispatch at a time, against what IREE 3.13 picks
# for sm_80: attention tiles of 64 query rows x 32 of the 64 head-dim columns (so each workgroup redoes Q·Kᵀ and
# the softmax for half the output), keys in steps of 64; the QKV projection (2048 x 3072 x 1024, written as
# 3x16x64 output columns) 128x64 tiles, K step 32; the output projection (2048 x 1024 x 1024) 64x64, K step 128.
# All with 4 warps of mma.sync 16x8x16 unless said. Reduction and subgroup sizes count intrinsic tiles.
QKV, OUT = "matmul_like_3x4x16x512x64x1024", "matmul_like_2048x1024x1024"
ONE_AT_A_TIME: dict[str, ConfigEdit] = {  # H100 run 4: each one a row of its own
    "a-64x64": ConfigEdit("attention", {"workgroup": {-3: 64}}),
    "a-64x0": ConfigEdit("attention", {"workgroup": {-3: 0}}),  # 0: the whole head dim
    "a-128x64": ConfigEdit("attention", {"workgroup": {-4: 128, -3: 64}}),
    "a-128x64-w8": ConfigEdit("attention", {"workgroup": {-4: 128, -3: 64}}, workgroup_size=256, subgroups=8),
    "a-64x64-r32": ConfigEdit("attention", {"workgroup": {-3: 64}, "reduction": {-1: 32}}),
    "a-64x64-r128": ConfigEdit("attention", {"workgroup": {-3: 64}, "reduction": {-1: 128}}),
    "q-r4": ConfigEdit(QKV, {"reduction": {-1: 4}}),
    "q-2heads-w8": ConfigEdit(QKV, {"workgroup": {2: 2}}, workgroup_size=256),
    "q-sub2x4-w8": ConfigEdit(QKV, {"subgroup": {3: 2}}, workgroup_size=256),
    "q-64x64": ConfigEdit(QKV, {"workgroup": {3: 64}, "subgroup": {3: 2}}),
    "q-s3": ConfigEdit(QKV, prefetch_stages=3),
    "q-256x64-w8": ConfigEdit(QKV, {"workgroup": {3: 256}}, workgroup_size=256),
    "o-128x64-r2": ConfigEdit(OUT, {"workgroup": {0: 128, 1: 64}, "subgroup": {0: 4, 1: 4}, "reduction": {-1: 2}}),
    "o-128x128-r2": ConfigEdit(OUT, {"workgroup": {0: 128, 1: 128}, "subgroup": {0: 4, 1: 8}, "reduction": {-1: 2}}),
    "o-r4": ConfigEdit(OUT, {"reduction": {-1: 4}}),
    "o-r2": ConfigEdit(OUT, {"reduction": {-1: 2}}),
    "o-128x128-w16": ConfigEdit(OUT, {"workgroup": {0: 128, 1: 128}, "reduction": {-1: 2}}, workgroup_size=512),
}
# Only in combinations (runs 5 and 7): neighbours of the first round's winners.
COMBINATION_PARTS: dict[str, ConfigEdit] = {
    "q-r8": ConfigEdit(QKV, {"reduction": {-1: 8}}),
    "q-r4-s3": ConfigEdit(QKV, {"reduction": {-1: 4}}, prefetch_stages=3),
    "q-r4-2heads-w8": ConfigEdit(QKV, {"workgroup": {2: 2}, "reduction": {-1: 4}}, workgroup_size=256),
    "o-128x64-r4": ConfigEdit(OUT, {"workgroup": {0: 128, 1: 64}, "subgroup": {0: 4, 1: 4}, "reduction": {-1: 4}}),
    "q-r4-2heads-w8-s3": ConfigEdit(
        QKV, {"workgroup": {2: 2}, "reduction": {-1: 4}}, workgroup_size=256, prefetch_stages=3
    ),
    "q-r4-2heads-sub4x8": ConfigEdit(QKV, {"workgroup": {2: 2}, "subgroup": {3: 4, 4: 8}, "reduction": {-1: 4}}),
    "a-128x0-w8": ConfigEdit("attention", {"workgroup": {-4: 128, -3: 0}}, workgroup_size=256, subgroups=8),
    "o-128x64-r2-s3": ConfigEdit(
        OUT, {"workgroup": {0: 128, 1: 64}, "subgroup": {0: 4, 1: 4}, "reduction": {-1: 2}}, prefetch_stages=3
    ),
}
# f32 on CUDA (seventh round): IREE 3.13 compiles f32 contractions with its TileAndFuse pipeline and no shared
# memory, each thread reading its operands from global memory; 2-d matmuls give each thread 1x16 outputs, so a
# warp reads 16 rows of the transposed weight at once. Edits: stage the operands in shared memory (promote),
# and 4x4 outputs per thread.
F32_TUNING: dict[str, ConfigEdit] = {
    "mc-promote": ConfigEdit("multi_contract", promote_operands=(0, 1, 2, 3), requires="pipeline<TileAndFuse>"),
    "mm-promote": ConfigEdit("matmul", promote_operands=(0, 1), requires="pipeline<TileAndFuse>"),
    "mm-4x4": f32_matmul_tiles((4, 4)),
    "mm-promote-4x4": f32_matmul_tiles((4, 4), promote_operands=(0, 1)),
    # Run 9: more workgroups (IREE's 32x128 tiles give a 128x384 matmul 12 workgroups on 132 SMs), and the fused
    # QKV projection (1x128 tiles, 32 threads with 1x4 outputs each) in 16x32 tiles, 4x4 per thread.
    "mm-32x32-1x4": f32_matmul_tiles((1, 4), (32, 32)),
    "mm-16x64-1x4": f32_matmul_tiles((1, 4), (16, 64)),
    "mm-16x32-1x2": f32_matmul_tiles((1, 2), (16, 32)),
    "mc-16x32-4x4": ConfigEdit("multi_contract", {"workgroup": {-3: 16, -2: 32}, "thread": {-3: 4, -2: 4}}),
    # Run 10: one or two outputs per thread in smaller tiles still (run 9's best was 16x32 with 1x2).
    "mm-16x16-1x1": f32_matmul_tiles((1, 1), (16, 16)),
    "mm-8x32-1x1": f32_matmul_tiles((1, 1), (8, 32)),
    "mm-32x32-2x2": f32_matmul_tiles((2, 2), (32, 32)),
    # Eighth GPU session: more outputs per thread for the block's 2048-row matmuls (its f32 output projection took
    # 605 us, cuBLAS's 105), so fewer loads per multiply-add than 4x4; still 256 threads a workgroup.
    "mm-128x128-8x8": f32_matmul_tiles((8, 8), (128, 128)),
    "mm-64x128-4x8": f32_matmul_tiles((4, 8), (64, 128)),
    "mm-64x128-8x4": f32_matmul_tiles((8, 4), (64, 128)),
    "mm-64x64-4x4": f32_matmul_tiles((4, 4), (64, 64)),
}
DECODE_TUNING: dict[str, ConfigEdit] = {
    # H200 run 20: the decode step's repeat of its 3 KV heads (3x3x131136 f16) ran 24 us a call, 32 threads a
    # workgroup that copy one f16 each; 8 each (16 bytes), 128 threads a workgroup.
    "bcast-8": ConfigEdit(
        r"elementwise_broadcast_\d+x\d+x\d+_f16",
        {"workgroup": {-1: 1024}, "thread": {-1: 8}},
        workgroup_size=128,
        requires=r"pipeline<TileAndFuse>",
    ),
}
KERNEL_TUNING = ONE_AT_A_TIME | COMBINATION_PARTS | F32_TUNING | DECODE_TUNING
# Options of IREE's CUDA driver tried per call by `profile` (no recompile): what a module call costs beside its
# kernels. IREE 3.13's defaults: streams (not CUDA graphs), no inline execution, stream-ordered allocations.
RUNTIME_VARIANTS: dict[str, tuple[str, ...]] = {
    "default": (),
    "graphs": ("--cuda_use_streams=false",),
    "inline": ("--cuda_allow_inline_execution=true",),
    "sync-alloc": ("--cuda_async_allocations=false",),
    # Run 14: neither changed a call by more than run-to-run noise (the wheel's runtime has no tracing built in).
    "no-tracing": ("--cuda_tracing=0",),
    "caching-alloc": ("--device_allocator=caching",),
}
PROFILE_MIN_TIME = "--benchmark_min_time=0.2s"  # per repetition: keeps a profile of a pack within minutes
# torch eager's time is that of calls queued back to back; a synchronous IREE call also waits for its results
# (~95 us per call on the H100, run 9). For like against like, `measure` also chains PIPELINE_DEPTH calls of each
# module's asynchronous export on device fences (runner.pipelined_benchmark), and times torch eager with a host
# wait after each call.
PIPELINE_DEPTH = 16


@dataclass(frozen=True)
class InputSpec:
    """How `measure` regenerates one input there (the caches alone would not fit the 64 MiB transfer)."""

    shape: tuple[int, ...]
    dtype: str  # numpy dtype name
    fill: str  # "randn", "ones", "ids:<vocab>", "value:<int>"


@dataclass(frozen=True)
class Entry:
    """One compiled module of the pack."""

    key: str
    workload: str
    precision: str
    config: str
    vmfb: str
    splat: str
    inputs: tuple[InputSpec, ...]
    real_params: str | None = None
    iree_flags: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # the compile's notes: options dropped, kernel configurations changed
    # Archive key -> the torch module's parameter or buffer name: `measure` writes an archive from the weights of
    # the module it builds on the GPU machine and checks numerics without the real weights travelling.
    weight_names: dict[str, str] | None = None
    # The module's weights that stayed in the vmfb (too small to externalize), real: torch's module takes them.
    inline_weights: str | None = None


# --------------------------------------------------------------------------- torch-side builders


def build_torch(workload: str, precision: str, configs: dict[str, Any]) -> torch.nn.Module:
    """The workload's torch module with random weights (or the seeded block), in `precision`, on CPU."""
    dtype = DTYPES[precision]
    if workload == "attention-block":
        from effc.bench.perf.workloads import attention_block

        module, _ = attention_block()
    elif workload == "minilm":
        from transformers import BertConfig, BertModel

        from effc.compiler.models import EncoderWrapper

        torch.manual_seed(0)
        module = EncoderWrapper(BertModel(BertConfig.from_dict(configs["minilm"]), add_pooling_layer=False))
    else:
        from transformers import LlamaConfig, LlamaForCausalLM

        from effc.passes.chai_decode import DecodeStep

        torch.manual_seed(0)
        module = DecodeStep(LlamaForCausalLM(LlamaConfig.from_dict(configs["smollm2"])))
    return module.to(dtype).eval()


def make_inputs(specs: tuple[InputSpec, ...], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = []
    for spec in specs:
        kind, _, arg = spec.fill.partition(":")
        if kind == "randn":
            array = rng.standard_normal(spec.shape, dtype=np.float32)
        elif kind == "ones":
            array = np.ones(spec.shape)
        elif kind == "ids":
            array = rng.integers(0, int(arg), spec.shape)
        else:
            array = np.full(spec.shape, int(arg))
        arrays.append(np.ascontiguousarray(array.astype(spec.dtype)))
    return arrays


# --------------------------------------------------------------------------- host: prepare


def _signature(mlir: str) -> list[tuple[tuple[int, ...], str]]:
    """(shape, element type) of each argument of @main in torch-dialect text."""
    header = re.search(r"func\.func @main\((.*?)\)\s*->", mlir, re.DOTALL)
    assert header is not None, "no @main in the compiled module"
    return [
        (tuple(int(d) for d in dims.split(",") if d), element)
        for dims, element in re.findall(r"!torch\.vtensor<\[([\d,]*)\],(\w+)>", header.group(1))
    ]


def _specs(workload: str, mlir: str, precision: str) -> tuple[InputSpec, ...]:
    float_name = "float32" if precision == "f32" else "float16"
    specs = []
    for index, (shape, element) in enumerate(_signature(mlir)):
        if element.startswith("f"):
            specs.append(InputSpec(shape, float_name, "randn"))
        elif workload == "minilm":
            specs.append(InputSpec(shape, "int64", "ids:30522" if index == 0 else "ones"))
        else:  # decode step: token, then position
            specs.append(InputSpec(shape, "int64", "ids:49152" if index == 0 else f"value:{DECODE_CONTEXT - 1}"))
    return tuple(specs)


def selected(key: str, only: str) -> bool:
    """Whether `--only` names a module: a comma-separated part matches a key that contains it, or, ending in `$`,
    a key that ends with it (`attention-block-f16--O$` without the `--O-hoist` variants)."""
    return any(key.endswith(part[:-1]) if part.endswith("$") else part in key for part in only.split(","))


def pack_entries(manifest: dict[str, Any]) -> list[Entry]:
    """A pack manifest's modules."""
    return [
        Entry(**(e | {"inputs": tuple(InputSpec(tuple(i["shape"]), i["dtype"], i["fill"]) for i in e["inputs"])}))
        for e in manifest["entries"]
    ]


def _host_module(workload: str, precision: str) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...], dict[str, Any]]:
    """The host's module (real weights for the bundled models) and example inputs, in `precision`."""
    from effc.bench.perf.workloads import WORKLOADS

    if workload == "smollm2-decode":
        from effc.bench.perf.workloads import smollm2_decode_step

        module, inputs = smollm2_decode_step(DECODE_CONTEXT)
        config = module.inner.config.to_dict()
    else:
        module, inputs = WORKLOADS[workload].build()
        config = module.model.config.to_dict() if workload == "minilm" else {}
    dtype = DTYPES[precision]
    cast = tuple(t.to(dtype) if t.is_floating_point() else t for t in inputs)
    return module.to(dtype).eval(), cast, config


def committed_budget_plan(pack: Path) -> Path:
    """The CHAI bench's SmolLM2 budget plan, written into `pack`, so that preparing a GPU run is one command."""
    from effc.compiler.fileio import write_atomic

    summary = json.loads((Path(__file__).parents[1] / "chai" / "results" / "chai.json").read_text())
    path = pack / "smollm2-budget-plan.json"
    pack.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(summary["smollm2"]["plans"]["budget"], indent=1) + "\n")
    return path


def prepare(pack: Path, plan_path: Path, only: str | None) -> None:
    from effc.compiler.api import compile_model
    from effc.compiler.errors import EffcError
    from effc.compiler.optimize import MEDIUM_PRECISION, best_known
    from effc.compiler.parameters import archive_fingerprint, archive_sources, write_splat_archive
    from effc.compiler.progress import Stages
    from effc.passes.pipeline import chain_pipelines

    pack.mkdir(parents=True, exist_ok=True)
    manifest_path = pack / "manifest.json"
    previous = json.loads(manifest_path.read_text()) if only and manifest_path.exists() else {}
    kept = {e["key"]: e for e in previous.get("entries", [])}
    o_flags = ("--iree-opt-level=O3",)  # `-O` for CUDA when these runs were made (NOTES.md)
    demote = ("--iree-global-opt-demote-contraction-inputs-type=bf16",)
    o_hfuse = (*o_flags, TRIAL_FLAGS["hfuse"])  # today's `-O` on CUDA
    medium = (TRIAL_FLAGS["hfuse"], *MEDIUM_PRECISION["cuda"])  # `-O --matmul-precision medium` (O3 dropped)
    plan = f"builtin.module(effc-chai{{plan={plan_path}}})"
    narrow = "builtin.module(effc-narrow-softmax)"
    hoist = "builtin.module(effc-hoist-softmax-guard)"
    hoist_narrow = "builtin.module(effc-hoist-softmax-guard,effc-narrow-softmax)"
    guard_max = "builtin.module(effc-softmax-guard-from-max)"
    split = "builtin.module(effc-move-matmul-scale,effc-split-concat-matmul)"
    split_fold = "builtin.module(effc-move-matmul-scale,effc-split-concat-matmul,effc-fold-broadcast-bmm)"
    hopper = "builtin.module(effc-hopper-kernels)"

    def hopper_with(options: str) -> str:
        return f"builtin.module(effc-hopper-kernels{{{options}}})"

    # (workload, precision, config name, attention form, pipeline, iree flags, keep real weights).
    # CHAI's decode step runs in f32 with attention decomposed: IREE 3.13's CUDA codegen rejects its fused
    # form (sdpa whose V is wider than Q/K: "failed to distribute") and -O's O3 (a vector.transfer_write
    # outside a distributed context); in f16 the decomposition's upcasts hide the GQA groups from effc-chai.
    matrix = [
        ("attention-block", "f32", "default", "fused", None, (), True),
        ("attention-block", "f32", "O", "fused", None, o_flags, False),
        ("attention-block", "f32", "O+demote-bf16", "fused", None, (*o_flags, *demote), True),
        ("attention-block", "f16", "default", "fused", None, (), True),
        ("attention-block", "f16", "O", "fused", None, o_flags, False),
        ("minilm", "f32", "default", "fused", None, (), False),
        ("minilm", "f32", "O", "fused", None, o_flags, False),
        ("minilm", "f16", "default", "fused", None, (), False),
        ("minilm", "f16", "O", "fused", None, o_flags, False),
        ("smollm2-decode", "f16", "default", "fused", None, (), False),
        ("smollm2-decode", "f16", "O", "fused", None, o_flags, False),
        ("smollm2-decode", "f32", "default", "fused", None, (), False),
        ("smollm2-decode", "f32", "decomposed", "decomposed", None, (), False),
        ("smollm2-decode", "f32", "chai", "decomposed", plan, (), False),
        *[
            (workload, "f16", f"O+x-{name}", "fused", None, (*o_flags, flag), False)
            for workload in ("attention-block", "minilm")
            for name, flag in TRIAL_FLAGS.items()
        ],
        # Second round, after the first showed decomposed attention winning the decode step and hfuse MiniLM.
        ("smollm2-decode", "f16", "decomposed", "decomposed", None, (), False),
        ("smollm2-decode", "f32", "decomposed+O", "decomposed", None, o_flags, False),
        ("smollm2-decode", "f32", "decomposed+x-hfuse", "decomposed", None, (TRIAL_FLAGS["hfuse"],), False),
        ("smollm2-decode", "f32", "chai+x-hfuse", "decomposed", plan, (TRIAL_FLAGS["hfuse"],), False),
        ("smollm2-decode", "f16", "chai", "decomposed", plan, (), False),  # once effc-chai saw f16's KV groups
        ("attention-block", "f32", "O+x-hfuse", "fused", None, (*o_flags, TRIAL_FLAGS["hfuse"]), False),
        ("minilm", "f32", "O+x-hfuse", "fused", None, (*o_flags, TRIAL_FLAGS["hfuse"]), False),
        # Third round (run on the H100, run 4): `--matmul-precision medium` (demotion with operations=all, which
        # the O+demote-bf16 rows lacked, so demotion did not act there; IREE also ignores it under O2/O3).
        ("attention-block", "f32", "medium", "decomposed", None, medium, True),
        ("minilm", "f32", "medium", "decomposed", None, medium, False),
        ("smollm2-decode", "f32", "decomposed+medium", "decomposed", None, medium, False),
        # effc-split-projections: the q/k/v copies were ~25% of IREE's bf16 block (gpu-measurements.md).
        ("attention-block", "f16", "O+split", "fused", "builtin.module(effc-split-projections)", o_flags, False),
        # Fourth round (first H100 run): today's -O (O3 + hfuse; decode steps decomposed, where O3 fails), and
        # the f16 block with one dispatch's kernel configuration changed at a time (KERNEL_TUNING).
        ("attention-block", "f32", "O+decomposed", "decomposed", None, o_hfuse, False),
        ("smollm2-decode", "f16", "decomposed+x-hfuse", "decomposed", None, (TRIAL_FLAGS["hfuse"],), False),
        ("smollm2-decode", "f16", "chai+x-hfuse", "decomposed", plan, (TRIAL_FLAGS["hfuse"],), False),
        *[
            ("attention-block", "f16", f"O+x-hfuse+tuned-{name}", "fused", None, o_hfuse, True, (name,))
            for name in ONE_AT_A_TIME
        ],
        # Fifth round (H100 runs 5 and 7): the first round's winners together (a: attention, q: QKV projection,
        # o: output projection).
        ("minilm", "f32", "O+decomposed", "decomposed", None, o_hfuse, False),  # O3 fails: "failed to bufferize op"
        ("minilm", "f32", "decomposed+x-hfuse", "decomposed", None, (TRIAL_FLAGS["hfuse"],), False),  # so -O is this
        *[
            ("attention-block", "f16", "O+x-hfuse+combo-" + "+".join(names), "fused", None, o_hfuse, True, names)
            for names in (
                ("a-64x0", "q-r4"),
                ("a-64x0", "q-r4", "o-128x64-r2"),
                ("a-64x0", "q-r8", "o-128x64-r2"),
                ("a-64x0", "q-r4-s3", "o-128x64-r2"),
                ("a-64x0", "q-r4", "o-128x64-r4"),
                ("a-64x0", "q-r4-2heads-w8", "o-128x64-r2"),
                ("a-64x0", "q-r4", "o-128x64-r2-s3"),
                ("a-64x0", "q-r4-2heads-w8", "o-128x64-r4"),
                ("a-64x0", "q-r4-2heads-w8-s3", "o-128x64-r4"),
                ("a-64x0", "q-r4-2heads-sub4x8", "o-128x64-r4"),
                ("a-128x0-w8", "q-r4-2heads-w8", "o-128x64-r4"),
            )
        ],
        # Sixth round (H100 run 6): `-O` itself, now with its dispatch edits (optimize.BEST_KNOWN["cuda"]).
        *[
            (workload, precision, "-O", "auto", None, (), keep)
            for workload, precision, keep in (
                ("attention-block", "f16", True),
                ("minilm", "f16", False),
                ("minilm", "f32", False),
                ("smollm2-decode", "f16", False),
                ("attention-block", "f32", True),  # run 9
            )
        ],
        # Seventh round: f32 matmul configurations (F32_TUNING) on top of what -O gives f32 MiniLM (decomposed,
        # hfuse; O3 fails) and the f32 block (decomposed, O3, hfuse); the block keeps its real weights, so the
        # edited kernels are checked against torch on the GPU (MiniLM's f32 weights would not fit the transfer).
        *[
            ("minilm", "f32", "O-f32-" + "+".join(names), "decomposed", None, (TRIAL_FLAGS["hfuse"],), False, names)
            for names in (
                ("mc-promote", "mm-promote"),
                ("mm-4x4",),
                ("mc-promote", "mm-promote-4x4", "mm-promote"),
                ("mm-32x32-1x4",),  # run 9
                ("mm-16x64-1x4",),
                ("mm-16x32-1x2",),
                ("mm-4x4", "mc-16x32-4x4"),
                ("mm-32x32-1x4", "mc-16x32-4x4"),
                ("mm-16x32-1x2", "mc-16x32-4x4"),  # run 10
                ("mm-16x16-1x1",),
                ("mm-8x32-1x1",),
                ("mm-32x32-2x2",),
            )
        ],
        ("attention-block", "f32", "O-f32", "decomposed", None, o_hfuse, True),
        # Eighth round (not yet run on a GPU): effc-narrow-softmax, which keeps a decomposed f16 attention in f16
        # instead of torch's upcast to f32 (the decode step converted its K and V caches to f32 every step).
        ("attention-block", "f16", "O-decomposed", "decomposed", None, o_hfuse, True),
        ("attention-block", "f16", "O-decomposed-narrow", "decomposed", narrow, o_hfuse, True),
        ("smollm2-decode", "f16", "O-narrow", "decomposed", narrow, (TRIAL_FLAGS["hfuse"],), False),
        *[
            ("attention-block", "f32", "O-f32-" + "+".join(names), "decomposed", None, o_hfuse, True, names)
            for names in (("mm-promote",), ("mm-promote-4x4", "mm-promote"), ("mm-4x4",))
        ],
        # Ninth round (H100 run 12 put the guard's reduction at 181 us of the narrowed block's 467): `-O` with
        # effc-hoist-softmax-guard, which tests the guard on the mask, or drops it without one.
        ("attention-block", "f32", "-O+hoist", "auto", hoist, (), True),
        ("attention-block", "f16", "-O+decomposed+hoist+narrow", "decomposed", hoist_narrow, (), True),
        ("minilm", "f32", "-O+hoist", "auto", hoist, (), False),
        ("smollm2-decode", "f16", "-O+hoist", "auto", hoist, (), False),
        ("smollm2-decode", "f16", "-O+hoist+narrow", "auto", hoist_narrow, (), False),
        ("smollm2-decode", "f16", "-O+chai+hoist", "auto", plan[:-1] + ",effc-hoist-softmax-guard)", (), False),
        # Tenth round: effc-raise-attention on MiniLM with HF's eager attention (a matmul/softmax/matmul chain that
        # IREE cannot fuse), against the same model raised to sdpa. torch eager's row is MiniLM with sdpa.
        ("minilm", "f16", "-O+eager-attention", "auto", None, (), False),
        ("minilm", "f16", "-O+eager-attention+raise", "fused", "builtin.module(effc-raise-attention)", (), False),
        # Eleventh round (not yet run on a GPU): the decode step's repeated KV heads folded (fold_gqa.py; on the CPU
        # 53-69 -> 36-52 ms). The fold needs decomposed attention; the step's one-row attention is decomposed anyway.
        ("smollm2-decode", "f16", "-O+fold", "decomposed", None, (), False),
        ("smollm2-decode", "f32", "-O+fold", "decomposed", None, (), False),
        # Twelfth round (not yet run on a GPU): `-O --matmul-precision int8` (effc-quantize-dynamic), against torch
        # eager in f32 (torch's dynamic quantization is CPU-only). With the splat archive the int8 weights are zeros,
        # which the kernels' times do not notice; the block's real weights check the numerics.
        ("attention-block", "f32", "-O+int8", "auto", None, (), True),
        ("minilm", "f32", "-O+int8", "auto", None, (), False),
        ("smollm2-decode", "f32", "-O+int8+fold", "decomposed", None, (), False),
        # Thirteenth round: CHAI's decode step under today's `-O` (runs 11-13 had older flags or the hoist).
        ("smollm2-decode", "f16", "-O+chai", "auto", plan, (), False),
        # Fourteenth round (not yet run on a GPU): `-O --matmul-precision high` (effc-split-bf16: each f32 matmul as
        # three bf16 products on tensor cores, accumulated in f32), against torch eager in f32 and with TF32 (torch's
        # own 'high'); and the six products that keep f32's 24 bits. `high`'s block keeps its real weights (25 MB, 1.5x
        # f32's: three bf16 pieces), so that the tensor cores' f32 accumulation is checked against torch on the GPU.
        ("attention-block", "f32", "-O+high", "auto", None, (), True),
        ("minilm", "f32", "-O+high", "auto", None, (), False),
        # (Six pieces' real weights take 50 MB, 3x f32's: they would not travel beside another archive.)
        ("attention-block", "f32", "-O+high3", "auto", "builtin.module(effc-split-bf16{pieces=3})", (), False),
        # The f32 block's matmuls with more outputs per thread (H100 run 19).
        *[
            ("attention-block", "f32", f"O-f32-{name}", "decomposed", None, o_hfuse, True, (name,))
            for name in ("mm-128x128-8x8", "mm-64x128-4x8", "mm-64x128-8x4", "mm-64x64-4x4")
        ],
        # Fifteenth round (not yet run on a GPU): `-O` now pads a decode step's 2049 keys to 2176 (`key_multiple`;
        # H200 run 20 put its 9x2049 softmaxes at 9.3 of 16.1 ms of kernels, one thread per row). "+pad1": `-O`
        # as it was. The KV repeat copied in 16-byte pieces (bcast-8) on top.
        ("smollm2-decode", "f16", "-O+pad1", "auto", None, (), False),
        ("smollm2-decode", "f16", "-O+chai+pad1", "auto", plan, (), False),
        ("smollm2-decode", "f16", "O+pad128+bcast8", "auto", None, (TRIAL_FLAGS["hfuse"],), False, ("bcast-8",)),
        # The safe-softmax guard read off the softmax's row maximum (run 20: its `all` reduction, one thread per row,
        # took 958 us of the step's kernels).
        ("smollm2-decode", "f16", "-O+guard-max", "auto", guard_max, (), False),
        ("smollm2-decode", "f16", "-O+chai+guard-max", "auto", plan[:-1] + ",effc-softmax-guard-from-max)", (), False),
        # Sixteenth round (not yet run on a GPU): the decode step's attention matmuls split over cat([cache, new row])
        # (through the repeat, the key padding and the f16 step's casts to f32) so the cache is not copied into a new
        # tensor, and then the repeated KV heads folded at the matmuls (the import's fold made the H100's f16 step
        # 1.57x slower; this one leaves the padding and casts as they are). CHAI's step likewise: on the Zen 4 its
        # f32 step went 29.3 -> 21.3 ms with both (NOTES.md, twenty-fourth session).
        ("smollm2-decode", "f16", "-O+split", "auto", split, (), False),
        ("smollm2-decode", "f16", "-O+split+mmfold", "auto", split_fold, (), False),
        ("smollm2-decode", "f16", "-O+chai+split+mmfold", "auto", chain_pipelines(plan, split_fold), (), False),
        # Seventeenth round (H200 runs 27-28: the block 0.236-0.252 -> 0.119-0.127 ms): effc's Triton kernels for
        # Hopper (effc-hopper-kernels: wgmma, which IREE 3.13's sm_80 code lacks) for the f16 block's two linears and
        # its attention, q, k and v read in the QKV projection's output and the attention written heads-last: three
        # dispatches, no copies. Each half alone too, and MiniLM (its masked attention stays IREE's; its linears have
        # 128 rows).
        ("attention-block", "f16", "-O+hopper", "fused", hopper, (), True),
        ("attention-block", "f16", "-O+hopper-linear", "fused", hopper_with("attention=false"), (), False),
        ("attention-block", "f16", "-O+hopper-attention", "fused", hopper_with("linear=false"), (), False),
        ("minilm", "f16", "-O+hopper", "fused", hopper, (), False),
        # Hedges for the first run, had the runtime not lifted CUDA's 48 KiB default for dynamic shared memory or not
        # loaded ptxas 12.9's cubin (it did both: 1 stage was slower, PTX the same kernels).
        ("attention-block", "f16", "-O+hopper-s1", "fused", hopper_with("stages=1"), (), False),
        ("attention-block", "f16", "-O+hopper-ptx", "fused", hopper_with("image=ptx"), (), False),
        # Pipeline stages other than the defaults (linear 4, attention 3): none faster (run 28).
        *[
            ("attention-block", "f16", f"-O+hopper-ptx-s{n}", "fused", hopper_with(f"image=ptx stages={n}"), (), False)
            for n in (2, 3, 5)
        ],
        # Nineteenth round (H200 run 30: -O 4.12, + hoist 3.65, CHAI + split 6.17 ms): -O splits the step's attention
        # matmuls over the cache (run 27: 5.84 -> 4.19 ms); the hoisted guard on top (alone 4.76 in run 27), now -O's
        # too; and CHAI's step with the split alone.
        ("smollm2-decode", "f16", "-O+split+hoist", "auto", chain_pipelines(hoist, split), (), False),
        ("smollm2-decode", "f16", "-O+chai+split", "auto", chain_pipelines(plan, split), (), False),
        # Eighteenth round (H200 run 29: 1.93 ms under -O; ieee 1.28, tf32x3 0.49 at 6.2e-7, bf16x3 0.41 at 5.0e-6,
        # tf32 0.21 at 1.7e-3): the f32 block on the same kernels, its products as IEEE FMAs or on tensor cores
        # (three TF32 or bf16 products, about f32's accuracy; one TF32 product, torch's "high"). All with the real
        # weights (one archive), so that each one's error against torch f32 is measured there.
        *[
            ("attention-block", "f32", f"-O+hopper-{p}", "fused", hopper_with(f"f32-precision={p}"), (), True)
            for p in ("ieee", "tf32x3", "bf16x3", "tf32")
        ],
    ]
    entries, configs = [], previous.get("configs", {})
    failed: dict[str, str] = {}
    stages = Stages()
    built: dict[tuple[str, str], tuple[torch.nn.Module, tuple[torch.Tensor, ...]]] = {}
    # One real archive per content (`archive_fingerprint`): 64 MiB travel. Passes that rewrite weights (int8, the
    # bf16 pieces of `high`) write keys of their own; a shared f32 archive made H100 run 16's int8 block fail to load
    # ("no parameter found ... 'effc_int8_weight'").
    real_archives: dict[str, str] = {}
    scratch = Path(tempfile.mkdtemp(prefix="effc-cuda-configs-"))
    attempted: set[str] = set()
    for workload, precision, config, attention, pipeline, flags, keep_real, *tuned in matrix:
        key = f"{workload}-{precision}-{config}".replace("+", "-")
        if only and not selected(key, only):
            if key in kept:
                entries.append(Entry(**kept[key]))
                if kept[key]["real_params"]:  # later modules of the same weights share it
                    shared_path = pack / kept[key]["real_params"]
                    real_archives.setdefault(archive_fingerprint(shared_path), kept[key]["real_params"])
            continue
        variant = (workload, precision, "eager-attention" in config)
        if variant not in built:
            module, inputs, model_config = _host_module(workload, precision)
            if variant[2]:  # HF's own matmul/softmax/matmul chain instead of sdpa
                module.model.set_attn_implementation("eager")
            built = {variant: (module, inputs, named_tensor_bytes(module))}
            if model_config:
                configs[workload.split("-")[0]] = model_config
        module, inputs, state = built[variant]
        attempted.add(key)
        real = pack / f"{key}.real.irpa"

        # "-O...": what `effc compile -O --target cuda` does today, with the row's attention form (unless "auto")
        # and pipeline (if any) instead of -O's.
        options = {"attention": attention, "pipeline": pipeline}
        if config.startswith("-O"):
            options = best_known("cuda") | {k: v for k, v in options.items() if v not in (None, "auto")}
        options["fold_gqa"] = config.endswith("+fold")
        if padded := re.search(r"\+pad(\d+)", config):
            options["key_multiple"] = int(padded.group(1))
        if "+int8" in config:
            options["matmul_precision"] = "int8"
        if config.endswith("+high"):
            options["matmul_precision"] = "high"
        flags = options.pop("iree_flags", flags)
        compile_cuda = functools.partial(compile_model, module, inputs, target="cuda", parameters=real, **options)
        try:
            with stages.stage(f"compile {key} for cuda sm_80"):
                substitutions: tuple[str, ...] = ()
                if tuned:  # compile once to get IREE's configurations, then again with the edited ones
                    dumped = scratch / key / "dumped"
                    compile_cuda(iree_flags=(*flags, f"{DUMP_FLAG}={dumped}"))
                    edits = tuple(KERNEL_TUNING[name] for name in tuned[0])
                    substitutions = substitution_flags(dumped, edits, scratch / key / "edited")
                compiled = compile_cuda(iree_flags=(*flags, *substitutions))
        except EffcError as err:  # an option that does not compile is a result too (NOTES.md)
            failed[key] = str(err)
            real.unlink(missing_ok=True)
            continue
        write_splat_archive(real, pack / f"{key}.splat.irpa")
        weight_names, missing = archive_sources(real, state)
        inline = None
        if not missing and not keep_real:
            inline = f"{key}.inline.npz"
            archived = set(weight_names.values())
            kept_inline = {name: np.frombuffer(data, np.uint8) for name, data in state.items() if name not in archived}
            np.savez(pack / inline, **kept_inline)
        (pack / f"{key}.vmfb").write_bytes(compiled.vmfb or b"")
        shared = real_archives.setdefault(archive_fingerprint(real), real.name) if keep_real else None
        if shared != real.name:
            real.unlink()
        entries.append(
            Entry(
                key,
                workload,
                precision,
                config,
                f"{key}.vmfb",
                f"{key}.splat.irpa",
                _specs(workload, compiled.mlir, precision),
                shared,
                flags,
                tuple(compiled.notes),
                None if missing else weight_names,
                inline,
            )
        )
    shutil.rmtree(scratch)
    manifest = {
        "entries": [asdict(e) for e in entries],
        "failed_to_compile": {k: v for k, v in previous.get("failed_to_compile", {}).items() if k not in attempted}
        | failed,
        "configs": configs,
        "decode_context": DECODE_CONTEXT,
    }
    manifest_path.write_text(json.dumps(manifest, indent=1))
    total = sum(p.stat().st_size for p in pack.iterdir())
    print(f"pack: {len(entries)} modules, {total / 2**20:.1f} MiB in {pack}; failed to compile: {failed or 'none'}")


# --------------------------------------------------------------------------- GPU: measure


def _torch_eager_ms(module: torch.nn.Module, inputs: list[torch.Tensor], repeats: int = 7) -> float:
    """Median over `repeats` of the mean of a CUDA-event-timed batch of calls, after warm-up."""
    with torch.no_grad():
        for _ in range(10):
            module(*inputs)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        module(*inputs)
        end.record()
        torch.cuda.synchronize()
        calls = max(5, int(200 / max(start.elapsed_time(end), 1e-3)))  # ~200 ms per batch
        samples = []
        for _ in range(repeats):
            start.record()
            for _ in range(calls):
                module(*inputs)
            end.record()
            torch.cuda.synchronize()
            samples.append(start.elapsed_time(end) / calls)
    return statistics.median(samples)


def _torch_eager_sync_ms(module: torch.nn.Module, inputs: list[torch.Tensor], calls: int = 200) -> float:
    """Median wall time of one eager call and the host's wait for its results: what a synchronous IREE call costs."""
    samples = []
    with torch.no_grad():
        for _ in range(calls):
            start = time.perf_counter()
            module(*inputs)
            torch.cuda.synchronize()
            samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e3


def _relative_error_on_gpu(pack: Path, entry: Entry, arrays: list[np.ndarray], cached: dict[str, Any]) -> float | None:
    """IREE's output against torch's on the GPU, with the real weights where the pack has them, else with the
    weights of the torch module built here, written into an archive under the compiled module's keys (None for
    a pack made before `prepare` recorded those keys)."""
    from effc.compiler.parameters import write_archive
    from effc.runtime.runner import relative_error, run_vmfb

    if entry.real_params:
        got = run_vmfb(pack / entry.vmfb, arrays, device="cuda", parameters=pack / entry.real_params)[0]
        return relative_error(got, cached["reference"])
    if entry.weight_names is None:
        return None
    with tempfile.TemporaryDirectory(prefix="effc-weights-") as tmp:
        weights = {key: cached["weights"][name] for key, name in entry.weight_names.items()}
        archive = write_archive(weights, Path(tmp) / "weights.irpa")
        got = run_vmfb(pack / entry.vmfb, arrays, device="cuda", parameters=archive)[0]
    return relative_error(got, cached["reference"])


def _torch_side(module: torch.nn.Module, arrays: list[np.ndarray], meter: Any) -> dict[str, Any]:
    """Eager time (queued and waited for), the first output (for numerics) and, with a meter, NVML energy per call."""
    from effc.runtime.energy import measure as measure_energy

    module = module.cuda()
    tensors = [torch.from_numpy(a).cuda() for a in arrays]
    side: dict[str, Any] = {"weights": named_tensor_bytes(module), "eager_ms": _torch_eager_ms(module, tensors)}
    side["eager_sync_ms"] = _torch_eager_sync_ms(module, tensors, calls=max(20, min(200, int(2000 / side["eager_ms"]))))
    with torch.no_grad():
        first = module(*tensors)
        side["reference"] = (first[0] if isinstance(first, tuple) else first).float().cpu().numpy()
        if meter is not None:
            energy = measure_energy(lambda: (module(*tensors), torch.cuda.synchronize()), meter)
            side["eager_energy"] = energy.to_json()
    return side


def measure(pack: Path, out: Path, repetitions: int, tag: str) -> dict[str, Any]:
    from effc.runtime.energy import MeterUnavailable, NvmlMeter
    from effc.runtime.runner import benchmark_vmfb, pipelined_benchmark

    manifest = json.loads((pack / "manifest.json").read_text())
    entries = pack_entries(manifest)
    card = torch.cuda.get_device_name(0)
    try:
        meter: NvmlMeter | None = NvmlMeter()
    except MeterUnavailable as err:
        print(f"no NVML energy: {err}")
        meter = None
    rows, eager_cache = [], {}
    for entry in entries:
        row: dict[str, Any] = {"key": entry.key, "workload": entry.workload, "precision": entry.precision}
        row |= {"config": entry.config, "iree_flags": list(entry.iree_flags), "compile_notes": list(entry.notes)}
        arrays = make_inputs(entry.inputs)
        base = (entry.workload, entry.precision)
        try:
            result = benchmark_vmfb(
                pack / entry.vmfb, arrays, device="cuda", repetitions=repetitions, parameters=pack / entry.splat
            )
            row["iree_ms"] = result.median_s * 1e3
        except Exception as err:  # one failing module must not lose the others' numbers
            row["iree_error"] = str(err)[:300]
        try:
            result, _ = pipelined_benchmark(
                pack / entry.vmfb,
                arrays,
                device="cuda",
                parameters=pack / entry.splat,
                depth=PIPELINE_DEPTH,
                repetitions=repetitions,
            )
            row["iree_pipelined_ms"] = result.median_s * 1e3
        except Exception as err:
            row["iree_pipelined_error"] = str(err)[:300]
        if base not in eager_cache:
            module = build_torch(entry.workload, entry.precision, manifest["configs"])
            own = set(named_tensors(module))  # the host's model may hold more (MiniLM's unused pooler)
            for other in entries:  # every module of this base then computes what torch's does
                if (other.workload, other.precision) == base and other.inline_weights:
                    with np.load(pack / other.inline_weights) as inline:
                        restore_tensors(module, {n: inline[n].tobytes() for n in inline.files if n in own})
            eager_cache[base] = _torch_side(
                module,
                make_inputs(entries_base_inputs(entries, base)),
                meter if entry.workload == "attention-block" else None,
            )
            torch.cuda.empty_cache()
        cached = eager_cache[base]
        row["eager_ms"] = cached["eager_ms"]
        row["eager_sync_ms"] = cached["eager_sync_ms"]
        if "medium" in entry.config or "+high" in entry.config:
            # torch's own 'high'/'medium' f32 matmul precision on CUDA is TF32
            row["eager_tf32_ms"] = _eager_tf32_ms(entry, entries, manifest["configs"], eager_cache)
            if "iree_ms" in row:
                row["iree_vs_eager_tf32"] = row["iree_ms"] / row["eager_tf32_ms"]
        if "iree_ms" in row:
            row["iree_vs_eager"] = row["iree_ms"] / row["eager_ms"]
            row["iree_vs_eager_sync"] = row["iree_ms"] / row["eager_sync_ms"]
        if "iree_pipelined_ms" in row:
            row["iree_pipelined_vs_eager"] = row["iree_pipelined_ms"] / row["eager_ms"]
        if "reference" in cached and "chai" not in entry.config:  # CHAI's output differs by design
            try:
                error = _relative_error_on_gpu(pack, entry, arrays, cached)
                if error is not None:
                    row["max_relative_error_vs_torch_gpu"] = error
            except Exception as err:
                row["numerics_error"] = str(err)[:300]
        if meter is not None and entry.workload == "attention-block" and "x-" not in entry.config and "iree_ms" in row:
            row["iree_energy"] = _iree_energy(pack / entry.vmfb, pack / entry.splat, arrays, meter)
            row["eager_energy"] = cached.get("eager_energy")
        print(json.dumps({k: v for k, v in row.items() if k != "iree_flags"}), flush=True)
        rows.append(row)
    report = {
        "measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "card": card,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "iree_runtime": importlib.metadata.version("iree-base-runtime"),
        "decode_context": manifest["decode_context"],
        "rows": rows,
        "failed_to_compile": manifest.get("failed_to_compile", {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    stem = "cuda-" + slug(card) + (f"-{tag}" if tag else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (out / f"{stem}.md").write_text(markdown(report))
    print(markdown(report))
    return report


def profile(pack: Path, out: Path, only: str | None, repetitions: int, tag: str) -> dict[str, Any]:
    """Where a module call's time goes on this GPU, against torch eager's kernels for the same workload.

    Per module: its time under each of RUNTIME_VARIANTS (and with its real weights, where the pack has them),
    and, where Nsight Compute is installed, the duration of every kernel of one warm call (`ncu --clock-control
    none`: the card's own clocks), for IREE and for torch eager. (IREE 3.13's own per-dispatch statistics and HAL
    profiling are not implemented by its CUDA driver: "CUDA HAL-native profiling is not implemented", run 8.)
    """
    from effc.runtime.runner import benchmark_vmfb

    manifest = json.loads((pack / "manifest.json").read_text())
    entries = [e for e in pack_entries(manifest) if not only or selected(e.key, only)]
    out.mkdir(parents=True, exist_ok=True)
    ncu = shutil.which("ncu")
    rows, eager_cache = [], {}
    for entry in entries:
        row: dict[str, Any] = {"key": entry.key, "workload": entry.workload, "precision": entry.precision}
        arrays = make_inputs(entry.inputs)
        bench = functools.partial(benchmark_vmfb, pack / entry.vmfb, arrays, device="cuda", repetitions=repetitions)
        weights = {"splat": pack / entry.splat} | ({"real": pack / entry.real_params} if entry.real_params else {})
        calls = {
            f"{name}-{kind}": (flags, archive)
            for name, flags in RUNTIME_VARIANTS.items()
            for kind, archive in weights.items()
            if name == "default" or kind == "splat"
        }
        row["call_ms"] = {}
        for name, (flags, archive) in calls.items():
            try:
                row["call_ms"][name] = (
                    bench(parameters=archive, runtime_flags=(*flags, PROFILE_MIN_TIME)).median_s * 1e3
                )
            except Exception as err:  # a driver option this runtime lacks is a result too
                row["call_ms"][name] = str(err)[-400:]  # the cause comes last
        base = (entry.workload, entry.precision)
        if base not in eager_cache:
            module = build_torch(entry.workload, entry.precision, manifest["configs"]).cuda()
            tensors = [torch.from_numpy(a).cuda() for a in make_inputs(entries_base_inputs(entries, base))]
            eager_cache[base] = {"eager_ms": _torch_eager_ms(module, tensors)}
            if ncu:
                eager_cache[base]["eager_kernels_us"] = _ncu_kernels(
                    [ncu, "--profile-from-start", "off"],
                    [
                        sys.executable,
                        "-m",
                        "effc.bench.perf.cuda",
                        "eager-once",
                        "--pack",
                        str(pack),
                        "--key",
                        entry.key,
                    ],
                )
            del module, tensors
            torch.cuda.empty_cache()
        row |= eager_cache[base]
        if ncu:
            row["iree_kernels_us"] = _warm_call_kernels(ncu, pack, entry, arrays, out)
        rows.append(row)
        print(json.dumps(_profile_summary(row)), flush=True)
    report = {
        "measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "card": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "iree_runtime": importlib.metadata.version("iree-base-runtime"),
        "ncu": bool(ncu),
        "rows": rows,
    }
    stem = "cuda-profile-" + slug(report["card"]) + (f"-{tag}" if tag else "")
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2))
    (out / f"{stem}.md").write_text(profile_markdown(report))
    print(profile_markdown(report))
    return report


def profile_markdown(report: dict[str, Any]) -> str:
    """The profile as tables: a call against its kernels, the driver options, and each module's heaviest kernels."""
    rows = report["rows"]
    lines = [
        f"# Where a module call's time goes on {report['card']} ({report['measured']})",
        "",
        f"IREE runtime {report['iree_runtime']}, torch {report['torch']}. Call times: iree-benchmark-module "
        "(median) and torch eager with CUDA events (calls queued back to back). Kernel times: every kernel of one "
        "warm call, from Nsight Compute with the card's own clocks (`--clock-control none`). A call's time beyond "
        "its kernels is the runtime's: launches, allocation, the wait for completion.",
        "",
        "| module | IREE call ms | IREE kernels | IREE kernel ms | torch eager call ms | eager kernels | "
        "eager kernel ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        summary = _profile_summary(row)
        call = row["call_ms"].get("default-splat")
        lines.append(
            f"| {row['key']} | {call:.3f} | {summary.get('iree_kernels', '')} | "
            f"{summary.get('iree_kernel_sum_us', 0) / 1e3:.3f} | {row['eager_ms']:.3f} | "
            f"{summary.get('eager_kernels', '')} | {summary.get('eager_kernel_sum_us', 0) / 1e3:.3f} |"
        )
    variants = list(dict.fromkeys(name for row in rows for name in row["call_ms"]))
    lines += ["", "IREE's CUDA driver options (RUNTIME_VARIANTS), ms per call (-real: the module's real weights):", ""]
    lines += ["| module | " + " | ".join(variants) + " |", "|---|" + "---:|" * len(variants)]
    for row in rows:
        times = [row["call_ms"].get(name, "") for name in variants]
        cells = [f"{t:.3f}" if isinstance(t, float) else t and f"failed: ...{t[-80:]}" for t in times]
        lines.append(f"| {row['key']} | " + " | ".join(cells) + " |")
    for row in rows:
        lines += ["", f"## {row['key']}: heaviest kernels, us per call (count)", ""]
        for side in ("iree", "eager"):
            kernels = row.get(f"{side}_kernels_us")
            if not isinstance(kernels, list):
                lines.append(f"- {side}: {kernels}")
                continue
            totals: dict[str, list[float]] = {}
            for name, us in kernels:
                totals.setdefault(name[:90], []).append(us)
            heaviest = sorted(totals.items(), key=lambda kv: -sum(kv[1]))[:6]
            lines.append(f"- {side}: " + "; ".join(f"`{n}` {sum(t):.1f} ({len(t)})" for n, t in heaviest))
    return "\n".join(lines) + "\n"


def _profile_summary(row: dict[str, Any]) -> dict[str, Any]:
    """One line per module: call times by variant, and kernel time per call (sums) for IREE and eager."""
    summary = {"key": row["key"], "eager_ms": round(row["eager_ms"], 4)}
    summary |= {name: round(ms, 4) if isinstance(ms, float) else ms for name, ms in row["call_ms"].items()}
    for side in ("iree", "eager"):
        kernels = row.get(f"{side}_kernels_us")
        if isinstance(kernels, list):
            summary[f"{side}_kernels"] = len(kernels)
            summary[f"{side}_kernel_sum_us"] = round(sum(us for _, us in kernels), 1)
    return summary


def _warm_call_kernels(ncu: str, pack: Path, entry: Entry, arrays: list[np.ndarray], scratch: Path) -> Any:
    """The kernels of one warm IREE call: a first call also pays clock ramp-up, lazy loading and initializers.

    iree-benchmark-module makes 2, then 4 calls under ncu; the difference in launches is one call's count, and
    the last that many launches are the last call (a model's layers repeat inside a call, so periodicity can't say).
    """
    from iree.runtime.benchmark import benchmark_exe

    from effc.compiler.parameters import SCOPE

    inputs = []
    for i, array in enumerate(arrays):
        path = scratch / f"{entry.key}-input{i}.npy"
        np.save(path, array)
        inputs.append(f"--input=@{path}")
    command = [
        benchmark_exe(),
        f"--parameters={SCOPE}={pack / entry.splat}",
        f"--module={pack / entry.vmfb}",
        "--device=cuda",
        "--function=main",
        *inputs,
        "--benchmark_repetitions=1",
    ]
    launched = {}
    for calls in (2, 4):
        kernels = _ncu_kernels([ncu], [*command, f"--benchmark_min_time={calls}x"])
        if isinstance(kernels, str):
            return kernels
        launched[calls] = kernels
    per_call = (len(launched[4]) - len(launched[2])) // 2
    return launched[4][-per_call:] if per_call > 0 else f"no launches per call ({len(launched[2])}, {len(launched[4])})"


def _ncu_kernels(ncu: list[str], command: list[str]) -> list[tuple[str, float]] | str:
    """(kernel name, duration in us) for every kernel `command` launches, from Nsight Compute, in launch order."""
    import csv
    import io
    import subprocess

    flags = ["--clock-control", "none", "--metrics", "gpu__time_duration.sum", "--csv", "--print-units", "base"]
    result = subprocess.run([*ncu, *flags, *command], capture_output=True, text=True, timeout=120, check=False)
    lines = result.stdout.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith('"ID"')), None)
    if result.returncode != 0 or start is None:
        return f"ncu failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[-300:]}"
    rows = csv.DictReader(io.StringIO("\n".join(lines[start:])))
    return [
        (r["Kernel Name"], float(r["Metric Value"].replace(",", "")) / 1e3)
        for r in rows
        if r["Metric Name"] == "gpu__time_duration.sum"
    ]


def eager_once(pack: Path, key: str) -> None:
    """One torch eager call of the pack entry's workload, inside a CUDA profiler range (for ncu), after warm-up."""
    manifest = json.loads((pack / "manifest.json").read_text())
    entries = pack_entries(manifest)
    entry = next(e for e in entries if e.key == key)
    module = build_torch(entry.workload, entry.precision, manifest["configs"]).cuda()
    tensors = [
        torch.from_numpy(a).cuda() for a in make_inputs(entries_base_inputs(entries, (entry.workload, entry.precision)))
    ]
    with torch.no_grad():
        for _ in range(3):
            module(*tensors)
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
        module(*tensors)
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()


def _eager_tf32_ms(entry: Entry, entries: list[Entry], configs: dict[str, Any], cache: dict[Any, Any]) -> float:
    """torch eager with `torch.set_float32_matmul_precision("high")` (TF32 tensor cores), cached per workload."""
    key = (entry.workload, entry.precision, "tf32")
    if key not in cache:
        torch.set_float32_matmul_precision("high")
        try:
            module = build_torch(entry.workload, entry.precision, configs).cuda()
            tensors = [torch.from_numpy(a).cuda() for a in make_inputs(entries_base_inputs(entries, key[:2]))]
            cache[key] = _torch_eager_ms(module, tensors)
        finally:
            torch.set_float32_matmul_precision("highest")
        torch.cuda.empty_cache()
    return cache[key]


def entries_base_inputs(entries: list[Entry], base: tuple[str, str]) -> tuple[InputSpec, ...]:
    """The unrewritten module's inputs for torch (CHAI narrows the K-cache arguments of its own module)."""
    return next(e.inputs for e in entries if (e.workload, e.precision) == base and "chai" not in e.config)


def _iree_energy(vmfb: Path, splat: Path, arrays: list[np.ndarray], meter: Any) -> dict[str, Any]:
    """NVML energy per call of the IREE module, called from Python with inputs already on the GPU.

    A call returns when the GPU work is done (IREE's synchronous invocation waits on its fences), so no
    output is copied back inside the timed loop.
    """
    import iree.runtime as rt

    from effc.runtime.energy import measure as measure_energy
    from effc.runtime.runner import load_vmfb

    context = load_vmfb(vmfb, device="cuda", parameters=splat)
    main = context.modules.module.main
    on_device = [rt.asdevicearray(context.config.device, a) for a in arrays]
    return measure_energy(lambda: main(*on_device), meter).to_json()


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# effc performance set on {report['card']} ({report['measured']})",
        "",
        f"IREE 3.13 CUDA modules compiled on the CPU host for sm_80 (PTX, JIT-compiled on this card), run with "
        f"iree-benchmark-module (median of repetitions) and only the runtime wheel installed; torch "
        f"{report['torch']} (CUDA {report['cuda']}) eager timed with CUDA events. Same precision on both sides; "
        f"IREE gets zero-filled splat weights (GPU kernel times barely depend on values). Numerics are checked "
        "against torch on the GPU: the attention block with its real weights, the models with the weights of "
        "the torch module built there (random, seeded), written into an archive under the compiled module's "
        f"keys. Decode step: one token against a {report['decode_context']}-token KV "
        "cache. "
        "Ratio > 1 means IREE is slower than torch eager. IREE ms is a synchronous call (it waits for its "
        f"results); IREE pipelined chains {PIPELINE_DEPTH} calls of the module's asynchronous export on device "
        "fences, with no host wait between them, like torch eager's queued calls; eager + wait is one "
        "eager call followed by torch.cuda.synchronize() (median wall time).",
        "",
        "| workload | precision | effc config | IREE ms | torch eager ms | IREE / eager | rel err vs torch (GPU) "
        "| IREE J/call | eager J/call | IREE pipelined ms | IREE pipelined / eager | eager + wait ms "
        "| IREE / (eager + wait) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["rows"]:
        iree = f"{r['iree_ms']:.3f}" if "iree_ms" in r else f"failed: {r.get('iree_error', '')[:60]}"
        ratio = f"{r['iree_vs_eager']:.2f}x" if "iree_vs_eager" in r else ""
        piped = f"{r['iree_pipelined_ms']:.3f}" if "iree_pipelined_ms" in r else r.get("iree_pipelined_error", "")[:60]
        piped_ratio = f"{r['iree_pipelined_vs_eager']:.2f}x" if "iree_pipelined_vs_eager" in r else ""
        waited = f"{r['eager_sync_ms']:.3f}" if "eager_sync_ms" in r else ""
        waited_ratio = f"{r['iree_vs_eager_sync']:.2f}x" if "iree_vs_eager_sync" in r else ""
        err = f"{r['max_relative_error_vs_torch_gpu']:.1e}" if "max_relative_error_vs_torch_gpu" in r else ""
        if "iree_vs_eager_tf32" in r:
            ratio += f" ({r['iree_vs_eager_tf32']:.2f}x vs TF32 eager {r['eager_tf32_ms']:.3f} ms)"
        iree_j = f"{r['iree_energy']['energy_j']:.4f}" if r.get("iree_energy") else ""
        eager_j = f"{r['eager_energy']['energy_j']:.4f}" if r.get("eager_energy") else ""
        lines.append(
            f"| {r['workload']} | {r['precision']} | {r['config']} | {iree} | {r['eager_ms']:.3f} | {ratio} "
            f"| {err} | {iree_j} | {eager_j} | {piped} | {piped_ratio} | {waited} | {waited_ratio} |"
        )
    notes = [f"- {r['key']}: {note}" for r in report["rows"] for note in r.get("compile_notes", [])]
    if notes:
        lines += ["", "Notes from the compiler:", "", *notes]
    failed = report.get("failed_to_compile", {})
    if failed:
        lines += ["", "Did not compile for sm_80 (IREE 3.13):", ""]
        lines += [f"- {key}: {message.splitlines()[0][:200]}" for key, message in failed.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="compile the pack on the host")
    prep.add_argument("--pack", type=Path, default=Path(__file__).parent / "cuda-pack")
    prep.add_argument(
        "--plan",
        type=Path,
        help="a SmolLM2 CHAI plan JSON (effc chai calibrate; default: the budget plan of bench/chai/results/chai.json)",
    )
    prep.add_argument(
        "--only",
        help="recompile only the modules whose key contains one of these (comma-separated; a part ending in $ must "
        "end the key); keep the others",
    )
    meas = sub.add_parser("measure", help="time the pack on the GPU")
    meas.add_argument("--pack", type=Path, default=Path(__file__).parent / "cuda-pack")
    meas.add_argument("--out", type=Path, default=RESULTS)
    meas.add_argument("--repetitions", type=int, default=10)
    meas.add_argument("--tag", default="", help="suffix for the results' file names (one file per run)")
    prof = sub.add_parser("profile", help="on the GPU: runtime options, per-dispatch and per-kernel times")
    prof.add_argument("--pack", type=Path, default=Path(__file__).parent / "cuda-pack")
    prof.add_argument("--out", type=Path, default=RESULTS)
    prof.add_argument(
        "--only", help="profile only the modules whose key contains one of these (comma-separated; $ as for prepare)"
    )
    prof.add_argument("--repetitions", type=int, default=5)
    prof.add_argument("--tag", default="")
    once = sub.add_parser("eager-once", help="one torch eager call in a CUDA profiler range (profile runs it)")
    once.add_argument("--pack", type=Path, required=True)
    once.add_argument("--key", required=True)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.pack, args.plan or committed_budget_plan(args.pack), args.only)
    elif args.command == "profile":
        profile(args.pack, args.out, args.only, args.repetitions, args.tag)
    elif args.command == "eager-once":
        eager_once(args.pack, args.key)
    else:
        measure(args.pack, args.out, args.repetitions, args.tag)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
