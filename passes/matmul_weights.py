"""Matmuls by constant weights, as the passes that rewrite them find and read them.

effc-quantize-dynamic (int8), effc-narrow-weights (bf16 storage) and effc-split-bf16 (bf16 pieces) each rewrite a
matmul whose right operand is a weight: a `torch.vtensor.literal`, possibly transposed (torch-mlir imports nn.Linear
that way), or broadcast over a bmm's batch. This module finds those matmuls, reads the literal's values (also from
`dense_resource` blobs) and writes new literals and casts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from torch_mlir import ir

from effc.compiler.parameters import resource_blobs
from effc.passes.chai import functions
from effc.passes.chai_narrow import (
    BROADCAST_OPS,
    TRANSPOSE_OPS,
    VIEW_OPS,
    Builder,
    TensorType,
    constant_int,
    constant_int_list,
    producer,
    tensor_type,
)
from effc.passes.site_rewrites import Skip

LINEAR = "torch.aten.linear"
# `mm` and `matmul` take the weight as [K, N] (on the right), `linear` as nn.Linear stores it, [N, K].
MATMULS = frozenset({"torch.aten.mm", "torch.aten.matmul", LINEAR})
# A 3-D by 2-D `matmul` whose input is not contiguous (attention's output after its heads are transposed back) imports
# as `bmm` by the weight broadcast over the batch: the same matmul by one matrix.
BMM = "torch.aten.bmm"


def _batch_shared(value: ir.Value) -> ir.Value | None:
    """The matrix that `value`, a bmm's [B, K, N] operand, repeats for every batch (through views that keep its
    shape), or None where its batches may differ."""
    op = producer(value)
    while op is not None and op.name in VIEW_OPS and tensor_type(op.operands[0]) == tensor_type(op.results[0]):
        op = producer(op.operands[0])
    if op is None or op.name not in BROADCAST_OPS:
        return None
    source, batched = tensor_type(op.operands[0]), tensor_type(value)
    repeated = source is not None and batched is not None and source.shape == batched.shape[1:]
    return op.operands[0] if repeated else None


def weight_operand(op: ir.Operation) -> ir.Value:
    """The operand of matmul `op` that could be a constant weight: its second, or the matrix a bmm's second repeats."""
    return (_batch_shared(op.operands[1]) if op.name == BMM else None) or op.operands[1]


def constant_source(value: ir.Value) -> tuple[ir.Operation, bool] | None:
    """The literal behind `value` and whether `value` is its transpose: a literal, or a literal transposed (how
    torch-mlir imports `nn.Linear`'s weight); None for anything else."""
    op, transposed = producer(value), False
    while op is not None and op.name in TRANSPOSE_OPS:
        if op.name == "torch.aten.permute" and constant_int_list(op.operands[1]) not in ([1, 0], [-1, -2]):
            return None
        if op.name == "torch.aten.transpose.int":
            first, second = (constant_int(v) for v in op.operands[1:3])
            if first is None or second is None:
                return None
            transposed ^= first % 2 != second % 2
        else:
            transposed = not transposed
        op = producer(op.operands[0])
    return (op, transposed) if op is not None and op.name == "torch.vtensor.literal" else None


def literal_array(literal: ir.Operation, dtype: type[np.generic] = np.float32) -> np.ndarray | None:
    """The values of an f32 literal (or of an int8 one, with `dtype=np.int8`). MLIR's Python bindings cannot read a
    `dense_resource` blob, so a module holding only a copy of the literal is printed, and the blob read from its text:
    one weight's text at a time, where printing the whole module held SmolLM2's 1 GB of text and 0.5 GB of blobs at
    once."""
    attr = literal.attributes["value"]
    shape = ir.ShapedType(attr.type).shape
    dense_type = ir.DenseIntElementsAttr if np.issubdtype(dtype, np.integer) else ir.DenseFPElementsAttr
    try:
        dense = dense_type(attr)
    except ValueError:  # a dense_resource blob
        dense = None
    if dense is not None:
        return np.array(dense, dtype=dtype).reshape(shape)
    scratch = ir.Module.create(loc=literal.location)
    literal.clone(ip=ir.InsertionPoint(scratch.body))
    blobs = list(resource_blobs(scratch.operation.get_asm()).values())  # this literal's blob alone, if it has one
    return np.frombuffer(blobs[0], dtype=dtype).reshape(shape) if len(blobs) == 1 else None


_ELEMENT_TYPES: dict[str, Callable[[], ir.Type]] = {
    "si8": lambda: ir.IntegerType.get_signed(8),
    "f32": ir.F32Type.get,
    "f16": ir.F16Type.get,
    "bf16": ir.BF16Type.get,  # `array` holds the bits, as uint16
}


def resource_literal(b: Builder, array: np.ndarray, dtype: str, name: str) -> ir.Value:
    """A `torch.vtensor.literal` of `array`'s bytes as a tensor of `dtype` (si8, f32, f16 or bf16)."""
    element = _ELEMENT_TYPES[dtype]()
    data = np.ascontiguousarray(array)
    builtin = ir.RankedTensorType.get(list(data.shape), element, loc=b.loc)
    attr = ir.DenseResourceElementsAttr.get_from_buffer(data, name, builtin)
    return b.op("torch.vtensor.literal", [], [TensorType(data.shape, dtype).ir_type()], {"value": attr}).result


_NUMPY_FLOATS: dict[str, type[np.generic]] = {"f32": np.float32, "f16": np.float16}


def fold_constant_selections(module: ir.Operation) -> int:
    """Each `index_select` of an f32 or f16 literal by a literal index becomes a literal of the selected rows; how
    many. effc-chai narrows projections this way: after the fold the passes that read weights (effc-narrow-weights,
    effc-quantize-dynamic, effc-vnni-matmul) see a constant, and the rows left out leave the module."""
    folded = 0
    for _, _, block in functions(module):
        for op in list(block.operations):
            if op.operation.name != "torch.aten.index_select":
                continue
            source, index, axis = producer(op.operands[0]), producer(op.operands[2]), constant_int(op.operands[1])
            source_type = tensor_type(op.operands[0])
            if source is None or index is None or axis is None or source_type is None:
                continue
            if source.name != "torch.vtensor.literal" or index.name != "torch.vtensor.literal":
                continue
            dtype = _NUMPY_FLOATS.get(source_type.dtype)
            data = literal_array(source, dtype) if dtype is not None else None
            rows = literal_array(index, np.int64)
            if data is None or rows is None:
                continue
            b = Builder(op.operation)
            selected = resource_literal(b, np.take(data, rows, axis=axis), source_type.dtype, "effc_selected_weight")
            op.results[0].replace_all_uses_with(selected)
            folded += 1
    return folded


def rows_key(x: ir.Value) -> tuple[ir.Value, tuple[int, int]]:
    """What makes two matmul inputs the same rows: the value behind their views, and the [rows, cols] they flatten
    to. Q, K and V (or gate and up) read one input through views of their own."""
    xt = tensor_type(x)
    assert xt is not None
    view = producer(x)
    root = view.operands[0] if view is not None and view.name in VIEW_OPS else x
    return root, (math.prod(xt.shape[:-1]), xt.shape[-1])


def cast_to(b: Builder, x: ir.Value, code: int, dtype: str) -> ir.Value:
    xt = tensor_type(x)
    assert xt is not None
    out = TensorType(xt.shape, dtype).ir_type()
    operands = [x, b.int(code), b.bool(False), b.bool(False), b.none()]
    return b.op("torch.aten.to.dtype", operands, [out]).result


def static_f32_types(values: Sequence[ir.Value]) -> list[TensorType]:
    """The tensor types of `values`; raises `Skip` unless all are f32 of static shape."""
    types = [tensor_type(v) for v in values]
    if any(t is None or t.dtype != "f32" for t in types):
        raise Skip("not f32")
    static = [t for t in types if t is not None and t.static]
    if len(static) != len(types):
        raise Skip("dynamic shape")
    return static


def constant_weight(op: ir.Operation) -> np.ndarray:
    """`op`'s constant weight as a [K, N] f32 array (raises `Skip` where the op is not one the pass rewrites)."""
    x, weight = op.operands[0], weight_operand(op)
    source = constant_source(weight)
    if source is None:
        raise Skip("weight not a constant")
    xt, wt, _ = static_f32_types([x, weight, op.results[0]])
    if len(wt.shape) != 2 or not xt.shape:
        raise Skip("weight not a matrix")
    literal, transposed = source
    data = literal_array(literal)
    if data is None:
        raise Skip("weight data not in the module")
    as_used = data.T if transposed else data
    return as_used.T if op.name == LINEAR else as_used


def weight_matmuls(module: ir.Operation) -> list[ir.Operation]:
    """Every matmul that may be by a weight (`MATMULS`, and bmm by a matrix repeated over the batch), in order."""
    return [
        op.operation
        for _, _, block in functions(module)
        for op in block.operations
        if op.operation.name in MATMULS or (op.operation.name == BMM and _batch_shared(op.operands[1]) is not None)
    ]


def _is_constant(value: ir.Value) -> bool:
    """Whether `value` is a literal, possibly transposed, or one widened from a narrow literal (effc-narrow-weights)."""
    op = producer(value)
    while op is not None and op.name in TRANSPOSE_OPS:
        op = producer(op.operands[0])
    if op is not None and op.name == "torch.aten.to.dtype":
        op = producer(op.operands[0])
    return op is not None and op.name == "torch.vtensor.literal"


def weight_matmul_rows(module: ir.Operation) -> list[int]:
    """The rows (tokens) of each static matmul by a constant weight in `module`: all 1 in a decode step."""
    rows = []
    with module.context:
        for op in weight_matmuls(module):
            xt = tensor_type(op.operands[0])
            if _is_constant(weight_operand(op)) and xt is not None and xt.static and xt.shape:
                rows.append(math.prod(xt.shape[:-1]))
    return rows
