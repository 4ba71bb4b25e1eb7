"""`effc-fold-broadcast-bmm`: a batch matmul against repeated batch entries becomes one over the distinct entries.

LLaMA's `repeat_kv` broadcasts each KV head to its group of query heads and merges the copies into the head axis, so
the attention's bmm's read every KV head once per query head: IREE materializes those repeats as copies of the whole
KV cache, every layer and step. The import folds them where it sees sdpa (`fold_gqa`), but not where a pass has to
read attention per query head (CHAI's decode step) or where a model writes attention as matmuls. With r copies of
each entry of the second operand, innermost in the batch,

    bmm(A [b·r, m, k], B repeated [b·r, k, n])  =  view(bmm(view(A) [b, r·m, k], B distinct [b, k, n]), [b·r, m, n])

the same products, each entry read once. Which batch entries repeat is computed, not pattern-matched: the layout ops
from the broadcast to the bmm (views, permutes, squeezes) are replayed on the indices of the broadcast's input, and
the distinct entries must be that input under one permutation of its axes.

Only matmuls of at most `STREAMED_ROWS` rows (a decode step's) are folded, as `fold_gqa` does: there the repeats are
copies of the cache for one output row; with a prompt's rows they are small, and the folded matmuls kept IREE 3.13
from data-tiling SmolLM2's prefill (slower, bench/perf/NOTES.md). Left as they are, counted in the module attribute
`effc.fold_broadcast_bmm`: repeats in the first operand, broadcasts whose copies are not whole batch entries, and
dynamic shapes.
"""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import replace
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai_narrow import (
    BROADCAST_OPS,
    CAST,
    TRANSPOSE_OPS,
    VIEW_OPS,
    Builder,
    replay_layout,
    source_chain,
    tensor_type,
)
from effc.passes.site_rewrites import Skip, operand_sites, rewrite_sites
from effc.passes.split_concat_matmul import STREAMED_ROWS

REPORT_ATTRIBUTE = "effc.fold_broadcast_bmm"
# Ops that only reshape (their result's shape says all) or reorder axes, between a broadcast and the bmm; and casts
# (f16 attention decomposed in f32), which the folded operand gets after its layout, on the distinct entries only.
_LAYOUT_OPS = VIEW_OPS | TRANSPOSE_OPS | {"torch.aten.unsqueeze", "torch.aten.squeeze.dim", CAST}


def _broadcast_chain(value: ir.Value) -> tuple[ir.Operation, list[ir.Operation]] | None:
    """(the broadcast, the layout ops from it to `value` in order) where `value` is a broadcast laid out, else None."""
    return source_chain(value, _LAYOUT_OPS, BROADCAST_OPS)


def _repeats(entries: np.ndarray) -> int:
    """The most copies r of each batch entry in `entries` [batch, ...] that sit next to each other (1 if none)."""
    batch = entries.shape[0]
    for r in range(batch, 1, -1):
        grouped = entries.reshape(batch // r, r, -1) if batch % r == 0 else None
        if grouped is not None and (grouped == grouped[:, :1]).all():
            return r
    return 1


def _layout(source: np.ndarray, target: np.ndarray) -> tuple[int, ...] | None:
    """An order of `source`'s axes of more than one element that, reshaped, gives `target`; None if there is none."""
    kept = [size for size in source.shape if size != 1]
    squeezed = source.reshape(kept)
    for order in itertools.permutations(range(len(kept))):
        if np.array_equal(squeezed.transpose(order).reshape(target.shape), target):
            return order
    return None


def _fold(site: tuple[ir.Operation, int]) -> None:
    """Replace the bmm by one over the distinct entries of its second operand (else `Skip`)."""
    bmm, index = site
    if index == 0:
        raise Skip("the first operand repeated")
    found = _broadcast_chain(bmm.operands[1])
    assert found is not None, "a site without its broadcast"
    broadcast, chain = found
    first, second, out = (tensor_type(v) for v in (bmm.operands[0], broadcast.operands[0], bmm.results[0]))
    assert first is not None and second is not None and out is not None  # bmm operands and result are tensors
    if not (first.static and second.static and out.static):
        raise Skip("dynamic shape")
    batch, rows, k = first.shape
    if rows > STREAMED_ROWS:
        raise Skip(f"first operand of more than {STREAMED_ROWS} rows: the repeats are small beside the matmul")
    size = int(np.prod(second.shape))  # int32 indices where they fit: a long cache repeated is big
    source = np.arange(size, dtype=np.int32 if size < 2**31 else np.int64).reshape(second.shape)
    entries = source
    try:
        for op in (broadcast, *chain):
            entries = replay_layout(op, entries)
    except ValueError as error:
        raise Skip(str(error)) from None
    repeats = _repeats(entries)
    if repeats == 1:
        raise Skip("no batch entry repeated")
    distinct = entries[::repeats]
    order = _layout(source, distinct)
    if order is None:
        raise Skip("repeated entries that are not the broadcast's input reordered")
    b = Builder(bmm)
    kept = [size for size in second.shape if size != 1]
    operand = broadcast.operands[0] if list(second.shape) == kept else b.view(broadcast.operands[0], kept)
    if order != tuple(range(len(kept))):
        operand = b.permute(operand, order)
    if distinct.shape != tuple(kept[i] for i in order):
        operand = b.view(operand, distinct.shape)
    for cast in (op for op in chain if op.name == CAST):
        cast_type = tensor_type(cast.results[0])
        assert cast_type is not None
        cast_to = replace(cast_type, shape=distinct.shape).ir_type()
        operand = b.op(CAST, [operand, *list(cast.operands)[1:]], [cast_to]).result
    stacked = b.view(bmm.operands[0], (batch // repeats, repeats * rows, k))
    folded_type = replace(out, shape=(batch // repeats, repeats * rows, out.shape[2]))
    product = b.op(bmm.name, [stacked, operand], [folded_type.ir_type()]).result
    bmm.results[0].replace_all_uses_with(b.view(product, out.shape))


def fold_module(module: ir.Operation) -> str:
    """Fold every bmm of `module` whose second operand repeats its batch entries; the report."""
    with module.context:
        what = "batch matmuls over repeated entries folded onto the distinct ones"
        sites = operand_sites(module, frozenset({"torch.aten.bmm"}), lambda v: _broadcast_chain(v) is not None)
        return rewrite_sites(module, sites, _fold, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class FoldBroadcastBmmPass(ModulePass):
    name: ClassVar[str] = "effc-fold-broadcast-bmm"
    description: ClassVar[str] = (
        "Fold a batch matmul whose second operand repeats its batch entries (LLaMA's repeat_kv, where the import "
        "cannot fold it) onto the distinct entries, with the first operand's rows stacked, so the repeats are "
        "never copied."
    )

    def apply(self, module: ir.Operation) -> None:
        fold_module(module)
