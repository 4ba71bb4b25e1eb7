"""The bundled pretrained models compile for llvm-cpu and match torch eager on real text; a GGUF model is converted
once and then loaded from effc's cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import safetensors.torch
import torch
import transformers
import transformers.modeling_gguf_pytorch_utils as gguf_utils

import effc
from effc.compiler import models
from effc.tests.conftest import EffcCli


@pytest.mark.slow
def test_gguf_model_loads_from_its_cached_conversion(monkeypatch: pytest.MonkeyPatch) -> None:
    """The second load of SmolLM2 reads the cached f32 folder, not the GGUF file, and gets the same model.

    First in this file, so that the compile test below loads from the conversion instead of making its own."""
    bundled = models.BUNDLED["smollm2"]
    assert bundled.gguf_file is not None
    converted = models.converted_gguf_dir(models.bundled_model_dir(bundled) / bundled.gguf_file)
    assert converted.is_relative_to(models.cache_root())
    shutil.rmtree(converted, ignore_errors=True)  # whatever ran before: this load must convert
    first, first_tokenizer, first_causal = models.load_bundled_hf("smollm2")
    assert (converted / "model.safetensors").is_file()

    def parse_gguf(*args: object, **kwargs: object) -> None:
        raise AssertionError("the GGUF file was parsed again")

    monkeypatch.setattr(gguf_utils, "load_gguf_checkpoint", parse_gguf)
    second, second_tokenizer, second_causal = models.load_bundled_hf("smollm2")
    assert first_causal and second_causal
    assert type(second) is type(first) is transformers.LlamaForCausalLM
    weights = second.state_dict()
    assert all(torch.equal(weights[name], tensor) for name, tensor in first.state_dict().items())
    assert second.lm_head.weight.data_ptr() == second.model.embed_tokens.weight.data_ptr(), "tied as in the GGUF"
    text = models.EXAMPLE_TEXT
    assert second_tokenizer(text)["input_ids"] == first_tokenizer(text)["input_ids"]
    assert second_tokenizer.eos_token == first_tokenizer.eos_token


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


def _tiny_llama() -> transformers.LlamaForCausalLM:
    config = transformers.LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    return transformers.LlamaForCausalLM(config).eval()


def test_conversion_is_written_whole_or_not_at_all(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny_llama()
    folder = tmp_path / "gguf" / "tiny-0123"
    models._save_conversion(model, None, folder)
    loaded, _, causal = models.load_hf_directory(folder)
    assert causal and all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config

    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", disk_full)
    failed = tmp_path / "gguf" / "tiny-4567"
    models._save_conversion(model, None, failed)
    assert sorted(p.name for p in failed.parent.iterdir()) == ["tiny-0123"], "no half-written folder is left"


def test_unwritable_cache_only_costs_time(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    models._save_conversion(_tiny_llama(), None, blocker / "gguf" / "tiny-0123")
    assert blocker.read_text() == ""
