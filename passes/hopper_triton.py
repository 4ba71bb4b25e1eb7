"""effc's Triton kernels for Hopper (H100, H200) and how they become cubins that an IREE module carries.

IREE 3.13 cannot target sm_90 ("missing GPU target"): its f16 matmuls and attention are sm_80 `mma.sync` code that
took 157-159 us for the attention block's three kernels on an H100 and an H200, where cuBLAS and cuDNN took 49-50, and
its f32 ones use no tensor cores (bench/perf/NOTES.md). Triton emits Hopper's `wgmma` for `tl.dot` (f32 operands as
TF32 or bf16 pieces where asked), and it compiles without a GPU: `cubin` here turns a kernel, specialized
on every shape and layout (all `tl.constexpr`), into PTX for sm_90a and that into a cubin with the `ptxas` shipped
in Triton's wheel. `effc-hopper-kernels` then puts the cubins into the module as IREE custom dispatches.

Triton is imported only when a kernel is built (it is the optional `cuda` extra). With `TRITON_INTERPRET=1` set
before that, the same kernels run on the CPU through Triton's interpreter: the tests check their arithmetic that way.
"""

from __future__ import annotations

import functools
import importlib
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from effc.compiler.errors import EffcError

ARCH = "sm_90a"  # wgmma needs the arch-specific target; such code runs on compute capability 9.0 only
# PTX ISA 8.7: what the ptxas in Triton's wheel (CUDA 12.9) takes, and what drivers of CUDA 12.8 and later JIT.
PTX_VERSION = 87
_SCRATCH_PARAMS = 2  # Triton appends a global and a profile scratch pointer to every kernel's parameters


@dataclass(frozen=True)
class KernelImage:
    """A kernel compiled for `ARCH`: its entry `name`, the image, and the launch it needs."""

    name: str
    image: bytes
    threads: int
    shared_bytes: int


def _triton() -> Any:
    try:
        return importlib.import_module("triton")
    except ImportError as error:
        raise EffcError(
            "effc-hopper-kernels builds its kernels with Triton, which is not installed: "
            "pip install 'effc[cuda]' (triton==3.9.0), or drop effc-hopper-kernels from the pipeline"
        ) from error


@functools.cache
def kernels() -> dict[str, Any]:
    """The `@triton.jit` kernels by name, defined on first use so that importing effc never imports Triton."""
    triton = _triton()
    tl = importlib.import_module("triton.language")

    @triton.jit
    def effc_linear(
        x, w, bias, y,
        M: tl.constexpr, N: tl.constexpr, K: tl.constexpr, HAS_BIAS: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        """y[M, N] = x[M, K] · w[N, K]ᵀ (+ bias[N] in f32), one rounding to y's type: torch's f16 `linear`. f32
        operands multiply as PRECISION says (Triton's input_precision: "ieee", "tf32x3"...)."""
        pid = tl.program_id(0)
        tiles_m, tiles_n = M // BM, N // BN
        # GROUP row tiles side by side share their weight columns in L2.
        first_m = (pid // (GROUP * tiles_n)) * GROUP
        group_m = min(tiles_m - first_m, GROUP)
        tile_m = first_m + pid % group_m
        tile_n = (pid % (GROUP * tiles_n)) // group_m
        rows = tile_m * BM + tl.arange(0, BM)
        cols = tile_n * BN + tl.arange(0, BN)
        ks = tl.arange(0, BK)
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for k in range(0, K, BK):
            a = tl.load(x + rows[:, None] * K + (k + ks)[None, :])
            b = tl.load(w + cols[None, :] * K + (k + ks)[:, None])
            acc = tl.dot(a, b, acc, input_precision=PRECISION)
        if HAS_BIAS:
            acc += tl.load(bias + cols).to(tl.float32)[None, :]
        tl.store(y + rows[:, None] * N + cols[None, :], acc.to(y.dtype.element_ty))

    @triton.jit
    def effc_attention(
        q, k, v, o,
        Q_AT: tl.constexpr, Q_B: tl.constexpr, Q_H: tl.constexpr, Q_T: tl.constexpr,
        K_AT: tl.constexpr, K_B: tl.constexpr, K_H: tl.constexpr, K_T: tl.constexpr,
        V_AT: tl.constexpr, V_B: tl.constexpr, V_H: tl.constexpr, V_T: tl.constexpr,
        O_B: tl.constexpr, O_H: tl.constexpr, O_T: tl.constexpr,
        HEADS: tl.constexpr, QUERIES: tl.constexpr, KEYS: tl.constexpr, D: tl.constexpr,
        SCALE_LOG2: tl.constexpr, BM: tl.constexpr, BN: tl.constexpr, PRECISION: tl.constexpr,
    ):  # fmt: skip
        """softmax(q·kᵀ·scale)·v for one block of BM queries of one head, keys in blocks of BN (flash attention's
        running maximum and sum). Operands are strided views (offset `*_AT`, strides per batch, head and row; the
        head dim contiguous), so q, k and v can be read where a fused projection wrote them."""
        tile, bh = tl.program_id(0), tl.program_id(1)
        b, h = bh // HEADS, bh % HEADS
        rows = tile * BM + tl.arange(0, BM)
        keys = tl.arange(0, BN)
        dims = tl.arange(0, D)
        qt = tl.load(q + Q_AT + b * Q_B + h * Q_H + rows[:, None] * Q_T + dims[None, :])
        k_at = k + K_AT + b * K_B + h * K_H
        v_at = v + V_AT + b * V_B + h * V_H
        m_i = tl.full((BM,), float("-inf"), dtype=tl.float32)
        l_i = tl.zeros((BM,), dtype=tl.float32)
        acc = tl.zeros((BM, D), dtype=tl.float32)
        for start in range(0, KEYS, BN):
            kt = tl.load(k_at + (start + keys)[None, :] * K_T + dims[:, None])
            s = tl.dot(qt, kt, input_precision=PRECISION) * SCALE_LOG2  # scores in log2 units: exp2 below
            m_new = tl.maximum(m_i, tl.max(s, 1))
            p = tl.math.exp2(s - m_new[:, None])
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha + tl.sum(p, 1)
            vt = tl.load(v_at + (start + keys)[:, None] * V_T + dims[None, :])
            acc = tl.dot(p.to(vt.dtype), vt, acc * alpha[:, None], input_precision=PRECISION)
            m_i = m_new
        out = acc / l_i[:, None]
        tl.store(o + b * O_B + h * O_H + rows[:, None] * O_T + dims[None, :], out.to(o.dtype.element_ty))

    return {"effc_linear": effc_linear, "effc_attention": effc_attention}


def _arguments(kernel: Any, pointers: tuple[str, ...], constants: tuple[tuple[str, Any], ...]) -> dict[str, Any]:
    """Every argument of `kernel` that is no pointer binding: `constants`, and None for pointers a specialization
    does without (a linear's bias)."""
    given = dict(constants)
    return {arg: given.get(arg) for arg in kernel.arg_names if arg not in pointers}


def launch(
    name: str,
    grid: tuple[int, int, int],
    pointers: tuple[str, ...],
    constants: tuple[tuple[str, Any], ...],
    *tensors: Any,
) -> None:
    """Run kernel `name` on torch tensors bound to its `pointers` arguments, as IREE would launch it: on a GPU, or on
    the CPU in Triton's interpreter (`TRITON_INTERPRET=1` before Triton is first imported)."""
    kernel = kernels()[name]
    kernel[grid](**dict(zip(pointers, tensors, strict=True)), **_arguments(kernel, pointers, constants))


def _ptxas() -> Path:
    """The ptxas in Triton's wheel (a CUDA toolkit need not be installed)."""
    found = Path(importlib.import_module("triton").__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    if not found.is_file():
        raise EffcError(f"effc-hopper-kernels: Triton's ptxas is missing ({found}); reinstall triton==3.9.0")
    return found


def _without_scratch(ptx: str, name: str, pointers: int) -> str:
    """`ptx` with Triton's scratch pointers dropped from `name`'s parameters, which then are IREE's bindings in order
    (IREE passes bindings, then push constants, and nothing else). Only where the kernel never reads them."""
    params = [f"{name}_param_{i}" for i in range(pointers, pointers + _SCRATCH_PARAMS)]
    if any(f"[{param}]" in ptx for param in params):
        raise EffcError(f"effc-hopper-kernels: {name} uses Triton's scratch memory, which IREE cannot pass")
    declared = "".join(f",\n\t.param .u64 .ptr .global .align 1 {param}" for param in params)
    if declared not in ptx:
        raise EffcError(f"effc-hopper-kernels: unexpected parameters in {name}'s PTX (Triton other than 3.9?)")
    return ptx.replace(declared, "")


@functools.cache
def cubin(
    name: str,
    pointers: tuple[tuple[str, str], ...],
    constants: tuple[tuple[str, Any], ...],
    warps: int,
    stages: int,
    image: str = "cubin",
) -> KernelImage:
    """Kernel `name` specialized on `constants`, with its `pointers` arguments ((name, Triton's type such as "*fp16"),
    IREE's bindings in order), compiled for `ARCH`: a cubin, or with `image="ptx"` the PTX, which the driver compiles
    when the module loads."""
    triton = _triton()
    compiler = importlib.import_module("triton.compiler")
    target = importlib.import_module("triton.backends.compiler").GPUTarget("cuda", 90, 32)
    kernel = kernels()[name]
    bound = dict(pointers)
    if list(bound) != [arg for arg in kernel.arg_names if arg in bound]:
        raise EffcError(f"effc-hopper-kernels: pointers {list(bound)} are not arguments of {name} in their order")
    signature = {arg: bound.get(arg, "constexpr") for arg in kernel.arg_names}
    aligned = {(i,): [["tt.divisibility", 16]] for i, arg in enumerate(kernel.arg_names) if arg in bound}  # IREE: 16+
    constexprs = _arguments(kernel, tuple(bound), constants)
    source = compiler.ASTSource(fn=kernel, signature=signature, constexprs=constexprs, attrs=aligned)
    # FMA contraction on (Triton 3.9's default, which it warns will change; nvcc's default too).
    options = {"num_warps": warps, "num_stages": stages, "ptx_version": PTX_VERSION, "enable_fp_fusion": True}
    compiled = triton.compile(source, target=target, options=options)
    if compiled.metadata.global_scratch_size or compiled.metadata.profile_scratch_size:
        raise EffcError(f"effc-hopper-kernels: {name} needs Triton's scratch memory, which IREE cannot pass")
    ptx = _without_scratch(compiled.asm["ptx"], name, len(pointers))
    threads = int(re.search(r"\.reqntid (\d+)", ptx).group(1)) if ".reqntid" in ptx else warps * 32
    shared = int(compiled.metadata.shared)
    if image == "ptx":
        return KernelImage(name=name, image=ptx.encode(), threads=threads, shared_bytes=shared)
    with tempfile.TemporaryDirectory(prefix="effc-ptxas-") as tmp:
        source_path, image_path = Path(tmp) / f"{name}.ptx", Path(tmp) / f"{name}.cubin"
        source_path.write_text(ptx, encoding="utf-8")
        done = subprocess.run(
            [str(_ptxas()), f"-arch={ARCH}", str(source_path), "-o", str(image_path)], capture_output=True, text=True
        )
        if done.returncode:
            raise EffcError(f"effc-hopper-kernels: ptxas failed on {name}: {done.stderr.strip()[:400]}")
        return KernelImage(name=name, image=image_path.read_bytes(), threads=threads, shared_bytes=shared)
