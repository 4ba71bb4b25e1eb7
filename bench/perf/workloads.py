"""The fixed performance set of issue 8: an attention block, MiniLM, SmolLM2 prefill and decode step.

Each workload is (name, module, example inputs, attention mode hint). Inputs are random, never zeros,
so no kernel gets a free ride on sparsity or constant folding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn


class AttentionBlock(nn.Module):
    """Fused-QKV multi-head self-attention with an output projection (the GPU measurements' block)."""

    def __init__(self, dim: int = 1024, heads: int = 16) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(b, t, d))


@dataclass
class Workload:
    name: str
    build: Callable[[], tuple[nn.Module, tuple[torch.Tensor, ...]]]


def attention_block() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return AttentionBlock().eval(), (torch.randn(4, 512, 1024),)


def minilm() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from effc.compiler.loader import load_model

    loaded = load_model("minilm")
    assert loaded.module is not None and loaded.example_inputs is not None
    return loaded.module, loaded.example_inputs


def smollm2_prefill() -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    from effc.compiler.loader import load_model

    loaded = load_model("smollm2")
    assert loaded.module is not None and loaded.example_inputs is not None
    return loaded.module, loaded.example_inputs


def smollm2_decode_step(context: int = 2048) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
    """One greedy decode step against a `context`-token KV cache (random cache contents)."""
    from effc.compiler.loader import load_model
    from effc.passes.chai_decode import DecodeStep

    loaded = load_model("smollm2")
    assert loaded.module is not None
    step = DecodeStep(loaded.module.model).eval()
    generator = torch.Generator().manual_seed(0)
    layers = len(step.inner.layers)
    cache = [torch.randn(1, step.kv_heads, context, step.head_dim, generator=generator) for _ in range(2 * layers)]
    return step, (torch.tensor([[42]]), torch.tensor([context - 1]), *cache)


WORKLOADS = {
    "attention-block": Workload("attention block B=4 T=512 D=1024 H=16", attention_block),
    "minilm": Workload("MiniLM, sequence 128", minilm),
    "smollm2-prefill": Workload("SmolLM2 prefill, 128 tokens", smollm2_prefill),
    "smollm2-decode": Workload("SmolLM2 decode step, 2048 context", smollm2_decode_step),
}
