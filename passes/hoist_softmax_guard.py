"""`effc-hoist-softmax-guard`: test torch's safe-softmax guard on the attention mask, not on every score.

torch decomposes `scaled_dot_product_attention` (and `_safe_softmax`) into a softmax plus a guard that
zeroes the rows whose every score is -inf: `where(all(scores == -inf, dim), 0, softmax(scores))`, with
`scores = q·kᵀ·scale + mask`. IREE makes the guard a reduction dispatch of its own over every head's
scores: on the 2-core CPU `reduction_1536x128_f32xi1`, 0.5 ms of MiniLM's 14.2 ms of dispatches with
bf16 matmuls (bench/perf/NOTES.md).

A row of `q·kᵀ·scale + mask` is all -inf exactly when the mask's row is, as long as q·kᵀ·scale is finite.
So the guard becomes `all(mask == -inf, dim)`: a reduction over the mask alone ([1, 1, T, T] instead of
[B, H, T, T]), the same for every head and, after CSE, for every layer; the result is broadcast back to
the guard's shape. Output is unchanged whenever the scores before the mask are finite. Where they are
not (an overflowed or NaN dot product in a fully masked row) torch returns that row as NaN, or as zeros
where an unmasked score overflowed to -inf, and this pass returns zeros, or NaN, for it.

Without a mask, scores that are q·kᵀ (scaled, reshaped) have no -inf row unless the dot products overflow,
so the guard goes: `where(guard, 0, p)` becomes `p`. In the decomposed f16 attention block on an H100 this
reduction took 44 us of f32 scores, and 181 us once effc-narrow-softmax keeps them in f16 (bench/perf/NOTES.md).

Left as they are, counted by reason in the module attribute `effc.hoist_softmax_guard`: guards on scores
that are not `x + mask` (alpha 1), masks that are not floats, lack the softmax axis or are as large as the
scores (then nothing is saved, and `mask + x` could not be told from `x + mask`), dynamic shapes, and guards
that drop the reduced axis (the decomposition keeps it).
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import (
    FLOAT_DTYPES,
    VIEW_OPS,
    Builder,
    TensorType,
    constant_bool,
    constant_int,
    constant_number,
    producer,
    tensor_type,
)
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.hoist_softmax_guard"
# Ops between q·kᵀ and unmasked scores in torch's decompositions: each keeps a finite value finite.
_SCORE_VIEWS = VIEW_OPS | {"torch.aten.mul.Scalar", "torch.aten.div.Scalar"}


def is_guard(op: ir.Operation) -> bool:
    """Is `op` the reduction of torch's guard, `all(scores == -inf, dim)`?"""
    if op.name != "torch.aten.all.dim":
        return False
    eq = producer(op.operands[0])
    return eq is not None and eq.name == "torch.aten.eq.Scalar" and constant_number(eq.operands[1]) == -math.inf


def _is_product(value: ir.Value) -> bool:
    """Is `value` q·kᵀ, possibly scaled and reshaped (unmasked scores: finite whenever q and k are)?"""
    op = producer(value)
    while op is not None and op.name in _SCORE_VIEWS:
        op = producer(op.operands[0])
    return op is not None and op.name in ("torch.aten.bmm", "torch.aten.matmul")


def _drop(guard: ir.Operation) -> None:
    """Replace each `where(guard, zero, p)` with `p`: the guard of unmasked, finite scores is never true."""
    users = [use.owner.operation for use in guard.results[0].uses]
    if not all(u.name == "torch.aten.where.self" and u.operands[0] == guard.results[0] for u in users):
        raise Skip("guard used other than as where's condition")
    if any(u.results[0].type != u.operands[2].type for u in users):
        raise Skip("where's result type differs from the softmax's")
    for where in users:
        where.results[0].replace_all_uses_with(where.operands[2])


def _hoist(guard: ir.Operation) -> None:
    """Replace the uses of `guard` with the same test on the mask, or drop it on unmasked q·kᵀ (else `Skip`)."""
    eq = producer(guard.operands[0])
    assert eq is not None
    if _is_product(eq.operands[0]):
        _drop(guard)
        return
    add = producer(eq.operands[0])
    scores, guard_type = tensor_type(eq.operands[0]), tensor_type(guard.results[0])
    axis = constant_int(guard.operands[1])
    if add is None or add.name != "torch.aten.add.Tensor" or constant_number(add.operands[2]) != 1.0:
        raise Skip("scores are not x + mask")
    mask = tensor_type(add.operands[1])
    if mask is None or scores is None or guard_type is None or axis is None or mask.dtype not in FLOAT_DTYPES:
        raise Skip("mask of unknown shape or not a float")
    if constant_bool(guard.operands[2]) is not True:
        raise Skip("guard drops the reduced axis")
    if math.prod(mask.shape) >= math.prod(scores.shape) or any(d < 0 for d in (*mask.shape, *scores.shape)):
        raise Skip("mask not broadcast over the scores")  # the only case that saves work, and that tells them apart
    mask_axis = len(mask.shape) - (len(scores.shape) - axis % len(scores.shape))
    if mask_axis < 0:
        raise Skip("mask without the softmax axis")
    b = Builder(guard)
    masked = b.op("torch.aten.eq.Scalar", [add.operands[1], eq.operands[1]], [TensorType(mask.shape, "i1").ir_type()])
    rows = TensorType(mask.with_dim(mask_axis, 1).shape, "i1")
    fully_masked = b.op("torch.aten.all.dim", [masked.result, b.int(mask_axis), b.bool(True)], [rows.ir_type()])
    if rows.shape != guard_type.shape:
        shape = b.int_list(guard_type.shape)
        fully_masked = b.op("torch.aten.broadcast_to", [fully_masked.result, shape], [guard.results[0].type])
    guard.results[0].replace_all_uses_with(fully_masked.result)


def guards(module: ir.Operation) -> list[ir.Operation]:
    """Every safe-softmax guard reduction in the functions of `module`."""
    return [op.operation for _, _, block in functions(module) for op in block.operations if is_guard(op)]


def hoist_module(module: ir.Operation) -> str:
    """Hoist every safe-softmax guard of `module` (a builtin.module op) that has a mask, drop those on unmasked
    q·kᵀ; returns the report."""
    with module.context:
        what = "safe-softmax guards tested on the mask or dropped (no mask)"
        return rewrite_sites(module, guards(module), _hoist, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class HoistSoftmaxGuardPass(ModulePass):
    name: ClassVar[str] = "effc-hoist-softmax-guard"
    description: ClassVar[str] = (
        "Test torch's safe-softmax guard (all(scores == -inf) per row) on the additive attention mask instead "
        "of every head's scores: one small reduction shared by heads and layers instead of one per head. "
        "Drops the guard of unmasked q·kᵀ. Same output whenever the scores before the mask are finite."
    )

    def apply(self, module: ir.Operation) -> None:
        hoist_module(module)
