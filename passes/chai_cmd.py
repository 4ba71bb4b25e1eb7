"""`effc chai`: calibrate CHAI cluster plans and report what a plan frees.

    effc chai calibrate smollm2 --data lee_background.cor -o smollm2.chai.json
    effc chai calibrate minilm --data docs.txt -o minilm.chai.json --layers-k 3=4,5=6
    effc chai report smollm2.chai.json --context 512 --context 2048

The plan feeds the rewrite: effc compile smollm2 --pass-pipeline='builtin.module(effc-chai{plan=smollm2.chai.json})'.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from effc.compiler.errors import EffcError
from effc.passes.calibration import add_calibration_arguments, calibration_inputs


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chai",
        help="CHAI clustered head attention: calibrate cluster plans, report K,V cache savings",
        description="Calibrate a CHAI plan (which attention heads share scores) for a model, or report a plan's "
        "K,V cache savings. Apply a plan with the effc-chai pass.",
    )
    commands = parser.add_subparsers(dest="chai_command", required=True, parser_class=type(parser))
    calibrate = commands.add_parser(
        "calibrate",
        help="run MODEL on calibration text and write a cluster plan",
        description="Collect every head's attention probabilities on the calibration text, cluster heads per layer "
        "(K-means; k at the elbow of the error curve unless overridden) and write a versioned JSON plan.",
    )
    add_calibration_arguments(calibrate, "plan file (default: MODEL_NAME.chai.json)")
    calibrate.add_argument(
        "--layers-k",
        default="",
        metavar="L=K,...",
        help="per-layer overrides: clusters (MHA) or kept KV heads (GQA), e.g. 3=4,5=6",
    )
    calibrate.add_argument(
        "--kv-reduction",
        type=float,
        default=None,
        metavar="FRACTION",
        help="instead of elbows, cluster the cheapest layers until K+V bytes shrink by FRACTION",
    )
    calibrate.add_argument(
        "--cost",
        choices=("attention", "output"),
        default="attention",
        help="what a layer's clustering costs when --kv-reduction trades layers: 'attention', the clustering "
        "error of attention rows (no extra passes), or 'output', the measured change of the model's output "
        "with only that layer clustered (one model pass per option; better plans)",
    )
    calibrate.add_argument(
        "--seed", type=int, default=0, help="K-means seed; same seed and text, same plan (default: 0)"
    )
    calibrate.set_defaults(handler=run_calibrate)
    report = commands.add_parser(
        "report",
        help="print a plan per layer and its K,V cache bytes before and after",
        description="Print each layer's clusters, representatives and kept KV heads, and the K and V cache bytes "
        "with and without CHAI for the given context lengths.",
    )
    report.add_argument("plan", metavar="PLAN", help="plan JSON from 'effc chai calibrate'")
    report.add_argument(
        "--context", type=int, action="append", default=[], help="context length (repeatable; default 2048)"
    )
    report.add_argument("--dtype-bytes", type=int, default=4, help="bytes per cache element (default: 4, f32)")
    report.set_defaults(handler=run_report)


def parse_layers_k(text: str) -> dict[int, int]:
    """`3=4,5=6` -> {3: 4, 5: 6}; anything else is a one-line error."""
    overrides: dict[int, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        layer, sep, size = part.partition("=")
        if not sep or not layer.strip().isdigit() or not size.strip().isdigit():
            raise EffcError(f"--layers-k expects LAYER=K pairs such as 3=4,5=6, got '{part}'")
        overrides[int(layer)] = int(size)
    return overrides


def run_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from effc.compiler.fileio import write_atomic
    from effc.compiler.progress import Stages, report_console
    from effc.passes.chai_calibrate import calibrate

    overrides = parse_layers_k(args.layers_k)
    if args.documents < 1 or args.tokens < 2:
        raise EffcError(f"--documents must be ≥ 1 and --tokens ≥ 2 (got {args.documents}, {args.tokens})")
    if args.cost == "output" and args.kv_reduction is None:
        raise EffcError("--cost output only chooses layers for --kv-reduction; add --kv-reduction FRACTION")
    stages = Stages(enabled=True)
    documents, (model, tokenizer, causal, name) = calibration_inputs(args, stages, "CHAI calibration")
    label = f"attention on {len(documents)} documents, clustering" + (", output costs" if args.cost == "output" else "")
    bar = PassBar() if args.cost == "output" else None
    with stages.stage(label, spinner=bar is None), bar or contextlib.nullcontext():
        plan = calibrate(
            model,
            tokenizer,
            documents,
            name=name,
            causal=causal,
            tokens=args.tokens,
            seed=args.seed,
            overrides=overrides,
            kv_reduction=args.kv_reduction,
            cost=args.cost,
            data_name=Path(args.data).name,
            on_pass=bar.update if bar else None,
        )
    output = args.output or f"{name}.chai.json"
    write_atomic(output, plan.to_json())
    console = report_console()
    _print_plan(console, plan, [2048], 4)
    console.print(f"plan in {output}")
    return 0


class PassBar:
    """A bar over `--cost output`'s model passes (one per layer option, minutes on a real model), with time left."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("output costs (model passes)"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        )
        self.task = self.progress.add_task("passes", total=None)

    def update(self, done: int, total: int) -> None:
        self.progress.update(self.task, completed=done, total=total)

    def __enter__(self) -> PassBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


def run_report(args: argparse.Namespace) -> int:
    from effc.compiler.progress import report_console
    from effc.passes.chai_plan import load_plan

    plan = load_plan(args.plan)
    if any(c < 1 for c in args.context) or args.dtype_bytes < 1:
        raise EffcError("--context and --dtype-bytes must be positive")
    _print_plan(report_console(), plan, args.context or [2048], args.dtype_bytes)
    return 0


def _print_plan(console: Any, plan: Any, contexts: list[int], dtype_bytes: int) -> None:
    from rich.table import Table

    table = Table(title=f"CHAI plan for {plan.model} (fingerprint {plan.fingerprint})")
    for column in ("layer", "heads", "clusters", "source", "elbow", "kept KV heads", "clusters (representative first)"):
        table.add_column(column)
    for lp in plan.layers:
        groups = " ".join(
            "{" + ",".join(str(h) for h in sorted(members, key=lambda h, r=rep: (h != r, h))) + "}"
            for members, rep in zip(lp.clusters, lp.representatives, strict=True)
        )
        table.add_row(
            str(lp.layer),
            f"{lp.heads}/{lp.kv_heads}kv",
            str(lp.k),
            lp.k_source,
            str(lp.elbow or "-"),
            f"{len(lp.kept_kv_heads())}/{lp.kv_heads}",
            groups,
        )
    console.print(table)
    for context in contexts:
        b = plan.kv_cache_bytes(context, dtype_bytes=dtype_bytes)
        before, after = b["k_before"] + b["v_before"], b["k_after"] + b["v_after"]
        console.print(
            f"context {context}: K cache {b['k_before'] / 2**20:.2f} -> {b['k_after'] / 2**20:.2f} MiB, "
            f"V cache {b['v_before'] / 2**20:.2f} MiB (kept), K+V {1 - after / before:.1%} smaller"
        )
