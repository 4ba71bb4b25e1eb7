"""Shared fixtures: run the effc CLI in-process and capture what a user would see."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass
class CliResult:
    code: int
    out: str
    err: str


EffcCli = Callable[..., CliResult]


@pytest.fixture(scope="session", autouse=True)
def effc_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """effc's cache (models.cache_root) for this session alone: tests neither read what an earlier run left in the
    user's cache nor leave the 0.5 GB conversion of SmolLM2 there. CLI subprocesses inherit it."""
    folder = tmp_path_factory.mktemp("effc-cache")
    previous = os.environ.get("EFFC_CACHE_DIR")
    os.environ["EFFC_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["EFFC_CACHE_DIR"]
    else:
        os.environ["EFFC_CACHE_DIR"] = previous


@pytest.fixture
def bf16_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests of the bf16 path, on any CPU. Where the host has no bf16 dot products `medium` stays f32 for speed
    (optimize.precision_flags); IREE's bf16 code, slow there, computes the same numbers."""
    from effc.compiler import optimize

    monkeypatch.setattr(optimize, "has_bf16_dot", lambda: True)


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


@pytest.fixture(scope="session")
def pt2_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test MLP saved with torch.export.save, as a user would hand it to `effc compile`."""
    import torch

    from effc.tests import model_zoo

    model, inputs = model_zoo.mlp()
    path = tmp_path_factory.mktemp("models") / "mlp.pt2"
    torch.export.save(torch.export.export(model, inputs), path)
    return path
