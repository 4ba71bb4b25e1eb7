"""One place that creates MLIR contexts and parses IR for effc.

All effc IR lives in torch-mlir's bindings (`torch_mlir.ir`), which carry the torch dialect and
torch-mlir's passes. IREE's bindings are a separate copy of MLIR: effc hands modules to IREE as text.
"""

from __future__ import annotations

from torch_mlir import ir
from torch_mlir.dialects import torch as torch_dialect

from effc.compiler.errors import EffcError


def new_context() -> ir.Context:
    """A context with the torch dialect registered and single-threaded, so IR printing never aborts."""
    ctx = ir.Context()
    torch_dialect.register_dialect(ctx)
    ctx.enable_multithreading(False)
    return ctx


def parse_module(text: str, ctx: ir.Context, source: str = "<input>") -> ir.Module:
    """Parse MLIR text; a syntax error becomes one line that names the source and the position."""
    with ctx:
        try:
            return ir.Module.parse(text)
        except ir.MLIRError as err:
            first = err.error_diagnostics[0] if err.error_diagnostics else None
            where = f"{source}:{_line_col(first.location)}" if first is not None else source
            what = first.message if first is not None else str(err)
            raise EffcError(f"{where}: cannot parse MLIR: {what}") from None


def _line_col(location: ir.Location) -> str:
    text = str(location)  # loc("file":line:col)
    if ":" in text and text.startswith("loc("):
        return text[4:-1].rsplit('":', 1)[-1]
    return text
