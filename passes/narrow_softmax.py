"""`effc-narrow-softmax`: keep a narrow-type model's attention scores and softmax in its own type.

torch's math decomposition of `scaled_dot_product_attention` (what a decomposed attention imports as)
upcasts an f16 or bf16 attention to f32: `to.dtype(f32)` on q, k and v, then q·kᵀ, the mask, the softmax and
p·v in f32, then a cast of the output back. A decode step thereby converts its whole K and V caches to f32
at every step. This pass removes the upcast: every tensor from the upcasts to the final cast takes the model's
type, and the casts go.

What changes numerically: the scores, the softmax (its exponentials and row sums) and p·v are rounded to the
narrow type, as in a model that computes its softmax in f16 itself. Use it where the model's accuracy check
allows that (`effc compile --check`, or bench/perf's GPU run, which checks the f16 attention block against torch
with real weights). On an H100 (bench/perf/NOTES.md) it took the decomposed f16 block from 17.7 to 0.56 ms
(relative error 5.2e-4 against 3.9e-4), and made the SmolLM2 decode step 5% slower. On llvm-cpu IREE 3.13
cannot link the narrowed f16 row max ("undefined symbol: fmaxf"): the pass is for cuda.

A site is each cast from f32 to a narrow type whose input is computed, through the ops in `_RETYPED`, only from
upcasts of that same type, narrow tensors, splat f32 literals and constants, and whose f32 values are used
nowhere else. Sites left as they are, counted by reason in the module attribute `effc.narrow_softmax`: another
op in the region, an op that names its result type (a softmax or sum with `dtype=torch.float32`), an f32 input
from outside it (a function argument, another upcast type), an f32 value used outside it, a non-splat f32
literal.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import Builder, TensorType, constant_bool, is_none, producer, tensor_type
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.narrow_softmax"
_NARROW = ("f16", "bf16")
# The ops of torch's decomposed attention, all of which mean the same at any float type.
_RETYPED = frozenset(
    {
        "torch.aten.view",
        "torch.aten.reshape",
        "torch.aten._unsafe_view",
        "torch.aten.permute",
        "torch.aten.transpose.int",
        "torch.aten.unsqueeze",
        "torch.aten.expand",
        "torch.aten.broadcast_to",
        "torch.aten.clone",
        "torch.aten.contiguous",
        "torch.aten.mul.Scalar",
        "torch.aten.mul.Tensor",
        "torch.aten.div.Scalar",
        "torch.aten.add.Tensor",
        "torch.aten.sub.Tensor",
        "torch.aten.div.Tensor",
        "torch.aten.exp",
        "torch.aten.max.dim",
        "torch.aten.amax",
        "torch.aten.sum.dim_IntList",
        "torch.aten.where.self",
        "torch.aten.eq.Scalar",
        "torch.aten.all.dim",
        "torch.aten.bmm",
        "torch.aten.matmul",
        "torch.aten._softmax",
        "torch.aten.softmax.int",
    }
)


_SOFTMAX = frozenset({"torch.aten.exp", "torch.aten._softmax", "torch.aten.softmax.int"})


def _cast(op: ir.Operation) -> tuple[str, str] | None:
    """(from, to) dtypes of a `to.dtype` op, or None."""
    if op.name != "torch.aten.to.dtype":
        return None
    source, result = tensor_type(op.operands[0]), tensor_type(op.results[0])
    return (source.dtype, result.dtype) if source is not None and result is not None else None


def _is_f32(value: ir.Value) -> bool:
    return (t := tensor_type(value)) is not None and t.dtype == "f32"


def _is_sink(op: ir.Operation) -> bool:
    cast = _cast(op)
    return cast is not None and cast[0] == "f32" and cast[1] in _NARROW and _is_attention(op)


@dataclasses.dataclass
class _Region:
    """The f32 computation behind one sink, and what feeds it."""

    narrow: str
    ops: list[ir.Operation] = dataclasses.field(default_factory=list)
    upcasts: list[ir.Operation] = dataclasses.field(default_factory=list)
    literals: list[ir.Operation] = dataclasses.field(default_factory=list)


def _f32_cone(sink: ir.Operation) -> list[ir.Operation]:
    """The ops behind `sink` through f32 and i1 values, up to (and with) the casts into f32."""
    cone: list[ir.Operation] = []
    pending, seen = [sink.operands[0]], set()
    while pending:
        op = producer(pending.pop())
        if op is None or op in seen:
            continue
        seen.add(op)
        cone.append(op)
        if op.name != "torch.aten.to.dtype":
            pending += [v for v in op.operands if (t := tensor_type(v)) is not None and t.dtype in ("f32", "i1")]
    return cone


def _names_no_dtype(op: ir.Operation) -> bool:
    """Ops that can name their result type (sum's and softmax's `dtype`, _softmax's half_to_float) don't here."""
    if op.name == "torch.aten.sum.dim_IntList":
        return is_none(op.operands[3])
    if op.name == "torch.aten.softmax.int":
        return is_none(op.operands[2])
    if op.name == "torch.aten._softmax":
        return constant_bool(op.operands[2]) is False
    return True


def _is_attention(sink: ir.Operation) -> bool:
    """Does a softmax feed `sink` (and not only, say, an RMSNorm computed in f32)?"""
    return any(op.name in _SOFTMAX for op in _f32_cone(sink))


def _region(sink: ir.Operation) -> _Region:
    """The f32 computation behind `sink` (raises `Skip` where it is not closed)."""
    region = _Region(str(tensor_type(sink.results[0]).dtype))  # type: ignore[union-attr]
    for op in _f32_cone(sink):
        if _cast(op) == (region.narrow, "f32"):
            region.upcasts.append(op)
        elif op.name == "torch.vtensor.literal":
            if not ir.DenseElementsAttr(op.attributes["value"]).is_splat:
                raise Skip("f32 literal that is not a splat")
            region.literals.append(op)
        elif op.name in _RETYPED:
            if not _names_no_dtype(op):
                raise Skip(f"{op.name} with an explicit result type")
            region.ops.append(op)
            if any(producer(v) is None and _is_f32(v) for v in op.operands):
                raise Skip("f32 input from outside the attention")
        else:
            raise Skip(f"{op.name} in the attention")
    inside = {*region.ops, sink}
    for op in region.ops:
        for result in op.results:
            if _is_f32(result) and any(use.owner not in inside for use in result.uses):
                raise Skip("f32 value used outside the attention")
    return region


def _narrow(sink: ir.Operation) -> None:
    region = _region(sink)
    inside = {*region.ops, sink}
    for upcast in region.upcasts:  # the region reads the narrow value itself; other users keep the upcast
        for use in list(upcast.results[0].uses):
            if use.owner in inside:
                use.owner.operands[use.operand_number] = upcast.operands[0]
    element = {"f16": ir.F16Type.get(), "bf16": ir.BF16Type.get()}[region.narrow]
    for literal in region.literals:
        splat = ir.FloatAttr(ir.DenseElementsAttr(literal.attributes["value"]).get_splat_value()).value
        narrow = TensorType(tensor_type(literal.results[0]).shape, region.narrow)  # type: ignore[union-attr]
        attr = ir.DenseElementsAttr.get_splat(
            ir.RankedTensorType.get(list(narrow.shape), element), ir.FloatAttr.get(element, splat)
        )
        narrow_literal = Builder(literal).op("torch.vtensor.literal", [], [narrow.ir_type()], {"value": attr}).result
        for use in list(literal.results[0].uses):
            if use.owner in inside:
                use.owner.operands[use.operand_number] = narrow_literal
    for op in region.ops:
        for result in op.results:
            if _is_f32(result):
                result.set_type(TensorType(tensor_type(result).shape, region.narrow).ir_type())  # type: ignore[union-attr]
    sink.results[0].replace_all_uses_with(sink.operands[0])


def narrow_module(module: ir.Operation) -> str:
    """Narrow every upcast attention of `module` (a builtin.module op); returns the report."""
    with module.context, module.location:
        sinks = [op.operation for _, _, block in functions(module) for op in block.operations if _is_sink(op)]
        return rewrite_sites(module, sinks, _narrow, attribute=REPORT_ATTRIBUTE, what="f32 regions narrowed")


@dataclasses.dataclass(frozen=True)
class NarrowSoftmaxPass(ModulePass):
    name: ClassVar[str] = "effc-narrow-softmax"
    description: ClassVar[str] = (
        "Keep an f16/bf16 model's decomposed attention (scores, softmax, p·v) in its own type instead of torch's "
        "upcast to f32: no f32 copies of q, k, v or the KV cache. Rounds the softmax to the narrow type."
    )

    def apply(self, module: ir.Operation) -> None:
        narrow_module(module)
