"""`effc-split-bf16`: f32 matmuls as sums of bf16 products, torch's "high" matmul precision on bf16 tensor cores.

IREE 3.13 has no TF32 path for sm_80 and runs f32 matmuls on CUDA cores without shared memory, 6x behind cuBLAS
(bench/perf/NOTES.md); its bf16 matmuls take the tensor-core path. torch's "high" precision allows "each float32
number as the sum of two bfloat16 numbers": x = x0 + x1, and

    a·b ~ a0·b0 + a0·b1 + a1·b0           (pieces=2: 3 products, about 16 significant bits; a1·b1 is below them)

With pieces=3 the six products with i + j <= 2 keep about 24 bits, f32's own, at twice the work. The products are
one matmul over a K that many times longer: `a`'s pieces concatenated along K, `b`'s matching pieces along K, bf16
inputs and an f32 result (`aten.mm` typed so; torch-mlir lowers it to `linalg.matmul` of bf16 into f32). So the sums
share one f32 accumulator and there is one dispatch, not three. Constant weights are split here, in numpy, and stored
in bf16; activations are split at run time, once per value.

Each piece but the last is the top 16 bits of what is left, taken with a mask (`aten.view.dtype`, `bitwise_and`), so
it is exact in bf16; the last is what is left, rounded by the cast. A cast there and back (`extf(truncf(x))`) would
round the same way, but IREE folds it into x inside a dispatch, which silently drops every later piece.

Matmuls left (not f32, dynamic shapes, vectors) are counted by reason in the module attribute `effc.split_bf16`.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import Builder, TensorType, is_none, tensor_type
from effc.passes.matmul_weights import (
    BMM,
    LINEAR,
    MATMULS,
    cast_to,
    constant_weight,
    resource_literal,
    rows_key,
    static_f32_types,
)
from effc.passes.narrow_weights import bf16_bits
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.split_bf16"
# torch's ScalarType codes, as `aten.to.dtype` takes them.
_I32, _F32, _BF16 = 3, 6, 15
# An f32's sign, exponent and top 7 mantissa bits: the bf16 value it starts with.
_TOP_BITS = 0xFFFF0000
CONTRACTIONS = MATMULS | {BMM}


def products(pieces: int) -> list[tuple[int, int]]:
    """The products (piece of a, piece of b) kept: piece i is about 2^-8i of its operand, so a_i·b_j is about
    2^-8(i+j) of a·b, and those with i + j >= `pieces` fall below what the pieces keep."""
    return [(i, total - i) for total in range(pieces) for i in range(total + 1)]


def split_array(array: np.ndarray, pieces: int) -> list[np.ndarray]:
    """`array` (f32) as `pieces` bf16 arrays (their uint16 bits) whose sum approximates it, largest first: each but
    the last is the top 8 significant bits of what is left (exact in bf16), the last what is left rounded to bf16."""
    rest, split = np.asarray(array, dtype=np.float32), []
    for _ in range(pieces - 1):
        top = rest.view(np.uint32) & np.uint32(_TOP_BITS)
        split.append((top >> 16).astype(np.uint16))
        rest = rest - top.view(np.float32)
    split.append(bf16_bits(rest))
    return split


def _top_bits(b: Builder, x: ir.Value) -> ir.Value:
    """f32 `x` with all but its top 16 bits cleared: a value bf16 holds exactly."""
    xt = tensor_type(x)
    assert xt is not None
    bits = b.op("torch.aten.view.dtype", [x, b.int(_I32)], [TensorType(xt.shape, "si32").ir_type()]).result
    top = b.op("torch.aten.bitwise_and.Scalar", [bits, b.int(_TOP_BITS - 2**32)], [bits.type]).result
    return b.op("torch.aten.view.dtype", [top, b.int(_F32)], [x.type]).result


class _Splitter:
    """Rewrites contractions one at a time; an activation several of them read (Q, K and V's input, through views
    of their own) is split once."""

    def __init__(self, pieces: int) -> None:
        self.pieces = pieces
        self.terms = products(pieces)
        self.stacked: dict[tuple[ir.Value, tuple[int, ...], int, int], ir.Value] = {}

    def rewrite(self, op: ir.Operation) -> None:
        xt, wt, _ = static_f32_types([op.operands[0], op.operands[1], op.results[0]])
        if len(xt.shape) < 2 or len(wt.shape) < 2:
            raise Skip("not a matrix product")
        try:
            weight = constant_weight(op)
        except Skip:
            weight = None
        y = self._by_constant(op, weight) if weight is not None else self._by_activation(op)
        op.results[0].replace_all_uses_with(y)

    def _by_constant(self, op: ir.Operation, weight: np.ndarray) -> ir.Value:
        """x · W with W's pieces stacked along K here, as one bf16 literal [terms·K, N], and x's stacked to match."""
        out = tensor_type(op.results[0])
        assert out is not None
        pieces = split_array(weight, self.pieces)
        stacked = np.concatenate([pieces[j] for _, j in self.terms], axis=0)
        b = Builder(op)
        w = resource_literal(b, stacked, "bf16", "effc_split_weight")
        root, (rows, cols) = rows_key(op.operands[0])
        x = self._stacked(b, root, (rows, cols), side=0, axis=1)
        flat = TensorType((rows, out.shape[-1]), "f32")
        y = b.op("torch.aten.mm", [x, w], [flat.ir_type()]).result
        if flat.shape != out.shape:
            y = b.view(y, out.shape)
        if op.name == LINEAR and not is_none(op.operands[2]):
            y = b.op("torch.aten.add.Tensor", [y, op.operands[2], b.int(1)], [out.ir_type()]).result
        return y

    def _by_activation(self, op: ir.Operation) -> ir.Value:
        """a · b with both split at run time: the op itself on the stacked pieces (K is a's last axis; b's second
        to last, or its last for `linear`, whose weight is [N, K])."""
        a, b_value = op.operands[0], op.operands[1]
        at, bt = tensor_type(a), tensor_type(b_value)
        assert at is not None and bt is not None
        b = Builder(op)
        stacked_a = self._stacked(b, a, at.shape, side=0, axis=len(at.shape) - 1)
        b_axis = len(bt.shape) - (1 if op.name == LINEAR else 2)
        stacked_b = self._stacked(b, b_value, bt.shape, side=1, axis=b_axis)
        return b.op(op.name, [stacked_a, stacked_b, *op.operands[2:]], [op.results[0].type]).result

    def _stacked(self, b: Builder, x: ir.Value, shape: tuple[int, ...], side: int, axis: int) -> ir.Value:
        """`x` viewed as `shape`, split into pieces, and the pieces of side `side` (0: a, 1: b) of every product
        concatenated along `axis`."""
        key = (x, tuple(shape), side, axis)
        if key not in self.stacked:
            rest = x if tensor_type(x) == TensorType(tuple(shape), "f32") else b.view(x, shape)
            pieces = []
            for _ in range(self.pieces - 1):
                top = _top_bits(b, rest)
                pieces.append(cast_to(b, top, _BF16, "bf16"))
                rest = b.op("torch.aten.sub.Tensor", [rest, top, b.int(1)], [rest.type]).result
            pieces.append(cast_to(b, rest, _BF16, "bf16"))
            self.stacked[key] = b.cat([pieces[term[side]] for term in self.terms], axis)
        return self.stacked[key]


def split_module(module: ir.Operation, pieces: int = 2) -> str:
    """Split every f32 matmul of `module` into bf16 pieces (`pieces` per operand); the report."""
    with module.context:
        sites = [
            op.operation
            for _, _, block in functions(module)
            for op in block.operations
            if op.operation.name in CONTRACTIONS
        ]
        splitter = _Splitter(pieces)
        what = f"f32 matmuls as {len(splitter.terms)} bf16 products"
        return rewrite_sites(module, sites, splitter.rewrite, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class SplitBf16Pass(ModulePass):
    name: ClassVar[str] = "effc-split-bf16"
    description: ClassVar[str] = (
        "Compute f32 matmuls as sums of bf16 products (torch's 'high' precision), for bf16 tensor cores: the "
        "operands' bf16 pieces stacked along K, one matmul with an f32 result."
    )

    pieces: int = dataclasses.field(
        default=2, metadata={"help": "bf16 pieces per operand: 2 (3 products, ~16 bits) or 3 (6 products, ~24 bits)"}
    )

    def apply(self, module: ir.Operation) -> None:
        if self.pieces not in (2, 3):
            raise EffcError(f"effc-split-bf16: pieces must be 2 or 3 (got {self.pieces})")
        split_module(module, self.pieces)
