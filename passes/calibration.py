"""What every `calibrate` command (`effc chai`, `effc quantize`) shares: its arguments, its text and its model."""

from __future__ import annotations

import argparse
from typing import Any

from effc.compiler.errors import EffcError


def add_calibration_arguments(parser: argparse.ArgumentParser, output_help: str) -> None:
    """MODEL, --data, -o, --documents and --tokens, as every `calibrate` command (CHAI, int8) takes them."""
    parser.add_argument(
        "model", metavar="MODEL", help="bundled model name (minilm, smollm2) or Hugging Face model directory"
    )
    parser.add_argument("--data", required=True, metavar="FILE", help="calibration text, one document per line")
    parser.add_argument("-o", "--output", default=None, help=output_help)
    parser.add_argument("--documents", type=int, default=64, help="documents used from --data (default: 64)")
    parser.add_argument("--tokens", type=int, default=128, help="tokens per document (default: 128)")


def calibration_inputs(
    args: argparse.Namespace, stages: Any, purpose: str
) -> tuple[list[str], tuple[Any, Any, bool, str]]:
    """The documents of `--data` (the first `--documents`) and the model, loaded under a progress stage."""
    from effc.passes.chai_calibrate import read_documents

    documents = read_documents(args.data)[: args.documents]
    with stages.stage(f"load {args.model}"):
        return documents, load_calibration_model(args.model, purpose)


def load_calibration_model(spec: str, purpose: str = "calibration") -> tuple[Any, Any, bool, str]:
    """(HF model, tokenizer, is_causal, name) for a bundled name or an HF directory; `purpose` names the caller
    in errors."""
    from pathlib import Path

    from effc.compiler.models import BUNDLED, load_bundled_hf, load_hf_directory

    if spec in BUNDLED:
        model, tokenizer, causal = load_bundled_hf(spec)
        name = spec
    elif Path(spec).is_dir():
        model, tokenizer, causal = load_hf_directory(Path(spec))
        name = Path(spec).name
    else:
        raise EffcError(
            f"{purpose} needs a bundled model ({', '.join(BUNDLED)}) or a Hugging Face directory, got '{spec}'"
        )
    if tokenizer is None:
        raise EffcError(f"model '{spec}' has no tokenizer; calibration tokenizes text")
    return model, tokenizer, causal, name
