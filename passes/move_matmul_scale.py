"""`effc-move-matmul-scale`: a constant scale on one matmul operand moves to the other where that one is smaller.

torch decomposes `scaled_dot_product_attention` as (q·sqrt(s))·(k·sqrt(s))ᵀ, scaling both operands so that
half-precision products do not overflow. In a decode step, k is the whole KV cache and q one row: IREE makes
the cache's scaling an elementwise dispatch of its own that reads and writes every key, every layer. In
SmolLM2's f32 decode step at 2048 context on the 2-core CPU that was `elementwise_393408_f32`, 5.6 of 56 ms
(bench/perf/NOTES.md). (a·c)·b = a·(c·b) exactly in real arithmetic, and the ops between the scale and the
matmul (views, permutes, broadcasts) only move elements, so the scale can go on the other operand: q·s
instead of k·sqrt(s) and q·sqrt(s). The product differs by floating-point rounding only, and no product
grows beyond what the scaled q makes it, so half precision overflows no sooner than before.

Only a scale whose every step to the matmul has that one use moves (the scaled tensor read elsewhere would
still need it). Left as they are, counted in the module attribute `effc.move_matmul_scale`: scales whose other
operand is not smaller (prefill attention, where q and k are the same size), operands not of one float type, and
dynamic shapes.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai_narrow import (
    ELEMENT_MOVES,
    FLOAT_DTYPES,
    Builder,
    constant_number,
    producer,
    single_use,
    tensor_type,
)
from effc.passes.site_rewrites import Skip, operand_sites, rewrite_sites

REPORT_ATTRIBUTE = "effc.move_matmul_scale"
_MATMULS = frozenset({"torch.aten.bmm", "torch.aten.matmul", "torch.aten.mm"})
_SCALE = "torch.aten.mul.Scalar"


def _scale_of(value: ir.Value) -> ir.Operation | None:
    """The constant scale `value` is made of through element moves that nothing else reads, or None."""
    op = producer(value)
    while op is not None and op.name in ELEMENT_MOVES and single_use(op.results[0]):
        op = producer(op.operands[0])
    if op is None or op.name != _SCALE or not single_use(op.results[0]):
        return None
    return op if constant_number(op.operands[1]) is not None else None


def _move(site: tuple[ir.Operation, int]) -> None:
    """Drop the scale on operand `index` of the matmul and scale its other operand by the same constant."""
    matmul, index = site
    scale = _scale_of(matmul.operands[index])
    assert scale is not None, "a site without its scale"  # single uses: no other move can have taken it
    scaled, other = (tensor_type(v) for v in (matmul.operands[index], matmul.operands[1 - index]))
    if scaled is None or other is None or scaled.dtype not in FLOAT_DTYPES or other.dtype != scaled.dtype:
        raise Skip("operands not of one float type")
    if any(d < 0 for d in (*scaled.shape, *other.shape)):
        raise Skip("dynamic shape")
    if math.prod(other.shape) >= math.prod(scaled.shape):
        raise Skip("the other operand is not smaller")
    b = Builder(matmul)
    moved = b.op(_SCALE, [matmul.operands[1 - index], scale.operands[1]], [matmul.operands[1 - index].type])
    matmul.operands[1 - index] = moved.result
    scale.results[0].replace_all_uses_with(scale.operands[0])


def move_module(module: ir.Operation) -> str:
    """Move every constant operand scale of `module`'s matmuls that can go to a smaller operand; the report."""
    with module.context:
        what = "matmul operand scales moved to the smaller operand"
        sites = operand_sites(module, _MATMULS, lambda operand: _scale_of(operand) is not None)
        return rewrite_sites(module, sites, _move, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class MoveMatmulScalePass(ModulePass):
    name: ClassVar[str] = "effc-move-matmul-scale"
    description: ClassVar[str] = (
        "Move a constant scale on one matmul operand (torch's k·sqrt(scale) in decomposed attention) to the other "
        "operand where that one is smaller: a decode step stops rescaling its whole KV cache every call."
    )

    def apply(self, module: ir.Operation) -> None:
        move_module(module)
