"""`effc-split-projections`: turn a fused projection whose result is split into one projection per part.

GPT-2's `c_attn` and bench/perf's AttentionBlock compute Q, K and V with one Linear and split its result
(`split(D, dim=2)`, or `view(b, t, 3, H, d).permute(2, 0, 3, 1, 4)` then unbind; torch's decompositions
turn split, chunk, unbind and indexing into `aten.slice.Tensor` (+ `squeeze.dim`)). IREE copies every
slice out of the big result: on an H200 the bf16 block (B=4, T=512, D=1024, H=16, 0.545 ms in IREE) had
three `slow_memcpy` dispatches of 43-47 us each, 134 us or ~25% of the block, that torch does not run
(../shared/papers/gpu-measurements.md, "Third run"); written with separate Q/K/V Linears (and sdpa kept
whole) the block compiled to 4 dispatches instead of 12 ("Fourth run").

The rewrite starts at a projection (`mm`, `matmul`, `bmm` or `linear` of an activation) and follows its
result through single-use views, permutes and linear epilogues (bias add, alpha scaling, casts) to a
value whose users are all `slice.Tensor`/`select.int` of equal, aligned, disjoint parts of one axis.
Each part is then narrowed back to the weights with CHAI's `Narrower` (views and permutes re-emitted with
that axis shrunk to the part), so part i becomes its own projection on a slice of the constant weight
and bias, and feeds that part's consumer directly. Each new projection computes the same dot products
as the fused one did for its rows (bit-identical on llvm-cpu in tests/test_graph_rewrites.py).

Left unchanged: a part that cannot be narrowed back to `torch.vtensor.literal` weights (non-constant
weights), any value of the projection chain with a user outside it (the fused result used elsewhere),
uneven, unaligned, overlapping or strided slices, and dynamic shapes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import replace
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import (
    AFFINE_BINARY,
    LINEAR_UNARY,
    VIEW_OPS,
    Builder,
    HeadMap,
    Layout,
    Narrower,
    constant_int,
    erase_dead_ops,
    is_none,
    producer,
    tensor_type,
)

PROJECTIONS = frozenset({"torch.aten.mm", "torch.aten.matmul", "torch.aten.bmm", "torch.aten.linear"})
# Ops between a projection and its split that act on each output feature alone.
EPILOGUE = (VIEW_OPS | AFFINE_BINARY | LINEAR_UNARY | {"torch.aten.permute", "torch.aten.transpose.int"}) - {
    "torch.aten.slice.Tensor"
}
SLICE, SELECT = "torch.aten.slice.Tensor", "torch.aten.select.int"


class RangeBuilder(Builder):
    """A Builder that selects a contiguous run of indices with a slice, which IREE folds on a constant."""

    def index_select(self, x: ir.Value, axis: int, indices: Sequence[int]) -> ir.Value:
        if list(indices) == list(range(indices[0], indices[0] + len(indices))):
            return self.slice(x, axis, indices[0], indices[0] + len(indices))
        return super().index_select(x, axis, indices)


class ProjectionNarrower(Narrower):
    """CHAI's Narrower plus `aten.linear`, whose output features are its weight's (and bias's) rows."""

    def _through_producer(self, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value | None:
        op = producer(value)
        vt = tensor_type(value)
        if op is None or op.name != "torch.aten.linear" or vt is None or layout.axis != len(vt.shape) - 1:
            return super()._through_producer(value, layout, heads)
        rows = replace(layout, axis=0)
        weight = self.narrow(op.operands[1], rows, heads)
        bias = op.operands[2] if is_none(op.operands[2]) else self.narrow(op.operands[2], rows, heads)
        return self._clone(op, [op.operands[0], weight, bias], [self._narrowed_type(value, layout, heads)]).result


@dataclasses.dataclass(frozen=True)
class Part:
    """A consumer of the split value that takes part `index` of the split axis."""

    user: ir.Operation
    index: int


def split_parts(value: ir.Value) -> tuple[Layout, list[Part]] | None:
    """The split axis as a Layout of equal parts, and the parts taken, when every user of `value` takes
    a different one of them (by `slice.Tensor` with step 1 or `select.int`)."""
    vt = tensor_type(value)
    if vt is None or not vt.static or not vt.shape:
        return None
    found: list[tuple[int, int, int, ir.Operation]] = []
    for use in value.uses:
        user = use.owner.operation
        if user.name not in (SLICE, SELECT) or user.operands[0] != value:
            return None
        axis = constant_int(user.operands[1])
        if axis is None:
            return None
        axis %= len(vt.shape)
        total = vt.shape[axis]
        if user.name == SELECT:
            index = constant_int(user.operands[2])
            if index is None:
                return None
            start, end = index % total, index % total + 1
        else:
            start = 0 if is_none(user.operands[2]) else constant_int(user.operands[2])
            end = total if is_none(user.operands[3]) else constant_int(user.operands[3])
            if start is None or end is None or constant_int(user.operands[4]) != 1:
                return None
            start, end = (start + total if start < 0 else start), min(end + total if end < 0 else end, total)
        found.append((axis, start, end, user))
    if not found or len({(axis, end - start) for axis, start, end, _ in found}) != 1:
        return None
    axis, start, end, _ = found[0]
    size, total = end - start, vt.shape[axis]
    starts = [start for _, start, _, _ in found]
    if size <= 0 or size == total or total % size or any(s % size for s in starts) or len(set(starts)) < len(starts):
        return None
    parts = sorted((Part(user, start // size) for _, start, _, user in found), key=lambda part: part.index)
    return Layout(axis, total // size, inner=size), parts


def split_point(projection: ir.Operation) -> ir.Value | None:
    """The value downstream of `projection`'s result, through single-use epilogue ops, that is split."""
    value = projection.results[0]
    while split_parts(value) is None:
        uses = list(value.uses)
        if len(uses) != 1:
            return None
        user = uses[0].owner.operation
        if user.name not in EPILOGUE or len(user.results) != 1:
            return None
        value = user.results[0]
    return value


def split_projection(projection: ir.Operation) -> bool:
    """Give each part of the split of `projection`'s result its own projection; False if left unchanged."""
    value = split_point(projection)
    if value is None:
        return False
    split = split_parts(value)
    anchor = producer(value)
    assert split is not None and anchor is not None
    layout, parts = split
    builder = RangeBuilder(anchor)
    narrower = ProjectionNarrower(builder, stop_at=frozenset({projection.operands[0]}))
    try:
        narrowed = [narrower.narrow(value, layout, HeadMap.select([p.index], layout.heads)) for p in parts]
    except ValueError:
        narrowed = None
    if (
        narrowed is None
        or any(p.user.name == SLICE and p.user.results[0].type != n.type for p, n in zip(parts, narrowed, strict=True))
        or not _self_contained(narrower, projection, {p.user for p in parts})
    ):
        for op in reversed(builder.created):
            op.erase()
        return False
    for part, new in zip(parts, narrowed, strict=True):
        result = part.user.results[0]
        if part.user.name == SELECT:
            new = builder.op("torch.aten.squeeze.dim", [new, builder.int(layout.axis)], [result.type]).result
        result.replace_all_uses_with(new)
        part.user.erase()
    return True


def _self_contained(narrower: Narrower, projection: ir.Operation, split_users: set[ir.Operation]) -> bool:
    """Did narrowing go through `projection` to literal weights only, over values used by nothing else?"""
    stops = {stop.value for stop in narrower.stops}
    if not all(op is not None and op.name == "torch.vtensor.literal" for op in map(producer, stops)):
        return False
    chain = {value for value, _, _ in narrower.memo} - stops
    owners = {producer(v) for v in chain} | split_users
    return projection.results[0] in chain and all(use.owner.operation in owners for v in chain for use in v.uses)


@dataclasses.dataclass(frozen=True)
class SplitProjectionsPass(ModulePass):
    name: ClassVar[str] = "effc-split-projections"
    description: ClassVar[str] = (
        "Split a fused projection (one Linear for Q, K and V) whose result is only sliced into equal parts "
        "into one projection per part on slices of the constant weight and bias, so IREE copies no slices "
        "out of a big result. Views and permutes between projection and split are re-emitted per part."
    )

    def apply(self, module: ir.Operation) -> None:
        with module.context:
            for _, _, block in functions(module):
                projections = [op.operation for op in block.operations if op.operation.name in PROJECTIONS]
                split = [split_projection(op) for op in projections]
                if any(split):  # erased only now: a dead original may hold projections still listed
                    erase_dead_ops(block)
