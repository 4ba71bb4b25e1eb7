"""`effc read train|merge`: READ side-network fine-tuning on a frozen, IREE-compiled backbone.

    effc read train minilm --task task.json --cache-states -o adapter/
    effc read merge minilm adapter/ -o merged.vmfb

MODEL is a bundled encoder (`minilm`) or a Hugging Face encoder directory: READ needs its tokenizer
and its layer count. The task file format is documented in `effc/runtime/read_task.py`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from effc.compiler.iree_backend import TARGETS


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "read",
        help="READ: train a recurrent side network beside a frozen compiled backbone, and merge it",
        description="READ (arXiv 2305.15348): a GRU over the layer outputs of a frozen encoder, trained "
        "without backpropagating through the encoder, which runs compiled by IREE.",
    )
    commands = parser.add_subparsers(dest="read_command", required=True)
    train = commands.add_parser(
        "train",
        help="train a READ adapter on a task file",
        description="Compile MODEL with every layer's output as an extra result, then train only the side "
        "network and head in PyTorch. Writes the adapter (safetensors + JSON) and train_report.json.",
    )
    train.add_argument("model", metavar="MODEL", help="bundled encoder name (minilm) or Hugging Face encoder directory")
    train.add_argument("--task", required=True, metavar="TASK.json", help="task file (data, labels, split, settings)")
    train.add_argument(
        "--cache-states",
        action="store_true",
        help="run the backbone once per split and reuse its states every epoch",
    )
    train.add_argument(
        "-o",
        "--output",
        default="read_adapter",
        metavar="DIR",
        help="adapter directory (default: read_adapter)",
    )
    _add_target(train)
    merge = commands.add_parser(
        "merge",
        help="compile backbone + side network + head into one IREE module",
        description="Link the tapped backbone and the trained side network and head into one module, compile "
        "it, and check it against the PyTorch composition on a real sentence.",
    )
    merge.add_argument("model", metavar="MODEL", help="the backbone the adapter was trained on")
    merge.add_argument("adapter", metavar="ADAPTER_DIR", help="directory written by `effc read train`")
    merge.add_argument("-o", "--output", required=True, metavar="FILE.vmfb", help="merged module")
    merge.add_argument("--batch-size", type=int, default=1, help="static batch size of the module (default: 1)")
    merge.add_argument("--max-length", type=int, default=128, help="static token count of the module (default: 128)")
    _add_target(merge)
    parser.set_defaults(handler=run)


def _add_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--target",
        choices=TARGETS,
        default=None,
        help="IREE target (default: cuda when a GPU is present, else llvm-cpu)",
    )


def load_encoder(spec: str) -> tuple[Any, Any]:
    """(Hugging Face encoder, tokenizer) for a bundled name or a model directory."""
    from effc.compiler.errors import EffcError
    from effc.compiler.models import BUNDLED, bundled_model_dir, load_hf_directory

    if spec in BUNDLED and BUNDLED[spec].gguf_file:
        raise EffcError(f"READ needs an encoder with a tokenizer; bundled '{spec}' is a causal LM")
    path = bundled_model_dir(BUNDLED[spec]) if spec in BUNDLED else Path(spec)
    if not (path / "config.json").is_file():
        raise EffcError(
            f"READ needs a Hugging Face encoder directory or a bundled encoder ({', '.join(BUNDLED)}); "
            f"'{spec}' is neither"
        )
    model, tokenizer, is_causal = load_hf_directory(path)
    if is_causal or tokenizer is None:
        what = "is a causal LM" if is_causal else "has no tokenizer"
        raise EffcError(f"READ needs an encoder with a tokenizer; '{spec}' {what}")
    return model, tokenizer


def run(args: argparse.Namespace) -> int:
    return _train(args) if args.read_command == "train" else _merge(args)


def _train(args: argparse.Namespace) -> int:
    import torch

    from effc.compiler.fileio import write_atomic
    from effc.runtime.read import ReadConfig, attach
    from effc.runtime.read_compile import compile_backbone, default_target
    from effc.runtime.read_task import load_task, read_config_fields
    from effc.runtime.read_train import EnergyLog, LiveStates, StateCache, backbone_batch, tokenize, train

    task = load_task(args.task)
    sizes = ", ".join(f"{name} {len(split)}" for name, split in task.splits.items())
    _say(f"task {task.name}: {sizes} examples ({task.dropped} rows dropped: excluded labels or duplicates)")
    backbone_model, tokenizer = load_encoder(args.model)
    torch.manual_seed(task.seed)  # the side network's initial weights
    model = attach(backbone_model, ReadConfig(**read_config_fields(task)))
    model.print_trainable_parameters()
    target = args.target or default_target()
    batch = backbone_batch(task.batch_size, cached=args.cache_states)
    backbone = compile_backbone(backbone_model, batch_size=batch, max_length=task.max_length, target=target)
    _say(f"compiled the backbone with {model.config.num_layers} layer taps for {target}, {batch} rows per call")
    data = tokenize(task, tokenizer)
    energy = EnergyLog(on_gpu=torch.cuda.is_available())
    if args.cache_states:
        with StateCache(backbone, data, energy) as cache:
            _say(
                f"cached backbone states: {cache.nbytes / 1e6:.0f} MB; train split {cache.seconds['train']:.1f} s, "
                f"dev and test (evaluation) {sum(cache.seconds.values()) - cache.seconds['train']:.1f} s"
            )
            report = train(model, task, data, cache, energy=energy, log=_say)
    else:
        report = train(model, task, data, LiveStates(backbone, data), energy=energy, log=_say)
    out = model.save_pretrained(args.output)
    write_atomic(out / "train_report.json", json.dumps(report.to_json(), indent=2) + "\n")
    best = report.fit.epochs[report.fit.best_epoch - 1].accuracy.get("dev", 0.0)
    test = f", test accuracy {report.test_accuracy:.4f}" if report.test_accuracy is not None else ""
    _say(f"best dev accuracy {best:.4f} (epoch {report.fit.best_epoch}){test}")
    energy_used = report.energy
    _say(f"training: {report.seconds:.1f} s, {energy_used.energy_j:.0f} J ({energy_used.source}: {energy_used.device})")
    if report.cache:
        _say(
            f"cached states saved about {report.cache['saved_seconds_estimate']:.1f} s and "
            f"{report.cache['saved_joules_estimate']:.0f} J ({energy_used.source}) "
            f"of {task.epochs - 1} backbone passes over the train split"
        )
    _say(f"wrote {out / 'read_model.safetensors'}, {out / 'read_config.json'} and {out / 'train_report.json'}")
    return 0


def _merge(args: argparse.Namespace) -> int:
    from effc.compiler.errors import EffcError
    from effc.compiler.models import wrap_hf_model
    from effc.runtime.read import ReadModel, load_adapter
    from effc.runtime.read_compile import merge

    if args.batch_size < 1 or args.max_length < 2:
        raise EffcError(f"--batch-size must be >= 1 and --max-length >= 2 (got {args.batch_size}, {args.max_length})")
    load_adapter(args.adapter)  # a bad adapter fails before the backbone is loaded
    backbone_model, tokenizer = load_encoder(args.model)
    model = ReadModel.from_pretrained(backbone_model, args.adapter)
    _, example = wrap_hf_model(backbone_model, tokenizer, is_causal=False, sequence_length=args.max_length)
    inputs = tuple(t.repeat(args.batch_size, 1) for t in example)
    compiled = merge(model, inputs, target=args.target)  # type: ignore[arg-type]
    error = max(compiled.compare())
    compiled.save(args.output)
    verdict = "ok" if error <= 1e-5 else "MISMATCH"
    _say(f"merged module vs PyTorch composition: relative error {error:.2e} {verdict}")
    _say(f"wrote {args.output} (inputs: input_ids and attention_mask, {args.batch_size}x{args.max_length} i64)")
    return 0 if error <= 1e-5 else 1


def _say(line: str) -> None:
    print(line, flush=True)
