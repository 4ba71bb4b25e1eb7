"""Grouped-query attention folded onto its KV heads at import (compiler/fold_gqa.py), against torch eager."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import effc
from effc.compiler.api import fold_allowed
from effc.compiler.fold_gqa import fold_repeated_kv
from effc.compiler.importer import export_model
from effc.compiler.loader import LoadedModel
from effc.compiler.progress import Stages
from effc.passes.chai_plan import ChaiPlan, LayerPlan, structure_fingerprint
from effc.passes.chai_reference import layer_shapes
from effc.tests import model_zoo

TOLERANCE = 1e-4


class DecodeAttention(torch.nn.Module):
    """One query row against a cache of 2 KV heads repeated for 6 query heads (LLaMA's repeat_kv), masked."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, kv_heads, length, d = k.shape
        group = q.shape[1] // kv_heads
        keys = k[:, :, None].expand(b, kv_heads, group, length, d).reshape(b, kv_heads * group, length, d)
        values = v[:, :, None].expand(b, kv_heads, group, length, d).reshape(b, kv_heads * group, length, d)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask, scale=0.3)


def decode_attention(mask_heads: int = 1) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    mask = torch.rand(1, mask_heads, 1, 40) > 0.3
    mask[..., -1] = True  # every head sees at least its own row
    return DecodeAttention(), (torch.randn(1, 6, 1, 8), torch.randn(1, 2, 40, 8), torch.randn(1, 2, 40, 8), mask)


@pytest.mark.parametrize("mask_heads", [1, 6])  # one mask for all heads; one per query head, regrouped like them
def test_folded_decode_attention_matches_torch_without_repeating_kv(mask_heads: int) -> None:
    model, inputs = decode_attention(mask_heads)
    unfolded = effc.compile(model, inputs, attention="decomposed", emit="torch").mlir
    compiled = effc.compile(model, inputs, attention="decomposed", fold_gqa=True)
    # 6 query heads of one row on 2 KV heads: scores for 2 heads of 3 rows
    assert "-> !torch.vtensor<[6,1,40],f32>" in unfolded and "-> !torch.vtensor<[6,1,40],f32>" not in compiled.mlir
    assert "torch.aten.bmm" in compiled.mlir and "-> !torch.vtensor<[2,3,40],f32>" in compiled.mlir
    assert max(compiled.compare()) <= TOLERANCE


def test_attention_with_many_query_rows_is_left_repeated() -> None:
    """A prompt's attention: the repeats are small there, and folded IREE rejected data tiling (fold_gqa.py)."""
    model, inputs = model_zoo.llama_gqa()  # 4 query heads on 2 KV heads, 16 query rows
    program, _ = export_model(LoadedModel("m", module=model, example_inputs=inputs), ())
    assert fold_repeated_kv(program) == (program, 0)


def test_program_without_repeats_is_returned_as_it_is() -> None:
    model, inputs = model_zoo.llama()  # as many KV heads as query heads: no repeat_kv
    program, _ = export_model(LoadedModel("m", module=model, example_inputs=inputs), ())
    assert fold_repeated_kv(program) == (program, 0)


def test_folding_leaves_the_reference_program_untouched() -> None:
    model, inputs = decode_attention()
    program, _ = export_model(LoadedModel("m", module=model, example_inputs=inputs), ())
    before = str(program.graph)
    folded, count = fold_repeated_kv(program)
    assert count == 1 and str(program.graph) == before and str(folded.graph) != before
    torch.testing.assert_close(folded.module()(*inputs), program.module()(*inputs), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("pipeline", "allowed"),
    [
        (None, True),
        ("builtin.module(func.func(cse),canonicalize,effc-hoist-softmax-guard)", True),
        ("builtin.module(canonicalize,builtin.module(effc-chai{plan=p.json}))", False),  # found when nested too
    ],
)
def test_fold_is_allowed_unless_a_pass_reads_query_heads(pipeline: str | None, allowed: bool) -> None:
    stages = Stages(enabled=False)
    assert fold_allowed(pipeline, stages) == allowed
    assert stages.notes == (
        [] if allowed else ["grouped-query attention left unfolded: effc-chai reads attention per query head"]
    )


def test_chai_keeps_query_heads_unfolded_with_a_note(tmp_path: Path) -> None:
    """End to end: `effc.compile` asks `fold_allowed`, says why in its notes, and CHAI still rewrites correctly."""
    model, inputs = model_zoo.llama_gqa()
    shapes = layer_shapes(model)
    layers = tuple(
        LayerPlan(i, s.heads, s.kv_heads, ((0,), (1,), (2,), (3,)), (0, 1, 2, 3)) for i, s in enumerate(shapes)
    )
    plan = tmp_path / "plan.json"
    plan.write_text(ChaiPlan("test", structure_fingerprint(shapes), layers, shapes[0].head_dim).to_json())
    compiled = effc.compile(
        model, inputs, attention="decomposed", fold_gqa=True, pipeline=f"builtin.module(effc-chai{{plan={plan}}})"
    )
    assert compiled.notes == ["grouped-query attention left unfolded: effc-chai reads attention per query head"]
    assert max(compiled.compare()) <= TOLERANCE
