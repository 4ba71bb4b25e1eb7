"""Run and benchmark compiled .vmfb modules with IREE's runtime.

Benchmarks use `iree-benchmark-module` (IREE's own harness, median over repetitions) rather than a
Python call loop, which would also time host-to-device copies and Python overhead. The exception is
`pipelined_benchmark`: calls chained on device fences, which that tool cannot make for torch-imported
modules; its inputs are uploaded once, and the Python overhead it keeps is what torch eager's queued calls
have too.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from effc.compiler.errors import EffcError
from effc.compiler.parameters import SCOPE

DRIVERS = ("local-task", "local-sync", "cuda")

# IREE allocates a call's transient buffers as one block and frees it when the call ends. glibc serves a block over
# its mmap threshold (adaptive, at most 32 MiB) with a fresh mmap and unmaps it on free, so a module with more
# transient memory than that page-faults all of it in again on every call: bench/perf's attention block, ~200 MB,
# 51K page faults and 229 -> 184 ms a call on the 2-core CPU (bench/perf/NOTES.md). torch's temporaries stay under
# the threshold. Freed blocks up to this size are kept for the next call instead.
RETAINED_BLOCK_BYTES = 1 << 30
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters (glibc's malloc.h)


def retain_freed_memory() -> bool:
    """Make this process keep the memory it frees (blocks up to RETAINED_BLOCK_BYTES) for later allocations
    instead of returning it to the OS, so IREE's per-call transients are not page-faulted in again on every call.
    The resident size then stays near its peak. False where the C library is not glibc (nothing changed)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    libc = ctypes.CDLL(None)
    return all(libc.mallopt(option, RETAINED_BLOCK_BYTES) == 1 for option in (_M_MMAP_THRESHOLD, _M_TRIM_THRESHOLD))


def tool_environment() -> dict[str, str]:
    """The environment for IREE's runtime tools (iree-benchmark-module): `retain_freed_memory` through glibc's
    tunables, which a process reads when it starts. Other C libraries ignore the variable."""
    retain = f"glibc.malloc.mmap_threshold={RETAINED_BLOCK_BYTES}:glibc.malloc.trim_threshold={RETAINED_BLOCK_BYTES}"
    env = dict(os.environ)
    env["GLIBC_TUNABLES"] = ":".join(filter(None, (env.get("GLIBC_TUNABLES"), retain)))
    return env


def process_status_kb(key: str, pid: int | str = "self") -> int:
    """A field of Linux's /proc/PID/status in KiB (VmHWM, VmRSS, RssAnon). OSError where there is none: not Linux,
    or the process has exited.

    A child's peak is its VmHWM, not its `ru_maxrss`: Linux carries the parent's peak RSS over into a child's
    `ru_maxrss` at exec, so a tool started from a 1.4 GB Python process reported at least 1.4 GB.
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise OSError(f"no {key} in /proc/{pid}/status")


def load_vmfb(vmfb: bytes | Path, *, device: str = "local-task", parameters: Path | None = None) -> Any:
    """An IREE SystemContext holding the compiled module (and its parameter archive) on `device`.

    `parameters` is the IREE parameter archive of a module compiled with external weights. On the CPU this
    process then keeps the memory it frees (`retain_freed_memory`).
    """
    import iree.runtime as rt

    from effc.compiler.parameters import load_provider

    try:
        config = rt.Config(device)
    except (RuntimeError, ValueError) as err:
        raise EffcError(
            f"IREE runtime device '{device}' is not available here ({str(err).splitlines()[0]}); "
            f"use one of: {', '.join(rt.query_available_drivers())}"
        ) from None
    if device.startswith("local"):
        retain_freed_memory()
    context = rt.SystemContext(config=config)
    if parameters is not None:
        context.add_vm_module(rt.create_io_parameters_module(context.instance, load_provider(parameters)))
    data = vmfb.read_bytes() if isinstance(vmfb, Path) else vmfb
    try:
        context.add_vm_module(rt.VmModule.copy_buffer(context.instance, data))
    except (RuntimeError, ValueError) as err:
        hint = (
            "it was compiled with external weights: pass its archive with --params FILE.irpa"
            if parameters is None and "io_parameters" in str(err)
            else "recompile it"
        )
        raise EffcError(f"cannot load the compiled module: {str(err).splitlines()[0]}; {hint}") from None
    return context


def run_vmfb(
    vmfb: bytes | Path,
    inputs: Sequence[np.ndarray],
    *,
    device: str = "local-task",
    function: str = "main",
    parameters: Path | None = None,
) -> list[np.ndarray]:
    """Call `function` of a compiled module on `device` and return its outputs as numpy arrays."""
    context = load_vmfb(vmfb, device=device, parameters=parameters)
    module = context.modules.module
    if function not in module.vm_module.function_names:
        names = ", ".join(module.vm_module.function_names)
        raise EffcError(f"the module has no function '{function}'; it has: {names}")
    try:
        results = module[function](*inputs)
    except (RuntimeError, ValueError) as err:
        raise EffcError(
            f"calling '{function}' with {len(inputs)} input(s) failed: {str(err).strip().splitlines()[0]}; "
            "check the number, shapes and dtypes of --input"
        ) from None
    outputs = results if isinstance(results, (tuple, list)) else [results]
    arrays = [np.array(out.to_host()) for out in outputs]  # copies: the buffers die with the context below
    del (
        results,
        outputs,
        module,
        context,
    )  # drop runtime objects before interpreter exit (nanobind leak noise)
    return arrays


@dataclass(frozen=True)
class BenchmarkResult:
    """Timing of one compiled function, from iree-benchmark-module."""

    median_s: float  # per call
    runs_s: tuple[float, ...]
    # The benchmark process's own peak resident memory (VmHWM, read while it runs: at exec Linux hands a parent's
    # peak to the child's ru_maxrss, so the exit status would report this process's); None where not measured.
    peak_rss_mb: float | None = None


def benchmark_vmfb(
    vmfb_path: Path,
    inputs: Sequence[np.ndarray],
    *,
    device: str = "local-task",
    function: str = "main",
    repetitions: int = 10,
    timeout_s: float = 600,
    parameters: Path | None = None,
    runtime_flags: Sequence[str] = (),
) -> BenchmarkResult:
    """Median wall time per call over `repetitions` runs of iree-benchmark-module, and its peak memory.

    `runtime_flags` go to iree-benchmark-module last, as they are: driver options such as
    `--cuda_use_streams=false` (per-dispatch times are `effc profile`'s job: `effc.passes.dispatch_profile`).
    """
    from iree.runtime.benchmark import benchmark_exe

    with tempfile.TemporaryDirectory(prefix="effc-bench-") as tmp:
        flags = []
        for i, array in enumerate(inputs):
            path = Path(tmp) / f"input{i}.npy"
            np.save(path, array)
            flags.append(f"--input=@{path}")
        out = Path(tmp) / "result.json"
        command = [
            benchmark_exe(),
            *([f"--parameters={SCOPE}={parameters}"] if parameters is not None else []),
            f"--module={vmfb_path}",
            f"--device={device}",
            f"--function={function}",
            *flags,
            f"--benchmark_repetitions={repetitions}",
            "--benchmark_format=json",
            f"--benchmark_out={out}",
            "--benchmark_out_format=json",
            *runtime_flags,
        ]
        errors = Path(tmp) / "stderr.txt"
        with errors.open("w") as stderr:
            proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, env=tool_environment())
            peak_kb, deadline = 0, time.monotonic() + timeout_s
            while proc.poll() is None:
                if time.monotonic() > deadline:
                    proc.kill()
                    proc.wait()
                    raise EffcError(f"iree-benchmark-module ran past {timeout_s:.0f} s on {vmfb_path}")
                with contextlib.suppress(OSError):  # exited between poll and read
                    peak_kb = max(peak_kb, process_status_kb("VmHWM", proc.pid))
                time.sleep(0.02)
        if proc.returncode != 0:
            last = (errors.read_text().strip().splitlines() or ["no message"])[-1]
            raise EffcError(f"iree-benchmark-module failed on {vmfb_path}: {last}")
        rows = json.loads(out.read_text())["benchmarks"]
    runs = tuple(_seconds(row) for row in rows if row.get("run_type") == "iteration")
    return BenchmarkResult(statistics.median(runs), runs, peak_kb / 1024 if peak_kb else None)


def pipelined_benchmark(
    vmfb_path: Path,
    inputs: Sequence[np.ndarray],
    *,
    device: str = "local-task",
    function: str = "main",
    parameters: Path | None = None,
    depth: int = 16,
    repetitions: int = 10,
) -> tuple[BenchmarkResult, list[np.ndarray]]:
    """Time per call of `depth` calls chained on device fences, with one host wait per batch.

    A synchronous call waits for its results before the next one starts; torch eager queues calls back to back.
    Modules imported from torch export `FUNCTION$async`, which takes a wait and a signal fence: call i waits on
    call i-1's fence on the device. (iree-benchmark-module cannot chain them: that export lacks the
    `iree.abi.model` attribute it looks for.) Returns the timing and the last call's outputs.
    """
    import iree.runtime as rt
    from iree.runtime.array_interop import map_dtype_to_element_type

    context = load_vmfb(vmfb_path, device=device, parameters=parameters)
    hal_device = context.config.device
    vm_function = context.modules.module.vm_module.lookup_function(f"{function}$async")
    if vm_function is None:
        raise EffcError(f"the module has no '{function}$async' export; compile it with IREE's default execution model")
    on_device = [
        hal_device.allocator.allocate_buffer_copy(
            memory_type=rt.MemoryType.DEVICE_LOCAL,
            allowed_usage=rt.BufferUsage.DEFAULT,
            device=hal_device,
            buffer=np.ascontiguousarray(a),
            element_type=map_dtype_to_element_type(a.dtype),
        )
        for a in inputs
    ]
    _chained_calls(context, vm_function, on_device, depth)  # warm-up
    runs = []
    for _ in range(repetitions):
        start = time.perf_counter()
        last = _chained_calls(context, vm_function, on_device, depth)
        runs.append((time.perf_counter() - start) / depth)
    outputs = [
        np.array(rt.DeviceArray(hal_device, last.get_as_object(i, rt.HalBufferView)).to_host())
        for i in range(last.size)
    ]
    del last, on_device, vm_function, hal_device, context  # runtime objects before interpreter exit
    return BenchmarkResult(statistics.median(runs), tuple(runs)), outputs


def _chained_calls(context: Any, vm_function: Any, on_device: list[Any], depth: int) -> Any:
    """Invoke an `$async` export `depth` times, each call waiting on the previous one's fence; wait for the last."""
    import iree.runtime as rt

    semaphore = context.config.device.create_semaphore(0)
    for call in range(depth):
        arguments = rt.VmVariantList(len(on_device) + 2)
        for buffer_view in on_device:
            arguments.push_ref(buffer_view)
        arguments.push_ref(rt.HalFence.create_at(semaphore, call))
        arguments.push_ref(rt.HalFence.create_at(semaphore, call + 1))
        results = rt.VmVariantList(1)
        context.vm_context.invoke(vm_function, arguments, results)
    rt.HalFence.create_at(semaphore, depth).wait()
    return results


def _seconds(row: dict[str, float | str]) -> float:
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[str(row.get("time_unit", "ns"))]
    return float(row["real_time"]) * scale


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """‖actual - expected‖ / ‖expected‖ in float64 (0 when both are zero)."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    if a.shape != e.shape:
        raise EffcError(f"output shape {a.shape} differs from torch's {e.shape}")
    denom = np.linalg.norm(e)
    return float(np.linalg.norm(a - e) / denom) if denom else float(np.linalg.norm(a))
