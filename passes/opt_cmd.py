"""`effc opt`: mlir-opt for effc pipelines.

    effc opt in.mlir --pass-pipeline='builtin.module(effc-profile,canonicalize)' -o out.mlir

Flags follow mlir-opt (`--split-input-file`, `--verify-diagnostics`, `--mlir-print-ir-*`,
`--dump-pass-pipeline`), so lit tests read like upstream ones. Output files are written atomically and
only when every chunk succeeded, as mlir-opt keeps its output file only on success.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the CLI imports this module eagerly: MLIR loads only inside `run`
    from torch_mlir import ir
    from torch_mlir.passmanager import PassManager

    from effc.passes.diagnostics import Diagnostic

SPLIT_MARKER = "// -----"


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "opt",
        help="run an MLIR pass pipeline mixing effc and upstream passes (like mlir-opt)",
        description="Parse MLIR, run a pass pipeline (effc passes and any upstream MLIR/torch-mlir pass), "
        "print the result. Example: effc opt in.mlir "
        "--pass-pipeline='builtin.module(effc-lower-to-linalg,func.func(cse))' -o out.mlir",
    )
    parser.add_argument("input", nargs="?", default="-", help="input .mlir file ('-': stdin, the default)")
    parser.add_argument("-o", dest="output", default="-", metavar="FILE", help="output file ('-': stdout)")
    parser.add_argument(
        "--pass-pipeline",
        "-p",
        metavar="PIPELINE",
        help="textual pipeline, e.g. 'builtin.module(canonicalize,func.func(cse))'; none: parse and print",
    )
    parser.add_argument("--list-passes", action="store_true", help="list effc passes with their options, then exit")
    parser.add_argument("--dump-pass-pipeline", action="store_true", help="print the PassManager's pipeline to stderr")
    parser.add_argument(
        "--split-input-file",
        action="store_true",
        help=f"process each '{SPLIT_MARKER}'-separated chunk on its own; outputs are joined with it",
    )
    parser.add_argument(
        "--verify-diagnostics",
        action="store_true",
        help="check diagnostics against '// expected-error @below {{...}}' annotations instead of printing",
    )
    printing = parser.add_argument_group("IR printing (dumps go to stderr)")
    printing.add_argument("--mlir-print-ir-before-all", action="store_true", help="print IR before each pass")
    printing.add_argument("--mlir-print-ir-after-all", action="store_true", help="print IR after each pass")
    printing.add_argument(
        "--mlir-print-ir-after-change", action="store_true", help="print IR after each pass that changed it"
    )
    printing.add_argument(
        "--mlir-print-ir-after-failure", action="store_true", help="print IR after a pass that failed"
    )
    printing.add_argument(
        "--mlir-print-ir-module-scope",
        action="store_true",
        help="print the whole module, not only the op a pass ran on",
    )
    printing.add_argument(
        "--mlir-print-debuginfo", action="store_true", help="print locations in the output and IR dumps"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from effc.compiler.errors import EffcError
    from effc.compiler.fileio import write_atomic
    from effc.compiler.mlir_context import new_context
    from effc.passes import pipeline as pl

    if args.list_passes:
        sys.stdout.write(list_passes())
        return 0
    printing = pl.IRPrinting(
        before_all=args.mlir_print_ir_before_all,
        after_all=args.mlir_print_ir_after_all,
        after_change=args.mlir_print_ir_after_change,
        after_failure=args.mlir_print_ir_after_failure,
        module_scope=args.mlir_print_ir_module_scope,
        debuginfo=args.mlir_print_debuginfo,
    )
    ctx = new_context()
    # Built before reading the input, so pipeline errors come first (and once, not per chunk).
    pm = pl.build_pass_manager(args.pass_pipeline, context=ctx, printing=printing) if args.pass_pipeline else None
    if args.dump_pass_pipeline:
        sys.stderr.write(f"{pm if pm is not None else f'{pl.ROOT_ANCHOR}()'}\n")
    text, source_name = _read_input(args.input)
    chunks = split_input(text) if args.split_input_file else [(1, text)]
    outputs: list[str] = []
    failed = 0
    for first_line, chunk in chunks:
        result = process_chunk(ctx, pm, chunk, first_line, debuginfo=args.mlir_print_debuginfo)
        if args.verify_diagnostics:
            from effc.passes import diagnostics

            problems = diagnostics.verify(diagnostics.parse_expectations(chunk, first_line), result.diagnostics)
            _report(problems, source_name, text)
            failed += bool(problems)
        else:
            _report(result.diagnostics, source_name, text)
            failed += result.output is None or any(d.severity == "error" for d in result.diagnostics)
        if result.output is not None:
            outputs.append(result.output)
    joined = f"{SPLIT_MARKER}\n".join(outputs)
    if args.output == "-":
        sys.stdout.write(joined)
    elif not failed:
        write_atomic(args.output, joined)
    if failed:
        where = f"{failed} of {len(chunks)} chunks of {source_name}" if len(chunks) > 1 else source_name
        what = "did not match the expected diagnostics" if args.verify_diagnostics else "failed"
        raise EffcError(f"{where} {what} (diagnostics above)")
    return 0


@dataclasses.dataclass(frozen=True)
class ChunkResult:
    """A chunk's printed output (None when parsing or the pipeline failed) and its diagnostics."""

    output: str | None
    diagnostics: list[Diagnostic]


def process_chunk(
    ctx: ir.Context, pm: PassManager | None, chunk: str, first_line: int, *, debuginfo: bool = False
) -> ChunkResult:
    """Parse one chunk (line numbers as in the whole file) and run `pm` on it, collecting diagnostics."""
    from torch_mlir import ir

    from effc.passes import diagnostics

    padded = "\n" * (first_line - 1) + chunk
    with diagnostics.capture(ctx) as found:
        try:
            module = ir.Module.parse(padded, ctx)
            if pm is not None:
                pm.run(module.operation)
        except ir.MLIRError as err:
            return ChunkResult(None, [*found, *diagnostics.from_error(err)])
        output = module.operation.get_asm(enable_debug_info=debuginfo)
        return ChunkResult(output if output.endswith("\n") else output + "\n", list(found))


def split_input(text: str) -> list[tuple[int, str]]:
    """Chunks between lines starting with `// -----`, each with the file line it starts on."""
    chunks: list[tuple[int, str]] = []
    start, lines = 1, []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith(SPLIT_MARKER):
            chunks.append((start, "\n".join(lines)))
            start, lines = number + 1, []
        else:
            lines.append(line)
    chunks.append((start, "\n".join(lines)))
    return chunks


def list_passes() -> str:
    """Every effc pass with its description and options (type, default, help), for `--list-passes`."""
    from effc.passes.base import option_default, option_help, option_type
    from effc.passes.registry import all_passes

    out = ["effc passes (use in --pass-pipeline next to any upstream MLIR/torch-mlir pass):"]
    for name, cls in all_passes().items():
        out += ["", name, *textwrap.wrap(cls.description, 96, initial_indent="  ", subsequent_indent="  ")]
        out += ["  options:"] if cls.options() else []
        for field in cls.options():
            key = field.name.replace("_", "-")
            out.append(f"    {key}: {option_type(cls, field)} = {option_default(field)}")
            out += textwrap.wrap(option_help(field), 96, initial_indent=" " * 8, subsequent_indent=" " * 8)
    return "\n".join(out) + "\n"


def _read_input(path: str) -> tuple[str, str]:
    from effc.compiler.errors import EffcError

    if path == "-":
        return sys.stdin.read(), "<stdin>"
    try:
        return Path(path).read_text(), path
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise EffcError(f"cannot read '{path}': {reason}") from None


def _report(found: list[Diagnostic], source_name: str, text: str) -> None:
    for diag in found:
        sys.stderr.write(diag.render(source_name, text) + "\n")
