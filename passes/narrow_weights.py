"""`effc-narrow-weights`: constant matmul weights stored in bf16 (or f16) and widened to f32 where they are read.

A decode step reads every weight once per token, so on a CPU it runs at the speed of memory: SmolLM2's f32 step
reads 540 MB of weights. Stored in 16 bits they take half the bytes, and IREE fuses the widening (`arith.extf`)
into the matmul's dispatch, so no f32 copy is written: SmolLM2's decode step 45.9 -> 26.9 ms under `-O` on an AVX2
Zen 3 without bf16 dot products (bench/perf/NOTES.md, seventeenth CPU session). The product and its accumulation stay
f32; only the weight is rounded, which is torch's "medium" matmul precision for one of the two inputs:
`--matmul-precision medium` runs this pass on CPUs that have no bf16 dot products.

Only matmuls of at most `max-rows` rows (default 1, a decode step): a matmul of many rows is bound by arithmetic
rather than by reading its weight, and IREE's data tiling would then pack the widened weight on every call
instead of once, at load. The weight's path to the matmul may transpose, view or broadcast it (nn.Linear imports
as a transposed literal; attention's output projection as a bmm by the weight broadcast over the batch): the
narrow literal is widened where the f32 one was read, and moves go on as before. A literal that something else
reads too (a tied embedding) stays f32 for that reader.

Left as they are, counted by reason in the module attribute `effc.narrow_weights`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar, Literal

import numpy as np
from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass
from effc.passes.chai_narrow import ELEMENT_MOVES, Builder, producer, tensor_type
from effc.passes.matmul_weights import cast_to, literal_array, resource_literal, weight_matmuls
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.narrow_weights"
# torch's ScalarType code of f32, as `aten.to.dtype` takes it.
_F32 = 6
_F16_MAX = float(np.finfo(np.float16).max)


def bf16_bits(array: np.ndarray) -> np.ndarray:
    """f32 `array` rounded to bf16 (to nearest, ties to even), as the uint16 bits of each value; NaN stays NaN
    (rounding its payload up would make it infinite)."""
    values = np.ascontiguousarray(array, dtype=np.float32)
    bits = values.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    return np.where(np.isnan(values), np.uint16(0x7FC0), rounded)


def _weight_path(op: ir.Operation) -> tuple[ir.Operation, list[ir.Operation]]:
    """The literal behind matmul `op`'s weight, and the ops from the matmul back to it that read its value."""
    readers, value = [op], op.operands[1]
    while True:
        source = producer(value)
        if source is None:
            raise Skip("weight not a constant")
        if source.name == "torch.vtensor.literal":
            return source, readers
        if source.name not in ELEMENT_MOVES:  # widening before a move = widening after
            raise Skip("weight not a constant")
        readers.append(source)
        value = source.operands[0]


class _Narrower:
    """Rewrites matmuls one at a time; a literal several matmuls read is narrowed once."""

    def __init__(self, dtype: str, max_rows: int) -> None:
        self.dtype, self.max_rows = dtype, max_rows
        self.widened: dict[ir.Operation, ir.Value] = {}

    def narrow(self, op: ir.Operation) -> None:
        xt, out = tensor_type(op.operands[0]), tensor_type(op.results[0])
        if xt is None or out is None or not xt.static or not xt.shape:
            raise Skip("dynamic shape")
        if xt.dtype != "f32" or out.dtype != "f32":
            raise Skip("not f32")
        if math.prod(xt.shape[:-1]) > self.max_rows:
            raise Skip(f"more than {self.max_rows} row{'s' * (self.max_rows != 1)}")
        literal, readers = _weight_path(op)
        lt = tensor_type(literal.results[0])
        if lt is None or lt.dtype != "f32":
            raise Skip("not f32")
        f32 = literal.results[0]
        if literal not in self.widened:
            self.widened[literal] = self._widened(literal)
        for reader in readers:
            for index, operand in enumerate(reader.operands):
                if operand == f32:
                    reader.operands[index] = self.widened[literal]

    def _widened(self, literal: ir.Operation) -> ir.Value:
        """The literal's values in the narrow type, widened back to f32, built just before the f32 literal (so
        they dominate everything that read it)."""
        data = literal_array(literal)
        if data is None:
            raise Skip("weight data not in the module")
        if self.dtype == "f16":
            if np.abs(data).max(initial=0.0) > _F16_MAX:
                raise Skip("beyond f16's range")
            narrow = data.astype(np.float16)
        else:
            narrow = bf16_bits(data)
        b = Builder(literal)
        stored = resource_literal(b, narrow, self.dtype, f"effc_{self.dtype}_weight")
        return cast_to(b, stored, _F32, "f32")


def narrow_module(module: ir.Operation, dtype: str = "bf16", max_rows: int = 1) -> str:
    """Store the constant weights of `module`'s f32 matmuls of at most `max_rows` rows in `dtype`; the report."""
    with module.context:
        narrower = _Narrower(dtype, max_rows)
        what = f"matmul weights stored in {dtype}"
        return rewrite_sites(module, weight_matmuls(module), narrower.narrow, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class NarrowWeightsPass(ModulePass):
    name: ClassVar[str] = "effc-narrow-weights"
    description: ClassVar[str] = (
        "Store the constant weights of one-row f32 matmuls (a decode step's) in bf16 or f16 and widen them to f32 "
        "inside the matmul: half the bytes read per token, f32 products and sums."
    )

    type: Literal["bf16", "f16"] = dataclasses.field(
        default="bf16", metadata={"help": "the stored type (bf16: torch's 'medium'; f16: 3 more mantissa bits)"}
    )
    max_rows: int = dataclasses.field(
        default=1, metadata={"help": "narrow only matmuls of at most this many rows (tokens)"}
    )

    def apply(self, module: ir.Operation) -> None:
        if self.max_rows < 1:
            raise EffcError(f"effc-narrow-weights: max-rows must be at least 1 (got {self.max_rows})")
        narrow_module(module, self.type, self.max_rows)
