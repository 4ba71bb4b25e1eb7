"""A LLaMA-family decoder as two exportable functions with an explicit KV cache, for CHAI decoding.

`Prefill(ids) -> (logits, K per layer, V per layer)` and `DecodeStep(token, position, K caches,
V caches) -> (logits, new K row per layer, new V row per layer)`. The caches are plain inputs that
the step only reads (the caller writes the returned rows at `position`), so the compiled step
never copies a cache to update it. Both are ordinary attention graphs: run `effc-chai` on them and
it narrows the K outputs and the K-cache arguments to the KV heads the representatives use
(`shrink-io`), while V keeps its layout. `generate` drives compiled (or eager) steps greedily.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from effc.compiler.errors import EffcError


def _repeat_kv(x: torch.Tensor, group: int) -> torch.Tensor:
    if group == 1:
        return x
    b, h, t, d = x.shape
    return x[:, :, None].expand(b, h, group, t, d).reshape(b, h * group, t, d)


class _Decoder(nn.Module):
    """The shared body: embeddings, layers and head of a transformers LlamaForCausalLM-like model."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        inner = getattr(model, "model", None)
        if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
            raise EffcError(f"{type(model).__name__} is not a LLaMA-style causal LM (model.layers, lm_head)")
        self.inner = inner
        self.lm_head = model.lm_head
        config = model.config
        self.heads = int(config.num_attention_heads)
        self.kv_heads = int(getattr(config, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // self.heads)

    def layers_with(
        self,
        hidden: torch.Tensor,
        positions: torch.Tensor,
        attend: Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        cos, sin = self.inner.rotary_emb(hidden, positions)
        keys, values = [], []
        b, t, _ = hidden.shape
        for index, layer in enumerate(self.inner.layers):
            attn = layer.self_attn
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            k = attn.k_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            v = attn.v_proj(x).view(b, t, -1, self.head_dim).transpose(1, 2)
            q, k = apply_rotary_pos_emb(q, k, cos, sin)
            out = attend(index, q, k, v)
            hidden = hidden + attn.o_proj(out.transpose(1, 2).reshape(b, t, -1))
            hidden = hidden + layer.mlp(layer.post_attention_layernorm(hidden))
            keys.append(k)
            values.append(v)
        return self.lm_head(self.inner.norm(hidden)), keys, values


class Prefill(_Decoder):
    """ids [1, T] -> (logits [1, T, vocab], K_0..K_{L-1} [1, Hkv, T, d], V_0..V_{L-1})."""

    def forward(self, input_ids: torch.Tensor) -> tuple[torch.Tensor, ...]:
        group = self.heads // self.kv_heads
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            scale = self.inner.layers[index].self_attn.scaling
            return nn.functional.scaled_dot_product_attention(
                q, _repeat_kv(k, group), _repeat_kv(v, group), is_causal=True, scale=scale
            )

        logits, keys, values = self.layers_with(self.inner.embed_tokens(input_ids), positions, attend)
        return (logits, *keys, *values)


class DecodeStep(_Decoder):
    """(token [1, 1], position [1] int64, K caches [1, Hkv, L, d] per layer, V caches likewise)
    -> (logits [1, 1, vocab], new K rows [1, Hkv, 1, d] per layer, new V rows likewise).

    Cache entries at index ≥ position are ignored; the new token attends to itself as well."""

    def forward(self, token: torch.Tensor, position: torch.Tensor, *caches: torch.Tensor) -> tuple[torch.Tensor, ...]:
        count = len(self.inner.layers)
        k_caches, v_caches = caches[:count], caches[count:]
        group = self.heads // self.kv_heads
        length = k_caches[0].shape[2]
        device = position.device
        past = torch.arange(length, device=device) < position
        valid = torch.cat([past, torch.ones(1, dtype=torch.bool, device=device)]).view(1, 1, 1, length + 1)

        def attend(index: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            scale = self.inner.layers[index].self_attn.scaling
            keys = _repeat_kv(torch.cat([k_caches[index], k], dim=2), group)
            vals = _repeat_kv(torch.cat([v_caches[index], v], dim=2), group)
            return nn.functional.scaled_dot_product_attention(q, keys, vals, attn_mask=valid, scale=scale)

        logits, keys, values = self.layers_with(self.inner.embed_tokens(token), position.view(1, 1), attend)
        return (logits, *keys, *values)


def generate(
    prefill: Callable[[np.ndarray], list[np.ndarray]],
    step: Callable[[list[np.ndarray]], list[np.ndarray]],
    prompt: np.ndarray,
    new_tokens: int,
    length: int,
) -> list[int]:
    """Greedy decoding with a static cache of `length` tokens; `prefill`/`step` may be compiled or eager.

    The caches take whatever head counts the prefill returns, so a CHAI-rewritten decoder (fewer K
    heads) runs through the same loop."""
    outputs = prefill(prompt)
    rows = outputs[1:]
    used = prompt.shape[1]
    if used + new_tokens > length + 1:
        raise EffcError(f"a {used}-token prompt plus {new_tokens} new tokens does not fit a {length}-token cache")
    caches = [np.zeros((1, r.shape[1], length, r.shape[3]), np.float32) for r in rows]
    for cache, row in zip(caches, rows, strict=True):
        cache[:, :, :used] = row
    token = int(np.argmax(outputs[0][0, -1]))
    tokens = [token]
    for position in range(used, used + new_tokens - 1):
        out = step([np.array([[token]], np.int64), np.array([position], np.int64), *caches])
        for cache, row in zip(caches, out[1:], strict=True):
            cache[:, :, position : position + 1] = row
        token = int(np.argmax(out[0][0, -1]))
        tokens.append(token)
    return tokens
