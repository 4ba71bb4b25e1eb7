"""IREE compilation: target presets, flag handling and readable diagnostics.

`iree-compile` runs as a subprocess (the compiler wheel's own binary), so a crash in the compiler
never takes down effc, and its diagnostics are condensed into one line plus a table of the ops that
did not lower, instead of IREE's wall of text.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from effc.compiler.errors import EffcError

TARGETS = ("llvm-cpu", "cuda")
RUNTIME_DEVICE = {"llvm-cpu": "local-task", "cuda": "cuda"}
# IREE 3.13 has no sm_90 entry in its known-target table; sm_80 PTX is JIT-compiled on Hopper.
DEFAULT_CUDA_ARCH = "sm_80"
# Hopper (H100, H200). IREE 3.13 has no sm_90 target ("missing GPU target"); its sm_80 code runs there, and `-O` adds
# effc's own sm_90a kernels (effc-hopper-kernels).
HOPPER_ARCHES = ("sm_90", "sm_90a")
# IREE 3.13's x86 backend sometimes spins for ~10 minutes in LLVM's instruction selection on a module it otherwise
# compiles in seconds: about every other compile of MiniLM with bf16 matmuls, on one of two forms in which IREE
# configures a dispatch from run to run (bench/perf/NOTES.md). `dispatch_configs.checked_configurations` avoids the one
# form known to stall; as a backstop for others, on llvm-cpu a second, identical iree-compile
# starts once the first has run this long (longer for larger inputs), a fresh one replaces it each time it has run
# as long, and whichever finishes first is used. A compile that really takes that long only shares the machine.
# Each runs without address randomization, under which the stall was rarer (`_fixed_addresses`).
HEDGE_AFTER_S = 60.0
HEDGE_S_PER_MB = 0.15  # SmolLM2's 1.1 GB of MLIR: 162 s, against 35-49 s to compile it here
# The stall has only been seen with bf16 demotion (`--matmul-precision medium`), where it came in four of six MiniLM
# compiles of one session on a Zen 4, each then taking about 69 s (60 s, and the twin's 9). Those compiles take 6-12 s
# when they do not stall (9-30 s on a loaded machine), so with demotion the twin starts sooner.
BF16_DEMOTION_FLAG = "--iree-global-opt-demote-contraction-inputs-type=bf16"
HEDGE_AFTER_BF16_S = 30.0
_ADDR_NO_RANDOMIZE = 0x0040000  # linux/personality.h


@contextlib.contextmanager
def _fixed_addresses() -> Iterator[None]:
    """Programs started meanwhile run without address randomization (Linux; elsewhere, or where `personality` is
    refused, nothing changes). The x86 stall follows LLVM's node order, which can follow heap addresses: 13 of 17
    MiniLM `medium` compiles finished in seconds with randomization off, 10 of 20 with it (bench/perf/NOTES.md)."""
    libc = ctypes.CDLL(None) if sys.platform.startswith("linux") else None
    current = libc.personality(0xFFFFFFFF) if libc is not None else -1
    if libc is None or current < 0 or libc.personality(current | _ADDR_NO_RANDOMIZE) < 0:
        yield
        return
    try:
        yield
    finally:
        libc.personality(current)


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise EffcError(f"unknown target '{target}': choose one of {', '.join(TARGETS)}")
    return target


def target_flags(target: str, *, cuda_arch: str = DEFAULT_CUDA_ARCH, cpu: str = "host") -> list[str]:
    """The iree-compile flags that select a target device."""
    check_target(target)
    if target == "llvm-cpu":
        return [
            "--iree-hal-target-device=local",
            "--iree-hal-local-target-device-backends=llvm-cpu",
            f"--iree-llvmcpu-target-cpu={cpu}",
        ]
    iree_arch = "sm_80" if cuda_arch in HOPPER_ARCHES else cuda_arch
    return ["--iree-hal-target-device=cuda", f"--iree-cuda-target={iree_arch}"]


def input_type_of(mlir_text: str) -> str:
    """`torch` for torch-dialect input, `tm_tensor` once effc passes have lowered it to linalg."""
    return "torch" if re.search(r"\btorch\.(aten|prim|vtensor|constant)", mlir_text) else "tm_tensor"


def compile_command(target: str, *, cuda_arch: str, input_type: str, extra_flags: list[str]) -> list[str]:
    # Imported here so that a machine with only IREE's runtime (compile on the host, run on the GPU) can
    # still `effc run` and `effc bench` a module.
    from iree.compiler.tools.binaries import find_tool

    return [
        find_tool("iree-compile"),
        "-",
        f"--iree-input-type={input_type}",
        *target_flags(target, cuda_arch=cuda_arch),
        *extra_flags,
    ]


def hedge_after(target: str, flags: list[str], mlir_chars: int) -> float | None:
    """Seconds after which a second, identical iree-compile starts beside a running one (llvm-cpu only)."""
    if target != "llvm-cpu":
        return None
    floor = HEDGE_AFTER_BF16_S if BF16_DEMOTION_FLAG in flags else HEDGE_AFTER_S
    return max(floor, HEDGE_S_PER_MB * mlir_chars / 1e6)


def compile_mlir(
    mlir_text: str,
    *,
    target: str = "llvm-cpu",
    cuda_arch: str = DEFAULT_CUDA_ARCH,
    extra_flags: list[str] | None = None,
    save_temps: Path | None = None,
    timeout_s: float | None = None,
    note: Callable[[str], None] | None = None,
) -> bytes:
    """Compile torch-dialect (or linalg) MLIR text to a .vmfb flatbuffer. `note` hears of a second compile
    started beside a slow one (llvm-cpu, `hedge_after`). A compile stopped early (`--compile-to`) runs for the dumps
    its flags ask for: it returns nothing (its output is the whole module as text, weights included), and
    `save_temps` records only the full compile."""
    from effc.passes import hopper_kernels, vnni_matmul

    declared = mlir_text
    # effc's own kernels, declared by its passes (effc-vnni-matmul, effc-hopper-kernels)
    mlir_text = hopper_kernels.define_kernels(vnni_matmul.define_kernels(mlir_text, target), target)
    flags = list(extra_flags or [])
    stops_early = any(flag.startswith("--compile-to=") for flag in flags)
    if save_temps is not None and not stops_early:
        flags.append(f"--dump-compilation-phases-to={save_temps / 'iree-phases'}")
    command = compile_command(target, cuda_arch=cuda_arch, input_type=input_type_of(mlir_text), extra_flags=flags)
    if save_temps is not None and not stops_early:
        source = save_temps / "02-after-passes.mlir"
        if mlir_text is not declared:  # the script must compile the kernels' definitions too
            source = save_temps / "03-with-kernels.mlir"
            source.write_text(mlir_text, encoding="utf-8")
        script = [*command[:1], str(source), *command[2:], "-o", "module.vmfb"]
        (save_temps / "iree-compile.sh").write_text(shlex.join(script) + "\n")
    hedge_after_s = hedge_after(target, flags, len(mlir_text))
    with tempfile.TemporaryDirectory(prefix="effc-iree-") as tmp:
        work = Path(tmp)
        (work / "input.mlir").write_text(mlir_text, encoding="utf-8")
        command[1] = str(work / "input.mlir")
        try:
            returncode, stderr, output = _first_to_finish(command, work, timeout_s, hedge_after_s, note)
        except subprocess.TimeoutExpired:
            raise EffcError(f"iree-compile did not finish within {timeout_s:.0f} s for target {target}") from None
        if returncode != 0:
            raise iree_error(stderr, target, returncode)
        return b"" if stops_early else output.read_bytes()


@dataclass(frozen=True)
class _Attempt:
    process: subprocess.Popen[bytes]
    output: Path
    stderr: Path
    started: float


def _first_to_finish(
    command: list[str],
    work: Path,
    timeout_s: float | None,
    hedge_after_s: float | None,
    note: Callable[[str], None] | None,
) -> tuple[int, str, Path]:
    """Run `command -o OUT`; once it has run `hedge_after_s`, run an identical twin beside it, replaced by a fresh
    one whenever it has run `hedge_after_s` itself (a twin stalls as often as the first). The oldest attempt is
    never stopped, so a compile that really takes long still ends, and a failure counts only when no other attempt
    is left (a twin can be killed for memory). Returns (exit status, stderr, OUT) of the first attempt to succeed,
    or of the last to fail; TimeoutExpired when none ends within `timeout_s`."""
    running: list[_Attempt] = []  # [oldest, current twin]
    starts: list[float] = []
    numbers = itertools.count()
    launching = _fixed_addresses if hedge_after_s is not None else contextlib.nullcontext

    def start() -> None:
        index = next(numbers)
        output, stderr = work / f"module{index}.vmfb", work / f"stderr{index}.txt"
        with stderr.open("wb") as errors, launching():
            process = subprocess.Popen([*command, "-o", str(output)], stdout=subprocess.DEVNULL, stderr=errors)
        running.append(_Attempt(process, output, stderr, time.monotonic()))
        starts.append(running[-1].started)

    start()
    began = running[0].started
    try:
        while True:
            for attempt in list(running):
                code = attempt.process.poll()
                if code is None:
                    continue
                if code == 0 or len(running) == 1:
                    return code, attempt.stderr.read_text(encoding="utf-8", errors="replace"), attempt.output
                running.remove(attempt)
            now = time.monotonic()
            if timeout_s is not None and now - began > timeout_s:
                raise subprocess.TimeoutExpired(command, timeout_s)
            if hedge_after_s is not None and now - starts[-1] > hedge_after_s:
                if len(running) > 1:
                    twin = running.pop().process
                    twin.kill()
                    twin.wait()
                start()
                if note is not None:
                    note(
                        f"iree-compile still running after {now - began:.0f} s: started an identical one beside it, "
                        "the first to finish is used (IREE 3.13's x86 backend sometimes stalls; bench/perf/NOTES.md)"
                    )
            if len(running) > 1:
                time.sleep(0.05)
                continue
            next_check = min(d for d in (timeout_s, hedge_after_s, 3600.0) if d is not None) - (now - began)
            with contextlib.suppress(subprocess.TimeoutExpired):  # wakes as soon as the only attempt ends
                running[0].process.wait(timeout=max(next_check, 0.01))
    finally:
        for attempt in running:
            if attempt.process.poll() is None:
                attempt.process.kill()
                attempt.process.wait()


# One dumped executable compiles in 0.2-1.8 s here (MiniLM's); a stalled one spins for minutes.
ALONE_TIMEOUT_S = 15.0


def executable_compiles(
    executable: Path, extra: tuple[str, ...] = (), give_up: Callable[[], bool] | None = None, *, flags: tuple[str, ...]
) -> bool:
    """Whether iree-compile generates llvm-cpu code for one dumped executable (`--compile-mode=hal-executable`) within
    ALONE_TIMEOUT_S, without address randomization (as effc's compiles run); False as soon as `give_up()` is true.
    `extra`: flags for this compile only; `flags`: the module's, less those of a whole-module compile (dumps,
    substitutions, phases)."""
    from iree.compiler.tools.binaries import find_tool

    kept = [f for f in flags if not f.startswith(_WHOLE_MODULE_ONLY)]
    command = [find_tool("iree-compile"), str(executable), "--compile-mode=hal-executable", *target_flags("llvm-cpu")]
    with _fixed_addresses():
        process = subprocess.Popen(
            [*command, *kept, *extra, "-o", os.devnull], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
    deadline = time.monotonic() + ALONE_TIMEOUT_S
    try:
        while (code := process.poll()) is None:
            if time.monotonic() > deadline or (give_up is not None and give_up()):
                return False
            time.sleep(0.05)
        return code == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


_WHOLE_MODULE_ONLY = (
    "--iree-input-type",
    "--iree-hal-dump-",
    "--iree-hal-substitute-",
    "--compile-to",
    "--dump-compilation-phases-to",
)


def iree_error(stderr: str, target: str, returncode: int) -> EffcError:
    """Turn iree-compile's diagnostics into one line plus a table of what failed to lower."""
    unknown = re.search(r"Unknown command line argument '([^']+)'", stderr)
    if unknown:
        return EffcError(
            f"iree-compile does not know the flag '{unknown.group(1)}'; check the spelling with `iree-compile --help`"
        )
    illegal = re.findall(r"^(.*?): error: failed to legalize operation '([^']+)'", stderr, re.MULTILINE)
    if illegal:
        counts = Counter(op for _, op in illegal)
        first = {op: loc for loc, op in reversed(illegal)}
        rows = "\n".join(f"  {op:<40} {n:5d}  {first[op]}" for op, n in counts.most_common())
        return EffcError(
            f"IREE cannot lower {len(counts)} op kind(s) for {target}: {', '.join(counts)}; "
            "see the table below (rerun with --debug for IREE's full diagnostics)",
            detail=f"  {'op':<40} count  first location\n{rows}",
        )
    errors = [line for line in stderr.splitlines() if "error:" in line]
    if returncode < 0 or not errors:
        tail = "\n".join(stderr.strip().splitlines()[-5:])
        return EffcError(f"iree-compile crashed (exit {returncode}) for target {target}", detail=tail)
    return EffcError(f"iree-compile failed for {target}: {errors[0].strip()}", detail=stderr)
