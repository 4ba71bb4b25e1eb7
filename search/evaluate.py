"""Evaluate one candidate in an isolated worker process: replay, compile, score error, time it.

Each candidate runs in its own `python -m effc.search.evaluate` process with a timeout. A mutant
that crashes the compiler or the runtime (segfault, abort) or hangs kills only that process; the
parent reads the exit status and records the candidate as invalid with the reason. The worker
replays the genome, compiles with `iree-compile`, runs the requested split in-process with IREE's
runtime (error = 1 - accuracy or relative output error, deterministic), then times one batch with
`iree-benchmark-module` in rounds that alternate the candidate and the original (medians), holding a
host-wide lock so concurrent workers never benchmark at the same time.

`EFFC_SEARCH_FAULT=crash:KEY,hang:KEY` makes the worker for genome KEY segfault or hang: the
fault-injection hook the tests use to plant a crashing and a hanging candidate.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from effc.compiler.errors import EffcError
from effc.compiler.fileio import write_atomic
from effc.search.genome import Genome
from effc.search.problem import Problem, error_of

BENCH_LOCK = Path(tempfile.gettempdir()) / "effc-search-benchmark.lock"


@dataclass(frozen=True)
class Fitness:
    """A candidate's measured objectives, or why it is invalid (`status` other than "ok")."""

    status: str
    runtime_s: float | None = None  # median per batch
    relative_runtime: float | None = None  # median time ratio to the original, timed alternately
    error: float | None = None
    detail: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @staticmethod
    def from_json(data: dict[str, Any]) -> Fitness:
        return Fitness(**data)


@dataclass(frozen=True)
class Job:
    """One evaluation: a genome, the split that scores it, and how to time it."""

    genome: dict[str, Any]
    split: str = "validation"
    repetitions: int = 3  # timing rounds (candidate, then original); 0 = score only, no timing
    min_time_s: float = 0.1  # per repetition (Google Benchmark's default, 0.5 s, would dominate the evaluation)
    device: str = "local-task"
    vmfb_out: str = ""  # also keep the compiled module here (final front only)


def problem_file(problem_bytes: bytes, directory: Path | None = None) -> Path:
    """The problem written once per content digest (per machine, for Ray workers)."""
    directory = directory or Path(tempfile.gettempdir()) / "effc-search-problems"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{hashlib.sha256(problem_bytes).hexdigest()[:16]}.npz"
    if not path.exists():
        write_atomic(path, problem_bytes)
    return path


_running: set[subprocess.Popen[bytes]] = set()
_running_lock = threading.Lock()


def stop_workers() -> None:
    """Kill every worker this process started that is still running (and what each started)."""
    with _running_lock:
        for process in _running:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)


def run_job(problem_path: Path, job: Job, timeout_s: float) -> Fitness:
    """Evaluate `job` in a fresh worker process; a crash or a hang becomes an invalid Fitness."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="effc-eval-") as tmp:
        job_path, result_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(asdict(job)))
        process = subprocess.Popen(
            [sys.executable, "-m", "effc.search.evaluate", str(problem_path), str(job_path), str(result_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        with _running_lock:
            _running.add(process)
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # the worker and the iree-compile it started
            process.communicate()
            return Fitness("timeout", detail=f"no result within {timeout_s:.0f} s", seconds=time.perf_counter() - start)
        finally:
            with _running_lock:
                _running.discard(process)
        elapsed = time.perf_counter() - start
        if process.returncode < 0:
            name = signal.Signals(-process.returncode).name
            return Fitness("crash", detail=f"worker killed by {name}", seconds=elapsed)
        if process.returncode != 0 or not result_path.exists():
            lines = stderr.decode(errors="replace").strip().splitlines()
            return Fitness(
                "crash", detail=f"worker exited {process.returncode}: {lines[-1] if lines else ''}", seconds=elapsed
            )
        result = json.loads(result_path.read_text())
    return Fitness.from_json({**result, "seconds": elapsed})


def _die_with_parent() -> None:
    """PR_SET_PDEATHSIG: a worker never outlives a search that was killed (SIGKILL included)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)


def _inject_fault(key: str) -> None:
    for entry in filter(None, os.environ.get("EFFC_SEARCH_FAULT", "").split(",")):
        kind, _, planted = entry.partition(":")
        if planted == key and kind == "crash":
            os.kill(os.getpid(), signal.SIGSEGV)
        if planted == key and kind == "hang":
            while True:
                time.sleep(60)


def _compile(problem: Problem, genome: Genome) -> bytes | Fitness:
    """The candidate's .vmfb, or the invalid Fitness that says why there is none."""
    from effc.compiler.iree_backend import compile_mlir
    from effc.search.genome import ReplayError, candidate_text, replay

    try:
        text = candidate_text(replay(problem.original, genome))
    except ReplayError as err:
        return Fitness("replay", detail=str(err))
    try:
        return compile_mlir(text, target=problem.target, extra_flags=genome.flags(problem.target))
    except EffcError as err:
        return Fitness("compile", detail=str(err))


def _original_vmfb(problem: Problem, problem_path: Path) -> Path:
    """The original compiled once per problem file (beside it), the reference every candidate is timed against."""
    path = problem_path.with_suffix(".original.vmfb")
    if not path.exists():
        built = _compile(problem, Genome())
        if isinstance(built, Fitness):
            raise EffcError(f"the original model does not compile: {built.detail}")
        write_atomic(path, built)
    return path


def time_against(
    candidate: Path, original: Path, inputs: list[np.ndarray], *, device: str, rounds: int
) -> tuple[float, float]:
    """(median seconds, median of per-round time ratios candidate / original), the two timed alternately.

    A shared machine drifts (other jobs, other workers compiling); timing the original right after the
    candidate in every round cancels most of that drift out of the ratio, which is what the search ranks.
    """
    from effc.runtime.runner import benchmark_vmfb

    times, ratios = [], []
    with open(BENCH_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for _ in range(rounds):
            mine = benchmark_vmfb(candidate, inputs, device=device, repetitions=1).median_s
            reference = benchmark_vmfb(original, inputs, device=device, repetitions=1).median_s
            times.append(mine)
            ratios.append(mine / reference)
    return statistics.median(times), statistics.median(ratios)


def evaluate(problem: Problem, problem_path: Path, job: Job) -> Fitness:
    """The worker's work, in this process: replay, compile, score the split, time against the original."""
    from effc.compiler.iree_backend import RUNTIME_DEVICE
    from effc.runtime.runner import run_vmfb

    genome = Genome.from_json(job.genome, problem.target)
    _inject_fault(genome.key)
    vmfb = _compile(problem, genome)
    if isinstance(vmfb, Fitness):
        return vmfb
    split = problem.validation if job.split == "validation" else problem.test
    device = RUNTIME_DEVICE[problem.target] if problem.target != "llvm-cpu" else job.device
    try:
        outputs = [run_vmfb(vmfb, batch, device=device)[0] for batch in split.batches]
    except EffcError as err:
        return Fitness("runtime", detail=str(err))
    if not all(np.isfinite(o).all() for o in outputs):
        return Fitness("nonfinite", detail="the outputs hold NaN or Inf")
    error = error_of(problem.error_kind, outputs, split.targets)
    with tempfile.TemporaryDirectory(prefix="effc-eval-") as tmp:
        path = write_atomic(job.vmfb_out or Path(tmp) / "candidate.vmfb", vmfb)
        if not job.repetitions:
            return Fitness("ok", error=error)
        os.environ["BENCHMARK_MIN_TIME"] = f"{job.min_time_s}s"  # Google Benchmark reads its flags from BENCHMARK_*
        try:
            seconds, relative = time_against(
                path, _original_vmfb(problem, problem_path), split.batches[0], device=device, rounds=job.repetitions
            )
        except EffcError as err:
            return Fitness("runtime", detail=str(err))
    return Fitness("ok", runtime_s=seconds, relative_runtime=relative, error=error)


def main(argv: list[str]) -> int:
    _die_with_parent()
    problem_path, job_path, result_path = map(Path, argv)
    problem = Problem.from_bytes(problem_path.read_bytes())
    job = Job(**json.loads(job_path.read_text()))
    fitness = evaluate(problem, problem_path, job)
    write_atomic(result_path, json.dumps(fitness.to_json()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
