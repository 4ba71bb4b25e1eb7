"""`effc-quantize-dynamic`: int8 matmuls on constant weights, activations quantized at run time.

The CPU counterpart of torch.ao's dynamic quantization of `nn.Linear`, for hosts where effc's f32 matmuls already
run at torch's f32 GEMM rate and bf16 has no fast path (AVX2: bench/perf/NOTES.md). Each `aten.mm` of an
activation by a constant f32 weight (a `torch.vtensor.literal`, possibly transposed, as torch-mlir imports
`nn.Linear`), and each `aten.matmul` or `aten.linear` of an activation of any rank by a constant 2-D weight (rows
flattened, as in IR that kept them), becomes

    s_w = max|W| / 127 per output column      (here, in numpy: the module stores W_q in int8 and s_w in f32)
    W_q = int8(round(W / s_w))
    s_x = max|x| / 127 per row                (at run time)
    x_q = int8(round(x * (1 / s_x)))          (round half to even, as torch.round)
    y   = f32(mm(x_q, W_q) : int32) * s_x * s_w

Symmetric, per output channel for weights and per row (token) for activations, int32 accumulation: IREE's
mmt4d ukernels run the int8 matmuls of MiniLM and SmolLM2 1.4x as fast as f32 on AVX2 (and one-row matmuls read a
quarter of the bytes), and the weights take a quarter of the memory. Rounding every activation row to 8 bits costs
accuracy (about 7% relative error on MiniLM's hidden states, as torch's own dynamic quantization):
`--matmul-precision int8` measures it with `--check`, and bench/perf/accuracy.py on the task.

The weights are quantized by the pass rather than left to IREE as constant expressions: IREE's const-eval of
those took 98 of SmolLM2's 214 s int8 compile. Each weight's blob is read from the printed form of its literal.

With `smooth=FILE` (from `effc quantize calibrate`; passes/smoothing.py), SmoothQuant first divides each input
column j by s_j = max|x_j|^alpha / max|w_j|^(1-alpha), at run time in the dispatch that quantizes the rows, and
multiplies the weight's row j by s_j here: the same product, with the activations' outlier channels moved into the
weights, whose per-column scales absorb them. SmolLM2's int8 perplexity loss: 4.4% -> 1.7%.

Left as they are, counted by reason in the module attribute `effc.quantize_dynamic`: matmuls whose weight is not
a constant or not a matrix (batched), that are not f32, or have dynamic shapes.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass
from effc.passes.chai_narrow import (
    Builder,
    TensorType,
    is_none,
    tensor_type,
)
from effc.passes.matmul_weights import (
    LINEAR,
    cast_to,
    constant_weight,
    resource_literal,
    rows_key,
    weight_matmuls,
)
from effc.passes.site_rewrites import Skip, rewrite_sites
from effc.passes.smoothing import DEFAULT_ALPHA, Smoothing, load_smoothing, smoothing_scales, weight_fingerprint

REPORT_ATTRIBUTE = "effc.quantize_dynamic"
# torch's ScalarType codes, as `aten.to.dtype` takes them.
_INT8, _F32 = 1, 6
_INT8_MAX = 127.0
# The smallest scale: a row or column of zeros quantizes to zeros instead of dividing by zero.
_MIN_SCALE = 1e-30
# (v + 1.5 * 2^23) - 1.5 * 2^23 is v rounded half to even, exactly, for |v| <= 2^22 (here |v| <= 127): two vector adds,
# where IREE 3.13 expands `math.roundeven` into about 50 instructions per 8 elements on x86. With a multiply by 1/s_x in
# place of a divide, the quantizing dispatches ran 2-3x faster (bench/perf/NOTES.md, fourteenth session).
_ROUNDING_SHIFT = 1.5 * 2.0**23


def _quantize_columns(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(scale [1, N], int8 values) of a [K, N] f32 weight: symmetric per column, ahead of time, dividing by the
    scale (the rows multiply by its reciprocal, which is faster at run time)."""
    peak = np.abs(w).max(axis=0, keepdims=True)
    scale = np.maximum(peak, np.float32(_MIN_SCALE * _INT8_MAX)) / np.float32(_INT8_MAX)
    return scale, np.round(w / scale).astype(np.int8)


class _QuantizedRows:
    """Each activation's rows quantized once, divided first by their smoothing scales where there are some. IREE's
    CSE merges copies as well (MiniLM's dispatches are the same either way), but the IR that `effc opt` prints and
    the profiler maps should not carry three of them."""

    def __init__(self, smoothing: dict[tuple[ir.Value, tuple[int, int]], np.ndarray]) -> None:
        self.smoothing = smoothing  # rows key -> s, one per input column
        self.done: dict[tuple[ir.Value, tuple[int, int]], tuple[ir.Value, ir.Value]] = {}

    def get(self, b: Builder, x: ir.Value) -> tuple[ir.Value, ir.Value]:
        """(scale, int8 values) of `x`'s rows, flattened to [rows, cols], built before the first matmul that asks.

        Matmul sites come in block order, so the first site's quantization dominates the later ones."""
        key = rows_key(x)
        if key not in self.done:
            xt = tensor_type(x)
            assert xt is not None
            flat = b.view(x, list(key[1])) if tuple(xt.shape) != key[1] else x
            scales = self.smoothing.get(key)
            if scales is not None:
                inverse = resource_literal(b, (1.0 / scales).astype(np.float32), "f32", "effc_int8_smoothing")
                flat = b.op("torch.aten.mul.Tensor", [flat, inverse], [flat.type]).result
            self.done[key] = _quantize_rows(b, flat)
        return self.done[key]


def _quantize_rows(b: Builder, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(scale [rows, 1], int8 values) of an activation `x` ([rows, cols], f32), symmetric, at run time."""
    xt = tensor_type(x)
    assert xt is not None
    reduced = TensorType((xt.shape[0], 1), xt.dtype).ir_type()
    magnitude = b.op("torch.aten.abs", [x], [x.type]).result
    peak = b.op("torch.aten.amax", [magnitude, b.int_list([1]), b.bool(True)], [reduced]).result
    floor = b.op("torch.aten.clamp_min", [peak, b.float(_MIN_SCALE * _INT8_MAX)], [reduced]).result
    scale = b.op("torch.aten.div.Scalar", [floor, b.float(_INT8_MAX)], [reduced]).result
    # The reciprocal of the broadcast scale, not of the [rows, 1] scale: IREE gives a [rows, 1] reciprocal a dispatch of
    # its own (121 more launches in SmolLM2's prefill), while this one fuses into the quantizing dispatch, where LLVM
    # computes it once per row.
    spread = b.op("torch.aten.broadcast_to", [scale, b.int_list(list(xt.shape))], [x.type]).result
    inverse = b.op("torch.aten.reciprocal", [spread], [x.type]).result
    scaled = b.op("torch.aten.mul.Tensor", [x, inverse], [x.type]).result
    shift, one = b.float(_ROUNDING_SHIFT), b.int(1)
    shifted = b.op("torch.aten.add.Scalar", [scaled, shift, one], [x.type]).result
    rounded = b.op("torch.aten.sub.Scalar", [shifted, shift, one], [x.type]).result
    return scale, cast_to(b, rounded, _INT8, "si8")


def _quantize(op: ir.Operation, rows: _QuantizedRows, weight: np.ndarray | None = None) -> None:
    """Replace `op`'s result with the int8 form above (raises `Skip` where it does not apply); `weight` is `op`'s,
    where it was read already."""
    x = op.operands[0]
    weight = constant_weight(op) if weight is None else weight
    scales = rows.smoothing.get(rows_key(x))
    w_scale_data, w_q_data = _quantize_columns(weight if scales is None else weight * scales[:, None])
    xt, out = tensor_type(x), tensor_type(op.results[0])
    assert xt is not None and out is not None
    b = Builder(op)
    x_scale, x_q = rows.get(b, x)
    w_q = resource_literal(b, w_q_data, "si8", "effc_int8_weight")
    w_scale = resource_literal(b, w_scale_data, "f32", "effc_int8_scale")
    flat = TensorType((math.prod(xt.shape[:-1]), out.shape[-1]), "f32")
    accumulated = b.op("torch.aten.mm", [x_q, w_q], [TensorType(flat.shape, "si32").ir_type()]).result
    product = cast_to(b, accumulated, _F32, "f32")
    scaled = b.op("torch.aten.mul.Tensor", [product, x_scale], [flat.ir_type()]).result
    y = b.op("torch.aten.mul.Tensor", [scaled, w_scale], [flat.ir_type()]).result
    if flat.shape != out.shape:
        y = b.view(y, out.shape)
    if op.name == LINEAR and not is_none(op.operands[2]):
        y = b.op("torch.aten.add.Tensor", [y, op.operands[2], b.int(1)], [out.ir_type()]).result
    op.results[0].replace_all_uses_with(y)


def _smoothing_scales(
    matmuls: list[ir.Operation], smoothing: Smoothing, alpha: float, weights: dict[ir.Operation, np.ndarray]
) -> tuple[dict[tuple[ir.Value, tuple[int, int]], np.ndarray], int]:
    """SmoothQuant's s per matmul input that has calibrated peaks, and how many matmuls read those inputs.

    Matmuls that read one input (Q, K and V) share its s, from the largest of their weights' rows, so the input
    is still quantized once. Each weight read goes into `weights`, so the rewrite does not read its blob again."""
    weight_peaks: dict[tuple[ir.Value, tuple[int, int]], np.ndarray] = {}
    input_peaks: dict[tuple[ir.Value, tuple[int, int]], np.ndarray] = {}
    readers: Counter[tuple[ir.Value, tuple[int, int]]] = Counter()
    for op in matmuls:
        try:
            weight = weights[op] = constant_weight(op)
        except Skip:
            continue
        key = rows_key(op.operands[0])
        row_peaks = np.abs(weight).max(axis=1)
        weight_peaks[key] = np.maximum(weight_peaks[key], row_peaks) if key in weight_peaks else row_peaks
        readers[key] += 1
        peaks = smoothing.input_peaks.get(weight_fingerprint(weight.T))
        if peaks is not None and peaks.shape == row_peaks.shape:
            input_peaks[key] = np.maximum(input_peaks[key], peaks) if key in input_peaks else peaks
    if weight_peaks and not input_peaks:
        raise EffcError(
            f"int8 smoothing: the peaks of model '{smoothing.model}' match none of this module's "
            f"{sum(readers.values())} matmuls by constant weights; calibrate this model with 'effc quantize calibrate'"
        )
    scales = {key: smoothing_scales(peaks, weight_peaks[key], alpha) for key, peaks in input_peaks.items()}
    return scales, sum(readers[key] for key in scales)


def quantize_module(module: ir.Operation, smoothing: Smoothing | None = None, alpha: float = DEFAULT_ALPHA) -> str:
    """Quantize every f32 matmul by a constant weight in `module` (a builtin.module op), smoothing the inputs that
    `smoothing` has peaks for; returns the report."""
    with module.context:
        matmuls = weight_matmuls(module)
        what = "matmuls by constant weights in int8"
        scales: dict[tuple[ir.Value, tuple[int, int]], np.ndarray] = {}
        weights: dict[ir.Operation, np.ndarray] = {}
        if smoothing is not None:
            scales, smoothed = _smoothing_scales(matmuls, smoothing, alpha, weights)
            what += f", {smoothed} smoothed (alpha {alpha:g})"
        rows = _QuantizedRows(scales)
        return rewrite_sites(
            module,
            matmuls,
            lambda op: _quantize(op, rows, weights.pop(op, None)),
            attribute=REPORT_ATTRIBUTE,
            what=what,
        )


@dataclasses.dataclass(frozen=True)
class QuantizeDynamicPass(ModulePass):
    name: ClassVar[str] = "effc-quantize-dynamic"
    description: ClassVar[str] = (
        "Dynamic int8 quantization of matmuls by constant weights (torch.ao's quantize_dynamic of Linear): "
        "weights per output channel at compile time, activations per row at run time, int32 accumulation; "
        "with smooth=FILE, SmoothQuant's per-channel smoothing from 'effc quantize calibrate'."
    )

    smooth: str = dataclasses.field(
        default="", metadata={"help": "activation peaks from 'effc quantize calibrate' (SmoothQuant; optional)"}
    )
    alpha: float | None = dataclasses.field(
        default=None,
        metadata={
            "help": "SmoothQuant migration strength, s = max|x|^alpha / max|w|^(1-alpha) (default: the file's, "
            f"chosen by calibration, else {DEFAULT_ALPHA})"
        },
    )

    def apply(self, module: ir.Operation) -> None:
        if self.alpha is not None and not 0.0 <= self.alpha <= 1.0:
            raise EffcError(f"effc-quantize-dynamic: alpha must be in [0, 1], got {self.alpha:g}")
        smoothing = load_smoothing(self.smooth) if self.smooth else None
        alpha = self.alpha if self.alpha is not None else smoothing.alpha if smoothing else None
        quantize_module(module, smoothing, DEFAULT_ALPHA if alpha is None else alpha)
