"""`effc-split-concat-matmul`: a matmul of a concatenation becomes matmuls of its parts.

A decode step written as torch writes it (HF's KV cache) attends over `cat([cache, new row])`: the keys and values
of every layer are copied into a new tensor one row longer before the two attention matmuls read them. IREE
materializes that concatenation as a copy of the whole cache, every layer, every step: in SmolLM2's decode step at
2048 context on the 2-core CPU that copy (`slow_memcpy`) was 3.3 of 12.6 ms (int8; bench/perf/NOTES.md). A matmul
distributes over the concatenation of an operand, so the copy is not needed:

    A · cat(B1, B2) along B's columns  =  cat(A · B1, A · B2)          (the scores: small)
    A · cat(B1, B2) along B's rows     =  A[:, :k1] · B1 + A[:, k1:] · B2   (the weighted values)

and likewise for the first operand. The ops between the concatenation and the matmul (views, permutes, squeezes,
unsqueezes, broadcasts and casts: torch's sdpa decomposition, in f32 for f16 attention, and repeat_kv; constant
padding: `key_multiple`'s padded keys) are applied to each part, with the concatenated axis traced through them;
padding along that axis goes to the first part (before it) and the last (after it). Exact in real arithmetic; the
second form changes the summation order (f32 rounding).

Only a concatenation that the matmul alone reads (each step to it with that one use) is split, and only where the
other operand has few rows (`STREAMED_ROWS`). Left as they are, counted in the module attribute
`effc.split_concat_matmul`: concatenations read elsewhere, along the batch axis, through a view that merges the
concatenated axis with another, matmuls against many rows, and dynamic shapes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import (
    BROADCAST_OPS,
    CAST,
    VIEW_OPS,
    Builder,
    TensorType,
    constant_int,
    constant_int_list,
    producer,
    single_use,
    source_chain,
    tensor_type,
)
from effc.passes.site_rewrites import Skip, operand_sites, rewrite_sites

REPORT_ATTRIBUTE = "effc.split_concat_matmul"
# Matmuls whose operand axes are known from the rank: mm [m, k] x [k, n], bmm [b, m, k] x [b, k, n].
_MATMULS = frozenset({"torch.aten.mm", "torch.aten.bmm"})
# A split pays where each element of the concatenation takes part in few multiply-adds (a decode step's 1-3 query
# rows per KV head): such a matmul streams the concatenation once, and copying it first doubled that traffic. Where
# the other operand has more rows (of the first operand) or columns (of the second) than this, the copy is cheap
# beside the arithmetic, and a split would only cut the matmul into smaller ones (a cat of attention heads before an
# output projection, a prefill's chunks).
STREAMED_ROWS = 16
_PAD = "torch.aten.constant_pad_nd"
_SHAPE_OPS = (
    VIEW_OPS
    | BROADCAST_OPS
    | {"torch.aten.permute", "torch.aten.transpose.int", "torch.aten.unsqueeze", "torch.aten.squeeze.dim", _PAD, CAST}
)


def _concat_chain(value: ir.Value) -> tuple[ir.Operation, list[ir.Operation]] | None:
    """(the concatenation, the shape ops from it to `value` in order) where `value` is one reshaped, else None."""
    return source_chain(value, _SHAPE_OPS, frozenset({"torch.aten.cat"}))


def _normalized(axis: int, rank: int) -> int:
    return axis + rank if axis < 0 else axis


def _traced_axis(op: ir.Operation, axis: int) -> int:
    """Where `axis` of `op`'s input lands in its result (else `Skip`)."""
    source, result = tensor_type(op.operands[0]), tensor_type(op.results[0])
    assert source is not None and result is not None
    if op.name in VIEW_OPS:
        # The axis stays whole where the elements before it and its size are the same on both sides.
        before, running = math.prod(source.shape[:axis]), 1
        for landed, size in enumerate(result.shape):
            if running == before and size == source.shape[axis]:
                return landed
            running *= size
        raise Skip("a view merges the concatenated axis with another")
    if op.name in BROADCAST_OPS:  # new axes lead; the concatenated one keeps its size
        landed = axis + len(result.shape) - len(source.shape)
        if result.shape[landed] != source.shape[axis]:
            raise Skip("a broadcast along the concatenated axis")
        return landed
    if op.name == CAST:
        return axis
    if op.name == _PAD:
        if _pads(op) is None:
            raise Skip("padding that is not constant, or negative")
        return axis
    if op.name == "torch.aten.permute":
        order = constant_int_list(op.operands[1])
        if order is None:
            raise Skip("shape op with operands that are not constants")
        return [_normalized(d, len(source.shape)) for d in order].index(axis)
    dims = [constant_int(operand) for operand in list(op.operands)[1:]]
    if any(d is None for d in dims):
        raise Skip("shape op with operands that are not constants")
    if op.name == "torch.aten.unsqueeze":
        return axis + 1 if _normalized(dims[0] or 0, len(result.shape)) <= axis else axis
    if op.name == "torch.aten.squeeze.dim":
        return axis - 1 if _normalized(dims[0] or 0, len(source.shape)) < axis else axis
    first, second = (_normalized(d or 0, len(source.shape)) for d in dims)  # transpose.int
    return second if axis == first else first if axis == second else axis


def _pads(op: ir.Operation) -> list[list[int]] | None:
    """constant_pad_nd's [before, after] per axis, in axis order (torch lists them last axis first, and may leave the
    leading ones out); None unless constant and not negative."""
    flat, source = constant_int_list(op.operands[1]), tensor_type(op.operands[0])
    if flat is None or source is None or min(flat, default=0) < 0:
        return None
    flat = flat + [0] * (2 * len(source.shape) - len(flat))
    return [flat[i : i + 2] for i in range(0, len(flat), 2)][::-1]


def _rebuilt(b: Builder, op: ir.Operation, part: ir.Value, axis: int, size: int, ends: tuple[bool, bool]) -> ir.Value:
    """`op` applied to one part whose size at `axis` of the result is `size`; `ends`: (first part, last part)."""
    result = tensor_type(op.results[0])
    assert result is not None
    narrowed = result.with_dim(axis, size)
    rest = list(op.operands)[2:]
    if op.name in VIEW_OPS:
        return b.view(part, narrowed.shape)
    if op.name in BROADCAST_OPS:
        return b.op(op.name, [part, b.int_list(narrowed.shape), *rest], [narrowed.ir_type()]).result
    if op.name == _PAD:
        pads = _pads(op)
        assert pads is not None  # checked when the axis was traced
        before, after = pads[axis]
        pads[axis] = [before if ends[0] else 0, after if ends[1] else 0]
        if not any(any(pair) for pair in pads):
            return part
        flat = [amount for pair in reversed(pads) for amount in pair]
        return b.op(op.name, [part, b.int_list(flat), *rest], [narrowed.ir_type()]).result
    return b.op(op.name, [part, *list(op.operands)[1:]], [narrowed.ir_type()]).result


def _padded_size(op: ir.Operation, axis: int, size: int, ends: tuple[bool, bool]) -> int:
    """A part's size at `axis` after `op`: padding along it adds to the first part's start and the last's end."""
    pads = _pads(op) if op.name == _PAD else None
    if pads is None:
        return size
    before, after = pads[axis]
    return size + (before if ends[0] else 0) + (after if ends[1] else 0)


def _split(site: tuple[ir.Operation, int]) -> None:
    """Replace the matmul by matmuls of the concatenated operand's parts (else `Skip`)."""
    matmul, index = site
    found = _concat_chain(matmul.operands[index])
    assert found is not None, "a site without its concatenation"  # read once: no other split can have taken it
    cat, chain = found
    if not all(single_use(op.results[0]) for op in (cat, *chain)):
        raise Skip("concatenation read elsewhere too")
    parts, cat_axis, out = producer(cat.operands[0]), constant_int(cat.operands[1]), tensor_type(matmul.results[0])
    if parts is None or parts.name != "torch.prim.ListConstruct" or cat_axis is None or out is None:
        raise Skip("concatenation of a list that is not built here")
    types = [t for t in (tensor_type(v) for v in parts.operands) if t is not None and t.static]
    if not out.static or len(types) != len(parts.operands):
        raise Skip("dynamic shape")
    axes = [_normalized(cat_axis, len(types[0].shape))]
    for op in chain:
        axes.append(_traced_axis(op, axes[-1]))
    batch = 1 if matmul.name == "torch.aten.bmm" else 0
    if axes[-1] < batch:
        raise Skip("concatenated along the batch axis")
    sizes = [t.shape[axes[0]] for t in types]
    if 0 in sizes:
        raise Skip("concatenation with an empty part")
    other_type = tensor_type(matmul.operands[1 - index])
    assert other_type is not None  # a matmul's operands are tensors of the result's rank
    if other_type.shape[batch if index == 1 else batch + 1] > STREAMED_ROWS:
        raise Skip(f"other operand of more than {STREAMED_ROWS} rows (columns): the copy is cheap beside the matmul")
    splits_k = axes[-1] == (batch + 1 if index == 0 else batch)
    b = Builder(matmul)
    pieces = []
    for position, (part, size) in enumerate(zip(parts.operands, sizes, strict=True)):
        ends = (position == 0, position == len(sizes) - 1)
        for op, axis, landed in zip(chain, axes[:-1], axes[1:], strict=True):
            size = _padded_size(op, axis, size, ends)
            part = _rebuilt(b, op, part, landed, size, ends)
        pieces.append((part, size))
    sizes = [size for _, size in pieces]
    other = matmul.operands[1 - index]

    def product(piece: ir.Value, with_other: ir.Value, result: TensorType) -> ir.Value:
        operands = [piece, with_other] if index == 0 else [with_other, piece]
        return b.op(matmul.name, operands, [result.ir_type()]).result

    if not splits_k:
        # m of the first operand, or n of the second: the same axis of the product, concatenated (small).
        joined = b.cat([product(p, other, out.with_dim(axes[-1], n)) for p, n in pieces], axes[-1])
    else:
        # k: the other operand sliced to match each part, and the products summed.
        other_k = batch if index == 0 else batch + 1
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        products = [
            product(p, b.slice(other, other_k, start, start + n), out)
            for (p, n), start in zip(pieces, starts, strict=True)
        ]
        joined = products[0]
        for term in products[1:]:
            joined = b.op("torch.aten.add.Tensor", [joined, term, b.int(1)], [out.ir_type()]).result
    matmul.results[0].replace_all_uses_with(joined)


def k_sliced_batch_matmuls(module: ir.Operation) -> int:
    """How many bmm's in `module` read their first operand sliced along k (this pass's split of the weighted values
    writes them). IREE 3.13 computes such a bmm wrongly (relative error about 1) for 3, 6 or 7 rows when it demotes
    it to bf16 under `--iree-dispatch-creation-data-tiling` (effc then data-tiles in GlobalOptimization)."""
    count = 0
    with module.context:
        for _, _, block in functions(module):
            for op in block.operations:
                if op.operation.name != "torch.aten.bmm":
                    continue
                sliced = producer(op.operands[0])
                if sliced is None or sliced.name != "torch.aten.slice.Tensor":
                    continue
                source, axis = tensor_type(sliced.operands[0]), constant_int(sliced.operands[1])
                if source is not None and axis is not None and _normalized(axis, len(source.shape)) == 2:
                    count += 1
    return count


def split_module(module: ir.Operation) -> str:
    """Split every matmul of `module` whose operand is a concatenation read by it alone; the report."""
    with module.context:
        what = "matmuls of a concatenation split into matmuls of its parts"
        sites = operand_sites(module, _MATMULS, lambda operand: _concat_chain(operand) is not None)
        return rewrite_sites(module, sites, _split, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class SplitConcatMatmulPass(ModulePass):
    name: ClassVar[str] = "effc-split-concat-matmul"
    description: ClassVar[str] = (
        "Split a matmul whose operand is a concatenation (a decode step's cat([KV cache, new row])) into matmuls "
        "of the parts, so the cache is not copied into a new tensor every layer and step."
    )

    def apply(self, module: ir.Operation) -> None:
        split_module(module)
