"""What this machine's CPU is and which of its instructions effc's CPU configurations depend on.

`--iree-llvmcpu-target-cpu=host` compiles for whatever CPU runs effc, so the best-known configuration must
follow the same CPU: bf16 matmuls pay only where the CPU has bf16 dot products (bench/perf/NOTES.md).
"""

from __future__ import annotations

import platform
from pathlib import Path

CPUINFO = Path("/proc/cpuinfo")
# x86: AVX512-BF16 (Zen 4, Cooper Lake and later Xeons) or AMX-BF16 (Sapphire Rapids); Arm: the BF16 extension.
# IREE 3.13's mmt4d ukernels have bf16 tiles for these; without them a bf16 matmul is scalar conversions.
BF16_DOT_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def _cpuinfo_lines() -> list[str]:
    try:
        return CPUINFO.read_text().splitlines()
    except OSError:
        return []


def cpu_model() -> str:
    """The CPU's marketing name, where Linux tells it; else what `platform` knows."""
    names = [line.split(":", 1)[1].strip() for line in _cpuinfo_lines() if line.startswith("model name")]
    return names[0] if names else platform.processor() or platform.machine()


def cpu_flags(cpuinfo_lines: list[str] | None = None) -> frozenset[str] | None:
    """The first CPU's feature flags (x86 `flags`, Arm `Features`) from these cpuinfo lines or this machine's; None
    where cpuinfo has none."""
    for line in _cpuinfo_lines() if cpuinfo_lines is None else cpuinfo_lines:
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return None


def has_bf16_dot(cpuinfo_lines: list[str] | None = None) -> bool | None:
    """Whether the CPU has bf16 dot-product instructions; None where that cannot be read (not Linux)."""
    flags = cpu_flags(cpuinfo_lines)
    return None if flags is None else bool(flags & BF16_DOT_FLAGS)


def has_int8_dot_u8s8(cpuinfo_lines: list[str] | None = None) -> bool:
    """Whether the CPU has AVX512-VNNI's u8 x s8 dot product (`vpdpbusd` on zmm), which effc-vnni-matmul's kernel
    needs; False where that cannot be read."""
    return "avx512_vnni" in (cpu_flags(cpuinfo_lines) or frozenset())


def vector_isa(cpuinfo_lines: list[str] | None = None) -> str:
    """The widest vector instruction set of the CPU ("avx512", "avx2", "sve", "neon"; "" where unknown). Two
    CPUs of one marketing name ("AMD EPYC" in a VM) can differ in it, and with it in every timing."""
    flags = cpu_flags(cpuinfo_lines) or frozenset()
    for flag, isa in (("avx512f", "avx512"), ("avx2", "avx2"), ("sve", "sve"), ("asimd", "neon")):
        if flag in flags:
            return isa
    return ""
