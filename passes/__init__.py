"""effc passes and the pipelines that run them.

    effc.passes.run(module, "builtin.module(effc-profile,effc-lower-to-linalg,canonicalize)")

`module` is a `torch_mlir.ir.Module` (rewritten in place and returned) or MLIR text (text returned).
Pipelines use mlir-opt's syntax and may mix effc passes with any upstream MLIR/torch-mlir pass.
Names resolve lazily, so importing `effc.passes` (e.g. for the CLI) does not load MLIR.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from effc.passes.pipeline import IRPrinting, Pipeline, build_pass_manager, parse_pipeline, run
    from effc.passes.registry import all_passes, get_pass

__all__ = ["IRPrinting", "Pipeline", "all_passes", "build_pass_manager", "get_pass", "parse_pipeline", "run"]

_HOMES = {
    "IRPrinting": "effc.passes.pipeline",
    "Pipeline": "effc.passes.pipeline",
    "build_pass_manager": "effc.passes.pipeline",
    "parse_pipeline": "effc.passes.pipeline",
    "run": "effc.passes.pipeline",
    "all_passes": "effc.passes.registry",
    "get_pass": "effc.passes.registry",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'effc.passes' has no attribute '{name}'")
    return getattr(importlib.import_module(home), name)
