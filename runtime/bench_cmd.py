"""`effc bench MODEL`: compiled-module latency against torch eager and torch.compile, as ratios."""

from __future__ import annotations

import argparse
import json

from effc.compiler.compile_cmd import add_model_arguments, model_options


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "bench",
        help="benchmark the compiled model against torch eager and torch.compile",
        description="Compile MODEL, then time it with iree-benchmark-module, torch eager and torch.compile "
        "on the same inputs in the same run; print the ratios and save them as JSON.",
    )
    add_model_arguments(parser)
    parser.add_argument("--pass-pipeline", default=None, help="effc pass pipeline to apply before IREE")
    parser.add_argument("--repeats", type=int, default=10, help="timed repetitions per measurement (default: 10)")
    parser.add_argument("--no-torch-compile", action="store_true", help="skip the torch.compile baseline")
    parser.add_argument("-o", "--output", default=None, help="JSON results file (default: MODEL_NAME.bench.json)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from rich.table import Table

    from effc.compiler.api import compile_model
    from effc.compiler.errors import EffcError
    from effc.compiler.fileio import write_atomic
    from effc.compiler.progress import Stages, report_console
    from effc.runtime.benchmark import benchmark_compiled

    if args.repeats < 1:
        raise EffcError(f"--repeats must be at least 1, got {args.repeats}")
    compiled = compile_model(args.model, progress=True, **model_options(args, args.pass_pipeline))
    baselines = "torch eager" if args.no_torch_compile else "torch eager and torch.compile"
    with Stages().stage(f"benchmark effc, {baselines}"):
        result = benchmark_compiled(compiled, repeats=args.repeats, with_compile=not args.no_torch_compile)
    caption = None if compiled.matmul_precision == "highest" else f"matmul precision {compiled.matmul_precision}"
    table = Table(title=f"{compiled.name} on {result['machine']['cpu']} ({args.target})", caption=caption)
    table.add_column("runtime")
    table.add_column("median ms", justify="right")
    table.add_column("effc speedup", justify="right")
    table.add_row("effc (IREE)", f"{result['effc_ms']:.2f}", "1.00x")
    table.add_row("torch eager", f"{result['eager_ms']:.2f}", f"{result['speedup_vs_eager']:.2f}x")
    if "torch_int8_eager_ms" in result:
        table.add_row(
            "torch eager, dynamic int8",
            f"{result['torch_int8_eager_ms']:.2f}",
            f"{result['speedup_vs_torch_int8_eager']:.2f}x",
        )
    if "torch_same_precision_eager_ms" in result:
        table.add_row(
            f"torch eager, {compiled.matmul_precision}",
            f"{result['torch_same_precision_eager_ms']:.2f}",
            f"{result['speedup_vs_torch_same_precision_eager']:.2f}x",
        )
    if "torch_compile_ms" in result:
        table.add_row(
            "torch.compile", f"{result['torch_compile_ms']:.2f}", f"{result['speedup_vs_torch_compile']:.2f}x"
        )
    console = report_console()
    console.print(table)
    output = args.output or f"{compiled.name}.bench.json"
    write_atomic(output, json.dumps(result, indent=2) + "\n")
    console.print(f"results in {output}")
    return 0
