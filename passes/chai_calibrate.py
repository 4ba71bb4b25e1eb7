"""CHAI calibration: from a model and calibration text to a cluster plan.

Every attention head's probabilities on the calibration text (all query rows of every document) form
one long feature vector; heads with similar vectors attend to the same tokens. Only the head-by-head
Gram matrix of those vectors is kept per layer, so any amount of text fits in memory, and kernel
K-means, medoids and cosine similarity all work from it.

Multi-head layers: K-means for k = 1..H gives the error curve; k is taken at its elbow (Kneedle:
farthest point below the chord), or overridden per layer, or chosen to meet a K,V-cache reduction
target. Each cluster's representative is its medoid.
Grouped-query layers: a K head can only go when no representative uses its KV group, so the curve is
over kept KV groups b = 1..Hkv: the best set of b groups (exhaustive when small, else greedy)
minimises the distance of every head to its nearest head inside the kept groups. All heads of kept
groups are representatives; every other head joins the nearest one.

For a K,V target the layers are traded against each other by a cost per layer and size: the error
curve above (the paper's measure, free), or the measured change of the model's output with only
that layer clustered (`measure_output_costs`: one model pass per option). Attention distance says
which heads look alike, not what sharing their scores does to the model: on SmolLM2 the measured
costs halve the perplexity increase at a 20% K+V reduction. Layer costs add up closely (the sum of
single-layer KL divergences predicts the whole plan's), so an exact knapsack over them is the plan.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from effc.compiler.errors import EffcError
from effc.passes.chai_plan import ChaiPlan, LayerPlan, LayerShape, structure_fingerprint
from effc.passes.chai_reference import attention_modules, layer_shapes, patched_attention, weights_sha256

# Below this normalised gap between the error curve and its chord there is no elbow: keep all heads.
MIN_ELBOW_GAP = 0.1
_EXHAUSTIVE_LIMIT = 5000
# Measured costs: documents behind each model pass (cut to one length and batched), and the kept-group
# sets tried per size in a grouped-query layer (the closest by attention distance first).
COST_DOCUMENTS = 6
COST_CANDIDATES = 3

Cost = Literal["attention", "output"]
NO_DOCUMENT = "the calibration text gave no document with at least 2 tokens"


def read_documents(path: str | Path) -> list[str]:
    """Calibration text: one document per non-empty line."""
    try:
        lines = Path(path).read_text(errors="replace").splitlines()
    except OSError as err:
        raise EffcError(f"cannot read calibration data '{path}': {err.strerror}") from None
    docs = [line.strip() for line in lines if line.strip()]
    if not docs:
        raise EffcError(f"calibration data '{path}' has no text; give one document per line")
    return docs


@torch.no_grad()
def attention_grams(
    model: torch.nn.Module, tokenizer: Any, documents: Iterable[str], *, tokens: int, causal: bool
) -> list[np.ndarray]:
    """Per layer, the [H, H] Gram matrix of the heads' attention-probability rows over all documents."""
    inner = hf_model(model)
    config = inner.config
    previous = config._attn_implementation
    config._attn_implementation = "eager"  # the fused kernels do not return probabilities
    grams: list[np.ndarray] | None = None
    try:
        for text in documents:
            encoded = tokenizer(text, return_tensors="pt", truncation=True, max_length=tokens)
            ids = encoded["input_ids"]
            if ids.shape[1] < 2:
                continue
            kwargs: dict[str, Any] = {"output_attentions": True}
            if not causal:
                kwargs["attention_mask"] = encoded["attention_mask"]
            else:
                kwargs["use_cache"] = False
            attentions = inner(input_ids=ids, **kwargs).attentions
            if grams is None:
                grams = [np.zeros((a.shape[1], a.shape[1])) for a in attentions]
            for gram, probs in zip(grams, attentions, strict=True):
                rows = probs[0].reshape(probs.shape[1], -1).double()
                gram += (rows @ rows.T).numpy()
    finally:
        config._attn_implementation = previous
    if grams is None:
        raise EffcError(NO_DOCUMENT)
    return grams


def hf_model(model: torch.nn.Module) -> Any:
    """The Hugging Face model itself, given it or effc's wrapper of one."""
    return model if hasattr(model, "config") else model.model


def squared_distances(gram: np.ndarray) -> np.ndarray:
    diag = np.diag(gram)
    return np.maximum(diag[:, None] + diag[None, :] - 2 * gram, 0.0)


def cosine_similarity(gram: np.ndarray) -> np.ndarray:
    norm = np.sqrt(np.maximum(np.diag(gram), 1e-30))
    return gram / norm[:, None] / norm[None, :]


def kernel_kmeans(
    gram: np.ndarray, k: int, rng: np.random.Generator, n_init: int = 10, iterations: int = 100
) -> tuple[np.ndarray, float]:
    """K-means on points known only by their Gram matrix; best labels and inertia over `n_init` k-means++ starts."""
    n = gram.shape[0]
    dist = squared_distances(gram)
    best_labels, best_inertia = np.zeros(n, dtype=int), math.inf
    for _ in range(n_init):
        centers = [int(rng.integers(n))]
        for _ in range(1, k):
            d = dist[:, centers].min(axis=1)
            total = d.sum()
            centers.append(int(rng.choice(n, p=d / total)) if total > 0 else int(rng.integers(n)))
        labels = np.argmin(dist[:, centers], axis=1)
        for _ in range(iterations):
            to_center = _distance_to_means(gram, labels, k)
            new = np.argmin(to_center, axis=1)
            if np.array_equal(new, labels):
                break
            labels = new
        inertia = float(_distance_to_means(gram, labels, k)[np.arange(n), labels].sum())
        if inertia < best_inertia - 1e-12:
            best_labels, best_inertia = labels, inertia
    return _canonical(best_labels), best_inertia


def _distance_to_means(gram: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """||x_i - mean of cluster c||² for every point i and cluster c (inf for empty clusters)."""
    out = np.full((gram.shape[0], k), np.inf)
    diag = np.diag(gram)
    for c in range(k):
        members = np.flatnonzero(labels == c)
        if members.size:
            m = members.size
            out[:, c] = diag - 2 * gram[:, members].sum(axis=1) / m + gram[np.ix_(members, members)].sum() / m**2
    return np.maximum(out, 0.0)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Renumber clusters by their lowest head, so equal partitions give equal labels."""
    order: dict[int, int] = {}
    for label in labels:
        order.setdefault(int(label), len(order))
    return np.array([order[int(label)] for label in labels])


def medoid(gram: np.ndarray, members: Sequence[int]) -> int:
    """The member closest to the cluster mean (lowest head on ties)."""
    idx = list(members)
    m = len(idx)
    diag = np.diag(gram)[idx]
    to_mean = diag - 2 * gram[np.ix_(idx, idx)].sum(axis=1) / m + gram[np.ix_(idx, idx)].sum() / m**2
    return idx[int(np.argmin(np.round(to_mean, 12)))]


def elbow(curve: Sequence[float]) -> int | None:
    """Kneedle on a decreasing curve indexed 1..n: the index farthest below the chord, or None if flat."""
    y = np.asarray(curve, dtype=float)
    n = len(y)
    if n < 3 or y[0] - y[-1] <= 1e-12:
        return None
    x = np.linspace(0.0, 1.0, n)
    yn = (y - y[-1]) / (y[0] - y[-1])
    gap = (1.0 - x) - yn
    best = int(np.argmax(gap))
    return best + 1 if gap[best] >= MIN_ELBOW_GAP else None


def kept_groups_cost(dist: np.ndarray, shape: LayerShape, groups: Sequence[int]) -> float:
    heads = [g * shape.group + r for g in groups for r in range(shape.group)]
    return float(dist[:, heads].min(axis=1).sum())


def best_kept_groups(dist: np.ndarray, shape: LayerShape, budget: int) -> tuple[int, ...]:
    """The `budget` KV groups whose heads best cover all heads (exhaustive when small, else greedy)."""
    return ranked_kept_groups(dist, shape, budget, 1)[0]


def ranked_kept_groups(dist: np.ndarray, shape: LayerShape, budget: int, limit: int) -> list[tuple[int, ...]]:
    """Up to `limit` sets of `budget` KV groups, best cover first (only the greedy set when there are many)."""
    if math.comb(shape.kv_heads, budget) <= _EXHAUSTIVE_LIMIT:
        options = itertools.combinations(range(shape.kv_heads), budget)
        return sorted(options, key=lambda g: (round(kept_groups_cost(dist, shape, g), 12), g))[:limit]
    chosen: list[int] = []
    for _ in range(budget):
        rest = [g for g in range(shape.kv_heads) if g not in chosen]
        chosen.append(min(rest, key=lambda g: (round(kept_groups_cost(dist, shape, [*chosen, g]), 12), g)))
    return [tuple(sorted(chosen))]


def clusters_around(dist: np.ndarray, reps: Sequence[int]) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """Each head joins its nearest representative (lowest index on ties); representatives lead their own."""
    reps = sorted(reps)
    owner = {r: r for r in reps}
    for h in range(dist.shape[0]):
        if h not in owner:
            owner[h] = reps[int(np.argmin(np.round(dist[h, reps], 12)))]
    clusters = tuple(tuple(h for h in range(dist.shape[0]) if owner[h] == r) for r in reps)
    return clusters, tuple(reps)


@dataclass(frozen=True)
class LayerAnalysis:
    """Everything calibration learns about one layer; `layer_plan(k)` turns it into a plan entry."""

    layer: int
    shape: LayerShape
    gram: np.ndarray
    curve: tuple[float, ...]  # normalised: 1.0 = all heads in one cluster (or one KV group)
    kmeans: dict[int, np.ndarray]  # MHA: labels per k

    @property
    def unit(self) -> str:
        return "kv_heads" if self.shape.group > 1 else "clusters"

    @property
    def full(self) -> int:
        return self.shape.kv_heads

    def layer_plan(self, size: int, source: str) -> LayerPlan:
        """The plan entry with `size` clusters (MHA) or `size` kept KV groups (GQA)."""
        return replace(self.candidates(size, 1)[0], k_source=source)

    def candidates(self, size: int, limit: int) -> list[LayerPlan]:
        """Up to `limit` entries of `size`, closest by attention first: GQA tries other kept-group sets, MHA has one."""
        dist = squared_distances(self.gram)
        if self.shape.group > 1:
            group = self.shape.group
            return [
                self._entry(*clusters_around(dist, [g * group + r for g in kept for r in range(group)]))
                for kept in ranked_kept_groups(dist, self.shape, size, limit)
            ]
        labels = self.kmeans[size]
        clusters = tuple(tuple(int(h) for h in np.flatnonzero(labels == c)) for c in range(size))
        return [self._entry(clusters, tuple(medoid(self.gram, members) for members in clusters))]

    def _entry(self, clusters: tuple[tuple[int, ...], ...], reps: tuple[int, ...]) -> LayerPlan:
        sim = cosine_similarity(self.gram)
        off = sim[~np.eye(len(sim), dtype=bool)]
        return LayerPlan(
            layer=self.layer,
            heads=self.shape.heads,
            kv_heads=self.shape.kv_heads,
            clusters=clusters,
            representatives=reps,
            k_source="kv-reduction",
            elbow=elbow(self.curve),
            error_curve=self.curve,
            curve_unit=self.unit,
            mean_similarity=float(off.mean()) if off.size else 1.0,
        )


@dataclass(frozen=True)
class MeasuredOption:
    """One way to shrink one layer and what it did to the model's output (lower is better)."""

    cost: float
    entry: LayerPlan


def analyse_layers(grams: list[np.ndarray], shapes: list[LayerShape], seed: int) -> list[LayerAnalysis]:
    """Error curves (and K-means labels) per layer; deterministic for a given seed."""
    analyses = []
    for index, (gram, shape) in enumerate(zip(grams, shapes, strict=True)):
        dist = squared_distances(gram)
        rng = np.random.default_rng([seed, index])
        kmeans: dict[int, np.ndarray] = {}
        if shape.group > 1:
            errors = [
                kept_groups_cost(dist, shape, best_kept_groups(dist, shape, b)) for b in range(1, shape.kv_heads + 1)
            ]
        else:
            errors = []
            for k in range(1, shape.heads + 1):
                labels, inertia = kernel_kmeans(gram, k, rng)
                kmeans[k] = labels
                errors.append(inertia)
        scale = max(kernel_kmeans(gram, 1, rng, n_init=1)[1], 1e-30)
        analyses.append(LayerAnalysis(index, shape, gram, tuple(e / scale for e in errors), kmeans))
    return analyses


def choose_sizes(
    analyses: list[LayerAnalysis],
    overrides: dict[int, int],
    kv_reduction: float | None,
    costs: Sequence[dict[int, float]] | None = None,
) -> list[tuple[int, str]]:
    """Per layer (size, source): the elbow, a per-layer override, or the cheapest sizes for a K,V target.

    With `kv_reduction`, the layers not overridden take the sizes that free enough K heads at the least
    total cost: `costs[layer][size]` (measured), else the layer's normalised error curve.
    """
    for layer, size in overrides.items():
        if not 0 <= layer < len(analyses):
            raise EffcError(
                f"--layers-k names layer {layer}, but the model has {len(analyses)} attention layers "
                f"(0..{len(analyses) - 1})"
            )
        full = analyses[layer].full
        if not 1 <= size <= full:
            unit = analyses[layer].unit.replace("_", " ")
            raise EffcError(f"--layers-k {layer}={size}: layer {layer} allows 1..{full} {unit}")
    if kv_reduction is None:
        sizes = [
            (overrides[a.layer], "override") if a.layer in overrides else (elbow(a.curve) or a.full, "elbow")
            for a in analyses
        ]
        return [
            (s, "full" if s == a.full and src == "elbow" else src) for (s, src), a in zip(sizes, analyses, strict=True)
        ]
    if not 0.0 < kv_reduction < 0.5:
        raise EffcError(
            f"--kv-reduction must be in (0, 0.5): CHAI keeps every V head, so at most half of K+V can go "
            f"(got {kv_reduction})"
        )
    total = sum(a.shape.kv_heads for a in analyses) * 2
    needed = math.ceil(round(kv_reduction * total, 9)) - sum(analyses[la].full - s for la, s in overrides.items())
    free = [a for a in analyses if a.layer not in overrides]
    chosen = cheapest_sizes(
        [(a.full, costs[a.layer] if costs else dict(enumerate(a.curve, start=1))) for a in free], needed
    )
    if chosen is None:
        raise EffcError(f"cannot reach a K,V reduction of {kv_reduction:.0%} with these overrides")
    sizes = dict(zip((a.layer for a in free), chosen, strict=True))
    return [
        (overrides[a.layer], "override") if a.layer in overrides else (sizes[a.layer], "kv-reduction") for a in analyses
    ]


def cheapest_sizes(layers: Sequence[tuple[int, dict[int, float]]], needed: int) -> list[int] | None:
    """Per layer (full size, cost per size), the sizes that free at least `needed` units at the least summed cost.

    Exact (a knapsack by dynamic programming over units freed); a full layer costs nothing; None when even
    the smallest sizes free too little. Ties go to the lexicographically smallest sizes, so plans repeat.
    """
    best: dict[int, tuple[float, tuple[int, ...]]] = {min(needed, 0): (0.0, ())}
    for full, cost in layers:
        options = {full: 0.0} | {size: c for size, c in cost.items() if 1 <= size < full}
        step: dict[int, tuple[float, tuple[int, ...]]] = {}
        for freed, (summed, sizes) in best.items():
            for size, c in options.items():
                key = min(needed, freed + full - size)
                candidate = (round(summed + c, 12), (*sizes, size))
                if key not in step or candidate < step[key]:
                    step[key] = candidate
        best = step
    found = best.get(needed)
    return None if found is None else list(found[1])


@dataclass(frozen=True)
class Calibration:
    """The analysed attention of one model on one text; `plan` picks cluster counts from it (cheap)."""

    name: str
    shapes: list[LayerShape]
    analyses: list[LayerAnalysis]
    weights_sha256: str
    meta: dict[str, Any]
    measured: tuple[dict[int, MeasuredOption], ...] = field(default=())  # per layer and size: `measure_output_costs`

    def plan(
        self, overrides: dict[int, int] | None = None, kv_reduction: float | None = None, cost: Cost = "attention"
    ) -> ChaiPlan:
        if cost == "output" and not self.measured:
            raise EffcError("CHAI cost 'output' needs measured output costs (calibrate with --cost output)")
        costs = [{size: m.cost for size, m in layer.items()} for layer in self.measured] if cost == "output" else None
        sizes = choose_sizes(self.analyses, overrides or {}, kv_reduction, costs)
        layers = tuple(
            self.measured[a.layer][size].entry
            if costs and source == "kv-reduction" and size < a.full
            else a.layer_plan(size, source)
            for a, (size, source) in zip(self.analyses, sizes, strict=True)
        )
        selection = f"kv-reduction={kv_reduction}" if kv_reduction is not None else "elbow"
        extra: dict[str, Any] = {"cost": cost} if kv_reduction is not None else {}
        if self.measured:
            extra["output_costs"] = [
                {str(size): round(m.cost, 6) for size, m in sorted(layer.items())} for layer in self.measured
            ]
        return ChaiPlan(
            model=self.name,
            fingerprint=structure_fingerprint(self.shapes),
            layers=layers,
            head_dim=self.shapes[0].head_dim,
            weights_sha256=self.weights_sha256,
            calibration={
                **self.meta,
                "selection": selection,
                **extra,
                "overrides": {str(k): v for k, v in sorted((overrides or {}).items())},
            },
        )

    def cost_passes(self) -> int:
        """Model passes `measure_output_costs` makes: one per candidate entry below full size, plus the reference."""
        return 1 + sum(len(a.candidates(size, COST_CANDIDATES)) for a in self.analyses for size in range(1, a.full))


def analyse(
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Sequence[str],
    *,
    name: str,
    causal: bool,
    tokens: int = 128,
    seed: int = 0,
    data_name: str = "",
) -> Calibration:
    """Run the model on the calibration text and analyse every layer (deterministic for a given seed)."""
    shapes = layer_shapes(model)
    if not shapes:
        raise EffcError(f"model '{name}' has no attention layers that CHAI can cluster")
    if len({s.head_dim for s in shapes}) != 1:
        raise EffcError(f"model '{name}' mixes head sizes across layers; CHAI plans need one head size")
    torch.manual_seed(seed)
    grams = attention_grams(model, tokenizer, documents, tokens=tokens, causal=causal)
    if len(grams) != len(shapes) or len(attention_modules(model)) != len(shapes):
        raise EffcError(f"model '{name}' returned attention for {len(grams)} layers but has {len(shapes)}")
    meta = {
        "data": data_name,
        "documents": len(documents),
        "max_tokens": tokens,
        "seed": seed,
        "features": "attention probabilities, all query rows" + (" (causal)" if causal else ""),
    }
    return Calibration(name, shapes, analyse_layers(grams, shapes, seed), weights_sha256(model), meta)


@torch.no_grad()
def measure_output_costs(
    calibration: Calibration,
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Sequence[str],
    *,
    tokens: int,
    causal: bool,
    on_pass: Callable[[int, int], None] | None = None,
) -> Calibration:
    """`calibration` with, per layer and size below full, the candidate entry that changes the model's output least.

    Each candidate clusters its layer alone; the change is the KL divergence of next-token distributions
    (models with an LM head) or the relative squared error of the last hidden states (encoders), per
    token, on the first COST_DOCUMENTS documents cut to one length. `on_pass(done, total)` follows the passes.
    """
    batch = common_length_batch(tokenizer, documents[:COST_DOCUMENTS], tokens)
    identity = tuple(a.layer_plan(a.full, "full") for a in calibration.analyses)
    probe = ChaiPlan(
        model=calibration.name,
        fingerprint=structure_fingerprint(calibration.shapes),
        layers=identity,
        head_dim=calibration.shapes[0].head_dim,
    )
    total, done = calibration.cost_passes(), 1
    reference, log_probs = model_output(model, batch, None, causal)
    if on_pass:
        on_pass(done, total)
    measured: list[dict[int, MeasuredOption]] = []
    for a in calibration.analyses:
        best: dict[int, MeasuredOption] = {}
        for size in range(1, a.full):
            for entry in a.candidates(size, COST_CANDIDATES):
                layers = (*identity[: a.layer], entry, *identity[a.layer + 1 :])
                output, _ = model_output(model, batch, replace(probe, layers=layers), causal)
                cost = output_change(reference, output, log_probs)
                if size not in best or cost < best[size].cost - 1e-12:
                    best[size] = MeasuredOption(cost, entry)
                done += 1
                if on_pass:
                    on_pass(done, total)
        measured.append(best)
    meta = {
        **calibration.meta,
        "output_cost": "KL divergence of next-token distributions, per token"
        if log_probs
        else "squared error of last hidden states relative to theirs, per token",
        "output_cost_text": f"{batch.shape[0]} documents x {batch.shape[1]} tokens",
    }
    return replace(calibration, measured=tuple(measured), meta=meta)


def common_length_batch(tokenizer: Any, documents: Sequence[str], tokens: int) -> torch.Tensor:
    """The documents' first tokens, all cut to the shortest, as one batch: no padding, so no mask to get right."""
    rows = [tokenizer(t, return_tensors="pt", truncation=True, max_length=tokens)["input_ids"][0] for t in documents]
    rows = [r for r in rows if r.shape[0] >= 2]
    if not rows:
        raise EffcError(NO_DOCUMENT)
    length = min(r.shape[0] for r in rows)
    return torch.stack([r[:length] for r in rows])


def model_output(
    model: torch.nn.Module, batch: torch.Tensor, plan: ChaiPlan | None, causal: bool
) -> tuple[torch.Tensor, bool]:
    """(next-token log-probabilities, True) for a model with an LM head, else (last hidden states, False)."""
    inner = hf_model(model)
    with patched_attention(model, plan):
        out = inner(input_ids=batch, use_cache=False) if causal else inner(input_ids=batch)
    logits = getattr(out, "logits", None)
    if logits is not None:
        return torch.log_softmax(logits.double(), dim=-1), True
    return out.last_hidden_state.double(), False


def output_change(reference: torch.Tensor, output: torch.Tensor, log_probs: bool) -> float:
    """KL(reference || output) per token for log-probabilities, else squared error relative to the reference's."""
    if log_probs:
        return float((reference.exp() * (reference - output)).sum(-1).mean())
    return float(((output - reference) ** 2).sum(-1).mean() / (reference**2).sum(-1).mean())


def calibrate(
    model: torch.nn.Module,
    tokenizer: Any,
    documents: Sequence[str],
    *,
    name: str,
    causal: bool,
    tokens: int = 128,
    seed: int = 0,
    overrides: dict[int, int] | None = None,
    kv_reduction: float | None = None,
    cost: Cost = "attention",
    data_name: str = "",
    on_pass: Callable[[int, int], None] | None = None,
) -> ChaiPlan:
    """Calibrate a CHAI plan for a Hugging Face model (deterministic for a given seed and text)."""
    calibration = analyse(
        model, tokenizer, documents, name=name, causal=causal, tokens=tokens, seed=seed, data_name=data_name
    )
    if cost == "output":
        calibration = measure_output_costs(
            calibration, model, tokenizer, documents, tokens=tokens, causal=causal, on_pass=on_pass
        )
    return calibration.plan(overrides, kv_reduction, cost)


def random_plan(plan: ChaiPlan, seed: int) -> ChaiPlan:
    """The random-grouping baseline: per layer the same number of clusters and kept KV heads, random heads."""
    rng = np.random.default_rng(seed)
    layers = []
    for lp in plan.layers:
        if lp.is_identity():
            layers.append(lp)
            continue
        group = lp.group
        if group > 1:
            kept = sorted(rng.choice(lp.kv_heads, size=len(lp.kept_kv_heads()), replace=False).tolist())
            reps = [g * group + r for g in kept for r in range(group)]
        else:
            reps = sorted(rng.choice(lp.heads, size=lp.k, replace=False).tolist())
        owner = {r: r for r in reps}
        for h in range(lp.heads):
            owner.setdefault(h, reps[int(rng.integers(len(reps)))])
        clusters = tuple(tuple(h for h in range(lp.heads) if owner[h] == r) for r in reps)
        layers.append(replace(lp, clusters=clusters, representatives=tuple(reps), k_source="random"))
    return replace(
        plan, layers=tuple(layers), calibration={**plan.calibration, "baseline": f"random grouping, seed {seed}"}
    )
