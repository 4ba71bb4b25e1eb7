"""`effc run model.vmfb --input ...`: run a compiled module and write its outputs as .npy files."""

from __future__ import annotations

import argparse
import io
import re
from pathlib import Path

import numpy as np

from effc.compiler.errors import EffcError


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "run",
        help="run a compiled .vmfb and save its outputs as .npy",
        description="Run FUNCTION of a compiled module on an IREE device. Inputs are @file.npy, "
        "IREE-style values (2x2xf32=1 2 3 4) or shapes (1x128xi64) filled with deterministic values.",
    )
    parser.add_argument("module", metavar="MODULE.vmfb")
    parser.add_argument(
        "--input", action="append", default=[], metavar="VALUE", help="one per model input (repeatable)"
    )
    parser.add_argument(
        "--device",
        default="local-task",
        help="IREE device: local-task, local-sync or cuda (default: local-task)",
    )
    parser.add_argument("--function", default="main", help="function to call (default: main)")
    parser.add_argument(
        "--params", metavar="FILE.irpa", help="the parameter archive of a module compiled with --params"
    )
    parser.add_argument(
        "-o", "--output-dir", default=".", help="where output_<i>.npy files go (default: current directory)"
    )
    parser.set_defaults(handler=run)


def parse_value(text: str, index: int) -> np.ndarray:
    """An input from `@x.npy`, `2x2xf32=1 2 3 4`, or a bare shape spec (filled deterministically)."""
    from effc.compiler.input_spec import example_tensor, parse_input_spec

    if text.startswith("@"):
        path = Path(text[1:])
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise EffcError(f"cannot read input file '{path}': {str(err).splitlines()[0]}") from None
    spec_text, _, values = text.partition("=")
    spec = parse_input_spec(spec_text)
    if None in spec.shape:
        raise EffcError(f"input '{text}': give concrete sizes when running (no '?')")
    if not values:
        return example_tensor(spec, seed=index).numpy()
    numbers = [v for v in re.split(r"[\s,]+", values.strip()) if v]
    count = int(np.prod(spec.shape)) if spec.shape else 1
    if len(numbers) == 1:
        numbers *= count
    if len(numbers) != count:
        raise EffcError(f"input '{text}': {len(numbers)} values for a shape of {count} elements")
    return np.array([float(n) for n in numbers]).astype(spec.dtype).reshape(spec.shape)


def run(args: argparse.Namespace) -> int:
    from effc.compiler.fileio import write_atomic
    from effc.compiler.progress import report_console
    from effc.runtime.runner import run_vmfb

    module = Path(args.module)
    if not module.is_file():
        raise EffcError(f"module '{module}' not found; compile one with `effc compile MODEL -o {module.name}`")
    inputs = [parse_value(text, i) for i, text in enumerate(args.input)]
    params = Path(args.params) if args.params else None
    if params is not None and not params.is_file():
        raise EffcError(f"parameter archive '{params}' not found; it is written by `effc compile --params {params}`")
    outputs = run_vmfb(module, inputs, device=args.device, function=args.function, parameters=params)
    out_dir = Path(args.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    console = report_console()
    for i, array in enumerate(outputs):
        path = out_dir / f"output_{i}.npy"
        buffer = io.BytesIO()
        np.save(buffer, array)
        write_atomic(path, buffer.getvalue())
        console.print(f"output {i}: {'x'.join(map(str, array.shape))}x{array.dtype} → {path}")
    return 0
