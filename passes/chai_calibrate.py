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
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from effc.compiler.errors import EffcError
from effc.passes.chai_plan import ChaiPlan, LayerPlan, LayerShape, structure_fingerprint
from effc.passes.chai_reference import attention_modules, layer_shapes, weights_sha256

# Below this normalised gap between the error curve and its chord there is no elbow: keep all heads.
MIN_ELBOW_GAP = 0.1
_EXHAUSTIVE_LIMIT = 5000


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
    inner = model if hasattr(model, "config") else model.model  # an HF model or effc's wrapper of one
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
        raise EffcError("the calibration text gave no document with at least 2 tokens")
    return grams


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
    if math.comb(shape.kv_heads, budget) <= _EXHAUSTIVE_LIMIT:
        options = itertools.combinations(range(shape.kv_heads), budget)
        return min(options, key=lambda g: (round(kept_groups_cost(dist, shape, g), 12), g))
    chosen: list[int] = []
    for _ in range(budget):
        rest = [g for g in range(shape.kv_heads) if g not in chosen]
        chosen.append(min(rest, key=lambda g: (round(kept_groups_cost(dist, shape, [*chosen, g]), 12), g)))
    return tuple(sorted(chosen))


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
        dist = squared_distances(self.gram)
        if self.shape.group > 1:
            clusters, reps = clusters_around(
                dist,
                [
                    g * self.shape.group + r
                    for g in best_kept_groups(dist, self.shape, size)
                    for r in range(self.shape.group)
                ],
            )
        else:
            labels = self.kmeans[size]
            clusters = tuple(tuple(int(h) for h in np.flatnonzero(labels == c)) for c in range(size))
            reps = tuple(medoid(self.gram, members) for members in clusters)
        sim = cosine_similarity(self.gram)
        off = sim[~np.eye(len(sim), dtype=bool)]
        return LayerPlan(
            layer=self.layer,
            heads=self.shape.heads,
            kv_heads=self.shape.kv_heads,
            clusters=clusters,
            representatives=reps,
            k_source=source,
            elbow=elbow(self.curve),
            error_curve=self.curve,
            curve_unit=self.unit,
            mean_similarity=float(off.mean()) if off.size else 1.0,
        )


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
    analyses: list[LayerAnalysis], overrides: dict[int, int], kv_reduction: float | None
) -> list[tuple[int, str]]:
    """Per layer (size, source): the elbow, a per-layer override, or the cheapest steps to a K,V target.

    With `kv_reduction`, layers not overridden start unclustered and the step (one fewer KV head in
    some layer) that adds the least normalised error is taken until K+V bytes shrink by that fraction.
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
    sizes = {a.layer: overrides.get(a.layer, a.full) for a in analyses}
    total = sum(a.shape.kv_heads for a in analyses) * 2

    def freed() -> float:  # a layer of size s keeps s K heads (MHA: its representatives; GQA: s groups)
        return sum(a.shape.kv_heads - sizes[a.layer] for a in analyses) / total

    while freed() < kv_reduction:
        steps = [
            (a.curve[sizes[a.layer] - 2] - a.curve[sizes[a.layer] - 1], a.layer)
            for a in analyses
            if a.layer not in overrides and sizes[a.layer] > 1
        ]
        if not steps:
            raise EffcError(f"cannot reach a K,V reduction of {kv_reduction:.0%} with these overrides")
        sizes[min(steps)[1]] -= 1
    return [(sizes[a.layer], "override" if a.layer in overrides else "kv-reduction") for a in analyses]


@dataclass(frozen=True)
class Calibration:
    """The analysed attention of one model on one text; `plan` picks cluster counts from it (cheap)."""

    name: str
    shapes: list[LayerShape]
    analyses: list[LayerAnalysis]
    weights_sha256: str
    meta: dict[str, Any]

    def plan(self, overrides: dict[int, int] | None = None, kv_reduction: float | None = None) -> ChaiPlan:
        sizes = choose_sizes(self.analyses, overrides or {}, kv_reduction)
        layers = tuple(a.layer_plan(size, source) for a, (size, source) in zip(self.analyses, sizes, strict=True))
        selection = f"kv-reduction={kv_reduction}" if kv_reduction is not None else "elbow"
        return ChaiPlan(
            model=self.name,
            fingerprint=structure_fingerprint(self.shapes),
            layers=layers,
            head_dim=self.shapes[0].head_dim,
            weights_sha256=self.weights_sha256,
            calibration={
                **self.meta,
                "selection": selection,
                "overrides": {str(k): v for k, v in sorted((overrides or {}).items())},
            },
        )


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
    data_name: str = "",
) -> ChaiPlan:
    """Calibrate a CHAI plan for a Hugging Face model (deterministic for a given seed and text)."""
    calibration = analyse(
        model, tokenizer, documents, name=name, causal=causal, tokens=tokens, seed=seed, data_name=data_name
    )
    return calibration.plan(overrides, kv_reduction)


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
