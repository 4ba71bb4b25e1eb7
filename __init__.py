"""effc: compile PyTorch models through torch-mlir and IREE, with Python MLIR passes in between."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from effc.compiler.api import CompiledModel

__version__ = "0.1.0"


def compile(model: Any, example_inputs: Any = None, **options: Any) -> CompiledModel:
    """Compile a torch.nn.Module (or anything `effc compile` accepts) to an IREE module.

    Imported lazily so that `import effc` stays cheap for tools that never touch torch.
    """
    from effc.compiler.api import compile_model

    return compile_model(model, example_inputs, **options)


def __getattr__(name: str) -> Any:
    """`effc.read` is `effc.runtime.read` (READ side networks), imported on first use."""
    if name == "read":
        import importlib

        return importlib.import_module("effc.runtime.read")
    raise AttributeError(f"module 'effc' has no attribute {name!r}")
