"""effc's import of an ExportedProgram: the weights' literals are torch-mlir's own, byte for byte."""

from __future__ import annotations

import pytest
import torch
from torch_mlir.extras.fx_importer import FxImporterHooks

from effc.compiler import importer


class _MixedWeights(torch.nn.Module):
    """Every kind of weight literal: a transposed (non-contiguous) f32 parameter, an f16 one, an int64 buffer, a
    one-element buffer (a splat) and an embedding tied to the output projection."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.projection = torch.nn.Parameter(torch.randn(8, 4, generator=generator).t())
        self.mixing = torch.nn.Parameter(torch.randn(4, 4, generator=generator).half())
        self.register_buffer("order", torch.tensor([3, 1, 2, 0]))
        self.register_buffer("gain", torch.tensor([2.0]))
        self.embed = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mixed = (self.embed(ids).index_select(1, self.order) * self.gain) @ self.mixing.float()
        return mixed @ self.projection, self.head(mixed)


def _imported_asm(program: torch.export.ExportedProgram) -> str:
    module, ctx = importer.import_program(program, attention="decomposed")
    ctx.enable_multithreading(False)
    return module.operation.get_asm()


def test_weight_literals_match_torch_mlir_default(monkeypatch: pytest.MonkeyPatch) -> None:
    program = torch.export.export(_MixedWeights().eval(), (torch.tensor([1, 4, 7]),))
    ours = _imported_asm(program)
    monkeypatch.setattr(importer, "_WeightLiterals", FxImporterHooks)  # torch-mlir's tensor -> list -> numpy path
    assert ours == _imported_asm(program)
    assert ours.count("torch_tensor_4_8_torch.float32: ") == 1
    assert ours.count("torch_tensor_4_4_torch.float16: ") == 1
    assert ours.count("torch_tensor_4_torch.int64: ") == 1
    assert ours.count("torch_tensor_10_4_torch.float32") == 2, "the tied embedding: one blob, defined and used once"
