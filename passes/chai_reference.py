"""CHAI in plain PyTorch: the reference the `effc-chai` pass is checked against, and its online step.

Three things live here because the tests, the benchmark and the pass all use them:
  * `clustered_attention`: the shared-probability form written out by hand (scores for the
    representatives only, copied to their clusters, each head times its own V);
  * `online_membership`: the per-request clustering from the first N tokens. The pass exports this
    very function with torch.export and calls it from the rewritten graph, so online mode in the
    compiled model and here cannot drift apart;
  * `patched_attention`: runs a Hugging Face model with CHAI (or the GQA mean-pool baseline) in
    every attention layer, through transformers' attention-function registry.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from effc.compiler.errors import EffcError
from effc.passes.chai_plan import ChaiPlan, LayerPlan, LayerShape, structure_fingerprint

Mode = Literal["static", "online"]
Method = Literal["chai", "meanpool"]
ATTENTION_NAME = "effc_chai"
_BIG = 1e9


def online_membership(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: float,
    kept_kv: int,
    tokens: int = 5,
    causal: bool = True,
    group: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the heads of one sequence from the attention of its first `tokens` tokens.

    q is [1, H, T, d]; k is [1, Hkv, T, d], or [1, H, T, d] already repeated per query head, in
    which case `group` (query heads per KV head) must be given. Features are each head's `tokens` x `tokens` softmax
    (causally masked unless `causal` is False), compared by cosine distance. Greedy k-medoids picks
    `kept_kv` KV groups (one head each without GQA) minimising the summed distance of every head to
    its nearest candidate; every head of a chosen group is a representative and every head joins its
    nearest one. Static shapes and no Python control flow on data, so it exports into a graph.
    Returns (representatives [kept_kv*group] ascending, cluster index of each head [H]).
    """
    heads = q.shape[1]
    group = group or heads // k.shape[1]
    kv_heads = heads // group
    n = min(tokens, q.shape[2])
    qn, kn = q[0, :, :n].float(), k[0, :, :n].float()
    if k.shape[1] != heads:
        kn = kn.repeat_interleave(group, dim=0)
    scores = torch.matmul(qn, kn.transpose(-1, -2)) * scale
    if causal:
        future = torch.ones(n, n, dtype=torch.bool, device=q.device).triu(1)
        scores = scores.masked_fill(future, float("-inf"))
    features = torch.softmax(scores, dim=-1).reshape(heads, n * n)
    features = features / features.norm(dim=1, keepdim=True).clamp_min(1e-12)
    distance = (1.0 - features @ features.T).clamp_min(0.0)
    to_group = distance.view(heads, kv_heads, group).amin(dim=-1)  # [H, Hkv]
    nearest = torch.full((heads,), _BIG, device=q.device)
    chosen = torch.zeros(kv_heads, dtype=torch.bool, device=q.device)
    positions = torch.arange(kv_heads, device=q.device)
    for _ in range(kept_kv):
        cost = torch.minimum(nearest[:, None], to_group).sum(dim=0) + chosen.float() * _BIG
        pick = torch.argmin(cost)
        chosen = chosen | (positions == pick)
        nearest = torch.minimum(nearest, to_group.index_select(1, pick.view(1)).squeeze(1))
    groups = torch.sort(torch.where(chosen, positions, positions + kv_heads)).values[:kept_kv]
    reps = (groups[:, None] * group + torch.arange(group, device=q.device)).reshape(-1)
    assign = torch.argmin(distance.index_select(1, reps), dim=1)
    return reps, assign


def clustered_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    reps: torch.Tensor,
    cluster_of_head: torch.Tensor,
    *,
    scale: float,
    mask: torch.Tensor | None = None,
    is_causal: bool = False,
) -> torch.Tensor:
    """softmax(Q_r K_rᵀ·scale + mask) for the representatives r, shared by each cluster, times each head's V.

    q [B, H, Tq, d]; k, v [B, Hkv, Tk, d] (Hkv divides H); mask bool (True = attend) or additive,
    broadcastable to [B, H, Tq, Tk]. Returns [B, H, Tq, dv].
    """
    heads, kv_heads = q.shape[1], k.shape[1]
    group = heads // kv_heads
    scores = torch.matmul(q.index_select(1, reps), k.index_select(1, reps // group).transpose(-1, -2)) * scale
    if mask is not None:
        if mask.dim() == 4 and mask.shape[1] == heads:
            mask = mask.index_select(1, reps)
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask
    elif is_causal:
        tq, tk = scores.shape[-2:]
        future = torch.ones(tq, tk, dtype=torch.bool, device=q.device).triu(tk - tq + 1)
        scores = scores.masked_fill(future, float("-inf"))
    probs = torch.softmax(scores.float(), dim=-1).to(q.dtype).index_select(1, cluster_of_head)
    values = v.repeat_interleave(group, dim=1) if group > 1 else v
    return torch.matmul(probs, values)


def meanpool_groups(kv_heads: int, budget: int) -> list[list[int]]:
    """Contiguous, near-equal groups of KV heads: the training-free GQA conversion's grouping."""
    bounds = [round(i * kv_heads / budget) for i in range(budget + 1)]
    return [list(range(bounds[i], bounds[i + 1])) for i in range(budget)]


# --- running Hugging Face models with CHAI ------------------------------------------------------


@dataclass(frozen=True)
class _LayerState:
    plan: LayerPlan
    mode: Mode
    method: Method
    tokens: int
    # online mode: the membership found at the request's prefill, reused by its decode steps
    membership: dict[str, torch.Tensor] = field(default_factory=dict)


def _attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """transformers attention function: CHAI per the layer's plan (or unchanged without one)."""
    state: _LayerState | None = getattr(module, "_effc_chai", None)
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    is_causal = attention_mask is None and query.shape[2] > 1 and bool(getattr(module, "is_causal", False))
    heads = query.shape[1]
    if state is None or (state.method == "chai" and state.mode == "static" and state.plan.is_identity()):
        reps = torch.arange(heads, device=query.device)
        out = clustered_attention(query, key, value, reps, reps, scale=scale, mask=attention_mask, is_causal=is_causal)
    elif state.method == "meanpool":
        lp = state.plan
        groups = meanpool_groups(lp.kv_heads, len(lp.kept_kv_heads()))
        pooled = torch.stack([key[:, g].mean(dim=1) for g in groups], dim=1)
        owner = torch.tensor(
            [next(i for i, g in enumerate(groups) if j in g) for j in range(lp.kv_heads)], device=key.device
        )
        reps = torch.arange(heads, device=query.device)
        out = clustered_attention(
            query,
            pooled.index_select(1, owner),
            value,
            reps,
            reps,
            scale=scale,
            mask=attention_mask,
            is_causal=is_causal,
        )
    else:
        lp = state.plan
        if state.mode == "online":
            if query.shape[0] != 1:
                raise EffcError("CHAI online mode clusters each request separately and needs batch size 1")
            if query.shape[2] > 1 or not state.membership:  # a new request: cluster from its first tokens
                found = online_membership(query, key, scale, len(lp.kept_kv_heads()), state.tokens)
                state.membership.update(reps=found[0], owner=found[1])
            reps, owner = state.membership["reps"], state.membership["owner"]
        else:
            reps = torch.tensor(lp.representatives, device=query.device)
            owner = torch.tensor(lp.cluster_of_head(), device=query.device)
        out = clustered_attention(query, key, value, reps, owner, scale=scale, mask=attention_mask, is_causal=is_causal)
    return out.transpose(1, 2).contiguous(), None


def attention_modules(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The model's attention modules in layer order (those transformers gives a `layer_idx`)."""
    found = [
        m
        for m in model.modules()
        if hasattr(m, "layer_idx") and any(hasattr(m, name) for name in ("q_proj", "query", "k_proj", "key"))
    ]
    return sorted(found, key=lambda m: int(m.layer_idx))


def hf_config(model: torch.nn.Module) -> Any:
    config = getattr(model, "config", None)
    if config is None:
        inner = getattr(model, "model", None)
        config = getattr(inner, "config", None)
    if config is None:
        raise EffcError(f"{type(model).__name__} is not a Hugging Face model (no config); CHAI calibration needs one")
    return config


def layer_shapes(model: torch.nn.Module) -> list[LayerShape]:
    """Query heads, KV heads and head size of every attention layer, from the HF config."""
    config = hf_config(model)
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    return [LayerShape(heads, kv_heads, head_dim)] * len(attention_modules(model))


def weights_sha256(model: torch.nn.Module) -> str:
    """A digest of every parameter (names, shapes, bytes): which weights a plan was calibrated on."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()


def check_plan(plan: ChaiPlan, model: torch.nn.Module) -> None:
    """One-line error unless `plan` was calibrated for this model's structure and weights."""
    shapes = layer_shapes(model)
    if not shapes:
        raise EffcError(f"{type(model).__name__} has no attention layers; there is nothing for CHAI to cluster")
    plan.check_fits(shapes, f"model {type(model).__name__}")
    if (
        structure_fingerprint(shapes) == plan.fingerprint
        and plan.weights_sha256
        and plan.weights_sha256 != weights_sha256(model)
    ):
        raise EffcError(
            f"CHAI plan was calibrated on other weights of this architecture (model '{plan.model}'); "
            "recalibrate for these weights"
        )


@contextmanager
def patched_attention(
    model: torch.nn.Module, plan: ChaiPlan | None, *, mode: Mode = "static", method: Method = "chai", tokens: int = 5
) -> Iterator[torch.nn.Module]:
    """Run `model` with CHAI (or mean-pooled K) in every attention layer; `plan=None` is plain attention."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, _attention)
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)  # else a custom name gets no padding mask
    config = hf_config(model)
    modules = attention_modules(model)
    if plan is not None:
        check_plan(plan, model)
    previous = config._attn_implementation
    config._attn_implementation = ATTENTION_NAME
    for module in modules:
        state = None if plan is None else _LayerState(plan.layers[int(module.layer_idx)], mode, method, tokens)
        module._effc_chai = state
    try:
        yield model
    finally:
        config._attn_implementation = previous
        for module in modules:
            del module._effc_chai
