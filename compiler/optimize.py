"""`-O`: the best-known compile configuration per target, backed by measurements in bench/perf/NOTES.md.

An option enters this table only after it was measured on the performance set and helped there on
balance; NOTES.md records each option tried, with its measured effect, including where it hurt (data
tiling: SmolLM2 prefill 18% faster on the 2-core CPU, MiniLM 15% slower). Options that IREE 3.13 fails to
compile for some graphs go in `optional_iree_flags`: tried first, dropped with a note when rejected.
"""

from __future__ import annotations

from typing import Any

from effc.compiler.iree_backend import check_target

# Keyword arguments for `compile_model` per target.
BEST_KNOWN: dict[str, dict[str, Any]] = {
    "llvm-cpu": {
        "attention": "decomposed",
        # Data tiling fails on the SmolLM2 decode step ("'linalg.pack' op expected padding_value has 'i8'
        # but got: 'i1'", the attention mask): optional, dropped with a note where IREE rejects it.
        "optional_iree_flags": ("--iree-dispatch-creation-data-tiling", "--iree-llvmcpu-enable-ukernels=all"),
    },
    "cuda": {
        "attention": "auto",
        "iree_flags": ("--iree-dispatch-creation-enable-fuse-horizontal-contractions",),
        # O3 fails on decode steps (decomposed attention: "failed to bufferize op"); elsewhere it won 10-57%
        # on an H200. hfuse: MiniLM 13-20% faster, +-3% elsewhere.
        "optional_iree_flags": ("--iree-opt-level=O3",),
    },
}


def best_known(target: str) -> dict[str, Any]:
    """The `compile_model` options `-O` selects for `target`."""
    return dict(BEST_KNOWN[check_target(target)])
