"""Graph-level rewrites (issue 8): numerics of the rewritten modules on llvm-cpu against torch eager."""

from __future__ import annotations

import re

import torch

from effc.bench.perf.workloads import AttentionBlock
from effc.compiler.api import compile_model
from effc.tests import model_zoo

SPLIT = "builtin.module(effc-split-projections)"


def _results(mlir: str, op: str) -> list[str]:
    """The result types of every `op` in `mlir`."""
    return re.findall(rf"= {re.escape(op)} .* -> (!torch\.vtensor<[^>]*>)", mlir)


def test_split_projections_attention_block() -> None:
    torch.manual_seed(0)
    model, x = AttentionBlock(dim=32, heads=4).eval(), torch.randn(2, 8, 32)
    compiled = compile_model(model, (x,), pipeline=SPLIT)
    assert max(compiled.compare()) < 1e-5
    # The qkv Linear ([16,96]) became three [16,32] matmuls on [32,32] slices of its weight and
    # [32] slices of its bias; nothing else is sliced.
    assert _results(compiled.mlir, "torch.aten.mm") == ["!torch.vtensor<[16,32],f32>"] * 3
    slices = _results(compiled.mlir, "torch.aten.slice.Tensor")
    assert sorted(slices) == ["!torch.vtensor<[32,32],f32>"] * 3 + ["!torch.vtensor<[32],f32>"] * 3
    assert "[16,96]" not in compiled.mlir


def test_split_projections_gpt2() -> None:
    model, inputs = model_zoo.gpt2()
    compiled = compile_model(model, inputs, pipeline=SPLIT)
    assert max(compiled.compare()) < 1e-5
    # Each layer's c_attn ([16,192] = 3 x 64) is split; no slice of an activation is left.
    mms = _results(compiled.mlir, "torch.aten.mm")
    assert "!torch.vtensor<[16,192],f32>" not in mms
    assert mms.count("!torch.vtensor<[16,64],f32>") == 2 * 5  # per layer: q, k, v, attn.c_proj and mlp.c_proj
    assert "!torch.vtensor<[1,16,64],f32>" not in _results(compiled.mlir, "torch.aten.slice.Tensor")
