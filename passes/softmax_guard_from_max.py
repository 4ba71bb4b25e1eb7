"""`effc-softmax-guard-from-max`: read torch's safe-softmax guard off the softmax's own row maximum.

torch's decomposition of `_safe_softmax` (sdpa's) zeroes the rows whose every score is -inf:
`where(all(scores == -inf, dim), 0, softmax(scores))`, and its softmax subtracts the row maximum,
`max(scores, dim)`, before `exp`. A row is all -inf exactly when its maximum is -inf, NaN included (a NaN
makes `==` false somewhere in the row and the maximum NaN). So `all(scores == -inf, dim)` becomes
`max(scores, dim) == -inf`, on the maximum the decomposition computes. The output is the same, bit for bit.

Why, on CUDA: IREE 3.13 gives the `all` reduction into i1 one thread per row whatever its length (its subgroup
reduction does not take an i1 result): 32 us a layer in SmolLM2's decode step on an H200, 958 of its 16.1 ms of
kernels (bench/perf/NOTES.md, twentieth session). IREE still reduces the scores twice: it recognises the softmax
only where nothing else reads its maximum, so the guard's maximum gets a dispatch of its own. But that one is an
f32 max, which IREE gives a subgroup reduction (544 threads a row for the padded step). Unlike
effc-hoist-softmax-guard, which tests the guard on the mask, the graph keeps its shape: on an H100 the hoisted
guard made IREE partition that step differently and 19% slower. Not for a CPU: there the same rewrite made MiniLM
slower (12.2-12.4 -> 12.6-13.0 ms with bf16 matmuls, third CPU session), the i1 reduction being no worse.

Left as they are, counted by reason in the module attribute `effc.softmax_guard_from_max`: guards whose scores
have no `max.dim` over the same axis that keeps it (a softmax left whole as `_softmax`), and guards that drop
the reduced axis.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai_narrow import Builder, constant_bool, constant_int, producer, tensor_type
from effc.passes.hoist_softmax_guard import guards
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.softmax_guard_from_max"


def _same_axis(a: ir.Value, b: ir.Value, rank: int) -> bool:
    first, second = constant_int(a), constant_int(b)
    return first is not None and second is not None and first % rank == second % rank


def _row_max(scores: ir.Value, axis: ir.Value) -> ir.Value:
    """The values of a `max.dim` of `scores` over `axis` that keeps it (the softmax's shift), else `Skip`."""
    scores_type = tensor_type(scores)
    if scores_type is None:
        raise Skip("scores of unknown rank")
    for use in scores.uses:
        user = use.owner.operation
        if (
            user.name == "torch.aten.max.dim"
            and user.operands[0] == scores
            and _same_axis(user.operands[1], axis, len(scores_type.shape))
            and constant_bool(user.operands[2]) is True
        ):
            return user.results[0]
    raise Skip("no row maximum of the scores to read it from")


def _from_max(guard: ir.Operation) -> None:
    """Replace `all(scores == -inf, dim)` with `max(scores, dim) == -inf` (else `Skip`)."""
    if constant_bool(guard.operands[2]) is not True:
        raise Skip("guard drops the reduced axis")
    eq = producer(guard.operands[0])
    assert eq is not None
    row_max = _row_max(eq.operands[0], guard.operands[1])
    max_type, guard_type = tensor_type(row_max), tensor_type(guard.results[0])
    if max_type is None or guard_type is None or max_type.shape != guard_type.shape:
        raise Skip("row maximum and guard differ in shape")
    # Before each user: a rewritten graph (effc-chai's) may compute the maximum after the guard, but always before
    # the softmax that the guard's `where` selects from.
    for use in list(guard.results[0].uses):
        user = use.owner.operation
        b = Builder(user)
        user.operands[use.operand_number] = b.op(
            "torch.aten.eq.Scalar", [row_max, eq.operands[1]], [guard.results[0].type]
        ).result


def guard_from_max_module(module: ir.Operation) -> str:
    """Read every safe-softmax guard of `module` (a builtin.module op) off its softmax's row maximum; returns
    the report."""
    with module.context:
        what = "safe-softmax guards read off the softmax's row maximum"
        return rewrite_sites(module, guards(module), _from_max, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class SoftmaxGuardFromMaxPass(ModulePass):
    name: ClassVar[str] = "effc-softmax-guard-from-max"
    description: ClassVar[str] = (
        "Test torch's safe-softmax guard (all(scores == -inf) per row) as max(scores) == -inf on the decomposed "
        "softmax's row maximum: the same output, an f32 max instead of an i1 reduction (for IREE's CUDA codegen)."
    )

    def apply(self, module: ir.Operation) -> None:
        guard_from_max_module(module)
