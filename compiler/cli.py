"""The `effc` command line: one subcommand module per job, each registering its own parser.

Subcommand modules import torch, torch-mlir and IREE inside their `run` functions, so `effc --help`
answers instantly. Errors the user can fix are `EffcError`s: printed as one line, exit code 1, and a
traceback only with `--debug`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from effc.compiler.errors import EffcError

# Each module defines `register(subparsers)`, which adds its parser and sets `handler=run`.
SUBCOMMAND_MODULES = (
    "effc.compiler.compile_cmd",
    "effc.runtime.run_cmd",
    "effc.runtime.bench_cmd",
    "effc.passes.opt_cmd",
    "effc.passes.profile_cmd",
    "effc.passes.carbon_cmd",
    "effc.runtime.read_cmd",
    "effc.search.search_cmd",
    "effc.passes.chai_cmd",
    "effc.passes.quantize_cmd",
)


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (`effc: error: ...`) with exit code 2, like mlir-opt."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"effc: error: {message} (see '{self.prog} --help')\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="effc", description="Compile PyTorch models to IREE modules through MLIR passes.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for module_name in SUBCOMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_list)
    debug = args.debug or "--debug" in args_list
    try:
        return int(args.handler(args) or 0)
    except EffcError as err:
        if debug:
            raise
        sys.stderr.write(f"effc: error: {err.message}\n")
        if err.detail:
            sys.stderr.write(err.detail.rstrip("\n") + "\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("effc: interrupted\n")
        return 130
    except Exception as err:  # an effc bug, not a user error: still one line unless --debug
        if debug:
            raise
        sys.stderr.write(
            f"effc: internal error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''} "
            "(rerun with --debug for the traceback and report it)\n"
        )
        return 2


if __name__ == "__main__":
    sys.exit(main())
