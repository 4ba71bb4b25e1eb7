"""What effc's own kernels (IREE custom dispatches) share: their executables enter the module as text.

torch-mlir's bindings know none of IREE's dialects (`stream`, `hal`, `flow`), so the passes that use such kernels
(effc-vnni-matmul, effc-hopper-kernels) declare functions in the torch dialect, and the definitions and executables
are written into the module's text on its way to iree-compile.
"""

from __future__ import annotations

import re

from effc.compiler.errors import EffcError


def with_executables(text: str, executables: str, pass_name: str) -> str:
    """`text` with `executables` (IREE ops, as text) at the top of its top-level module."""
    header = re.search(r"^module\b.*\{\s*$", text, re.MULTILINE)
    if header is None:
        raise EffcError(f"{pass_name}: no top-level `module ... {{` line in the module's text")
    return f"{text[: header.end()]}\n{executables}{text[header.end() :]}"
