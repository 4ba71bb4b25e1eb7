"""Measured per-dispatch time from IREE, mapped back to the torch ops `effc-profile` annotated.

1. `tag_ops` gives every annotated op a name location `effc.op<N>` around its own location.
2. iree-compile with `--iree-hal-dump-executable-sources-to` and `--mlir-print-debuginfo` writes each
   executable's source; `dispatch_ops` reads which `effc.op<N>` tags its compute ops carry.
3. `hal_profile` runs `iree-benchmark-module` with IREE's HAL profiling (`host-execution` events on the
   CPU, `dispatch-events` on GPUs) and reads per-dispatch totals with `iree-profile dispatch`.
4. `attribute` gives each dispatch a root op (the tagged op with the most FLOPs, else the longest
   estimate, else the most tagged lines) and a class: the root op's, unless the dispatch name says
   attention or softmax, which IREE recognised from the whole fused computation.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.report import DispatchRow, OpRow

TAG = "effc.op"
_FRAME = re.compile(r'"([^"]+\.py)":(\d+)')
_TAG_REF = re.compile(rf'"{re.escape(TAG)}(\d+)"')
_EXPORT = re.compile(r"hal\.executable\.export public @([\w$.\-]+)")
# Buffer plumbing inside a dispatch body: after CSE and hoisting, its locations can name torch ops of
# other call sites (a shared zero fill, an index cast), so it does not say what the dispatch computes.
_PLUMBING = re.compile(
    r"tensor\.empty|linalg\.fill|arith\.constant|arith\.index_cast|hal\.interface|iree_tensor_ext\.dispatch|util\.assume"
)
PROFILING_MODES = {
    "local-task": "host-execution,executable-metadata",
    "local-sync": "host-execution,executable-metadata",
}
GPU_PROFILING_MODE = "dispatch-events,executable-metadata"
# Dispatch-name words that IREE derives from the whole fused computation (a softmax it re-formed
# from decomposed ops, whose root op alone looks elementwise). IREE also names pooling `conv`, so
# `conv` is not one of them.
NAMED_CLASSES = (("attention", "attention"), ("softmax", "normalization"))
# Classes for dispatches that carry no tagged op.
KIND_CLASSES = (
    ("conv", "convolution"),
    ("matmul", "linear"),
    ("mmt4d", "linear"),
    ("contract", "linear"),
    ("reduction", "other"),
    ("elementwise", "elementwise"),
    ("transpose", "data_movement"),
    ("memcpy", "data_movement"),
    ("pack", "data_movement"),
    ("copy", "data_movement"),
    ("gather", "data_movement"),
)


def tag_ops(module: ir.Module) -> list[OpRow]:
    """Wrap each op annotated by effc-profile in a `effc.op<N>` name location; returns the ops in order."""
    rows: list[OpRow] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        attrs = op.attributes
        if "effc.op_class" in attrs:
            rows.append(
                OpRow(
                    id=len(rows),
                    name=op.name,
                    op_class=ir.StringAttr(attrs["effc.op_class"]).value,
                    location=source_line(op.location),
                    flops=ir.IntegerAttr(attrs["effc.flops"]).value,
                    flops_uncounted=ir.IntegerAttr(attrs["effc.flops_uncounted"]).value,
                    bytes=ir.IntegerAttr(attrs["effc.bytes_read"]).value
                    + ir.IntegerAttr(attrs["effc.bytes_written"]).value,
                    est_time_s=ir.FloatAttr(attrs["effc.est_time_s"]).value,
                    subclass=ir.StringAttr(attrs["effc.op_subclass"]).value if "effc.op_subclass" in attrs else None,
                )
            )
            op.location = ir.Location.name(f"{TAG}{rows[-1].id}", childLoc=op.location)
        return ir.WalkResult.ADVANCE

    with module.context:
        module.operation.walk(visit)
    return rows


def source_line(location: ir.Location) -> str:
    """`file.py:line` of the innermost frame outside torch itself (the model's own code), shortened."""
    frames = _FRAME.findall(str(location))
    if not frames:
        return "?"
    path, line = next(((p, n) for p, n in frames if "/torch/" not in p), frames[0])
    here = f"{Path.cwd()}/"
    return f"{path.split('site-packages/')[-1].removeprefix(here)}:{line}"


def dispatch_ops(sources: Path) -> dict[str, Counter[int]]:
    """Export name → how many lines of its body carry each op tag, plumbing lines left out (unless only
    plumbing carries tags, as in a pure copy)."""
    found: dict[str, Counter[int]] = {}
    for path in sorted(sources.glob("*.mlir")):
        text = path.read_text()
        lines = text[text.find("builtin.module") :].splitlines()
        compute = Counter(int(m) for line in lines if not _PLUMBING.search(line) for m in _TAG_REF.findall(line))
        tags = compute or Counter(int(m) for line in lines for m in _TAG_REF.findall(line))
        for name in _EXPORT.findall(text):
            found[name] = tags
    return found


def check_device(device: str) -> None:
    """Fail before a long compile when the IREE runtime cannot open `device` on this machine."""
    import iree.runtime as rt

    try:
        rt.get_device(device)
    except (RuntimeError, ValueError) as err:
        parts = str(err).splitlines()[0].split("; ")  # "<file:line>: UNAVAILABLE; <what>; <advice>"
        reason = parts[1] if len(parts) > 1 else parts[0]
        raise EffcError(
            f"IREE runtime device '{device}' is not available here ({reason}); profile on a machine that has it"
        ) from None


@dataclass(frozen=True)
class DispatchTiming:
    """Totals over all profiled calls of one dispatch function."""

    name: str
    total_s: float
    launches: int


@dataclass(frozen=True)
class HalProfile:
    dispatches: list[DispatchTiming]
    calls: int
    wall_per_call_s: float


def hal_profile(
    vmfb: Path,
    inputs: Sequence[np.ndarray],
    *,
    device: str,
    calls: int,
    function: str = "main",
    timeout_s: float = 600,
) -> HalProfile:
    """Run the module `calls` times under IREE's HAL profiler; per-dispatch totals and wall time per call."""
    from iree.runtime.benchmark import benchmark_exe

    mode = PROFILING_MODES.get(device, GPU_PROFILING_MODE)
    with tempfile.TemporaryDirectory(prefix="effc-profile-") as tmp:
        work = Path(tmp)
        flags = []
        for i, array in enumerate(inputs):
            np.save(work / f"input{i}.npy", array)
            flags.append(f"--input=@{work / f'input{i}.npy'}")
        bundle, result = work / "run.ireeprof", work / "benchmark.json"
        command = [
            benchmark_exe(),
            f"--module={vmfb}",
            f"--device={device}",
            f"--function={function}",
            *flags,
            f"--benchmark_min_time={calls}x",
            "--benchmark_format=json",
            f"--benchmark_out={result}",
            f"--device_profiling_mode={mode}",
            f"--device_profiling_output={bundle}",
        ]
        try:
            _run(command, timeout_s, "iree-benchmark-module")
        except EffcError as err:
            if "profiling is not implemented" not in str(err):
                raise
            # IREE 3.13's CUDA driver (seen on an H100, bench/perf/NOTES.md): no HAL profiling at all.
            raise EffcError(
                f"this IREE runtime cannot time dispatches on '{device}' ({str(err).split('; ')[-1]}); profile on "
                "llvm-cpu, or time the kernels with Nsight Compute (python -m effc.bench.perf.cuda profile)"
            ) from None
        runs = [b for b in json.loads(result.read_text())["benchmarks"] if b.get("run_type") != "aggregate"]
        iterations = sum(int(b["iterations"]) for b in runs)
        wall = sum(_seconds(b["real_time"], b["time_unit"]) * int(b["iterations"]) for b in runs) / iterations
        report = _run([_profile_exe(), "dispatch", "--format=jsonl", str(bundle)], timeout_s, "iree-profile")
    groups = [json.loads(line) for line in report.splitlines() if line.startswith("{")]
    timings = [
        DispatchTiming(g["key"], g["total_ns"] * 1e-9, int(g["count"]))
        for g in groups
        if g.get("type") in ("dispatch_group", "host_dispatch_group") and g.get("valid", 0)
    ]
    if not timings:
        raise EffcError(
            f"IREE's profiler recorded no dispatch timings on device '{device}' (mode {mode}); "
            "this runtime build may not support HAL profiling there"
        )
    return HalProfile(timings, iterations, wall)


def attribute(profile: HalProfile, mapping: dict[str, Counter[int]], ops: list[OpRow]) -> list[DispatchRow]:
    """Per-call dispatch rows with their root op, class and the predicted time of what they compute.

    IREE deduplicates identical executables (the same layer repeated), and a deduplicated executable
    keeps the locations of its first call site only; each launch computes the same ops on the same
    shapes, so the prediction is that site's estimate times the launches per call.
    """
    from effc.passes.vnni_matmul import KERNEL_EXPORT

    by_id = {op.id: op for op in ops}
    # effc's kernel (effc-vnni-matmul) is one executable for every shape, and its source carries no op tags: its
    # dispatch computes every kernel call, the only calls effc-profile costs, each launched once.
    kernel_calls = Counter(op.id for op in ops if op.name == "func.call")
    rows = []
    for timing in profile.dispatches:
        kernel = timing.name == KERNEL_EXPORT and not mapping.get(timing.name)
        tags = kernel_calls if kernel else mapping.get(timing.name, Counter())
        op_ids = tuple(sorted(i for i in tags if i in by_id))
        root = max(op_ids, key=lambda i: (by_id[i].flops, by_id[i].est_time_s, tags[i]), default=None)
        launches = max(1, round(timing.launches / profile.calls))
        estimate = sum(by_id[i].est_time_s for i in op_ids)
        rows.append(
            DispatchRow(
                name=timing.name,
                time_s=timing.total_s / profile.calls,
                launches=launches,
                op_class=dispatch_class(timing.name, by_id[root].op_class if root is not None else None),
                root_op=root,
                op_ids=op_ids,
                est_time_s=estimate if kernel else launches * estimate,
            )
        )
    return rows


def dispatch_class(name: str, root_class: str | None) -> str:
    """The class a dispatch's time counts for (see the module docstring)."""
    kind = re.sub(r"^.*?dispatch_\d+_?", "", name)
    for word, op_class in NAMED_CLASSES:
        if word in kind:
            return op_class
    if root_class is not None:
        return root_class
    return next((op_class for word, op_class in KIND_CLASSES if word in kind), "other")


def _seconds(value: float, unit: str) -> float:
    return float(value) * {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[unit]


def _profile_exe() -> str:
    from iree.runtime.benchmark import benchmark_exe

    return str(Path(benchmark_exe()).with_name("iree-profile"))


def _run(command: list[str], timeout_s: float, tool: str) -> str:
    from effc.runtime.runner import tool_environment

    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False, env=tool_environment()
        )
    except subprocess.TimeoutExpired:
        raise EffcError(f"{tool} did not finish within {timeout_s:.0f} s") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise EffcError(
            f"{tool} failed (exit {result.returncode}): {lines[-1] if lines else 'no output'}",
            detail="\n".join(lines[:-1]),
        )
    return result.stdout
