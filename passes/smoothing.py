"""SmoothQuant's per-channel smoothing for `effc-quantize-dynamic`: activation peaks measured on calibration text.

Rounding activations to 8 bits loses most where a few input channels carry outliers, as the RMSNorm outputs of
LLaMA-style decoders do: SmolLM2's perplexity goes from 77.4 to 80.8 in int8 (bench/perf/NOTES.md). SmoothQuant
(Xiao et al., 2023) divides input channel j of a matmul by s_j = max|X_j|^alpha / max|W_j|^(1-alpha) and multiplies the
weight's row j by s_j: the product is the same, and the outliers move into the weights, which are quantized per
output channel ahead of time. max|X_j| comes from running the model on text; this module collects it for every
`nn.Linear` and stores it by a fingerprint of the weight's values, which the pass computes from the IR's literal,
so the file finds its matmuls whatever the importer named them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effc.compiler.errors import EffcError
from effc.compiler.fileio import read_text, versioned_json
from effc.passes.chai_calibrate import common_length_batch, model_output, output_change

FORMAT = "effc-int8-smoothing"
VERSION = 1
# SmoothQuant's migration strength, where neither the pass option nor the file gives one. On SmolLM2
# (rotten-tomatoes windows, torch fake quantization, 16 windows scored, 16 other documents calibrated) perplexity was
# 81.8 without smoothing, 80.1 at 0.3, 79.5 at 0.5, 79.0 at 0.6, 79.1 at 0.7 and 79.3 at 0.8 (f32: 77.4).
DEFAULT_ALPHA = 0.6
# The alphas calibration tries, on its first SCORE_DOCUMENTS documents cut to one length.
ALPHAS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
SCORE_DOCUMENTS = 8
# Channels whose peak (activation or weight) is below this keep s = 1: a channel that is always zero gives no ratio.
_MIN_PEAK = 1e-6


def weight_fingerprint(weight: np.ndarray) -> str:
    """The key of a weight's statistics: a hash of its f32 values as `nn.Linear` stores them, [out, in]."""
    return hashlib.sha256(np.ascontiguousarray(weight, dtype=np.float32).tobytes()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Smoothing:
    """max|x| per input channel of each calibrated matmul, by weight fingerprint; where it came from."""

    model: str
    data: str
    documents: int
    tokens: int
    input_peaks: dict[str, np.ndarray]
    names: dict[str, str]  # fingerprint -> the module's name, for people reading the file
    # The alpha that changed the model's output least on the calibration text, and each candidate's change
    # ("none": int8 without smoothing); None in a file that did not choose.
    alpha: float | None = None
    alpha_scores: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> str:
        """Indented JSON with one line per weight, so the file reads (and diffs) by matmul."""
        header = {"format": FORMAT, "version": VERSION, "model": self.model, "data": self.data}
        header |= {"documents": self.documents, "tokens": self.tokens, "alpha": self.alpha}
        header |= {"alpha_scores": {key: float(f"{v:.6g}") for key, v in self.alpha_scores.items()}}
        entries = [
            f"  {json.dumps(key)}: "
            + json.dumps({"name": self.names.get(key, ""), "input_peaks": [float(f"{v:.6g}") for v in peaks]})
            for key, peaks in self.input_peaks.items()
        ]
        head = json.dumps(header, indent=1)[:-2]
        return head + ',\n "weights": {\n' + ",\n".join(entries) + "\n }\n}\n"


def smoothing_from_json(text: str, where: str) -> Smoothing:
    """Parse and check a smoothing file; every problem is a one-line error naming `where`."""
    body = versioned_json(
        text, where, format_name=FORMAT, version=VERSION, kind="int8 smoothing file", maker="effc quantize calibrate"
    )
    peaks: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}
    for key, entry in (body.get("weights") or {}).items():
        values = entry.get("input_peaks") if isinstance(entry, dict) else None
        if not isinstance(values, list) or not values or not all(isinstance(v, int | float) for v in values):
            raise EffcError(f"{where}: weight {key} has no list of input_peaks")
        array = np.array(values, dtype=np.float32)
        if not np.all(np.isfinite(array)) or np.any(array < 0):
            raise EffcError(f"{where}: weight {key} has input_peaks that are negative or not finite")
        peaks[key] = array
        names[key] = str(entry.get("name", ""))
    if not peaks:
        raise EffcError(f"{where}: no weights; calibrate on a model with nn.Linear layers")
    alpha = body.get("alpha")
    if alpha is not None and not (isinstance(alpha, int | float) and 0 <= alpha <= 1):
        raise EffcError(f"{where}: alpha {alpha!r} is not a number in [0, 1]")
    scores = body.get("alpha_scores") or {}
    meta = {k: body.get(k) for k in ("model", "data", "documents", "tokens")}
    return Smoothing(
        str(meta["model"]),
        str(meta["data"]),
        int(meta["documents"] or 0),
        int(meta["tokens"] or 0),
        peaks,
        names,
        None if alpha is None else float(alpha),
        {str(k): float(v) for k, v in scores.items()},
    )


def load_smoothing(path: str | Path) -> Smoothing:
    return smoothing_from_json(read_text(path, "int8 smoothing file"), where=f"int8 smoothing file '{path}'")


def smoothing_scales(input_peaks: np.ndarray, weight_peaks: np.ndarray, alpha: float) -> np.ndarray:
    """s_j = max|X_j|^alpha / max|W_j|^(1-alpha), 1 where either peak is (nearly) zero."""
    usable = (input_peaks > _MIN_PEAK) & (weight_peaks > _MIN_PEAK)
    x = np.where(usable, input_peaks, 1.0).astype(np.float64)
    w = np.where(usable, weight_peaks, 1.0).astype(np.float64)
    return (x**alpha / w ** (1.0 - alpha)).astype(np.float32)


def _int8_rows(x: torch.Tensor) -> torch.Tensor:
    """x rounded as the pass rounds it: symmetric int8 per row (last dimension), back in f32."""
    scale = x.abs().amax(-1, keepdim=True).clamp_min(1e-30 * 127) / 127
    return torch.round(x * (1 / scale)) * scale


@contextlib.contextmanager
def _fake_int8(linears: dict[torch.nn.Linear, str], peaks: dict[str, np.ndarray], alpha: float | None) -> Any:
    """Every calibrated Linear computes as effc's int8 matmul does, smoothed at `alpha` (None: not smoothed), in f32
    torch. Each Linear gets its own s; the pass shares one across the Linears that read one input, so this ranks the
    alphas rather than reproduce the module."""
    for linear, key in linears.items():
        weight = linear.weight.detach()
        s = torch.ones(weight.shape[1])
        if alpha is not None:
            s = torch.from_numpy(smoothing_scales(peaks[key], weight.abs().amax(0).numpy(), alpha))
        quantized = _int8_rows(weight * s)  # rows of [N, K] are the output channels

        def forward(x: torch.Tensor, quantized: torch.Tensor = quantized, s: torch.Tensor = s, linear: Any = linear):
            return torch.nn.functional.linear(_int8_rows(x / s), quantized, linear.bias)

        linear.forward = forward
    try:
        yield
    finally:
        for linear in linears:
            del linear.forward


def choose_alpha(
    model: torch.nn.Module,
    batch: torch.Tensor,
    linears: dict[torch.nn.Linear, str],
    peaks: dict[str, np.ndarray],
    causal: bool,
) -> tuple[float, dict[str, float]]:
    """The alpha of `ALPHAS` whose int8 model's output on `batch` moves least from f32 (KL of the next-token
    distributions for an LM, relative squared error of the hidden states otherwise), and every candidate's change,
    int8 without smoothing ("none") included, for the user to see what smoothing buys."""
    reference, log_probs = model_output(model, batch, None, causal)
    scores: dict[str, float] = {}
    for alpha in (None, *ALPHAS):
        with _fake_int8(linears, peaks, alpha):
            output, _ = model_output(model, batch, None, causal)
        scores["none" if alpha is None else f"{alpha:g}"] = output_change(reference, output, log_probs)
    best = min(ALPHAS, key=lambda a: scores[f"{a:g}"])
    return best, scores


@torch.no_grad()
def calibrate_smoothing(
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Sequence[str],
    *,
    name: str,
    causal: bool,
    tokens: int,
    data_name: str,
) -> Smoothing:
    """Run `model` on each document (its first `tokens` tokens, no padding) and keep max|x| per input channel of
    every `nn.Linear` (a weight used twice, a tied LM head, is one entry); then choose alpha (`choose_alpha`)."""
    peaks: dict[str, torch.Tensor] = {}
    names: dict[str, str] = {}
    keys = {}
    for module_name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and module.weight.dtype == torch.float32:
            keys[module] = weight_fingerprint(module.weight.detach().numpy())
            names.setdefault(keys[module], module_name)

    def record(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        x = args[0].detach()
        peak = x.reshape(-1, x.shape[-1]).abs().amax(0).float()
        key = keys[module]
        peaks[key] = torch.maximum(peaks[key], peak) if key in peaks else peak

    hooks = [module.register_forward_pre_hook(record) for module in keys]
    used = 0
    try:
        for text in documents:
            ids = tokenizer(text, return_tensors="pt", truncation=True, max_length=tokens)["input_ids"]
            if ids.shape[1] < 1:
                continue
            model(input_ids=ids, use_cache=False) if causal else model(input_ids=ids)
            used += 1
    finally:
        for hook in hooks:
            hook.remove()
    if not peaks:
        raise EffcError(f"model '{name}' ran no f32 nn.Linear on the calibration text; nothing to smooth")
    input_peaks = {key: value.numpy() for key, value in peaks.items()}
    batch = common_length_batch(tokenizer, documents[:SCORE_DOCUMENTS], tokens)
    alpha, scores = choose_alpha(model, batch, {m: k for m, k in keys.items() if k in input_peaks}, input_peaks, causal)
    return Smoothing(name, data_name, used, tokens, input_peaks, names, alpha, scores)
