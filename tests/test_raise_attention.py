"""effc-raise-attention on a real eager-attention model: the pass must fire and IREE must match torch.

A tiny BERT with HF's eager attention and a padding mask: with fused attention the importer keeps its
matmul/softmax chains (no sdpa), the pass turns each layer's chain into one sdpa that carries the mask,
and the IREE build (llvm-cpu) must still match torch eager.
"""

from __future__ import annotations

import torch

from effc.compiler.api import compile_model
from effc.tests import model_zoo

SDPA = "torch.aten.scaled_dot_product_attention "
TOLERANCE = 1e-5


class MaskedBert(torch.nn.Module):
    """BERT with eager attention, as tokens and a padding mask → last hidden state."""

    def __init__(self, bert: torch.nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.bert.set_attn_implementation("eager")

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


def eager_bert() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    wrapped, (tokens,) = model_zoo.bert()  # seeded
    mask = torch.ones_like(tokens)
    mask[:, -5:] = 0  # padding: the last 5 keys are masked out
    return MaskedBert(wrapped.model).eval(), (tokens, mask)


def test_eager_attention_is_raised_to_sdpa_and_keeps_numerics() -> None:
    model, inputs = eager_bert()
    plain = compile_model(model, inputs, attention="fused", emit="torch")
    assert SDPA not in plain.mlir  # eager attention stays a matmul/softmax chain without the pass

    compiled = compile_model(model, inputs, attention="fused", pipeline="builtin.module(effc-raise-attention)")
    assert compiled.mlir.count(SDPA) == 2  # one per layer
    assert "torch.aten.exp " not in compiled.mlir  # the softmax chains are gone
    assert 'effc.raise_attention = "2/2 attention chains raised' in compiled.mlir
    assert max(compiled.compare()) < TOLERANCE
