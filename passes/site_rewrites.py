"""Rewrite every site a pass found, and report in the module what was rewritten and why the rest was not.

Passes that rewrite only where the result provably means the same (effc-raise-attention,
effc-hoist-softmax-guard) raise `Skip` with a reason for each site they leave; users then read
`N/M <what>; left: <reason> (count), ...` in a module attribute instead of guessing why nothing happened.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from torch_mlir import ir

from effc.passes.chai import functions
from effc.passes.chai_narrow import erase_dead_ops

SiteT = TypeVar("SiteT")


class Skip(Exception):
    """Why a site stays as it is (the message goes into the report)."""


def operand_sites(
    module: ir.Operation, op_names: frozenset[str], found: Callable[[ir.Value], bool]
) -> list[tuple[ir.Operation, int]]:
    """(op, operand index) for each of the first two operands of each `op_names` op in `module` that `found` picks:
    the sites of a pass that rewrites a matmul by what one operand is made of."""
    return [
        (op.operation, index)
        for _, _, block in functions(module)
        for op in block.operations
        if op.operation.name in op_names
        for index in (0, 1)
        if found(op.operands[index])
    ]


def rewrite_sites(
    module: ir.Operation, sites: Sequence[SiteT], rewrite: Callable[[SiteT], None], *, attribute: str, what: str
) -> str:
    """Apply `rewrite` to each site, erase what became dead, and record the report in `attribute`."""
    left: dict[str, int] = {}
    for site in sites:
        try:
            rewrite(site)
        except Skip as skip:
            left[str(skip)] = left.get(str(skip), 0) + 1
    done = len(sites) - sum(left.values())
    if done:
        for _, _, block in functions(module):
            erase_dead_ops(block)
    report = f"{done}/{len(sites)} {what}"
    if left:
        report += "; left: " + ", ".join(f"{reason} ({n})" for reason, n in sorted(left.items()))
    module.attributes[attribute] = ir.StringAttr.get(report)
    return report


def acted_report(module: ir.Operation, attribute: str) -> str:
    """The report `rewrite_sites` left in `attribute` where it rewrote a site, else "" (not run, or nothing done)."""
    if attribute not in module.attributes:
        return ""
    report = ir.StringAttr(module.attributes[attribute]).value
    return "" if report.startswith("0/") else report
