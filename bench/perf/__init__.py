"""Issue 8's performance set: CPU (`run`), NVIDIA (`cuda`) and task accuracy per precision (`accuracy`)."""

from __future__ import annotations

from collections.abc import Mapping


def slug(name: str) -> str:
    """A machine or card name as a result-file name part: `NVIDIA H200` → `nvidia-h200`.

    Kept here, free of heavy imports, because `cuda measure` runs where only IREE's runtime is installed.
    """
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")


def cpu_slug(machine: Mapping[str, object]) -> str:
    """`runtime.benchmark.machine_description`'s CPU as a result-file name part, with its vector ISA: two VMs both
    called "AMD EPYC" (Zen 3 with AVX2, Zen 4 with AVX-512 and bf16) ran MiniLM 3x apart in f32."""
    return slug(f"{machine['cpu']} {machine['vector_isa']}")
