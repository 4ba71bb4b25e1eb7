"""The `vpdpbusd` kernel as IREE custom dispatches against IREE's own int8 matmul, on MiniLM's three matmul shapes
(bench/perf/NOTES.md, twenty-second session): qgemm.c built as an object for IREE's embedded ELF inside qgemm.mlir;
effc-vnni-matmul's kernel, written in MLIR, called from a torch-dialect function (mlir_kernel.py); and, as the
baseline, the matmuls as linalg with constant weights under effc's int8 flags (data tiling, mmt4d ukernels). Checks
all three exactly against numpy and times whole calls through IREE's runtime in alternating rounds. Needs gcc and
AVX512-VNNI."""

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from iree.compiler.tools import binaries
from mlir_kernel import module as mlir_kernel_module

from effc.passes.vnni_matmul import packed_weights

HERE = Path(__file__).parent
# No libc, no stack protector, position independent: what IREE's embedded ELF linker takes.
CFLAGS = ("-O3", "-march=native", "-ffreestanding", "-fno-builtin", "-fno-stack-protector", "-fPIC")
TARGET = ("--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu")
INT8_FLAGS = ("--iree-llvmcpu-target-cpu=host", "--iree-global-opt-data-tiling", "--iree-llvmcpu-enable-ukernels=mmt4d")
SHAPES = ((128, 1536, 384), (128, 384, 1536), (128, 384, 384))  # MiniLM's FFN up, FFN down, Q/K/V/O
ROUNDS, CALLS = 30, 10


def linalg_matmul(m: int, w: np.ndarray) -> str:
    """A function `mm_N_K(a: [m, K] i8) -> [m, N] i32` multiplying by the constant `w` ([N, K]) as a linalg
    contraction, so that IREE data-tiles and pre-packs the weights as it does in effc's int8 modules."""
    n, k = w.shape
    maps = "affine_map<(i, j, l) -> (i, l)>, affine_map<(i, j, l) -> (j, l)>, affine_map<(i, j, l) -> (i, j)>"
    return f"""
  func.func @mm_{n}_{k}(%a: tensor<{m}x{k}xi8>) -> tensor<{m}x{n}xi32> {{
    %w = arith.constant dense<"0x{w.tobytes().hex().upper()}"> : tensor<{n}x{k}xi8>
    %zero = arith.constant 0 : i32
    %empty = tensor.empty() : tensor<{m}x{n}xi32>
    %init = linalg.fill ins(%zero : i32) outs(%empty : tensor<{m}x{n}xi32>) -> tensor<{m}x{n}xi32>
    %c = linalg.generic {{indexing_maps = [{maps}], iterator_types = ["parallel", "parallel", "reduction"]}}
        ins(%a, %w : tensor<{m}x{k}xi8>, tensor<{n}x{k}xi8>) outs(%init : tensor<{m}x{n}xi32>) {{
    ^bb0(%x: i8, %y: i8, %acc: i32):
      %xw = arith.extsi %x : i8 to i32
      %yw = arith.extsi %y : i8 to i32
      %product = arith.muli %xw, %yw : i32
      %sum = arith.addi %acc, %product : i32
      linalg.yield %sum : i32
    }} -> tensor<{m}x{n}xi32>
    return %c : tensor<{m}x{n}xi32>
  }}"""


def load(rt: Any, source: Path, flags: tuple[str, ...]) -> Any:
    vmfb = source.with_suffix(".vmfb")
    subprocess.run([binaries.find_tool("iree-compile"), str(source), *TARGET, *flags, "-o", str(vmfb)], check=True)
    context = rt.SystemContext(config=rt.Config("local-task"))
    context.add_vm_module(rt.VmModule.copy_buffer(context.instance, vmfb.read_bytes()))
    return context


def median_call_s(call: Callable[..., Any], args: list[Any]) -> float:
    times = []
    for _ in range(CALLS):
        start = time.perf_counter()
        call(*args)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    import iree.runtime as rt

    rng = np.random.default_rng(0)
    weights = {(n, k): rng.integers(-127, 128, (n, k), dtype=np.int8) for _, n, k in SHAPES}
    with tempfile.TemporaryDirectory() as tmp:
        obj, custom, baseline = Path(tmp) / "qgemm.o", Path(tmp) / "qgemm.mlir", Path(tmp) / "iree_int8.mlir"
        subprocess.run(["gcc", *CFLAGS, "-c", str(HERE / "qgemm.c"), "-o", str(obj)], check=True)
        custom.write_text((HERE / "qgemm.mlir").read_text().replace("OBJECT", str(obj)))
        baseline.write_text(
            "module @iree_int8 {" + "".join(linalg_matmul(m, weights[n, k]) for m, n, k in SHAPES) + "\n}\n"
        )
        c_kernel, iree = load(rt, custom, ("--iree-llvmcpu-target-cpu=host",)), load(rt, baseline, INT8_FLAGS)
        mlir_kernels = {}
        for m, n, k in SHAPES:
            source = Path(tmp) / f"mlir_kernel_{n}_{k}.mlir"
            source.write_text(mlir_kernel_module(m, n, k))
            mlir_kernels[n, k] = load(rt, source, ("--iree-input-type=torch", "--iree-llvmcpu-target-cpu=host"))
    for m, n, k in SHAPES:
        a, w = rng.integers(-127, 128, (m, k), dtype=np.int8), weights[n, k]
        reference = a.astype(np.int32) @ w.T.astype(np.int32)
        packed = packed_weights(w)
        on = c_kernel.config.device
        calls = {
            "IREE's int8": (iree.modules.iree_int8[f"mm_{n}_{k}"], [rt.asdevicearray(on, a)], (m, n)),
            "C kernel": (
                c_kernel.modules.qgemm["main"],
                [rt.asdevicearray(on, a.reshape(-1)), rt.asdevicearray(on, packed), m, n, k],
                (m, n),
            ),
            "MLIR kernel": (
                mlir_kernels[n, k].modules.vnni_qgemm["main"],
                [rt.asdevicearray(on, a), rt.asdevicearray(on, packed)],
                (m, n),
            ),
        }
        exact = {
            name: np.array_equal(np.asarray(f(*args).to_host()).reshape(shape), reference)
            for name, (f, args, shape) in calls.items()
        }
        rounds = [{name: median_call_s(f, args) for name, (f, args, _) in calls.items()} for _ in range(ROUNDS)]
        line = [f"{m}x{n}x{k}, whole calls, median of {ROUNDS} rounds:"]
        for name in calls:
            median = statistics.median(r[name] for r in rounds)
            ratio = statistics.median(r["IREE's int8"] / r[name] for r in rounds)
            line.append(
                f"{name} {median * 1e6:.0f} us ({m * n * k / median / 1e9:.0f} G/s, x{ratio:.2f}, exact {exact[name]})"
            )
        print(" ".join(line))


if __name__ == "__main__":
    main()
