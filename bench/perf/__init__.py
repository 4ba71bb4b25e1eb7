"""Issue 8's performance set: CPU (`run`), NVIDIA (`cuda`) and task accuracy per precision (`accuracy`)."""

from __future__ import annotations


def slug(name: str) -> str:
    """A machine or card name as a result-file name part: `NVIDIA H200` → `nvidia-h200`.

    Kept here, free of heavy imports, because `cuda measure` runs where only IREE's runtime is installed.
    """
    return "".join(ch if ch.isalnum() else "-" for ch in name.lower()).strip("-")
