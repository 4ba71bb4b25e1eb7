"""`effc quantize calibrate`: activation peaks and alpha for SmoothQuant's smoothing of `--matmul-precision int8`.

    effc quantize calibrate smollm2 --data reviews.txt -o smollm2.int8.json
    effc compile smollm2 -O --matmul-precision int8 \\
        --pass-pipeline='builtin.module(effc-quantize-dynamic{smooth=smollm2.int8.json})'
"""

from __future__ import annotations

import argparse
from typing import Any

from effc.compiler.errors import EffcError
from effc.passes.calibration import add_calibration_arguments, calibration_inputs


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quantize",
        help="int8 quantization: calibrate SmoothQuant's per-channel smoothing",
        description="Calibrate the activation statistics that effc-quantize-dynamic{smooth=FILE} uses to move "
        "activation outliers into the weights before int8 rounding (SmoothQuant).",
    )
    commands = parser.add_subparsers(dest="quantize_command", required=True, parser_class=type(parser))
    calibrate = commands.add_parser(
        "calibrate",
        help="run MODEL on calibration text and write each matmul's input peaks and the best alpha",
        description="Run MODEL on each calibration document and write max|x| per input channel of every nn.Linear, "
        "keyed by a fingerprint of its weight, as JSON, with the alpha (0.3-0.8) whose int8 output moves least from "
        "f32 on the first 8 documents.",
    )
    add_calibration_arguments(calibrate, "output file (default: MODEL_NAME.int8.json)")
    calibrate.set_defaults(handler=run_calibrate)


def run_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from effc.compiler.fileio import write_atomic
    from effc.compiler.progress import Stages, report_console
    from effc.passes.smoothing import calibrate_smoothing

    if args.documents < 1 or args.tokens < 1:
        raise EffcError(f"--documents and --tokens must be ≥ 1 (got {args.documents}, {args.tokens})")
    stages = Stages(enabled=True)
    documents, (model, tokenizer, causal, name) = calibration_inputs(args, stages, "int8 calibration")
    with stages.stage(f"activation peaks on {len(documents)} documents, alpha"):
        smoothing = calibrate_smoothing(
            model,
            tokenizer,
            documents,
            name=name,
            causal=causal,
            tokens=args.tokens,
            data_name=Path(args.data).name,
        )
    output = args.output or f"{name}.int8.json"
    write_atomic(output, smoothing.to_json())
    scores = smoothing.alpha_scores
    changes = ", ".join(f"{key} {value:.3g}" for key, value in scores.items())
    report_console(soft_wrap=True).print(
        f"{len(smoothing.input_peaks)} matmul weights calibrated on {smoothing.documents} documents\n"
        f"int8 output change from f32 by alpha (none: not smoothed): {changes}\n"
        f"alpha {smoothing.alpha:g}; peaks in {output}\nuse: --matmul-precision int8 "
        f"--pass-pipeline='builtin.module(effc-quantize-dynamic{{smooth={output}}})'"
    )
    return 0
