"""Latency of a compiled module against torch eager and `torch.compile`, measured in one run.

All three see the same non-zero inputs on the same machine; each reports the median of its repeats
after warm-up, and the ratios are what a user compares (>1 means effc is faster).
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from effc.compiler.api import CompiledModel
from effc.compiler.host_cpu import cpu_model, has_bf16_dot, vector_isa
from effc.runtime.runner import benchmark_vmfb, load_vmfb, retain_freed_memory


def timed_runs(call: Callable[[], object], *, repeats: int, warmup: int = 3) -> list[float]:
    """Seconds of each of `repeats` calls of `call()`, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        runs.append(time.perf_counter() - start)
    return runs


def median_seconds(call: Callable[[], object], *, repeats: int, warmup: int = 3) -> float:
    """Median seconds per `call()`, after `warmup` untimed calls."""
    return statistics.median(timed_runs(call, repeats=repeats, warmup=warmup))


def time_torch(fn: Callable[..., Any], inputs: tuple[torch.Tensor, ...], *, repeats: int, warmup: int = 3) -> float:
    """Median seconds per call of `fn(*inputs)` under no_grad, after `warmup` calls."""
    with torch.no_grad():
        return median_seconds(lambda: fn(*inputs), repeats=repeats, warmup=warmup)


def time_torch_at(
    precision: str, fn: Callable[..., Any], inputs: tuple[torch.Tensor, ...], *, repeats: int, warmup: int = 3
) -> float:
    """`time_torch` under `torch.set_float32_matmul_precision(precision)`, the process's setting restored after."""
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision(precision)
    try:
        return time_torch(fn, inputs, repeats=repeats, warmup=warmup)
    finally:
        torch.set_float32_matmul_precision(before)


# Calls per side in each alternating round (`alternate`).
ALTERNATING_CALLS = 3


def alternate(
    fn: Callable[..., Any],
    inputs: tuple[torch.Tensor, ...],
    vmfbs: list[Path],
    rounds: int,
    *,
    device: str = "local-task",
) -> dict[str, Any]:
    """Per-round medians (ms) of torch and of each effc module, timed in turn in this one process.

    A cloud VM's speed can drift by 1.5x within minutes (bench/perf/NOTES.md), and timing torch and effc one after
    the other puts them minutes apart. Rounds of a few calls each, alternating, put both under the same conditions,
    so the per-round ratio is what the drift leaves alone. effc's modules run through IREE's Python runtime on
    `device`, with their inputs already there.
    """
    import iree.runtime as rt

    arrays = [t.detach().numpy() for t in inputs]
    calls = []
    for path in vmfbs:
        context = load_vmfb(path, device=device)
        main, on_device = context.modules.module["main"], [rt.asdevicearray(context.config.device, a) for a in arrays]
        calls.append((context, lambda main=main, on_device=on_device: main(*on_device)))  # context: keeps it loaded
    torch_ms: list[float] = []
    effc_ms: list[list[float]] = [[] for _ in calls]
    for index in range(rounds):
        warmup = 1 if index == 0 else 0
        torch_ms.append(time_torch(fn, inputs, repeats=ALTERNATING_CALLS, warmup=warmup) * 1e3)
        for times, (_, call) in zip(effc_ms, calls, strict=True):
            times.append(median_seconds(call, repeats=ALTERNATING_CALLS, warmup=warmup) * 1e3)
    return {"torch_ms": torch_ms, "effc_ms": effc_ms}


def round_ratios(alternating: dict[str, Any], index: int) -> dict[str, Any]:
    """torch's time over effc module `index`'s, round by round: the median ratio and the range."""
    ratios = sorted(t / e for t, e in zip(alternating["torch_ms"], alternating["effc_ms"][index], strict=True))
    return {
        "median": statistics.median(ratios),
        "min": ratios[0],
        "max": ratios[-1],
        "rounds": len(ratios),
        "torch_ms": statistics.median(alternating["torch_ms"]),
        "effc_ms": statistics.median(alternating["effc_ms"][index]),
    }


def machine_description() -> dict[str, object]:
    """What the numbers were measured on."""
    import os

    return {
        "cpu": cpu_model(),
        "vector_isa": vector_isa(),
        "bf16_dot": has_bf16_dot(),  # whether `--matmul-precision medium` is bf16 on this CPU
        "cores": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),  # other work on the machine skews timings
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


# torch 2.13 deprecates torch.ao.quantization and its quantized tensors: its notice to itself, not the user's to act on.
_TORCH_AO_DEPRECATED = r"(torch\.ao\.quantization is deprecated|.*quantized tensor creation functions.*deprecated)"


def torch_dynamic_int8(module: torch.nn.Module, *, inplace: bool = False) -> torch.nn.Module:
    """`module` with every nn.Linear dynamically quantized by torch (qint8 weights, activations per call): the torch
    counterpart of effc's `--matmul-precision int8`, which the bench compares with, warnings of deprecation aside."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCH_AO_DEPRECATED)
        return torch.ao.quantization.quantize_dynamic(module, {torch.nn.Linear}, dtype=torch.qint8, inplace=inplace)


def benchmark_compiled(
    compiled: CompiledModel, *, repeats: int = 10, with_compile: bool = True, rounds: int = 0
) -> dict[str, Any]:
    """effc (iree-benchmark-module median), torch eager and torch.compile medians, and the ratios; for an int8 module
    also torch eager with its own dynamic int8 quantization, where the model has nn.Linear modules to quantize (an
    ExportedProgram's module calls its linears as functions), and for a "medium" or "high" one torch eager at that
    float32 matmul precision. With `rounds`, also effc and each of torch eager and torch.compile in that many
    alternating rounds (`alternate`), the ratios a drifting machine leaves alone, under "alternating".

    torch runs in this process under the heap policy iree-benchmark-module gets (`retain_freed_memory`)."""
    assert compiled.vmfb is not None and compiled.reference is not None
    retain_freed_memory()
    with tempfile.TemporaryDirectory(prefix="effc-bench-") as tmp:
        path = Path(tmp) / "module.vmfb"
        path.write_bytes(compiled.vmfb)
        return _benchmark(compiled, path, repeats=repeats, with_compile=with_compile, rounds=rounds)


def _benchmark(compiled: CompiledModel, path: Path, *, repeats: int, with_compile: bool, rounds: int) -> dict[str, Any]:
    """`benchmark_compiled`'s measurements, with the module written once to `path` for both ways of running it."""
    assert compiled.reference is not None
    effc_s = benchmark_vmfb(path, compiled.numpy_inputs(), device=compiled.device, repetitions=repeats).median_s
    eager_s = time_torch(compiled.reference, compiled.example_inputs, repeats=repeats)
    result: dict[str, Any] = {
        "model": compiled.name,
        "target": compiled.target,
        "matmul_precision": compiled.matmul_precision,  # what the module got (the notes say why, where not as asked)
        "notes": list(compiled.notes),
        "inputs": [list(t.shape) for t in compiled.example_inputs],
        "effc_ms": effc_s * 1e3,
        "eager_ms": eager_s * 1e3,
        "speedup_vs_eager": eager_s / effc_s,
        "repeats": repeats,
        "machine": machine_description(),
    }
    has_linears = any(isinstance(m, torch.nn.Linear) for m in compiled.reference.modules())
    if compiled.matmul_precision == "int8" and has_linears:  # torch at the same precision: its dynamic quantization
        int8_s = time_torch(torch_dynamic_int8(compiled.reference), compiled.example_inputs, repeats=repeats)
        result["torch_int8_eager_ms"] = int8_s * 1e3
        result["speedup_vs_torch_int8_eager"] = int8_s / effc_s
    if compiled.matmul_precision in ("medium", "high"):  # torch at the same setting (oneDNN may then use bf16)
        same_s = time_torch_at(compiled.matmul_precision, compiled.reference, compiled.example_inputs, repeats=repeats)
        result["torch_same_precision_eager_ms"] = same_s * 1e3
        result["speedup_vs_torch_same_precision_eager"] = same_s / effc_s
    if with_compile:
        start = time.perf_counter()
        compiled_fn = torch.compile(compiled.reference)
        with torch.no_grad():
            compiled_fn(*compiled.example_inputs)
        result["torch_compile_warmup_s"] = time.perf_counter() - start
        compile_s = time_torch(compiled_fn, compiled.example_inputs, repeats=repeats)
        result["torch_compile_ms"] = compile_s * 1e3
        result["speedup_vs_torch_compile"] = compile_s / effc_s
    if rounds:
        baselines = {"torch_eager": compiled.reference, **({"torch_compile": compiled_fn} if with_compile else {})}
        result["alternating"] = {
            name: round_ratios(alternate(fn, compiled.example_inputs, [path], rounds, device=compiled.device), 0)
            for name, fn in baselines.items()
        }
    return result
