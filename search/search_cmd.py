"""`effc search WORKLOAD`: GEVO-ML evolutionary search over the model's IR and IREE options.

effc search digits-mlp -o out/                       # search, then report the front in out/
effc search --resume -o out/                         # continue a killed search (same trajectory)
effc search --apply out/front/01-.../genome.json -o out/   # rebuild one candidate
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

WORKLOADS = "digits-mlp | digits-cnn | minilm-block | digits-mlp-small"


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "search",
        help="evolve IR edits and IREE options for runtime vs error (GEVO-ML, NSGA-II)",
        description="Evolve edit lists over the model's torch-dialect IR plus IREE compile options; every candidate is "
        "compiled and run in an isolated worker; the Pareto front of runtime against validation error is "
        "measured on the test split and reported with IR diffs and compiled modules.",
    )
    parser.add_argument("workload", nargs="?", metavar="WORKLOAD", help=f"{WORKLOADS} (omit with --resume or --apply)")
    parser.add_argument("-o", "--output-dir", default="effc-search", help="report directory (default: effc-search)")
    parser.add_argument("--db", help="search database (default: OUTPUT_DIR/search.db)")
    parser.add_argument("--resume", action="store_true", help="continue the search stored in --db")
    parser.add_argument("--apply", metavar="GENOME_JSON", help="rebuild the candidate in a genome file into OUTPUT_DIR")
    parser.add_argument("--target", default="llvm-cpu", help="IREE target: llvm-cpu | cuda (default: llvm-cpu)")
    parser.add_argument(
        "--population", type=int, default=16, help="individuals per generation, a multiple of 4 (default: 16)"
    )
    parser.add_argument("--generations", type=int, default=None, help="generations after the initial one (default: 8)")
    parser.add_argument("--seed", type=int, default=0, help="search seed (default: 0)")
    parser.add_argument(
        "--data-seed", type=int, default=0, help="seed of the workload's training and data split (default: 0)"
    )
    parser.add_argument(
        "--mutation-rate", type=float, default=0.5, help="probability an offspring is mutated (default: 0.5)"
    )
    parser.add_argument(
        "--crossover-rate", type=float, default=0.8, help="probability a parent pair is crossed (default: 0.8)"
    )
    parser.add_argument(
        "--tolerance", type=float, default=0.02, help="error allowed above the original's (default: 0.02)"
    )
    parser.add_argument("--elites", type=int, default=0, help="parents competing with the offspring (default: all)")
    parser.add_argument("--operators", default="copy,delete,operand,swap,config", help="mutation operators to use")
    parser.add_argument("--initial-edits", type=int, default=1, help="mutations per initial individual (default: 1)")
    parser.add_argument(
        "--repetitions", type=int, default=5, help="iree-benchmark-module repetitions of 0.1 s (default: 5)"
    )
    parser.add_argument(
        "--timeout", type=float, default=120.0, help="seconds per candidate before it is invalid (default: 120)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="local worker processes (default: cores)"
    )
    parser.add_argument(
        "--ray-address", help="evaluate on a Ray cluster (an address, 'auto', or 'local' to start one here)"
    )
    parser.add_argument(
        "--final-rounds", type=int, default=5, help="interleaved timing rounds for the final front (default: 5)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from effc.compiler.errors import EffcError
    from effc.compiler.progress import report_console
    from effc.search.api import new_search, rebuild_candidate, resume_search, run_search
    from effc.search.evolve import SearchConfig

    console = report_console()
    output = Path(args.output_dir)
    db = Path(args.db) if args.db else output / "search.db"
    if args.apply:
        for kind, path in rebuild_candidate(Path(args.apply), db, output).items():
            console.print(f"{kind}: {path}")
        return 0
    if args.resume:
        store, _ = resume_search(db, args.generations)
    elif not args.workload:
        raise EffcError(f"name a WORKLOAD ({WORKLOADS}), or continue a search with --resume")
    else:
        config = SearchConfig(
            args.workload,
            args.target,
            args.population,
            8 if args.generations is None else args.generations,
            args.mutation_rate,
            args.crossover_rate,
            args.tolerance,
            args.elites,
            args.seed,
            tuple(o.strip() for o in args.operators.split(",") if o.strip()),
            args.initial_edits,
            args.repetitions,
            args.timeout,
            data_seed=args.data_seed,
        )
        store = new_search(config, db)
    with BarProgress() as progress:
        result = run_search(
            store,
            output,
            workers=args.workers,
            ray_address=args.ray_address,
            final_rounds=args.final_rounds,
            progress=progress,
        )
    _print_front(console, result)
    return 0


class BarProgress:
    """A progress bar per generation (candidates evaluated), with best runtime, front size and cache hits."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = Console(stderr=True, highlight=False, soft_wrap=True)
        self.bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=True,
            disable=not self.console.is_terminal,
        )
        self.task: Any = None
        self.status = ""

    def __enter__(self) -> BarProgress:
        self.bar.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.__exit__(*exc)

    def generation(self, generation: int, total: int, jobs: int) -> None:
        if self.task is not None:
            self.bar.remove_task(self.task)
        self.task = self.bar.add_task(f"generation {generation}/{total}", total=jobs, status=self.status)

    def evaluated(self, fitness: Any) -> None:
        self.bar.advance(self.task)

    def generation_done(self, stats: dict[str, Any]) -> None:
        self.status = (
            f"best runtime {stats['best_relative_runtime']:.2f}x the original's, front {stats['front_size']}, "
            f"{stats['cache_hits']} cache hits, {stats['invalid']} invalid"
        )
        self.console.print(
            f"generation {stats['generation']}: {stats['candidates']} candidates, {stats['evaluated']} evaluated, "
            f"{self.status} ({stats['seconds']:.0f} s)"
        )


def _print_front(console: Any, result: Any) -> None:
    from rich.table import Table

    accuracy = result.problem.error_kind == "accuracy"
    table = Table(title=f"Pareto front of {result.problem.name} (test split; speedup vs the original)")
    for column in (
        "member",
        "edits",
        "compile genes",
        "val time",
        "test ms",
        "accuracy %" if accuracy else "rel. error",
        "speedup",
    ):
        table.add_column(column, justify="left" if column in ("member", "compile genes") else "right")
    for row in result.front:
        metric = (
            "-"
            if row.test_error is None
            else (f"{100 * (1 - row.test_error):.2f}" if accuracy else f"{row.test_error:.2e}")
        )
        table.add_row(
            row.name,
            str(len(row.edits)),
            ", ".join(f"{k}={v}" for k, v in row.config.items()) or "-",
            f"{row.val_relative_runtime:.2f}x",
            "-" if row.test_runtime_ms is None else f"{row.test_runtime_ms:.3f}",
            metric,
            "-" if row.speedup is None else f"{row.speedup:.2f}x",
        )
    console.print(table)
    for name, path in result.files.items():
        console.print(f"{name}: {path}")
