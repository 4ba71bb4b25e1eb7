"""Shared fixtures: run the effc CLI in-process and capture what a user would see."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str


EffcCli = Callable[..., CliResult]


@pytest.fixture
def effc_cli(capsys: pytest.CaptureFixture[str]) -> EffcCli:
    """Call `effc ARGS...` in this process; returns exit code, stdout and stderr."""
    from effc.compiler.cli import main

    def call(*args: str) -> CliResult:
        try:
            code = main(list(args))
        except SystemExit as exit_:  # argparse usage errors
            code = int(exit_.code or 0)
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return call
