"""End-to-end numerics: effc-compiled modules on llvm-cpu against torch eager (relative error ≤ 1e-4)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import effc
from effc.runtime.runner import relative_error
from effc.tests import model_zoo

TOLERANCE = 1e-4

ARCHITECTURES: dict[str, Callable[[], tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]] = {
    "mlp": model_zoo.mlp,
    "conv_net": model_zoo.conv_net,
    "gpt2": model_zoo.gpt2,
    "bert": model_zoo.bert,
    "llama_mha": model_zoo.llama,
    "llama_gqa": model_zoo.llama_gqa,
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_matches_torch_eager(name: str) -> None:
    model, inputs = ARCHITECTURES[name]()
    compiled = effc.compile(model, inputs, target="llvm-cpu")
    errors = compiled.compare()
    assert errors and max(errors) <= TOLERANCE, f"{name}: relative errors {errors}"


@pytest.mark.parametrize("attention", ["fused", "decomposed"])
def test_attention_import_modes_agree_with_torch(attention: str) -> None:
    model, inputs = model_zoo.llama_gqa()
    compiled = effc.compile(model, inputs, attention=attention)  # type: ignore[arg-type]
    has_sdpa = "torch.aten.scaled_dot_product_attention" in compiled.mlir
    assert has_sdpa == (attention == "fused")
    assert max(compiled.compare()) <= TOLERANCE


def test_dynamic_batch_stays_dynamic() -> None:
    model, _ = model_zoo.mlp()
    compiled = effc.compile(model, inputs=("?x32xf32",))
    assert "!torch.vtensor<[?,32],f32>" in compiled.mlir
    for batch in (3, 11):
        x = torch.randn(batch, 32)
        (out,) = compiled.run(x)
        with torch.no_grad():
            expected = model(x).numpy()
        assert out.shape == (batch, 10)
        assert relative_error(out, expected) <= TOLERANCE


def test_save_writes_a_loadable_module(tmp_path: Path) -> None:
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs)
    path = compiled.save(tmp_path / "mlp.vmfb")
    from effc.runtime.runner import run_vmfb

    (out,) = run_vmfb(path, [inputs[0].numpy()])
    np.testing.assert_allclose(out, compiled.run()[0], rtol=0, atol=0)
