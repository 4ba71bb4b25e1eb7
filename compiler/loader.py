"""Resolve what a user passes as MODEL into a torch module or ExportedProgram plus example inputs.

Accepted: a `.pt2` from `torch.export.save`, a Hugging Face model directory, a bundled model name
(`minilm`, `smollm2`), a `package.module:factory` (or `file.py:factory`) spec, a torch-dialect `.mlir`
file, and a pickled `torch.save(model)` only with `--trust-pickle`. Files are recognised by their
content, not their extension: TorchScript archives are refused with what to export instead.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from effc.compiler.errors import EffcError, first_line
from effc.compiler.models import BUNDLED, load_bundled_hf, load_hf_directory, wrap_hf_model

EXPECTED_FORMS = (
    "a .pt2 file from torch.export.save, a Hugging Face model directory, a package.module:factory spec, "
    f"a torch-dialect .mlir file, or a bundled model name ({', '.join(BUNDLED)})"
)


@dataclass
class LoadedModel:
    """A model ready for export: an eager module or an ExportedProgram, or torch-dialect MLIR text."""

    name: str
    module: torch.nn.Module | None = None
    program: torch.export.ExportedProgram | None = None
    mlir_text: str | None = None
    example_inputs: tuple[torch.Tensor, ...] | None = None


def load_model(spec: str, *, trust_pickle: bool = False) -> LoadedModel:
    """Load MODEL as given on the command line."""
    if spec in BUNDLED:
        return _load_bundled(spec)
    path = Path(spec)
    if path.is_dir():
        if not (path / "config.json").exists():
            raise EffcError(
                f"directory '{spec}' has no config.json, so it is not a Hugging Face model; expected {EXPECTED_FORMS}"
            )
        model, tokenizer, is_causal = load_hf_directory(path)
        module, example = wrap_hf_model(model, tokenizer, is_causal)
        return LoadedModel(path.name, module=module, example_inputs=example)
    if path.exists():
        return _load_file(path, trust_pickle=trust_pickle)
    if ":" in spec and (spec.rpartition(":")[0].endswith(".py") or not spec.startswith(("/", "."))):
        return _load_factory(spec)
    close = difflib.get_close_matches(spec, list(BUNDLED), n=2)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise EffcError(f"model '{spec}' not found{hint} (expected {EXPECTED_FORMS})")


def _load_bundled(name: str) -> LoadedModel:
    model, tokenizer, is_causal = load_bundled_hf(name)
    module, example = wrap_hf_model(model, tokenizer, is_causal)
    return LoadedModel(name, module=module, example_inputs=example)


def sniff_format(path: Path) -> str:
    """Tell a model file's format from its bytes: pt2, torchscript, pickle, mlir, or unknown."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError as err:
        raise EffcError(f"cannot read model file '{path}': {err.strerror}; check its permissions") from None
    if not head:
        raise EffcError(f"model file '{path}' is empty; re-export it with torch.export.save")
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                format_entries = [n for n in names if n.endswith("archive_format")]
                if format_entries and archive.read(format_entries[0]).strip() == b"pt2":
                    return "pt2"
        except (zipfile.BadZipFile, EOFError, OSError):
            raise EffcError(
                f"model file '{path}' is a truncated or corrupt zip archive; re-export it with torch.export.save"
            ) from None
        if any("/code/" in n or n.endswith("constants.pkl") for n in names):
            return "torchscript"
        if any(n.endswith("data.pkl") for n in names):
            return "pickle"
        return "unknown"
    if head[:1] == b"\x80":  # pickle protocol 2+: legacy torch.save
        return "pickle"
    text = head.decode("utf-8", errors="replace").lstrip()
    if text.startswith(("module", "func.func", "builtin.module", "#", "//", "torch.")) or path.suffix == ".mlir":
        return "mlir"
    return "unknown"


def _load_file(path: Path, *, trust_pickle: bool) -> LoadedModel:
    kind = sniff_format(path)
    name = path.stem
    if kind == "pt2":
        try:
            program = torch.export.load(path)
        except Exception as err:  # torch raises many types for damaged archives
            raise EffcError(f"cannot load '{path}' with torch.export.load: {first_line(err)}; re-export it") from None
        example = program.example_inputs
        args = tuple(example[0]) if example and not example[1] else None
        return LoadedModel(name, program=program, example_inputs=args)
    if kind == "torchscript":
        raise EffcError(
            f"'{path}' is a TorchScript archive, which effc cannot import; export the eager model instead: "
            "torch.export.save(torch.export.export(model, example_inputs), 'model.pt2')"
        )
    if kind == "pickle":
        if not trust_pickle:
            raise EffcError(
                f"refusing to unpickle '{path}': a torch.save pickle can run arbitrary code when loaded; "
                "pass --trust-pickle if you trust its source, or save the model with torch.export.save as a .pt2"
            )
        try:
            obj = torch.load(path, weights_only=False, map_location="cpu")
        except Exception as err:
            raise EffcError(f"cannot unpickle '{path}': {first_line(err)}") from None
        if not isinstance(obj, torch.nn.Module):
            raise EffcError(
                f"'{path}' holds a {type(obj).__name__}, not a torch.nn.Module (a state_dict needs its model class); "
                "use a package.module:factory spec that builds the model and loads the weights"
            )
        return LoadedModel(name, module=obj.eval())
    if kind == "mlir":
        return LoadedModel(name, mlir_text=path.read_text())
    raise EffcError(f"'{path}' is not a model file effc knows; expected {EXPECTED_FORMS}")


def _load_factory(spec: str) -> LoadedModel:
    module_name, _, attr = spec.rpartition(":")
    try:
        if module_name.endswith(".py"):
            file = Path(module_name)
            if not file.exists():
                raise EffcError(f"model spec '{spec}': file '{module_name}' not found")
            loader_spec = importlib.util.spec_from_file_location(file.stem, file)
            assert loader_spec is not None and loader_spec.loader is not None
            namespace = importlib.util.module_from_spec(loader_spec)
            sys.modules[file.stem] = namespace
            loader_spec.loader.exec_module(namespace)
        else:
            namespace = importlib.import_module(module_name)
    except ImportError as err:
        raise EffcError(f"model spec '{spec}': cannot import '{module_name}': {first_line(err)}") from None
    factory = getattr(namespace, attr, None)
    if not callable(factory):
        raise EffcError(f"model spec '{spec}': '{module_name}' has no callable '{attr}'")
    built = factory()
    model, example = built if isinstance(built, tuple) else (built, None)
    if not isinstance(model, torch.nn.Module):
        raise EffcError(
            f"model spec '{spec}' returned {type(model).__name__}; it must return a torch.nn.Module "
            "or (module, example_inputs)"
        )
    if isinstance(example, torch.Tensor):
        example = (example,)
    return LoadedModel(attr, module=model.eval(), example_inputs=tuple(example) if example is not None else None)
