"""The bundled pretrained models compile for llvm-cpu and match torch eager on real text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import effc
from effc.tests.conftest import EffcCli


@pytest.mark.slow
@pytest.mark.parametrize("name", ["minilm", "smollm2"])
def test_bundled_model_matches_torch(name: str) -> None:
    compiled = effc.compile(name)
    (input_ids, *_) = compiled.example_inputs
    assert input_ids.shape == (1, 128)
    assert len(set(input_ids[0].tolist())) > 20, "example inputs should be real tokenized text"
    errors = compiled.compare()
    assert max(errors) <= 1e-4, errors


@pytest.mark.slow
def test_main_job_command(effc_cli: EffcCli, tmp_path: Path) -> None:
    """The README's main job: compile MiniLM, check against torch, report the artifacts."""
    out = tmp_path / "minilm.vmfb"
    summary = tmp_path / "minilm.json"
    result = effc_cli(
        "compile",
        "minilm",
        "-o",
        str(out),
        "--check",
        "--save-temps",
        str(tmp_path / "temps"),
        "--json",
        str(summary),
    )
    assert result.code == 0, result.err
    assert "max relative error vs torch eager" in result.out
    data = json.loads(summary.read_text())
    assert data["output"] == str(out.resolve())
    assert max(data["relative_error_vs_torch"]) <= 1e-4
    assert (tmp_path / "temps" / "01-imported.mlir").read_text().count("torch.aten.") > 50
