"""Attention over a cache, its keys padded at import (`key_multiple`, importer.pad_cache_keys), against torch.

IREE 3.13's CUDA codegen reduces rows that are no multiple of 32 long with one thread per row: the padding
makes a 2049-key softmax a 2176-key one with masked keys, which must not change what attention computes."""

from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F

from effc.compiler.api import compile_model
from effc.compiler.optimize import best_known

TOLERANCE = 1e-6


class MaskedAttention(torch.nn.Module):
    """sdpa with the mask as an input (bool or additive)."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class Attention(torch.nn.Module):
    def __init__(self, is_causal: bool = False) -> None:
        super().__init__()
        self.is_causal = is_causal

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(q, k, v, is_causal=self.is_causal)


def _qkv(rows: int = 1, keys: int = 21) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(0)
    return torch.randn(1, 3, rows, 8), torch.randn(1, 3, keys, 8), torch.randn(1, 3, keys, 8)


def _padded_shapes(mlir: str) -> list[str]:
    return re.findall(r"= torch\.aten\.constant_pad_nd .* -> !torch\.vtensor<\[([\d,]+)\]", mlir)


MASKS = {
    "bool": lambda: torch.rand(1, 1, 1, 21) > 0.4,
    "additive per head": lambda: torch.randn(1, 3, 1, 21),
    "one for every key": lambda: torch.full((1, 1, 1, 1), -0.5),
}


@pytest.mark.parametrize("mask", list(MASKS))
def test_padded_keys_with_a_mask_match_torch(mask: str) -> None:
    inputs = (*_qkv(), MASKS[mask]())
    compiled = compile_model(MaskedAttention(), inputs, attention="decomposed", key_multiple=16)
    assert _padded_shapes(compiled.mlir) == ["1,3,32,8", "1,3,32,8"]  # 21 keys and values, padded to 32
    assert compiled.notes == ["attention keys and values padded, masked out: from 21 to 32"]
    assert max(compiled.compare()) < TOLERANCE


@pytest.mark.parametrize("attention", ["decomposed", "fused"])
def test_padded_keys_without_a_mask_match_torch(attention: str) -> None:
    """Without a mask the padding brings its own; fused attention decomposes a one-row query, and pads it too."""
    compiled = compile_model(Attention(), _qkv(), attention=attention, key_multiple=16)
    assert _padded_shapes(compiled.mlir) == ["1,3,32,8", "1,3,32,8"]
    assert max(compiled.compare()) < TOLERANCE


def test_folded_decode_attention_is_padded_too() -> None:
    """A decode step with its query heads folded onto their KV heads (fold_gqa.py) has a few query rows per KV
    head: its keys are padded all the same, and no repeated copy of them is made."""
    from effc.tests.test_fold_gqa import decode_attention

    model, inputs = decode_attention()  # 6 query heads on 2 KV heads, 40 cached keys
    compiled = compile_model(model, inputs, attention="decomposed", fold_gqa=True, key_multiple=16)
    assert _padded_shapes(compiled.mlir) == ["1,2,48,8", "1,2,48,8"]
    assert max(compiled.compare()) < TOLERANCE


@pytest.mark.parametrize(
    ("rows", "keys", "is_causal"),
    [(21, 21, False), (1, 32, False), (3, 21, True)],
    ids=["a prompt attending to itself", "keys already a multiple", "causal"],
)
def test_left_unpadded(rows: int, keys: int, is_causal: bool) -> None:
    compiled = compile_model(Attention(is_causal), _qkv(rows, keys), attention="decomposed", key_multiple=16)
    assert _padded_shapes(compiled.mlir) == [] and compiled.notes == []
    assert max(compiled.compare()) < TOLERANCE


def test_dynamic_key_length_is_left_unpadded() -> None:
    """A cache of dynamic length would need a run-time padding (an fmod torch-mlir cannot lower): left as it is."""
    inputs = ("1x3x1x8xf32", "1x3x?x8xf32", "1x3x?x8xf32")
    compiled = compile_model(Attention(), _qkv(), inputs=inputs, attention="decomposed", key_multiple=16)
    assert _padded_shapes(compiled.mlir) == [] and compiled.notes == []
    assert max(compiled.compare()) < TOLERANCE


@pytest.mark.parametrize(("target", "padded"), [("cuda", ["1,3,128,8", "1,3,128,8"]), ("llvm-cpu", [])])
def test_optimize_pads_keys_for_cuda_only(target: str, padded: list[str]) -> None:
    """`-O` pads on CUDA, where the padding turns one thread per row into a subgroup reduction; a CPU vectorizes
    the odd row anyway."""
    compiled = compile_model(Attention(), _qkv(), target=target, emit="torch", **best_known(target))
    assert _padded_shapes(compiled.mlir) == padded
