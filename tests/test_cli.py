"""`effc compile`, `effc run` and `effc bench` from the command line on a small real model."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from effc.runtime.runner import relative_error
from effc.tests import model_zoo
from effc.tests.conftest import EffcCli


def test_compile_then_run_writes_npy_outputs(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    vmfb = tmp_path / "mlp.vmfb"
    result = effc_cli("compile", str(pt2_file), "-o", str(vmfb), "--check")
    assert result.code == 0, result.err
    assert "check: 1 output(s), max relative error vs torch eager" in result.out
    x = torch.randn(4, 32)
    np.save(tmp_path / "x.npy", x.numpy())
    result = effc_cli("run", str(vmfb), "--input", f"@{tmp_path / 'x.npy'}", "-o", str(tmp_path / "out"))
    assert result.code == 0, result.err
    out = np.load(tmp_path / "out" / "output_0.npy")
    model, _ = model_zoo.mlp()
    with torch.no_grad():
        assert relative_error(out, model(x).numpy()) <= 1e-4


def test_run_with_iree_style_values(effc_cli: EffcCli, tmp_path: Path) -> None:
    factory = tmp_path / "double.py"
    factory.write_text(
        "import torch\n\nclass Double(torch.nn.Module):\n    def forward(self, x):\n        return x * 2\n\n"
        "def build():\n    return Double(), (torch.ones(4),)\n"
    )
    vmfb = tmp_path / "double.vmfb"
    assert effc_cli("compile", f"{factory}:build", "-o", str(vmfb)).code == 0
    result = effc_cli("run", str(vmfb), "--input", "4xf32=1 2 3 4", "-o", str(tmp_path))
    assert result.code == 0, result.err
    np.testing.assert_array_equal(np.load(tmp_path / "output_0.npy"), [2, 4, 6, 8])
    bad = effc_cli("run", str(vmfb), "--input", "4xf32=1 2 3")
    assert bad.err.strip() == "effc: error: input '4xf32=1 2 3': 3 values for a shape of 4 elements"


def test_run_missing_module(effc_cli: EffcCli, tmp_path: Path) -> None:
    result = effc_cli("run", str(tmp_path / "gone.vmfb"))
    assert result.code == 1
    assert result.err.strip() == (
        f"effc: error: module '{tmp_path / 'gone.vmfb'}' not found; compile one with `effc compile MODEL -o gone.vmfb`"
    )


@pytest.mark.parametrize(("emit", "marker"), [("torch", "torch.aten.mm"), ("linalg", "linalg.matmul")])
def test_emit_stops_at_the_requested_stage(
    effc_cli: EffcCli, pt2_file: Path, tmp_path: Path, emit: str, marker: str
) -> None:
    out = tmp_path / f"mlp.{emit}.mlir"
    result = effc_cli("compile", str(pt2_file), "--emit", emit, "-o", str(out))
    assert result.code == 0, result.err
    text = out.read_text()
    assert marker in text or (emit == "linalg" and "linalg.generic" in text)
    assert ("torch.aten" in text) == (emit == "torch")


def test_linalg_output_compiles_and_runs(pt2_file: Path, tmp_path: Path) -> None:
    """IR that effc lowered to linalg goes to IREE as well as torch-dialect IR does."""
    import effc
    from effc.compiler.iree_backend import compile_mlir
    from effc.runtime.runner import run_vmfb

    compiled = effc.compile(str(pt2_file), emit="linalg")
    vmfb = compile_mlir(compiled.mlir, target="llvm-cpu")
    (out,) = run_vmfb(vmfb, compiled.numpy_inputs())
    assert relative_error(out, compiled.reference_outputs()[0]) <= 1e-4


def test_bench_prints_ratios_and_saves_json(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    result = effc_cli("bench", str(pt2_file), "--repeats", "3", "-o", str(out))
    assert result.code == 0, result.err
    assert "torch.compile" in result.out and "effc speedup" in result.out
    data = json.loads(out.read_text())
    for key in ("effc_ms", "eager_ms", "torch_compile_ms"):
        assert data[key] > 0
    assert data["speedup_vs_eager"] == pytest.approx(data["eager_ms"] / data["effc_ms"])
    assert data["speedup_vs_torch_compile"] == pytest.approx(data["torch_compile_ms"] / data["effc_ms"])
    assert data["matmul_precision"] == "highest" and data["notes"] == []
    assert "torch_same_precision_eager_ms" not in data


def test_bench_rounds_alternate_effc_with_each_baseline(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    """`--rounds N`: effc and each torch baseline in N alternating rounds, their ratio taken round by round."""
    out = tmp_path / "bench.json"
    result = effc_cli("bench", str(pt2_file), "--repeats", "3", "--rounds", "3", "-o", str(out))
    assert result.code == 0, result.err
    assert "3 alternating rounds of 3 calls a side" in result.out
    alternating = json.loads(out.read_text())["alternating"]
    assert set(alternating) == {"torch_eager", "torch_compile"}
    for ratios in alternating.values():
        assert ratios["rounds"] == 3 and ratios["effc_ms"] > 0 and ratios["torch_ms"] > 0
        assert ratios["min"] <= ratios["median"] <= ratios["max"]
    result = effc_cli("bench", str(pt2_file), "--rounds", "-1")
    assert result.code != 0 and result.err.strip() == "effc: error: --rounds must be 0 (off) or more, got -1"


@pytest.mark.usefixtures("bf16_cpu")
def test_bench_of_a_medium_module_adds_torch_at_medium(effc_cli: EffcCli, tmp_path: Path) -> None:
    """torch's counterpart of a bf16 module is torch at float32 matmul precision "medium"; the bench sets it for
    that row only and records what the module got."""
    import torch

    out = tmp_path / "bench.json"
    args = ("effc.tests.model_zoo:mlp", "--repeats", "3", "--matmul-precision", "medium", "--no-torch-compile")
    result = effc_cli("bench", *args, "-o", str(out))
    assert result.code == 0, result.err
    assert "matmul precision medium" in result.out and "torch eager, medium" in result.out
    data = json.loads(out.read_text())
    assert data["matmul_precision"] == "medium"
    assert data["speedup_vs_torch_same_precision_eager"] == pytest.approx(
        data["torch_same_precision_eager_ms"] / data["effc_ms"]
    )
    assert torch.get_float32_matmul_precision() == "highest"


def test_bench_of_an_int8_module_adds_torchs_own_int8(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    """Against torch's dynamic quantization where the model has nn.Linear modules; an ExportedProgram has none."""
    out = tmp_path / "bench.json"
    for model, with_linears in (("effc.tests.model_zoo:mlp", True), (str(pt2_file), False)):
        result = effc_cli(
            "bench", model, "--repeats", "3", "--matmul-precision", "int8", "--no-torch-compile", "-o", str(out)
        )
        assert result.code == 0, result.err
        assert ("torch eager, dynamic int8" in result.out) == with_linears
        data = json.loads(out.read_text())
        assert ("torch_int8_eager_ms" in data) == with_linears and "torch_compile_ms" not in data
        if with_linears:
            assert data["speedup_vs_torch_int8_eager"] == pytest.approx(data["torch_int8_eager_ms"] / data["effc_ms"])


def test_cuda_target_compiles_on_a_machine_without_gpu(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "mlp-cuda.vmfb"
    result = effc_cli("compile", str(pt2_file), "--target", "cuda", "-o", str(out), "--save-temps", str(tmp_path / "t"))
    assert result.code == 0, result.err
    assert "--iree-cuda-target=sm_80" in (tmp_path / "t" / "iree-compile.sh").read_text()
    assert out.stat().st_size > 0


def test_hugging_face_directory(effc_cli: EffcCli, tmp_path: Path) -> None:
    """A save_pretrained folder compiles as an encoder (last hidden state); example tokens fit its 64 positions."""
    model, _ = model_zoo.bert()
    directory = tmp_path / "tiny-bert"
    model.model.save_pretrained(directory)
    out = tmp_path / "bert.vmfb"
    result = effc_cli("compile", str(directory), "-o", str(out), "--check", "--json", str(tmp_path / "s.json"))
    assert result.code == 0, result.err
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["inputs"] == ["1x64xint64", "1x64xint64"]
    assert max(summary["relative_error_vs_torch"]) <= 1e-4


# (precision, its --check tolerance, the least error that shows its rounding acted: f32 gives ~1e-6)
LOWER_PRECISIONS = [("medium", 3e-2, 2e-5), ("int8", 0.2, 1e-4)]


@pytest.mark.usefixtures("bf16_cpu")  # "medium" is bf16 on any host
@pytest.mark.parametrize(("precision", "tolerance", "floor"), LOWER_PRECISIONS)
def test_lower_matmul_precision_checks_against_its_own_tolerance(
    effc_cli: EffcCli, tmp_path: Path, precision: str, tolerance: float, floor: float
) -> None:
    model, _ = model_zoo.bert()
    directory = tmp_path / "tiny-bert"
    model.model.save_pretrained(directory)
    summary_file = tmp_path / "s.json"
    result = effc_cli(
        "compile", str(directory), "-o", str(tmp_path / "b.vmfb"), "--check", "--matmul-precision", precision,
        "--json", str(summary_file),
    )  # fmt: skip
    assert result.code == 0, result.err
    assert f"(tolerance {tolerance:.0e}, matmul precision '{precision}')" in " ".join(result.out.split())
    summary = json.loads(summary_file.read_text())
    assert summary["matmul_precision"] == precision and summary["tolerance"] == tolerance
    assert floor < max(summary["relative_error_vs_torch"]) <= tolerance
