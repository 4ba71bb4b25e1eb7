"""qgemm.c as an IREE custom dispatch against IREE's own int8 matmul, on MiniLM's three matmul shapes
(bench/perf/NOTES.md, twenty-second session). Builds qgemm.c as an object for IREE's embedded ELF, compiles qgemm.mlir
around it and, as the baseline, the same matmuls as linalg with constant weights under effc's int8 flags (data tiling,
mmt4d ukernels). Checks both exactly against numpy and times whole calls through IREE's runtime in alternating rounds.
Needs gcc and a CPU with AVX512-VNNI."""

import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from iree.compiler.tools import binaries

HERE = Path(__file__).parent
# No libc, no stack protector, position independent: what IREE's embedded ELF linker takes.
CFLAGS = ("-O3", "-march=native", "-ffreestanding", "-fno-builtin", "-fno-stack-protector", "-fPIC")
TARGET = ("--iree-hal-target-device=local", "--iree-hal-local-target-device-backends=llvm-cpu")
INT8_FLAGS = ("--iree-llvmcpu-target-cpu=host", "--iree-global-opt-data-tiling", "--iree-llvmcpu-enable-ukernels=mmt4d")
SHAPES = ((128, 1536, 384), (128, 384, 1536), (128, 384, 384))  # MiniLM's FFN up, FFN down, Q/K/V/O
ROUNDS, CALLS = 30, 10


def packed_weights(w: np.ndarray) -> np.ndarray:
    """[N, K] s8 weights as qgemm.c reads them: u8 (w + 128) in panels [N/32][K/4][32][4]."""
    n, k = w.shape
    unsigned = (w.astype(np.int16) + 128).astype(np.uint8)
    return unsigned.reshape(n // 32, 32, k // 4, 4).transpose(0, 2, 1, 3).reshape(-1).view(np.int8)


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
        vnni, iree = load(rt, custom, ("--iree-llvmcpu-target-cpu=host",)), load(rt, baseline, INT8_FLAGS)
    device = vnni.config.device
    for m, n, k in SHAPES:
        a, w = rng.integers(-127, 128, (m, k), dtype=np.int8), weights[n, k]
        reference = a.astype(np.int32) @ w.T.astype(np.int32)
        custom_args = [rt.asdevicearray(device, a.reshape(-1)), rt.asdevicearray(device, packed_weights(w)), m, n, k]
        baseline_args = [rt.asdevicearray(iree.config.device, a)]
        qgemm, matmul = vnni.modules.qgemm["main"], iree.modules.iree_int8[f"mm_{n}_{k}"]
        exact = (
            np.array_equal(np.asarray(qgemm(*custom_args).to_host()).reshape(m, n), reference),
            np.array_equal(np.asarray(matmul(*baseline_args).to_host()), reference),
        )
        rounds = [(median_call_s(matmul, baseline_args), median_call_s(qgemm, custom_args)) for _ in range(ROUNDS)]
        ours, theirs = statistics.median(r[1] for r in rounds), statistics.median(r[0] for r in rounds)
        ratio = statistics.median(r[0] / r[1] for r in rounds)
        print(
            f"{m}x{n}x{k}: exact {exact[0]} (IREE {exact[1]}); whole calls, median of {ROUNDS} rounds: vpdpbusd "
            f"{ours * 1e6:.0f} us ({m * n * k / ours / 1e9:.0f} G multiply-adds/s), IREE's int8 {theirs * 1e6:.0f} us "
            f"({m * n * k / theirs / 1e9:.0f}); IREE / vpdpbusd per round {ratio:.2f}"
        )


if __name__ == "__main__":
    main()
