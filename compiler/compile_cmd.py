"""`effc compile MODEL -o model.vmfb`: the end-to-end path from a PyTorch model to an IREE module."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from effc.compiler.iree_backend import DEFAULT_CUDA_ARCH, TARGETS
from effc.compiler.optimize import MATMUL_PRECISIONS

EMITS = ("torch", "linalg", "vmfb")


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "compile",
        help="compile a PyTorch model to an IREE .vmfb",
        description="Load MODEL, lower it with torch-mlir, run an effc pass pipeline and compile it with IREE.",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "-o", "--output", help="output file (default: MODEL_NAME.vmfb, or .mlir for --emit torch|linalg)"
    )
    parser.add_argument(
        "--pass-pipeline", default=None, help="MLIR textual pass pipeline run on the torch-dialect module"
    )
    parser.add_argument("--emit", choices=EMITS, default="vmfb", help="stop after this stage (default: vmfb)")
    parser.add_argument(
        "--save-temps",
        metavar="DIR",
        help="keep the imported IR, the IR after passes and IREE's phases in DIR",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="run the module on the example inputs and compare with torch eager",
    )
    parser.add_argument("--mlir-print-ir-after-all", action="store_true", help="print the IR after every pass")
    parser.add_argument(
        "--mlir-print-ir-after-change",
        action="store_true",
        help="print the IR only after passes that change it",
    )
    parser.add_argument(
        "--params",
        metavar="FILE.irpa",
        help="keep the weights out of the module, in this IREE parameter archive (run with --params too)",
    )
    parser.add_argument("--json", metavar="FILE", help="also write the compile summary as JSON")
    parser.set_defaults(handler=run)


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """MODEL, --input, --target and import options, shared by compile, bench and profile."""
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a .pt2 file, HF model directory, package.module:factory, .mlir, or bundled name (minilm, smollm2)",
    )
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="SPEC",
        help="input shape and dtype such as 1x128xi64 ('?' = dynamic); repeat per input",
    )
    parser.add_argument("--target", default="llvm-cpu", help=f"IREE target: {' | '.join(TARGETS)} (default: llvm-cpu)")
    parser.add_argument(
        "--cuda-arch",
        default=DEFAULT_CUDA_ARCH,
        help=f"CUDA SM architecture for --target cuda (default: {DEFAULT_CUDA_ARCH}); sm_90a (H100, H200): IREE's "
        "code for sm_80, and with -O effc's own wgmma kernels for f16/bf16 linears and attention",
    )
    parser.add_argument(
        "--attention",
        choices=("auto", "fused", "decomposed"),
        default="auto",
        help="keep scaled_dot_product_attention whole (fused) or decompose it; auto picks per target",
    )
    parser.add_argument(
        "--iree-flag",
        action="append",
        default=[],
        metavar="FLAG",
        help="extra iree-compile flag, e.g. --iree-flag=--iree-opt-level=O2 (repeatable)",
    )
    parser.add_argument(
        "-O",
        dest="optimize",
        action="store_true",
        help="use the best-known configuration for the target (attention form and IREE flags; see bench/perf/NOTES.md)",
    )
    parser.add_argument(
        "--matmul-precision",
        choices=MATMUL_PRECISIONS,
        default="highest",
        help="as torch.set_float32_matmul_precision: 'high' (CUDA) computes each f32 matmul as three bf16 products "
        "of its operands split into bf16 pieces, on tensor cores, accumulated in f32 (about 1e-5 relative error); "
        "on llvm-cpu it stays f32, with a note. 'medium' rounds matmul inputs to bf16 and accumulates in f32 "
        "(about 1e-2 relative error; MiniLM 1.8x faster on an AVX512-BF16 CPU); on a CPU without bf16 dot products "
        "it stays f32, with a note. 'int8': dynamic quantization as torch.ao's, matmuls by constant weights in int8 "
        "(weights per output channel, activations per row at run time; about 7%% relative error, weights 4x "
        "smaller; AVX512-VNNI CPUs run them on effc's own kernel, effc-vnni-matmul; for LLMs, SmoothQuant: "
        "'effc quantize calibrate', then "
        "--pass-pipeline='builtin.module(effc-quantize-dynamic{smooth=FILE})'). Default: highest",
    )
    parser.add_argument(
        "--trust-pickle",
        action="store_true",
        help="allow loading a pickled torch.save(model) file (runs code from the file)",
    )


def model_options(args: argparse.Namespace, pipeline: str | None = None) -> dict[str, Any]:
    """`compile_model` keyword arguments from the shared model flags and the user's `pipeline`; explicit
    flags refine `-O`, and `-O`'s passes run after the user's."""
    from effc.compiler.iree_backend import check_target
    from effc.compiler.optimize import best_known
    from effc.passes.pipeline import chain_pipelines

    check_target(args.target)
    base = best_known(args.target, args.cuda_arch) if args.optimize else {}
    return {
        "pipeline": chain_pipelines(pipeline, base.get("pipeline")),
        "inputs": tuple(args.input),
        "target": args.target,
        "cuda_arch": args.cuda_arch,
        "attention": args.attention if args.attention != "auto" else base.get("attention", "auto"),
        "iree_flags": (*base.get("iree_flags", ()), *args.iree_flag),
        "optional_iree_flags": base.get("optional_iree_flags", ()),
        "dispatch_edits": base.get("dispatch_edits", ()),
        "fold_gqa": base.get("fold_gqa", False),
        "key_multiple": base.get("key_multiple", 1),
        "matmul_precision": args.matmul_precision,
        "trust_pickle": args.trust_pickle,
    }


def run(args: argparse.Namespace) -> int:
    from effc.compiler.api import compile_model
    from effc.compiler.fileio import write_atomic
    from effc.compiler.progress import report_console

    compiled = compile_model(
        args.model,
        emit=args.emit,
        save_temps=args.save_temps,
        parameters=args.params,
        progress=True,
        print_ir_after_all=args.mlir_print_ir_after_all,
        print_ir_after_change=args.mlir_print_ir_after_change,
        **model_options(args, args.pass_pipeline),
    )
    suffix = ".vmfb" if args.emit == "vmfb" else ".mlir"
    output = Path(args.output or f"{compiled.name}{suffix}")
    compiled.save(output)
    summary: dict[str, object] = {
        "model": args.model,
        "target": args.target,
        "emit": args.emit,
        "output": str(output.resolve()),
        "output_bytes": output.stat().st_size,
        "inputs": [f"{'x'.join(map(str, t.shape))}x{t.dtype}".replace("torch.", "") for t in compiled.example_inputs],
        "stage_seconds": {k: round(v, 3) for k, v in compiled.timings.items()},
        "notes": compiled.notes,
        "matmul_precision": compiled.matmul_precision,
    }
    console = report_console()
    mismatch = False
    if args.check:
        errors = compiled.compare()
        summary["relative_error_vs_torch"] = errors
        worst = max(errors)
        summary["tolerance"] = compiled.tolerance
        mismatch = worst > compiled.tolerance
        verdict = "[red]MISMATCH[/red]" if mismatch else "[green]ok[/green]"
        console.print(
            f"check: {len(errors)} output(s), max relative error vs torch eager {worst:.2e} {verdict} "
            f"(tolerance {compiled.tolerance:.0e}, matmul precision '{compiled.matmul_precision}')"
        )
    console.print(f"wrote {output} ({summary['output_bytes'] / 1e6:.1f} MB)")
    if compiled.parameters is not None:
        summary["parameters"] = str(compiled.parameters.resolve())
        console.print(f"weights in {compiled.parameters} ({compiled.parameters.stat().st_size / 1e6:.1f} MB)")
    if args.save_temps:
        console.print(f"intermediate files in {Path(args.save_temps).resolve()}")
    if args.json:
        write_atomic(args.json, json.dumps(summary, indent=2) + "\n")
        console.print(f"summary in {args.json}")
    return 1 if mismatch else 0
