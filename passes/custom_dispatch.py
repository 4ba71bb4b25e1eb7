"""What effc's own kernels (IREE custom dispatches) share: their executables enter the module as text.

torch-mlir's bindings know none of IREE's dialects (`stream`, `hal`, `flow`), so the passes that use such kernels
(effc-vnni-matmul, effc-hopper-kernels) declare functions in the torch dialect, and the definitions and executables
are written into the module's text on its way to iree-compile.
"""

from __future__ import annotations

import re

from torch_mlir import ir

from effc.compiler.errors import EffcError


def declared_functions(module: ir.Operation) -> dict[str, ir.Operation]:
    """The `func.func`s of `module` (a builtin.module op), by name."""
    return {
        ir.StringAttr(op.operation.attributes["sym_name"]).value: op.operation
        for op in module.regions[0].blocks[0].operations
        if op.operation.name == "func.func"
    }


def declare_function(
    module: ir.Operation, name: str, inputs: list[ir.Type], result: ir.Type, attributes: dict[str, ir.Attribute]
) -> None:
    """A private `func.func` declaration of `name` at the end of `module`, with `attributes` besides its own."""
    own = {
        "sym_name": ir.StringAttr.get(name),
        "sym_visibility": ir.StringAttr.get("private"),
        "function_type": ir.TypeAttr.get(ir.FunctionType.get(inputs, [result])),
    }
    ir.Operation.create(
        "func.func", attributes=own | attributes, regions=1, ip=ir.InsertionPoint(module.regions[0].blocks[0])
    )


def with_executables(text: str, executables: str, pass_name: str) -> str:
    """`text` with `executables` (IREE ops, as text) at the top of its top-level module."""
    header = re.search(r"^module\b.*\{\s*$", text, re.MULTILINE)
    if header is None:
        raise EffcError(f"{pass_name}: no top-level `module ... {{` line in the module's text")
    return f"{text[: header.end()]}\n{executables}{text[header.end() :]}"
