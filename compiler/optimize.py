"""`-O`: the best-known compile configuration per target, backed by measurements in bench/perf/NOTES.md.

An option enters this table only after it compiled every model of the performance set and beat the
default there; NOTES.md records each option tried, with its measured effect, including what did not help.
"""

from __future__ import annotations

from typing import Any

from effc.compiler.iree_backend import check_target

# Keyword arguments for `compile_model` per target.
BEST_KNOWN: dict[str, dict[str, Any]] = {
    "llvm-cpu": {
        "attention": "decomposed",
        "iree_flags": ("--iree-dispatch-creation-data-tiling", "--iree-llvmcpu-enable-ukernels=all"),
    },
    "cuda": {
        "attention": "fused",
        "iree_flags": ("--iree-opt-level=O3",),
    },
}


def best_known(target: str) -> dict[str, Any]:
    """The `compile_model` options `-O` selects for `target`."""
    return dict(BEST_KNOWN[check_target(target)])
