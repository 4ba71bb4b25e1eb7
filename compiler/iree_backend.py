"""IREE compilation: target presets, flag handling and readable diagnostics.

`iree-compile` runs as a subprocess (the compiler wheel's own binary), so a crash in the compiler
never takes down effc, and its diagnostics are condensed into one line plus a table of the ops that
did not lower, instead of IREE's wall of text.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

from effc.compiler.errors import EffcError

TARGETS = ("llvm-cpu", "cuda")
RUNTIME_DEVICE = {"llvm-cpu": "local-task", "cuda": "cuda"}
# IREE 3.13 has no sm_90 entry in its known-target table; sm_80 PTX is JIT-compiled on Hopper.
DEFAULT_CUDA_ARCH = "sm_80"


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
    return ["--iree-hal-target-device=cuda", f"--iree-cuda-target={cuda_arch}"]


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


def compile_mlir(
    mlir_text: str,
    *,
    target: str = "llvm-cpu",
    cuda_arch: str = DEFAULT_CUDA_ARCH,
    extra_flags: list[str] | None = None,
    save_temps: Path | None = None,
    timeout_s: float | None = None,
) -> bytes:
    """Compile torch-dialect (or linalg) MLIR text to a .vmfb flatbuffer."""
    flags = list(extra_flags or [])
    if save_temps is not None:
        flags.append(f"--dump-compilation-phases-to={save_temps / 'iree-phases'}")
    command = compile_command(target, cuda_arch=cuda_arch, input_type=input_type_of(mlir_text), extra_flags=flags)
    with tempfile.TemporaryDirectory(prefix="effc-iree-") as tmp:
        output = Path(tmp) / "module.vmfb"
        if save_temps is not None:
            (save_temps / "iree-compile.sh").write_text(
                shlex.join(
                    [
                        *command[:1],
                        str(save_temps / "02-after-passes.mlir"),
                        *command[2:],
                        "-o",
                        "module.vmfb",
                    ]
                )
                + "\n"
            )
        try:
            result = subprocess.run(
                [*command, "-o", str(output)],
                input=mlir_text.encode(),
                capture_output=True,
                timeout=timeout_s,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise EffcError(f"iree-compile did not finish within {timeout_s:.0f} s for target {target}") from None
        if result.returncode != 0:
            raise iree_error(result.stderr.decode(errors="replace"), target, result.returncode)
        return output.read_bytes()


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
