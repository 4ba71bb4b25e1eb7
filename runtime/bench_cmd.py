"""`effc bench MODEL`: compiled-module latency against torch eager and torch.compile, as ratios."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from effc.compiler.compile_cmd import add_model_arguments, model_options

if TYPE_CHECKING:
    from rich.table import Table


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
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="also time effc and each torch baseline in N alternating rounds of a few calls, in one process: ratios "
        "that a machine whose speed drifts (a shared cloud VM) leaves alone (default: 0, off)",
    )
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
    if args.rounds < 0:
        raise EffcError(f"--rounds must be 0 (off) or more, got {args.rounds}")
    compiled = compile_model(args.model, progress=True, **model_options(args, args.pass_pipeline))
    baselines = "torch eager" if args.no_torch_compile else "torch eager and torch.compile"
    with Stages().stage(f"benchmark effc, {baselines}"):
        result = benchmark_compiled(
            compiled, repeats=args.repeats, with_compile=not args.no_torch_compile, rounds=args.rounds
        )
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
    if "alternating" in result:
        console.print(_alternating_table(result["alternating"]))
    output = args.output or f"{compiled.name}.bench.json"
    write_atomic(output, json.dumps(result, indent=2) + "\n")
    console.print(f"results in {output}")
    return 0


BASELINE_LABELS = {"torch_eager": "torch eager", "torch_compile": "torch.compile"}


def _alternating_table(alternating: dict[str, dict[str, float]]) -> Table:
    from rich.table import Table

    from effc.runtime.benchmark import ALTERNATING_CALLS

    rounds = next(iter(alternating.values()))["rounds"]
    table = Table(title=f"{rounds:.0f} alternating rounds of {ALTERNATING_CALLS} calls a side")
    for column in ("baseline", "effc ms", "torch ms", "effc speedup, median (min-max)"):
        table.add_column(column, justify="left" if column == "baseline" else "right")
    for name, r in alternating.items():
        spread = f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"
        table.add_row(BASELINE_LABELS[name], f"{r['effc_ms']:.2f}", f"{r['torch_ms']:.2f}", spread)
    return table
