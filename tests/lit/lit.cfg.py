"""lit configuration for effc's .mlir tests: `lit tests/lit -v` (ctest runs the same).

`effc-opt` runs `effc opt` with the interpreter that runs lit (so a venv's lit tests that venv's
effc), `FileCheck`/`filecheck` is the Python `filecheck` port from the same environment, and `not` is
lit's builtin. Pass `--param effc_opt='<command>'` to test another build of `effc opt`.
"""

# ruff: noqa: F821  (lit defines `config` and `lit_config` when it executes this file)

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import lit.formats

config.name = "effc"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".mlir"]
config.excludes = ["Inputs"]
config.test_source_root = str(Path(__file__).parent)
config.test_exec_root = str(Path(__file__).resolve().parents[2] / "build" / "lit")

_python = Path(sys.executable)
_effc_opt = lit_config.params.get("effc_opt", f"{shlex.quote(str(_python))} -m effc.compiler.cli opt")
_filecheck = _python.parent / "filecheck"
if not _filecheck.exists():
    lit_config.fatal(f"no filecheck next to {_python}; install effc's dev extras: pip install -e '.[dev]'")

# Whole words only: never rewrite a path that merely contains the name.
config.substitutions.append((r"(?<![\w./-])effc-opt(?![\w.-])", _effc_opt))
config.substitutions.append((r"(?<![\w./-])(FileCheck|filecheck)(?![\w.-])", shlex.quote(str(_filecheck))))
