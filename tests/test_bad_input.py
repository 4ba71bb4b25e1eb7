"""Every bad input gets one line naming the thing and what to do, a non-zero exit, no traceback."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch

from effc.tests import model_zoo
from effc.tests.conftest import CliResult, EffcCli


def one_line_error(result: CliResult) -> str:
    assert result.code != 0
    assert "Traceback" not in result.err
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("✓")]  # progress lines
    assert len(lines) == 1, result.err
    return lines[0]


def test_missing_model_file(effc_cli: EffcCli) -> None:
    line = one_line_error(effc_cli("compile", "nope/model.pt2"))
    assert line == (
        "effc: error: model 'nope/model.pt2' not found (expected a .pt2 file from torch.export.save, a Hugging Face "
        "model directory, a package.module:factory spec, a torch-dialect .mlir file, or a bundled model name "
        "(minilm, smollm2))"
    )


def test_misspelled_bundled_model_suggests_the_name(effc_cli: EffcCli) -> None:
    line = one_line_error(effc_cli("compile", "minilmm"))
    assert line.startswith("effc: error: model 'minilmm' not found; did you mean minilm? (expected")


def test_empty_model_file(effc_cli: EffcCli, tmp_path: Path) -> None:
    empty = tmp_path / "empty.pt2"
    empty.write_bytes(b"")
    line = one_line_error(effc_cli("compile", str(empty)))
    assert line == f"effc: error: model file '{empty}' is empty; re-export it with torch.export.save"


def test_unreadable_model_file(effc_cli: EffcCli, tmp_path: Path) -> None:
    locked = tmp_path / "locked.pt2"
    locked.write_bytes(b"PK\x03\x04")
    locked.chmod(0)
    try:
        with locked.open("rb"):
            pytest.skip("running as a user that can read mode-000 files (root)")
    except PermissionError:
        pass
    line = one_line_error(effc_cli("compile", str(locked)))
    assert line == f"effc: error: cannot read model file '{locked}': Permission denied; check its permissions"


def test_truncated_pt2(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt2"
    truncated.write_bytes(pt2_file.read_bytes()[: pt2_file.stat().st_size // 2])
    line = one_line_error(effc_cli("compile", str(truncated)))
    assert line == (
        f"effc: error: model file '{truncated}' is a truncated or corrupt zip archive; re-export it with torch.export.save"
    )


def test_unknown_file_format(effc_cli: EffcCli, tmp_path: Path) -> None:
    weird = tmp_path / "weights.bin"
    weird.write_bytes(b"\x00\x01garbage")
    line = one_line_error(effc_cli("compile", str(weird)))
    assert line.startswith(f"effc: error: '{weird}' is not a model file effc knows; expected a .pt2 file")


def test_torchscript_is_refused_with_what_to_export(effc_cli: EffcCli, tmp_path: Path) -> None:
    model, inputs = model_zoo.mlp()
    path = tmp_path / "scripted.pt"
    torch.jit.save(torch.jit.trace(model, inputs), path)
    line = one_line_error(effc_cli("compile", str(path)))
    assert line == (
        f"effc: error: '{path}' is a TorchScript archive, which effc cannot import; export the eager model instead: "
        "torch.export.save(torch.export.export(model, example_inputs), 'model.pt2')"
    )


def test_pickle_needs_trust(effc_cli: EffcCli, tmp_path: Path) -> None:
    model, _ = model_zoo.mlp()
    path = tmp_path / "model.pt"
    torch.save(model, path)
    line = one_line_error(effc_cli("compile", str(path), "--input", "4x32xf32"))
    assert line == (
        f"effc: error: refusing to unpickle '{path}': a torch.save pickle can run arbitrary code when loaded; "
        "pass --trust-pickle if you trust its source, or save the model with torch.export.save as a .pt2"
    )
    ok = effc_cli(
        "compile",
        str(path),
        "--input",
        "4x32xf32",
        "--trust-pickle",
        "-o",
        str(tmp_path / "m.vmfb"),
        "--check",
    )
    assert ok.code == 0, ok.err
    assert (tmp_path / "m.vmfb").stat().st_size > 0


def test_pickled_state_dict_is_explained(effc_cli: EffcCli, tmp_path: Path) -> None:
    model, _ = model_zoo.mlp()
    path = tmp_path / "weights.pt"
    torch.save(model.state_dict(), path)
    line = one_line_error(effc_cli("compile", str(path), "--trust-pickle"))
    assert line == (
        f"effc: error: '{path}' holds a OrderedDict, not a torch.nn.Module (a state_dict needs its model class); "
        "use a package.module:factory spec that builds the model and loads the weights"
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "1x128",
            "effc: error: bad --input '1x128': expected an MLIR-style shape and dtype such as 1x128xi64",
        ),
        (
            "1x128xq8",
            "effc: error: bad --input '1x128xq8': expected an MLIR-style shape and dtype such as 1x128xi64",
        ),
        (
            "axbxf32",
            "effc: error: bad --input 'axbxf32': expected an MLIR-style shape and dtype such as 1x128xi64",
        ),
    ],
)
def test_bad_input_spec(effc_cli: EffcCli, pt2_file: Path, spec: str, expected: str) -> None:
    line = one_line_error(effc_cli("compile", str(pt2_file), "--input", spec))
    assert line.startswith(expected)


def test_input_spec_that_does_not_fit_the_model(effc_cli: EffcCli) -> None:
    line = one_line_error(effc_cli("compile", "effc.tests.model_zoo:mlp", "--input", "4x7xf32"))
    assert line.startswith("effc: error: torch.export failed for 'mlp' (RuntimeError): ")
    assert line.endswith("check the --input shapes and dtypes match what the model's forward expects")


def test_factory_without_inputs_asks_for_them(effc_cli: EffcCli, tmp_path: Path) -> None:
    factory = tmp_path / "factory.py"
    factory.write_text("import torch\n\ndef build():\n    return torch.nn.Linear(4, 2)\n")
    line = one_line_error(effc_cli("compile", f"{factory}:build"))
    assert (
        line
        == "effc: error: model 'build' carries no example inputs; give each input with --input, e.g. --input 1x128xi64"
    )


def test_factory_spec_errors(effc_cli: EffcCli) -> None:
    line = one_line_error(effc_cli("compile", "no_such_pkg.models:build"))
    assert (
        line
        == "effc: error: model spec 'no_such_pkg.models:build': cannot import 'no_such_pkg.models': No module named 'no_such_pkg'"
    )
    line = one_line_error(effc_cli("compile", "effc.tests.model_zoo:missing"))
    assert (
        line
        == "effc: error: model spec 'effc.tests.model_zoo:missing': 'effc.tests.model_zoo' has no callable 'missing'"
    )


def test_unknown_target(effc_cli: EffcCli, pt2_file: Path) -> None:
    line = one_line_error(effc_cli("compile", str(pt2_file), "--target", "tpu"))
    assert line == "effc: error: unknown target 'tpu': choose one of llvm-cpu, cuda"


def test_unknown_flag(effc_cli: EffcCli, pt2_file: Path) -> None:
    line = one_line_error(effc_cli("compile", str(pt2_file), "--optimise"))
    assert line == "effc: error: unrecognized arguments: --optimise (see 'effc --help')"


def test_unknown_iree_flag(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    line = one_line_error(
        effc_cli("compile", str(pt2_file), "--iree-flag=--iree-bogus-flag", "-o", str(tmp_path / "x.vmfb"))
    )
    assert line == (
        "effc: error: iree-compile does not know the flag '--iree-bogus-flag'; check the spelling with `iree-compile --help`"
    )
    assert not (tmp_path / "x.vmfb").exists()


def test_unsupported_op_prints_a_table(effc_cli: EffcCli, tmp_path: Path) -> None:
    factory = tmp_path / "custom_op_model.py"
    factory.write_text(
        "import torch\n\n"
        "@torch.library.custom_op('effctest::fancy', mutates_args=())\n"
        "def fancy(x: torch.Tensor) -> torch.Tensor:\n"
        "    return x * 2\n\n"
        "@fancy.register_fake\n"
        "def _(x):\n"
        "    return torch.empty_like(x)\n\n"
        "class Model(torch.nn.Module):\n"
        "    def forward(self, x):\n"
        "        return fancy(x) + 1\n\n"
        "def build():\n"
        "    return Model(), (torch.randn(3),)\n"
    )
    result = effc_cli("compile", f"{factory}:build")
    assert result.code == 1
    lines = [line for line in result.err.strip().splitlines() if not line.startswith("✓")]
    assert lines[0] == (
        "effc: error: the model uses 1 op(s) that torch-mlir cannot lower: torch.effctest.fancy; "
        "rewrite them in the model or register a decomposition"
    )
    assert lines[1].split() == ["op", "count", "first", "location"]
    assert lines[2].split()[:2] == ["torch.effctest.fancy", "1"]
    assert "Traceback" not in result.err


def test_failed_compile_keeps_the_existing_output(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.vmfb"
    out.write_bytes(b"previous build")
    result = effc_cli("compile", str(pt2_file), "--iree-flag=--iree-bogus-flag", "-o", str(out))
    assert result.code == 1
    assert out.read_bytes() == b"previous build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.vmfb"]


def test_debug_shows_the_traceback(effc_cli: EffcCli) -> None:
    with pytest.raises(Exception, match=r"model 'nope\.pt2' not found"):
        effc_cli("--debug", "compile", "nope.pt2")


def test_zip_that_is_not_a_model(effc_cli: EffcCli, tmp_path: Path) -> None:
    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("readme.txt", "hello")
    line = one_line_error(effc_cli("compile", str(archive)))
    assert line.startswith(f"effc: error: '{archive}' is not a model file effc knows")
