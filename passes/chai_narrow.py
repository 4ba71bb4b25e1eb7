"""Narrow the head axis of a torch-dialect value by rewriting the ops that produce it.

CHAI needs "Q (or K, or the softmax probabilities) for these heads only". Inserting an
`index_select` at the attention would keep the full projections alive. Instead `Narrower` walks
backwards from the value through head-preserving ops (views, permutes, RoPE arithmetic, the score
matmul, the softmax, grouped-query `repeat_kv`) and re-emits each with fewer heads, so the selection
lands on the projection weight itself (one `index_select` of a constant, which effc-chai then folds into a
literal of the selected rows: `matmul_weights.fold_constant_selections`) and every op on the way shrinks.
Where no rule applies it stops and selects there; those stops are recorded.

A selection may also be a linear combination of heads (rows summing to one): the training-free
GQA mean-pooling baseline pushes such a map through the linear part of the K path the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from torch_mlir import ir

_VTENSOR = re.compile(r"^!torch\.vtensor<\[([^\]]*)\],([^>]+)>$")
FLOAT_DTYPES = ("f16", "bf16", "f32", "f64")

VIEW_OPS = frozenset({"torch.aten.view", "torch.aten.reshape", "torch.aten._unsafe_view"})
TRANSPOSE_OPS = frozenset({"torch.aten.permute", "torch.aten.transpose.int", "torch.aten.t"})
BROADCAST_OPS = frozenset({"torch.aten.broadcast_to", "torch.aten.expand"})
CAST = "torch.aten.to.dtype"
# Ops that only move a tensor's elements: a constant scale or a cast commutes with each of them.
ELEMENT_MOVES = VIEW_OPS | TRANSPOSE_OPS | BROADCAST_OPS | {"torch.aten.unsqueeze", "torch.aten.squeeze.dim"}
# Elementwise ops (with broadcasting); the second set is affine, so linear head maps may pass.
ELEMENTWISE = frozenset(
    {
        "torch.aten.add.Tensor",
        "torch.aten.sub.Tensor",
        "torch.aten.mul.Tensor",
        "torch.aten.div.Tensor",
        "torch.aten.where.self",
        "torch.aten.maximum",
        "torch.aten.minimum",
        "torch.aten.masked_fill.Scalar",
        "torch.aten.masked_fill.Tensor",
        "torch.aten.eq.Tensor",
        "torch.aten.bitwise_and.Tensor",
        "torch.aten.logical_and",
        "torch.aten.pow.Tensor_Tensor",
    }
)
AFFINE_BINARY = frozenset(
    {"torch.aten.add.Tensor", "torch.aten.sub.Tensor", "torch.aten.mul.Tensor", "torch.aten.div.Tensor"}
)
# Ops with one tensor operand that act independently on every index of a dimension they keep
# (elementwise, reductions with keepdim, softmax, slices of another dimension).
PER_SLICE = frozenset(
    {
        "torch.aten.neg",
        "torch.aten.exp",
        "torch.aten.log",
        "torch.aten.mul.Scalar",
        "torch.aten.div.Scalar",
        "torch.aten.add.Scalar",
        "torch.aten.sub.Scalar",
        "torch.aten.to.dtype",
        "torch.aten.clone",
        "torch.aten.sigmoid",
        "torch.aten.tanh",
        "torch.aten.rsqrt",
        "torch.aten.sqrt",
        "torch.aten.pow.Tensor_Scalar",
        "torch.aten.eq.Scalar",
        "torch.aten.ne.Scalar",
        "torch.aten.gt.Scalar",
        "torch.aten.lt.Scalar",
        "torch.aten.ge.Scalar",
        "torch.aten.le.Scalar",
        "torch.aten.relu",
        "torch.aten.gelu",
        "torch.aten.silu",
        "torch.aten.abs",
        "torch.aten.erf",
        "torch.aten.max.dim",
        "torch.aten.sum.dim_IntList",
        "torch.aten.all.dim",
        "torch.aten.any.dim",
        "torch.aten.amax",
        "torch.aten.mean.dim",
        "torch.aten._softmax",
        "torch.aten.softmax.int",
        "torch.aten._log_softmax",
        "torch.aten.slice.Tensor",
        "torch.aten.logical_not",
    }
)
LINEAR_UNARY = frozenset(
    {
        "torch.aten.neg",
        "torch.aten.mul.Scalar",
        "torch.aten.div.Scalar",
        "torch.aten.add.Scalar",
        "torch.aten.sub.Scalar",
        "torch.aten.to.dtype",
        "torch.aten.clone",
        "torch.aten.slice.Tensor",
    }
)
PURE_PREFIXES = ("torch.aten.", "torch.prim.ListConstruct", "torch.constant.", "torch.vtensor.literal")


# --- types and constants ------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]  # -1 for a dynamic dimension
    dtype: str

    def with_dim(self, axis: int, size: int) -> TensorType:
        return TensorType((*self.shape[:axis], size, *self.shape[axis + 1 :]), self.dtype)

    def ir_type(self) -> ir.Type:
        dims = ",".join("?" if d < 0 else str(d) for d in self.shape)
        return ir.Type.parse(f"!torch.vtensor<[{dims}],{self.dtype}>")

    @property
    def static(self) -> bool:
        return all(d >= 0 for d in self.shape)


def tensor_type(value: ir.Value) -> TensorType | None:
    """The shape and dtype of a `!torch.vtensor` value (None for other types or unknown rank)."""
    match = _VTENSOR.match(str(value.type))
    if match is None:
        return None
    dims = match.group(1)
    shape = tuple(-1 if d == "?" else int(d) for d in dims.split(",")) if dims else ()
    return TensorType(shape, match.group(2))


def producer(value: ir.Value) -> ir.Operation | None:
    """The op defining `value`, or None for a block argument."""
    owner = value.owner
    return None if isinstance(owner, ir.Block) else owner.operation


def source_chain(
    value: ir.Value, through: frozenset[str], sources: frozenset[str]
) -> tuple[ir.Operation, list[ir.Operation]] | None:
    """(the op of `sources` that `value` comes from, the `through` ops from it to `value` in order), else None."""
    chain: list[ir.Operation] = []
    op = producer(value)
    while op is not None and op.name in through:
        chain.insert(0, op)
        op = producer(op.operands[0])
    return (op, chain) if op is not None and op.name in sources else None


def replay_layout(op: ir.Operation, indices: np.ndarray) -> np.ndarray:
    """`op`, an op that only moves elements (a view, permute, transpose, squeeze, unsqueeze, slice, broadcast) or a
    cast, applied to an array of element indices: where each element of its result comes from. Raises ValueError
    where its operands are not constants."""
    result = tensor_type(op.results[0])
    assert result is not None
    if op.name in BROADCAST_OPS:
        return np.broadcast_to(indices, result.shape)
    if op.name == CAST:
        return indices
    if op.name == "torch.aten.slice.Tensor":
        axis, start, end, step = (constant_int(v) for v in list(op.operands)[1:5])
        if axis is None or step is None:
            raise ValueError("slice with operands that are not constants")
        return indices[(slice(None),) * (axis % indices.ndim) + (slice(start, end, step),)]
    if op.name not in TRANSPOSE_OPS:
        return indices.reshape(result.shape)  # views, squeezes and unsqueezes only reshape
    if op.name == "torch.aten.t":
        return indices.T
    axes = constant_int_list(op.operands[1]) if op.name == "torch.aten.permute" else None
    if op.name == "torch.aten.transpose.int":
        first, second = constant_int(op.operands[1]), constant_int(op.operands[2])
        if first is not None and second is not None:
            axes = list(range(indices.ndim))
            axes[first], axes[second] = axes[second], axes[first]
    if axes is None:
        raise ValueError("layout op with operands that are not constants")
    return indices.transpose(axes)


def single_use(value: ir.Value) -> bool:
    """Whether one op alone reads `value` (a rewrite may then drop the op that makes it)."""
    return len(list(value.uses)) == 1


def constant_int(value: ir.Value) -> int | None:
    op = producer(value)
    if op is None or op.name != "torch.constant.int":
        return None
    return ir.IntegerAttr(op.attributes["value"]).value


def constant_number(value: ir.Value) -> float | None:
    op = producer(value)
    if op is None:
        return None
    if op.name == "torch.constant.int":
        return float(ir.IntegerAttr(op.attributes["value"]).value)
    if op.name == "torch.constant.float":
        return ir.FloatAttr(op.attributes["value"]).value
    return None


def constant_bool(value: ir.Value) -> bool | None:
    op = producer(value)
    if op is None or op.name != "torch.constant.bool":
        return None
    return ir.BoolAttr(op.attributes["value"]).value


def constant_int_list(value: ir.Value) -> list[int] | None:
    op = producer(value)
    if op is None or op.name != "torch.prim.ListConstruct":
        return None
    items = [constant_int(v) for v in op.operands]
    return None if any(i is None for i in items) else [int(i) for i in items if i is not None]


def is_none(value: ir.Value) -> bool:
    op = producer(value)
    return op is not None and op.name == "torch.constant.none"


def pad_keeps_axis(op: ir.Operation, axis: int) -> bool:
    """`op` is a constant_pad_nd that pads only dimensions after `axis` (counted from the front): a decode step's
    keys padded along the sequence (importer.pad_cache_keys) keep their heads where they were."""
    if op.name != "torch.aten.constant_pad_nd":
        return False
    pads, result = constant_int_list(op.operands[1]), tensor_type(op.results[0])
    return pads is not None and result is not None and axis < len(result.shape) - len(pads) // 2


def _prod(values: Sequence[int]) -> int:
    return math.prod(values) if values else 1


# --- head maps and layouts ----------------------------------------------------------------------


@dataclass(frozen=True)
class HeadMap:
    """Output head i = sum_j rows[i][j] * input head j. Rows sum to one (selections and means)."""

    rows: tuple[tuple[float, ...], ...]

    @staticmethod
    def select(heads: Sequence[int], total: int) -> HeadMap:
        return HeadMap(tuple(tuple(1.0 if j == h else 0.0 for j in range(total)) for h in heads))

    @staticmethod
    def mean(groups: Sequence[Sequence[int]], total: int) -> HeadMap:
        return HeadMap(tuple(tuple(1.0 / len(g) if j in g else 0.0 for j in range(total)) for g in groups))

    @property
    def size(self) -> int:
        return len(self.rows)

    @property
    def total(self) -> int:
        return len(self.rows[0])

    @property
    def selection(self) -> tuple[int, ...] | None:
        """The selected head per output, when every row is one-hot."""
        picked = []
        for row in self.rows:
            ones = [j for j, w in enumerate(row) if w != 0.0]
            if len(ones) != 1 or row[ones[0]] != 1.0:
                return None
            picked.append(ones[0])
        return tuple(picked)

    def is_identity(self) -> bool:
        return self.selection == tuple(range(self.total))

    def to_groups(self, group: int) -> HeadMap:
        """The same map over KV heads when each KV head is repeated `group` times (repeat_kv)."""
        total = self.total // group
        return HeadMap(
            tuple(tuple(sum(row[j * group + r] for r in range(group)) for j in range(total)) for row in self.rows)
        )


@dataclass(frozen=True)
class Layout:
    """Dimension `axis` has size outer*heads*inner; head h owns a contiguous run of `inner` indices."""

    axis: int
    heads: int
    outer: int = 1
    inner: int = 1

    def size(self, heads: int | None = None) -> int:
        return self.outer * (self.heads if heads is None else heads) * self.inner

    def element_indices(self, heads: Sequence[int]) -> list[int]:
        return [
            o * self.heads * self.inner + h * self.inner + r
            for o in range(self.outer)
            for h in heads
            for r in range(self.inner)
        ]


def map_layout(src_shape: Sequence[int], layout: Layout, dst_shape: Sequence[int]) -> Layout | None:
    """Where the heads of `layout` (on `src_shape`) live after a contiguous reshape to `dst_shape`."""
    if any(d < 0 for d in (*src_shape, *dst_shape)):
        return None
    before = _prod(src_shape[: layout.axis]) * layout.outer
    after = layout.inner * _prod(src_shape[layout.axis + 1 :])
    for axis, size in enumerate(dst_shape):
        lead = _prod(dst_shape[:axis])
        if before % lead:
            return None
        outer = before // lead
        if size % (outer * layout.heads) == 0:
            inner = size // (outer * layout.heads)
            if inner * _prod(dst_shape[axis + 1 :]) == after:
                return Layout(axis, layout.heads, outer, inner)
    return None


# --- building ops -------------------------------------------------------------------------------


class Builder:
    """Creates torch ops before `anchor`, in creation order (so operands always dominate)."""

    def __init__(self, anchor: ir.Operation) -> None:
        self.ip = ir.InsertionPoint(anchor)
        self.loc = anchor.location
        self.created: list[ir.Operation] = []
        self._ints: dict[int, ir.Value] = {}

    def op(
        self,
        name: str,
        operands: Sequence[ir.Value],
        results: Sequence[ir.Type],
        attributes: dict[str, ir.Attribute] | None = None,
    ) -> ir.Operation:
        op = ir.Operation.create(
            name, results=list(results), operands=list(operands), attributes=attributes, loc=self.loc, ip=self.ip
        )
        self.created.append(op)
        return op

    def int(self, value: int) -> ir.Value:
        if value not in self._ints:  # one constant per value: every later op sits after it
            attr = ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
            self._ints[value] = self.op("torch.constant.int", [], [ir.Type.parse("!torch.int")], {"value": attr}).result
        return self._ints[value]

    def bool(self, value: bool) -> ir.Value:
        return self.op(
            "torch.constant.bool", [], [ir.Type.parse("!torch.bool")], {"value": ir.BoolAttr.get(value)}
        ).result

    def float(self, value: float) -> ir.Value:
        attr = ir.FloatAttr.get(ir.F64Type.get(), value, loc=self.loc)
        return self.op("torch.constant.float", [], [ir.Type.parse("!torch.float")], {"value": attr}).result

    def none(self) -> ir.Value:
        return self.op("torch.constant.none", [], [ir.Type.parse("!torch.none")]).result

    def int_list(self, values: Sequence[int]) -> ir.Value:
        items = [self.int(v) for v in values]
        return self.op("torch.prim.ListConstruct", items, [ir.Type.parse("!torch.list<int>")]).result

    def tensor_list(self, values: Sequence[ir.Value]) -> ir.Value:
        return self.op("torch.prim.ListConstruct", values, [ir.Type.parse("!torch.list<vtensor>")]).result

    def literal(self, array: np.ndarray, dtype: str) -> ir.Value:
        element = {
            "si64": ir.IntegerType.get_signed(64),
            "f32": ir.F32Type.get(),
            "f64": ir.F64Type.get(),
            "f16": ir.F16Type.get(),
            "bf16": ir.BF16Type.get(),
        }[dtype]
        numpy_dtype = np.int64 if dtype == "si64" else np.float32 if dtype in ("f32", "bf16", "f16") else np.float64
        data = np.ascontiguousarray(array, dtype=numpy_dtype)
        builtin = ir.RankedTensorType.get(list(data.shape), element, loc=self.loc)
        if dtype in ("f16", "bf16"):
            attr = (
                ir.DenseElementsAttr.get_splat(builtin, ir.FloatAttr.get(element, 0.0))
                if data.size == 0
                else ir.DenseElementsAttr.get([ir.FloatAttr.get(element, float(x)) for x in data.flat], type=builtin)
            )
        else:
            attr = ir.DenseElementsAttr.get(data, type=builtin)
        result = TensorType(tuple(data.shape), dtype).ir_type()
        return self.op("torch.vtensor.literal", [], [result], {"value": attr}).result

    def index_select(self, x: ir.Value, axis: int, indices: Sequence[int]) -> ir.Value:
        xt = tensor_type(x)
        assert xt is not None
        index = self.literal(np.asarray(indices, dtype=np.int64), "si64")
        return self.index_select_dynamic(x, axis, index, len(indices))

    def index_select_dynamic(self, x: ir.Value, axis: int, index: ir.Value, count: int) -> ir.Value:
        xt = tensor_type(x)
        assert xt is not None
        out = xt.with_dim(axis, count).ir_type()
        return self.op("torch.aten.index_select", [x, self.int(axis), index], [out]).result

    def repeat_each(self, x: ir.Value, axis: int, times: int) -> ir.Value:
        """Every slice of `x` along `axis` repeated `times` times in a row, as torch's repeat_kv writes it.

        A broadcast, which IREE fuses into its consumer and vectorizes; the same repeat as an index_select is a
        gather of scalars (on llvm-cpu it made a 2048-token decode attention over 2 of 3 KV heads slower than
        over all 3)."""
        xt = tensor_type(x)
        assert xt is not None
        shape = list(xt.shape)
        single = [*shape[: axis + 1], 1, *shape[axis + 1 :]]
        wide = [*shape[: axis + 1], times, *shape[axis + 1 :]]
        lifted = self.op(
            "torch.aten.unsqueeze", [x, self.int(axis + 1)], [TensorType(tuple(single), xt.dtype).ir_type()]
        )
        expanded = self.op(
            "torch.aten.broadcast_to",
            [lifted.result, self.int_list(wide)],
            [TensorType(tuple(wide), xt.dtype).ir_type()],
        )
        return self.view(expanded.result, [*shape[:axis], shape[axis] * times, *shape[axis + 1 :]])

    def view(self, x: ir.Value, shape: Sequence[int]) -> ir.Value:
        xt = tensor_type(x)
        assert xt is not None
        out = TensorType(tuple(shape), xt.dtype).ir_type()
        return self.op("torch.aten.view", [x, self.int_list(shape)], [out]).result

    def permute(self, x: ir.Value, dims: Sequence[int]) -> ir.Value:
        xt = tensor_type(x)
        assert xt is not None
        out = TensorType(tuple(xt.shape[d] for d in dims), xt.dtype).ir_type()
        return self.op("torch.aten.permute", [x, self.int_list(dims)], [out]).result

    def slice(self, x: ir.Value, axis: int, start: int, end: int) -> ir.Value:
        xt = tensor_type(x)
        assert xt is not None
        out = xt.with_dim(axis, end - start).ir_type()
        operands = [x, self.int(axis), self.int(start), self.int(end), self.int(1)]
        return self.op("torch.aten.slice.Tensor", operands, [out]).result

    def cat(self, values: Sequence[ir.Value], axis: int) -> ir.Value:
        types = [tensor_type(v) for v in values]
        assert all(t is not None for t in types)
        size = sum(t.shape[axis] for t in types if t is not None)
        first = types[0]
        assert first is not None
        out = first.with_dim(axis, size).ir_type()
        return self.op("torch.aten.cat", [self.tensor_list(values), self.int(axis)], [out]).result

    def matmul(self, a: ir.Value, b: ir.Value, out: TensorType) -> ir.Value:
        return self.op("torch.aten.matmul", [a, b], [out.ir_type()]).result


# --- narrowing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stop:
    """Where narrowing could not go further and selected (or combined) heads explicitly."""

    producer: str  # the defining op's name, or "argument" for a function argument
    value: ir.Value
    result: ir.Value
    layout: Layout
    heads: HeadMap


class Narrower:
    """Re-emits the producers of a value with fewer heads; one instance per rewritten attention."""

    def __init__(
        self, builder: Builder, stop_at: frozenset[ir.Value] = frozenset(), dynamic: ir.Value | None = None
    ) -> None:
        """`stop_at`: values selected where they are, not through their producers. `dynamic`: a si64
        index tensor chosen at run time; the static selection given to `narrow` then only fixes the count."""
        self.b = builder
        self.stop_at = stop_at
        self.dynamic = dynamic
        self.memo: dict[tuple[ir.Value, Layout, HeadMap], ir.Value] = {}
        self.stops: list[Stop] = []
        # value -> (its narrowed version, selection) for every value narrowed by a pure selection
        self.selected: dict[ir.Value, tuple[ir.Value, tuple[int, ...]]] = {}

    def narrow(self, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value:
        """`value` with its heads (per `layout`) replaced by `heads`; shares work within this instance."""
        if heads.is_identity():
            return value
        key = (value, layout, heads)
        if key in self.memo:
            return self.memo[key]
        selection = heads.selection
        if selection is not None and len(set(selection)) < len(selection):
            # Narrow to the distinct heads once, then repeat them where the selection repeats.
            distinct = tuple(sorted(set(selection)))
            base = self.narrow(value, layout, HeadMap.select(distinct, heads.total))
            positions = [distinct.index(h) for h in selection]
            smaller = replace(layout, heads=len(distinct))
            times = len(positions) // len(distinct)
            if smaller.outer == smaller.inner == 1 and positions == [
                p for p in range(len(distinct)) for _ in range(times)
            ]:
                result = self.b.repeat_each(base, smaller.axis, times)
            else:
                result = self.b.index_select(base, smaller.axis, smaller.element_indices(positions))
        else:
            result = None if value in self.stop_at else self._through_producer(value, layout, heads)
            if result is None:
                result = self._select_here(value, layout, heads)
            if selection is not None:
                self.selected[value] = (result, selection)
        self.memo[key] = result
        return result

    def _select_here(self, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value:
        vt = tensor_type(value)
        if vt is None:
            raise ValueError(f"cannot select heads of a non-tensor value of type {value.type}")
        selection = heads.selection
        if self.dynamic is not None:
            if layout.outer != 1 or layout.inner != 1:
                raise ValueError(f"a run-time head selection needs heads on their own axis, not {value.type}")
            result = self.b.index_select_dynamic(value, layout.axis, self.dynamic, heads.size)
        elif selection is not None:
            result = self.b.index_select(value, layout.axis, layout.element_indices(selection))
        else:
            if not vt.static or vt.dtype not in FLOAT_DTYPES:
                raise ValueError(f"cannot combine heads of {value.type}: needs a static float tensor")
            before = _prod(vt.shape[: layout.axis]) * layout.outer
            after = layout.inner * _prod(vt.shape[layout.axis + 1 :])
            grouped = self.b.view(value, [before, layout.heads, after])
            matrix = self.b.literal(np.asarray(heads.rows), vt.dtype)
            mixed = self.b.matmul(matrix, grouped, TensorType((before, heads.size, after), vt.dtype))
            result = self.b.view(mixed, vt.with_dim(layout.axis, layout.size(heads.size)).shape)
        op = producer(value)
        self.stops.append(Stop("argument" if op is None else op.name, value, result, layout, heads))
        return result

    def _narrowed_type(self, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Type:
        vt = tensor_type(value)
        assert vt is not None
        return vt.with_dim(layout.axis, layout.size(heads.size)).ir_type()

    def _clone(self, op: ir.Operation, operands: Sequence[ir.Value], results: Sequence[ir.Type]) -> ir.Operation:
        attributes = {named.name: named.attr for named in op.attributes}
        return self.b.op(op.name, operands, results, attributes or None)

    def _through_producer(self, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value | None:
        op = producer(value)
        vt = tensor_type(value)
        if op is None or vt is None or len(op.results) == 0:
            return None
        name = op.name
        linear = heads.selection is None
        if name in VIEW_OPS:
            return self._view(op, value, layout, heads)
        if name == "torch.aten.permute":
            dims = constant_int_list(op.operands[1])
            if dims is None:
                return None
            src = self.narrow(op.operands[0], replace(layout, axis=dims[layout.axis] % len(dims)), heads)
            return self._clone(op, [src, op.operands[1]], [self._narrowed_type(value, layout, heads)]).result
        if name == "torch.aten.transpose.int":
            d0, d1 = constant_int(op.operands[1]), constant_int(op.operands[2])
            if d0 is None or d1 is None:
                return None
            d0, d1 = d0 % len(vt.shape), d1 % len(vt.shape)
            axis = d1 if layout.axis == d0 else d0 if layout.axis == d1 else layout.axis
            src = self.narrow(op.operands[0], replace(layout, axis=axis), heads)
            return self._clone(op, [src, *op.operands[1:]], [self._narrowed_type(value, layout, heads)]).result
        if name in ("torch.aten.mm", "torch.aten.bmm", "torch.aten.matmul"):
            return self._matmul(op, value, layout, heads)
        if name in ELEMENTWISE:
            if linear and name not in AFFINE_BINARY:
                return None
            return self._elementwise(op, value, layout, heads)
        if name in PER_SLICE:
            if linear and name not in LINEAR_UNARY:
                return None
            src = op.operands[0]
            st = tensor_type(src)
            if st is None or len(st.shape) != len(vt.shape) or st.shape[layout.axis] != vt.shape[layout.axis]:
                return None
            new_src = self.narrow(src, layout, heads)
            results = []
            for result in op.results:
                rt = tensor_type(result)
                if rt is None or len(rt.shape) != len(vt.shape) or rt.shape[layout.axis] != vt.shape[layout.axis]:
                    return None
                results.append(self._narrowed_type(result, layout, heads))
            clone = self._clone(op, [new_src, *op.operands[1:]], results)
            for old, new in zip(op.results, clone.results, strict=True):
                self.memo[(old, layout, heads)] = new
            return clone.results[list(op.results).index(value)]
        if name == "torch.aten.cat":
            return self._cat(op, value, layout, heads)
        if name == "torch.aten.unsqueeze":
            dim = constant_int(op.operands[1])
            if dim is None:
                return None
            dim %= len(vt.shape)
            if dim == layout.axis:
                return None
            src = self.narrow(op.operands[0], replace(layout, axis=layout.axis - (dim < layout.axis)), heads)
            return self._clone(op, [src, op.operands[1]], [self._narrowed_type(value, layout, heads)]).result
        if name in ("torch.aten.broadcast_to", "torch.aten.expand"):
            src = op.operands[0]
            st = tensor_type(src)
            if st is None or not vt.static:
                return None
            aligned = layout.axis - (len(vt.shape) - len(st.shape))
            new_shape = vt.with_dim(layout.axis, layout.size(heads.size)).shape
            if aligned >= 0 and st.shape[aligned] == vt.shape[layout.axis]:
                src = self.narrow(src, replace(layout, axis=aligned), heads)
            elif aligned >= 0 and st.shape[aligned] != 1:
                return None
            return self._clone(
                op, [src, self.b.int_list(new_shape), *op.operands[2:]], [self._narrowed_type(value, layout, heads)]
            ).result
        if pad_keeps_axis(op, layout.axis) and (not linear or constant_number(op.operands[2]) == 0):
            src = self.narrow(op.operands[0], layout, heads)
            return self._clone(op, [src, *op.operands[1:]], [self._narrowed_type(value, layout, heads)]).result
        if name == "torch.aten.index_select":
            dim = constant_int(op.operands[1])
            if dim is None or dim % len(vt.shape) == layout.axis:
                return None
            src = self.narrow(op.operands[0], layout, heads)
            return self._clone(op, [src, *op.operands[1:]], [self._narrowed_type(value, layout, heads)]).result
        return None

    def _view(self, op: ir.Operation, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value | None:
        src = op.operands[0]
        st, vt = tensor_type(src), tensor_type(value)
        if st is None or vt is None:
            return None
        new_shape = vt.with_dim(layout.axis, layout.size(heads.size)).shape
        src_layout = map_layout(vt.shape, layout, st.shape)
        if src_layout is not None:
            new_src = self.narrow(src, src_layout, heads)
            return self._clone(
                op, [new_src, self.b.int_list(new_shape)], [self._narrowed_type(value, layout, heads)]
            ).result
        return self._repeat_kv(src, st, vt, layout, heads)

    def _repeat_kv(
        self, src: ir.Value, st: TensorType, vt: TensorType, layout: Layout, heads: HeadMap
    ) -> ir.Value | None:
        """view(broadcast_to(unsqueeze(x, a+1), [.., kv, group, ..])) with heads = kv*group at axis a."""
        a = layout.axis
        if layout.outer != 1 or layout.inner != 1 or len(st.shape) != len(vt.shape) + 1:
            return None
        if (
            st.shape[:a] != vt.shape[:a]
            or st.shape[a + 2 :] != vt.shape[a + 1 :]
            or st.shape[a] * st.shape[a + 1] != layout.heads
        ):
            return None
        expand = producer(src)
        if expand is None or expand.name not in ("torch.aten.broadcast_to", "torch.aten.expand"):
            return None
        unsqueeze = producer(expand.operands[0])
        if (
            unsqueeze is None
            or unsqueeze.name != "torch.aten.unsqueeze"
            or constant_int(unsqueeze.operands[1]) != a + 1
        ):
            return None
        group = st.shape[a + 1]
        return self.narrow(unsqueeze.operands[0], Layout(a, st.shape[a]), heads.to_groups(group))

    def _matmul(self, op: ir.Operation, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value | None:
        a, b = op.operands[0], op.operands[1]
        at, bt, vt = tensor_type(a), tensor_type(b), tensor_type(value)
        if at is None or bt is None or vt is None or len(at.shape) != len(bt.shape) or len(at.shape) != len(vt.shape):
            return None
        rank = len(vt.shape)
        if layout.axis == rank - 1:
            a_new, b_new = a, self.narrow(b, layout, heads)
        elif layout.axis == rank - 2:
            a_new, b_new = self.narrow(a, layout, heads), b
        else:
            full = vt.shape[layout.axis]
            carries = [t.shape[layout.axis] == full for t in (at, bt)]
            if heads.selection is None and all(carries):
                return None  # a product of two head-carrying operands is not linear in the heads
            a_new = self.narrow(a, layout, heads) if carries[0] else a
            b_new = self.narrow(b, layout, heads) if carries[1] else b
        return self._clone(op, [a_new, b_new], [self._narrowed_type(value, layout, heads)]).result

    def _elementwise(self, op: ir.Operation, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value | None:
        vt = tensor_type(value)
        assert vt is not None
        full = vt.shape[layout.axis]
        carrying: list[int] = []  # operands that have the head dimension (others broadcast over it)
        for index, operand in enumerate(op.operands):
            ot = tensor_type(operand)
            if ot is None:
                continue
            aligned = layout.axis - (len(vt.shape) - len(ot.shape))
            if aligned >= 0 and ot.shape[aligned] == full:
                carrying.append(index)
            elif aligned >= 0 and ot.shape[aligned] != 1:
                return None
        if heads.selection is None:  # linear maps pass products only when one factor carries heads
            if op.name == "torch.aten.mul.Tensor" and len(carrying) != 1:
                return None
            if op.name == "torch.aten.div.Tensor" and carrying != [0]:
                return None
        operands = list(op.operands)
        for index in carrying:
            ot = tensor_type(operands[index])
            assert ot is not None
            aligned = layout.axis - (len(vt.shape) - len(ot.shape))
            operands[index] = self.narrow(operands[index], replace(layout, axis=aligned), heads)
        return self._clone(op, operands, [self._narrowed_type(value, layout, heads)]).result

    def _cat(self, op: ir.Operation, value: ir.Value, layout: Layout, heads: HeadMap) -> ir.Value | None:
        vt = tensor_type(value)
        dim = constant_int(op.operands[1])
        items = producer(op.operands[0])
        if vt is None or dim is None or items is None or items.name != "torch.prim.ListConstruct":
            return None
        if dim % len(vt.shape) == layout.axis:
            return None
        narrowed = []
        for item in items.operands:
            it = tensor_type(item)
            if it is None or it.shape[layout.axis] != vt.shape[layout.axis]:
                return None
            narrowed.append(self.narrow(item, layout, heads))
        return self._clone(
            op, [self.b.tensor_list(narrowed), op.operands[1]], [self._narrowed_type(value, layout, heads)]
        ).result


def erase_dead_ops(block: ir.Block) -> int:
    """Erase side-effect-free torch ops whose results are unused, to a fixed point; returns the count."""
    erased = 0
    changed = True
    while changed:
        changed = False
        for op in reversed(list(block.operations)):
            operation = op.operation
            if not operation.name.startswith(PURE_PREFIXES) or not operation.results:
                continue
            if all(not list(result.uses) for result in operation.results):
                operation.erase()
                erased += 1
                changed = True
    return erased
