"""`effc-profile{target=h100-sxm}`: a roofline cost model written into the IR as attributes.

Every computing torch op (`torch.aten.*`, `torch.prims.*`, `torch.operator`) gets:

    effc.flops           i64  FLOPs exactly as `torch.utils.flop_counter.FlopCounterMode` counts them:
                              only matmul-like ops, convolutions and attention (2 per multiply-add);
                              everything else counts 0, as in torch
    effc.flops_uncounted i64  FLOPs torch's counter ignores (elementwise, reductions, normalization,
                              mv/dot), estimated; used only for the roofline
    effc.bytes_read      i64  bytes of the tensor operands (0 for pure reshapes/views; slices and
                              gathers count only the part they read)
    effc.bytes_written   i64  bytes of the tensor results (0 for pure reshapes/views)
    effc.intensity       f64  (flops + flops_uncounted) / (bytes_read + bytes_written)
    effc.op_class        str  linear | convolution | attention | normalization | elementwise |
                              data_movement | other
    effc.est_time_s      f64  max(all FLOPs / (peak[dtype] * compute-efficiency),
                                  bytes / (bandwidth * memory-efficiency))
    effc.op_subclass     str  `temporal_attention` on attention ops that look temporal (below)
    effc.seq_len         i64  query length of attention ops
    effc.folded          unit on ops computed from weights only (weight transposes, casts): IREE
                              evaluates them at compile time, so they move no bytes and take no time
    effc.dynamic         unit on ops with dynamic dims, whose costs assume `dynamic-dim` elements

Constants, literals, lists and casts (`torch.constant.*`, `torch.vtensor.literal`, `torch.prim.*`) are
structure, not work, and stay unannotated. The `builtin.module` gets `effc.profile.target`,
`.total_flops`, `.total_flops_uncounted`, `.total_bytes`, `.est_time_s`, `.class_share` (share of the
estimated time per op class; all seven keys, summing to 1) and `.subclass_share`
(`temporal_attention`'s share of the total time, part of `attention`'s).

Heuristics, kept simple on purpose:
- A batched matmul (bmm, baddbmm, or matmul of two >=3-d operands) whose operands are both
  activations, i.e. neither is a `torch.vtensor.literal` weight nor computed from weights only
  (`effc.folded`), is attention (QK^T or PV of a decomposed attention).
- Attention is temporal when its outermost batch dim (4-d and up, so heads are a separate dim) exceeds
  every matrix dim: many short sequences, as when video attention folds the h*w positions into the
  batch and attends over frames (Golden et al., arXiv 2312.14385). Spatial or text attention has a
  small batch and long sequences. 3-d bmm attention, whose heads are folded into the batch, is never
  called temporal.
- Elementwise and reduction ops whose source location is in torch's normalization modules
  (decomposed LayerNorm/GroupNorm/BatchNorm) are normalization.

FLOPs of scaled_dot_product_attention follow torch's formula for its flash/efficient kernels (equal to
the two bmms of the math path); torch's counter has no formula for the CPU flash kernel and counts 0
there, so compare with torch under `sdpa_kernel(SDPBackend.MATH)` on CPU.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar

from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass
from effc.passes.hardware import Hardware, load_hardware
from effc.passes.report import OP_CLASSES

SUBCLASSES = ("temporal_attention",)
MATMUL_CLASSES = ("linear", "convolution", "attention")
PREFIX = "effc.profile."
FOLDED = "effc.folded"
# Files of torch's normalization modules: their decomposed ops are normalization.
NORM_MODULE_FILES = (
    "torch/nn/modules/normalization.py",
    "torch/nn/modules/batchnorm.py",
    "torch/nn/modules/instancenorm.py",
)
# Element type → key of `Hardware.peak_flops`; other types use the f32 peak.
_PEAK_KEY = {"f64": "f64", "f32": "f32", "f16": "f16", "bf16": "bf16", "si8": "int8", "ui8": "int8"}
_TENSOR_TYPE = re.compile(r"^!torch\.v?tensor<\[([^\]]*)\],(.+)>$")
_PY_FILE = re.compile(r'"([^"]+\.py)"')


@dataclass(frozen=True)
class Tensor:
    """Static view of a torch tensor type; dynamic dims already replaced by a size."""

    shape: tuple[int, ...]
    dtype: str
    dynamic: bool

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.numel * _element_bytes(self.dtype)


@dataclass(frozen=True)
class OpInfo:
    """What a cost handler sees: the op and its operand and result tensor types (None: not a tensor)."""

    op: ir.Operation
    operands: tuple[Tensor | None, ...]
    results: tuple[Tensor | None, ...]

    def shape(self, index: int) -> tuple[int, ...]:
        tensor = self.operands[index]
        return tensor.shape if tensor is not None else ()

    @property
    def out(self) -> Tensor | None:
        return self.results[0] if self.results else None

    def constant(self, index: int) -> int | bool | None:
        """The value of a `torch.constant.int`/`.bool` operand, or None when it is not a constant."""
        owner = self.op.operands[index].owner
        if isinstance(owner, ir.Block) or owner.name not in ("torch.constant.int", "torch.constant.bool"):
            return None
        attr = owner.attributes["value"]
        return ir.BoolAttr(attr).value if owner.name == "torch.constant.bool" else ir.IntegerAttr(attr).value


@dataclass(frozen=True)
class OpCost:
    """A handler's verdict on one op."""

    op_class: str
    flops: int = 0
    flops_uncounted: int = 0
    moves_data: bool = True
    bytes_read: int | None = None  # None: all tensor operands are read in full
    seq_len: int | None = None
    subclass: str | None = None


Handler = Callable[[OpInfo], OpCost]
# Full op name (`torch.aten.max.dim`) or overload-free name (`torch.aten.max`) → handler.
HANDLERS: dict[str, Handler] = {}


def handles(*names: str) -> Callable[[Handler], Handler]:
    """Register a handler for `aten.mm`-style names (`torch.` is prepended)."""

    def register(handler: Handler) -> Handler:
        for name in names:
            HANDLERS[f"torch.{name}"] = handler
        return handler

    return register


def handler_for(op_name: str) -> Handler | None:
    """The handler of the exact op name, else of its overload-free name (`torch.aten.add.Tensor` → `add`)."""
    return HANDLERS.get(op_name) or HANDLERS.get(_overload_free(op_name))


def _overload_free(op_name: str) -> str:
    return ".".join(op_name.split(".")[:3])


def _aten(names: str) -> tuple[str, ...]:
    """`aten.`-prefixed names from a whitespace-separated list."""
    return tuple(f"aten.{name}" for name in names.split())


# ---- matmul-like (linear) -------------------------------------------------------------------------


def _mm(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return 2 * a[-2] * a[-1] * b[-1]


@handles(*_aten("mm"))
def _mm_cost(info: OpInfo) -> OpCost:
    return OpCost("linear", flops=_mm(info.shape(0), info.shape(1)))


@handles(*_aten("addmm"))
def _addmm_cost(info: OpInfo) -> OpCost:
    return OpCost("linear", flops=_mm(info.shape(1), info.shape(2)))


def _batched(info: OpInfo, a_index: int, b_index: int, flops: int) -> OpCost:
    """bmm-style cost: attention when both operands are activations (see the module docstring)."""
    a, b = info.shape(a_index), info.shape(b_index)
    if _is_constant(info.op.operands[a_index]) or _is_constant(info.op.operands[b_index]):
        return OpCost("linear", flops=flops)
    m, k, n = a[-2], a[-1], b[-1]
    temporal = len(a) >= 4 and _is_temporal(a[0], (m, k, n))
    return OpCost("attention", flops=flops, seq_len=m, subclass="temporal_attention" if temporal else None)


@handles(*_aten("bmm"))
def _bmm_cost(info: OpInfo) -> OpCost:
    a, b = info.shape(0), info.shape(1)
    return _batched(info, 0, 1, a[0] * _mm(a, b))


@handles(*_aten("baddbmm"))
def _baddbmm_cost(info: OpInfo) -> OpCost:
    a, b = info.shape(1), info.shape(2)
    return _batched(info, 1, 2, a[0] * _mm(a, b))


@handles(*_aten("matmul"))
def _matmul_cost(info: OpInfo) -> OpCost:
    """torch runs matmul as dot/mv (uncounted) when `b` is 1-d, else as mm/bmm over the broadcast batch."""
    a, b = info.shape(0), info.shape(1)
    if len(b) == 1:
        return OpCost("linear", flops_uncounted=2 * math.prod(a))
    a = (1, *a) if len(a) == 1 else a
    batch = math.prod(_broadcast(a[:-2], b[:-2]))
    flops = batch * _mm(a, b)
    if len(a) >= 3 and len(b) >= 3:
        return _batched(info, 0, 1, flops)
    return OpCost("linear", flops=flops)


@handles(*_aten("linear"))
def _linear_cost(info: OpInfo) -> OpCost:
    x, w = info.shape(0), info.shape(1)
    if len(w) == 1:  # matmul with a vector: mv, uncounted by torch
        return OpCost("linear", flops_uncounted=2 * math.prod(x))
    return OpCost("linear", flops=2 * math.prod(x[:-1]) * w[0] * w[1])


@handles(*_aten("mv dot vdot"))
def _vector_product_cost(info: OpInfo) -> OpCost:
    return OpCost("linear", flops_uncounted=2 * math.prod(info.shape(0)))


# ---- convolution ------------------------------------------------------------------------------------


def conv_flops(x: tuple[int, ...], w: tuple[int, ...], out: tuple[int, ...], transposed: bool) -> int:
    """torch's `conv_flop_count`: bias ignored; a transposed conv iterates over the input positions."""
    if len(x) == len(w) - 1:  # unbatched input: torch adds a batch of 1
        x, out = (1, *x), (1, *out)
    spatial = (x if transposed else out)[2:]
    return 2 * x[0] * math.prod(spatial) * math.prod(w)


@handles(*_aten("convolution _convolution"))
def _convolution_cost(info: OpInfo) -> OpCost:
    assert info.out is not None
    transposed = bool(info.constant(6))
    return OpCost("convolution", flops=conv_flops(info.shape(0), info.shape(1), info.out.shape, transposed))


@handles(*_aten("conv1d conv2d conv3d conv_transpose1d conv_transpose2d conv_transpose3d"))
def _conv_nd_cost(info: OpInfo) -> OpCost:
    assert info.out is not None
    transposed = "conv_transpose" in info.op.name
    return OpCost("convolution", flops=conv_flops(info.shape(0), info.shape(1), info.out.shape, transposed))


# ---- attention -------------------------------------------------------------------------------------


@handles(
    *_aten(
        """
            scaled_dot_product_attention _scaled_dot_product_flash_attention
            _scaled_dot_product_flash_attention_for_cpu _scaled_dot_product_efficient_attention
            _scaled_dot_product_cudnn_attention
        """
    )
)
def _sdpa_cost(info: OpInfo) -> OpCost:
    """torch's `sdpa_flop_count`: QK^T plus PV over all (batch, query-head) pairs."""
    q, k, v = info.shape(0), info.shape(1), info.shape(2)
    s_q, d, s_k, d_v = q[-2], q[-1], k[-2], v[-1]
    heads = math.prod(q[:-2])
    flops = 2 * heads * s_q * d * s_k + 2 * heads * s_q * s_k * d_v
    temporal = len(q) >= 4 and _is_temporal(q[0], (s_q, s_k, d))
    return OpCost("attention", flops=flops, seq_len=s_q, subclass="temporal_attention" if temporal else None)


def _is_temporal(batch: int, matrix_dims: Iterable[int]) -> bool:
    return batch > max(matrix_dims)


# ---- normalization, elementwise, reductions, pooling ------------------------------------------------

# Norms: mean, variance, normalize, scale, shift. Softmax: max, subtract, exp, sum, divide.
NORMALIZATION_FLOPS_PER_ELEMENT = 5


@handles(
    *_aten(
        """
            layer_norm native_layer_norm group_norm native_group_norm batch_norm native_batch_norm
            _native_batch_norm_legit _native_batch_norm_legit_no_training instance_norm rms_norm
            _fused_rms_norm softmax _softmax log_softmax _log_softmax _safe_softmax
        """
    )
)
def _normalization_cost(info: OpInfo) -> OpCost:
    return OpCost("normalization", flops_uncounted=NORMALIZATION_FLOPS_PER_ELEMENT * math.prod(info.shape(0)))


@handles(
    *_aten(
        """
            add sub rsub mul div neg exp exp2 expm1 log log2 log1p sqrt rsqrt reciprocal abs sign floor ceil
            round trunc relu relu6 leaky_relu elu gelu silu sigmoid hardsigmoid hardswish hardtanh softplus
            mish tanh erf sin cos atan atan2 pow square clamp clamp_min clamp_max minimum maximum max.other
            min.other fmod remainder floor_divide where masked_fill eq ne lt le gt ge logical_and logical_or
            logical_not logical_xor bitwise_and bitwise_or bitwise_not bitwise_xor isnan isinf tril triu
            lerp addcmul addcdiv to _to_copy type_as fill
        """
    ),
    "prims.convert_element_type",
)
def _elementwise_cost(info: OpInfo) -> OpCost:
    """One operation per output element: a lower bound for transcendental functions."""
    return OpCost("elementwise", flops_uncounted=info.out.numel if info.out is not None else 0)


@handles(
    *_aten(
        """
            sum mean amax amin max max.dim min min.dim argmax argmin var var_mean std prod all any norm
            linalg_vector_norm logsumexp cumsum cumprod topk sort max_pool1d max_pool2d max_pool3d
            max_pool2d_with_indices max_pool3d_with_indices avg_pool1d avg_pool2d avg_pool3d
            adaptive_avg_pool1d adaptive_avg_pool2d adaptive_avg_pool3d _adaptive_avg_pool2d
            adaptive_max_pool1d adaptive_max_pool2d adaptive_max_pool3d
        """
    )
)
def _reduction_cost(info: OpInfo) -> OpCost:
    """Reductions and pooling: one operation per input element."""
    return OpCost("other", flops_uncounted=math.prod(info.shape(0)) if info.operands else 0)


# ---- data movement ----------------------------------------------------------------------------------

# Pure reshapes: metadata only in torch, and free in a compiled module.
VIEW_OPS = _aten(
    """
        view _unsafe_view reshape _reshape_alias unsqueeze squeeze flatten unflatten expand expand_as
        broadcast_to alias detach view_as as_strided unfold
    """
)
# Transposes are views in eager torch but usually become copies (or fuse) once compiled: counted as copies.
TRANSPOSE_OPS = _aten("permute transpose t numpy_T movedim")


@handles(*VIEW_OPS)
def _view_cost(info: OpInfo) -> OpCost:
    return OpCost("data_movement", moves_data=False)


@handles(
    *TRANSPOSE_OPS,
    *_aten(
        """
            cat stack slice_scatter select_scatter scatter scatter_add scatter_reduce index_put _index_put_impl
            copy clone contiguous constant_pad_nd pad reflection_pad1d reflection_pad2d reflection_pad3d
            replication_pad1d replication_pad2d replication_pad3d repeat repeat_interleave roll flip
            split split_with_sizes chunk unbind tile masked_select nonzero pixel_shuffle pixel_unshuffle
            upsample_nearest1d upsample_nearest2d upsample_nearest3d upsample_linear1d upsample_bilinear2d
            upsample_bicubic2d upsample_trilinear3d __interpolate grid_sampler one_hot zeros ones full empty
            new_zeros new_ones new_full new_empty zeros_like ones_like full_like empty_like arange
        """
    ),
)
def _data_movement_cost(info: OpInfo) -> OpCost:
    return OpCost("data_movement")


@handles(*_aten("slice select narrow index_select gather index embedding"))
def _partial_read_cost(info: OpInfo) -> OpCost:
    """Slices and gathers read only what they write from their source (plus any index tensors)."""
    written = sum(t.nbytes for t in info.results if t is not None)
    indices = sum(t.nbytes for t in info.operands[1:] if t is not None)
    return OpCost("data_movement", bytes_read=written + indices)


def _other_cost(info: OpInfo) -> OpCost:
    return OpCost("other")


def _is_kernel_call(op: ir.Operation) -> bool:
    """A call of an effc kernel, declared in the module and defined for iree-compile: effc-vnni-matmul's int8 matmul,
    effc-hopper-kernels' linear and attention."""
    from effc.passes import hopper_kernels, vnni_matmul

    if op.name != "func.call":
        return False
    callee = ir.FlatSymbolRefAttr(op.attributes["callee"]).value
    return callee.startswith((vnni_matmul.KERNEL_PREFIX, hopper_kernels.KERNEL_PREFIX))


def _kernel_call_cost(info: OpInfo) -> OpCost:
    """A matmul of rows [M, K] into [M, N] (the int8 kernel's weights come packed as [N * K], the Hopper linear's as
    [N, K]); a Hopper attention's from its spec. That one reads q, k and v in one tensor bound three times: once."""
    from effc.passes.hopper_kernels import called_spec

    out = info.out
    assert out is not None
    spec = called_spec(info.op)
    if spec is None or spec.kernel == "effc_linear":
        return OpCost("linear", flops=2 * math.prod(info.shape(0)) * out.shape[-1])
    constants = dict(spec.constants)
    queries, keys, dim = (int(constants[name]) for name in ("QUERIES", "KEYS", "D"))
    pairs = spec.grid[1]  # one program per (batch, head)
    distinct: list[tuple[ir.Value, Tensor]] = []
    for value, tensor in zip(info.op.operands, info.operands, strict=True):
        if tensor is not None and all(value != seen for seen, _ in distinct):
            distinct.append((value, tensor))
    read = sum(math.prod(t.shape) * _element_bytes(t.dtype) for _, t in distinct)
    return OpCost("attention", flops=4 * pairs * queries * keys * dim, bytes_read=read, seq_len=queries)


HANDLERS["func.call"] = _kernel_call_cost  # `_is_kernel_call` picks the calls that are costed


# ---- the pass ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfilePass(ModulePass):
    """Annotate torch ops with FLOPs, bytes, op class and a roofline time estimate."""

    name: ClassVar[str] = "effc-profile"
    description: ClassVar[str] = (
        "Annotate every torch op with its FLOPs (exactly as torch.utils.flop_counter counts them), bytes "
        "read and written, arithmetic intensity, op class and a roofline time on a target device; the "
        "module gets totals and each op class's share of the estimated time."
    )

    target: str = dataclasses.field(
        default="host-cpu",
        metadata={"help": "hardware id from passes/data/hardware.json: host-cpu, a100, h100-sxm, h200-sxm"},
    )
    tf32: bool = dataclasses.field(
        default=False,
        metadata={"help": "run f32 matmuls, convolutions and attention at the TF32 tensor-core peak"},
    )
    compute_efficiency: float = dataclasses.field(
        default=1.0, metadata={"help": "fraction of peak FLOP/s reachable (MAD-Max used 0.705 for A100)"}
    )
    memory_efficiency: float = dataclasses.field(
        default=1.0, metadata={"help": "fraction of peak bandwidth reachable (MAD-Max used 0.836 for A100)"}
    )
    dynamic_dim: int = dataclasses.field(default=1, metadata={"help": "size assumed for dynamic ('?') dims"})

    def __post_init__(self) -> None:
        """Bad options fail when the pipeline is parsed, before any IR is read."""
        load_hardware(self.target)
        for option, value in (
            ("compute-efficiency", self.compute_efficiency),
            ("memory-efficiency", self.memory_efficiency),
        ):
            if not 0 < value <= 1:
                raise EffcError(f"pass '{self.name}': option '{option}' must be in (0, 1], got {value}")
        if self.dynamic_dim < 1:
            raise EffcError(f"pass '{self.name}': option 'dynamic-dim' must be at least 1, got {self.dynamic_dim}")

    def apply(self, module: ir.Operation) -> None:
        hardware = load_hardware(self.target)
        totals = _Totals()

        def visit(op: ir.Operation) -> ir.WalkResult:
            if _is_costed(op.name) or _is_kernel_call(op):
                totals.add(self._annotate(op, hardware))
            return ir.WalkResult.ADVANCE

        with module.context:
            module.walk(visit)
            totals.write(module, self.target)

    def _annotate(self, op: ir.Operation, hardware: Hardware) -> tuple[OpCost, int, float]:
        """Set the per-op attributes; returns the cost, the bytes moved and the estimated time."""
        info = OpInfo(
            op,
            tuple(self._tensor(v.type) for v in op.operands),
            tuple(self._tensor(r.type) for r in op.results),
        )
        cost = (handler_for(op.name) or _other_cost)(info)
        if cost.op_class in ("elementwise", "other") and _in_norm_module(op.location):
            cost = dataclasses.replace(cost, op_class="normalization")
        tensors = [v for v, t in zip(op.operands, info.operands, strict=True) if t is not None]
        folded = bool(tensors) and all(_is_constant(v) for v in tensors)
        read = written = 0
        if cost.moves_data and not folded:
            read = cost.bytes_read
            if read is None:
                read = sum(self._stored_bytes(v, t) for v, t in zip(op.operands, info.operands, strict=True) if t)
            written = sum(t.nbytes for t in info.results if t is not None)
        work = cost.flops + cost.flops_uncounted
        peak = hardware.peak(self._peak_key(info, cost.op_class)) * self.compute_efficiency
        bandwidth = hardware.memory_bandwidth * self.memory_efficiency
        est = 0.0 if folded else max(work / peak, (read + written) / bandwidth)
        attrs = op.attributes
        dynamic = any(t is not None and t.dynamic for t in (*info.operands, *info.results))
        _set(attrs, FOLDED, ir.UnitAttr.get() if folded else None)
        _set(attrs, "effc.dynamic", ir.UnitAttr.get() if dynamic else None)
        _set(attrs, "effc.op_subclass", ir.StringAttr.get(cost.subclass) if cost.subclass is not None else None)
        _set(attrs, "effc.seq_len", _i64(cost.seq_len) if cost.seq_len is not None else None)
        attrs["effc.flops"] = _i64(cost.flops)
        attrs["effc.flops_uncounted"] = _i64(cost.flops_uncounted)
        attrs["effc.bytes_read"] = _i64(read)
        attrs["effc.bytes_written"] = _i64(written)
        attrs["effc.intensity"] = ir.FloatAttr.get_f64(work / (read + written) if read + written else 0.0)
        attrs["effc.op_class"] = ir.StringAttr.get(cost.op_class)
        attrs["effc.est_time_s"] = ir.FloatAttr.get_f64(est)
        return cost, read + written, est

    def _stored_bytes(self, value: ir.Value, tensor: Tensor) -> int:
        """Bytes read of operand `value`: at the element size of the literal it is cast and moved from, where that
        is narrower (effc-narrow-weights' bf16 weights, which IREE widens inside the matmul, not at compile time)."""
        source = value
        while not isinstance(source.owner, ir.Block) and FOLDED in source.owner.attributes:
            source = source.owner.operands[0]
        stored = self._tensor(source.type) if source is not value else None
        if stored is None or isinstance(source.owner, ir.Block) or source.owner.name != "torch.vtensor.literal":
            return tensor.nbytes
        return tensor.numel * min(_element_bytes(stored.dtype), _element_bytes(tensor.dtype))

    def _tensor(self, type_: ir.Type) -> Tensor | None:
        match = _TENSOR_TYPE.match(str(type_))
        if match is None:
            return None
        dims = [d for d in match.group(1).split(",") if d]
        shape = tuple(self.dynamic_dim if d == "?" else int(d) for d in dims)
        return Tensor(shape, match.group(2), dynamic="?" in dims)

    def _peak_key(self, info: OpInfo, op_class: str) -> str:
        """Matmul-like ops run at their inputs' dtype, everything else at its result's."""
        first = [t for t in (info.operands if op_class in MATMUL_CLASSES else info.results) if t is not None]
        key = _PEAK_KEY.get(first[0].dtype, "f32") if first else "f32"
        return "tf32" if key == "f32" and self.tf32 and op_class in MATMUL_CLASSES else key


@dataclass
class _Totals:
    """Module-level sums, written as `effc.profile.*` attributes."""

    flops: int = 0
    flops_uncounted: int = 0
    bytes: int = 0
    time_s: float = 0.0
    class_time: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(OP_CLASSES, 0.0))
    subclass_time: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(SUBCLASSES, 0.0))

    def add(self, entry: tuple[OpCost, int, float]) -> None:
        cost, moved, est = entry
        self.flops += cost.flops
        self.flops_uncounted += cost.flops_uncounted
        self.bytes += moved
        self.time_s += est
        self.class_time[cost.op_class] += est
        if cost.subclass is not None:
            self.subclass_time[cost.subclass] += est

    def write(self, module: ir.Operation, target: str) -> None:
        def shares(times: dict[str, float]) -> ir.Attribute:
            return ir.DictAttr.get(
                {k: ir.FloatAttr.get_f64(t / self.time_s if self.time_s else 0.0) for k, t in times.items()}
            )

        attrs = module.attributes
        attrs[PREFIX + "target"] = ir.StringAttr.get(target)
        attrs[PREFIX + "total_flops"] = _i64(self.flops)
        attrs[PREFIX + "total_flops_uncounted"] = _i64(self.flops_uncounted)
        attrs[PREFIX + "total_bytes"] = _i64(self.bytes)
        attrs[PREFIX + "est_time_s"] = ir.FloatAttr.get_f64(self.time_s)
        attrs[PREFIX + "class_share"] = shares(self.class_time)
        attrs[PREFIX + "subclass_share"] = shares(self.subclass_time)


def _is_costed(op_name: str) -> bool:
    return op_name.startswith(("torch.aten.", "torch.prims.")) or op_name == "torch.operator"


def _is_constant(value: ir.Value) -> bool:
    """Is `value` a literal (a frozen weight) or computed from literals only (see `effc.folded`)?"""
    owner = value.owner
    if isinstance(owner, ir.Block):
        return False
    return owner.name == "torch.vtensor.literal" or FOLDED in owner.attributes


def _in_norm_module(location: ir.Location) -> bool:
    """Is the innermost Python frame of `location` in one of torch's normalization modules?"""
    match = _PY_FILE.search(str(location))
    return match is not None and match.group(1).endswith(NORM_MODULE_FILES)


def _broadcast(a: tuple[int, ...], b: tuple[int, ...]) -> tuple[int, ...]:
    width = max(len(a), len(b))
    a, b = (1,) * (width - len(a)) + a, (1,) * (width - len(b)) + b
    return tuple(max(x, y) for x, y in zip(a, b, strict=True))


def _element_bytes(dtype: str) -> int:
    """Bytes per element of a torch-mlir dtype (`f32`, `si64`, `i1`: booleans take a byte, `complex<f32>`)."""
    if dtype.startswith("complex<"):
        return 2 * _element_bytes(dtype[len("complex<") : -1])
    bits = re.search(r"(\d+)", dtype)
    return max(1, int(bits.group(1)) // 8) if bits else 4


def _set(attrs: ir.OpAttributeMap, name: str, value: ir.Attribute | None) -> None:
    """Set an optional attribute, or drop one an earlier run left when it no longer applies."""
    if value is not None:
        attrs[name] = value
    elif name in attrs:
        del attrs[name]


def _i64(value: int) -> ir.Attribute:
    return ir.IntegerAttr.get(ir.IntegerType.get_signless(64), value)
