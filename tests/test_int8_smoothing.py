"""SmoothQuant for `--matmul-precision int8`: `effc quantize calibrate` measures each nn.Linear's input peaks, and
`effc-quantize-dynamic{smooth=FILE}` moves activation outliers into the weights, so int8 loses less."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import effc
from effc.bench.chai.run import gensim_data
from effc.compiler.models import load_bundled_hf
from effc.compiler.optimize import with_precision_passes
from effc.passes.smoothing import ALPHAS, DEFAULT_ALPHA, Smoothing, smoothing_scales, weight_fingerprint
from effc.runtime.runner import relative_error
from effc.tests.conftest import EffcCli
from effc.tests.test_bad_input import one_line_error
from effc.tests.test_quantize_dynamic import TwoLinears, quantized_linear


def _outlier_model() -> tuple[TwoLinears, torch.Tensor]:
    """Inputs whose channel 5 is 40x the others, as LLM norm outputs have: per-row int8 rounding drowns the rest."""
    torch.manual_seed(0)
    x = torch.randn(16, 64)
    x[:, 5] *= 40
    return TwoLinears().eval(), x


def _peaks(model: TwoLinears, x: torch.Tensor) -> Smoothing:
    with torch.no_grad():
        hidden = torch.relu(model.up(x))
    layers = {"up": (model.up, x), "down": (model.down, hidden)}
    return Smoothing(
        model="two-linears",
        data="the test input",
        documents=1,
        tokens=16,
        input_peaks={
            weight_fingerprint(m.weight.detach().numpy()): v.abs().amax(0).numpy() for m, v in layers.values()
        },
        names={weight_fingerprint(m.weight.detach().numpy()): name for name, (m, _) in layers.items()},
    )


def _smoothed_linear(x: torch.Tensor, linear: torch.nn.Linear, x_peaks: torch.Tensor) -> torch.Tensor:
    """The pass's arithmetic in torch, with s from the input's peaks and the weight's rows at the default alpha."""
    w_peaks = linear.weight.t().abs().amax(1).detach().numpy()
    return quantized_linear(x, linear, torch.from_numpy(smoothing_scales(x_peaks.numpy(), w_peaks, DEFAULT_ALPHA)))


def test_smoothing_computes_what_it_describes_and_loses_less(tmp_path: Path) -> None:
    model, x = _outlier_model()
    peaks_file = tmp_path / "two.int8.json"
    peaks_file.write_text(_peaks(model, x).to_json())
    smoothed = effc.compile(
        model,
        (x,),
        matmul_precision="int8",
        pipeline=f"builtin.module(effc-quantize-dynamic{{smooth={peaks_file}}})",
    )
    plain = effc.compile(model, (x,), matmul_precision="int8")
    assert 'effc.quantize_dynamic = "2/2 matmuls by constant weights in int8, 2 smoothed (alpha 0.6)"' in smoothed.mlir
    assert smoothed.mlir.count("effc-quantize-dynamic") <= 1  # the user's pass, not a second one from int8
    (ours,) = smoothed.run()
    (unsmoothed,) = plain.run()
    with torch.no_grad():
        hidden = torch.relu(_smoothed_linear(x, model.up, x.abs().amax(0)))
        exact_hidden = torch.relu(model.up(x))
        reference = _smoothed_linear(hidden, model.down, exact_hidden.abs().amax(0)).numpy()
        f32 = model(x).numpy()
    assert relative_error(ours, reference) <= 1e-5
    assert relative_error(ours, f32) < 0.5 * relative_error(unsmoothed, f32)


def test_the_pass_takes_alpha_from_its_option_else_the_file_else_the_default(tmp_path: Path) -> None:
    model, x = _outlier_model()
    peaks = _peaks(model, x)
    reports = []
    for file_alpha, option in ((None, ""), (0.4, ""), (0.4, " alpha=0.7")):
        path = tmp_path / f"{file_alpha}.json"
        path.write_text(dataclasses.replace(peaks, alpha=file_alpha).to_json())
        pipeline = f"builtin.module(effc-quantize-dynamic{{smooth={path}{option}}})"
        compiled = effc.compile(model, (x,), matmul_precision="int8", pipeline=pipeline, emit="torch")
        reports.append(compiled.mlir.split('effc.quantize_dynamic = "', 1)[1].split('"', 1)[0])
    assert reports == [
        f"2/2 matmuls by constant weights in int8, 2 smoothed (alpha {a})" for a in ("0.6", "0.4", "0.7")
    ]


@pytest.mark.parametrize("vnni", [False, True])
def test_a_pipeline_that_quantizes_itself_gets_no_second_quantization(
    monkeypatch: pytest.MonkeyPatch, vnni: bool
) -> None:
    """int8 adds what the pipeline lacks: the quantization, and on a host with AVX512-VNNI effc's kernel for it."""
    monkeypatch.setattr("effc.compiler.optimize.has_int8_dot_u8s8", lambda: vnni)
    kernel = ",effc-vnni-matmul" if vnni else ""
    own = "builtin.module(effc-quantize-dynamic{smooth=peaks.json alpha=0.5})"
    assert with_precision_passes(own, "int8", "llvm-cpu") == own[:-1] + kernel + ")"
    assert with_precision_passes("builtin.module(canonicalize)", "int8", "llvm-cpu") == (
        f"builtin.module(canonicalize,effc-quantize-dynamic{kernel})"
    )
    assert with_precision_passes(own, "int8", "cuda") == own


def test_calibrate_records_every_linear_and_its_file_smooths_minilm(effc_cli: EffcCli, tmp_path: Path) -> None:
    """Peaks from torch find their matmuls in the imported IR (by weight fingerprint): all of MiniLM's are smoothed."""
    data = tmp_path / "docs.txt"
    documents = (gensim_data() / "lee_background.cor").read_text().splitlines()[:2]
    data.write_text("\n".join(documents) + "\n")
    output = tmp_path / "minilm.int8.json"
    result = effc_cli("quantize", "calibrate", "minilm", "--data", str(data), "--tokens", "16", "-o", str(output))
    assert result.code == 0, result.err
    body = json.loads(output.read_text())
    assert (body["format"], body["model"], body["documents"], body["tokens"]) == (
        "effc-int8-smoothing",
        "minilm",
        2,
        16,
    )
    # Calibration chose the alpha whose int8 output moved least from f32, among every candidate it scored.
    scores = body["alpha_scores"]
    assert set(scores) == {"none", *(f"{a:g}" for a in ALPHAS)} and all(v > 0 for v in scores.values())
    assert body["alpha"] == min(ALPHAS, key=lambda a: scores[f"{a:g}"])

    model, tokenizer, _ = load_bundled_hf("minilm")
    query = model.encoder.layer[0].attention.self.query
    seen: list[torch.Tensor] = []
    hook = query.register_forward_hook(lambda _m, args, _out: seen.append(args[0].abs().amax((0, 1))))
    with torch.no_grad():
        for text in documents:
            model(input_ids=tokenizer(text, return_tensors="pt", truncation=True, max_length=16)["input_ids"])
    hook.remove()
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert len(body["weights"]) == len(linears)
    entry = body["weights"][weight_fingerprint(query.weight.detach().numpy())]
    assert entry["name"] == "encoder.layer.0.attention.self.query"
    np.testing.assert_allclose(entry["input_peaks"], torch.stack(seen).amax(0).numpy(), rtol=1e-5)

    pipeline = f"builtin.module(effc-quantize-dynamic{{smooth={output}}})"
    compiled = effc.compile("minilm", matmul_precision="int8", pipeline=pipeline, emit="torch")
    assert f"36/36 matmuls by constant weights in int8, 36 smoothed (alpha {body['alpha']:g})" in compiled.mlir


def test_bad_smoothing_files_and_options_are_one_line_errors(effc_cli: EffcCli, tmp_path: Path) -> None:
    source = tmp_path / "in.mlir"
    source.write_text("func.func @main() { return }\n")

    def opt(options: str) -> str:
        return one_line_error(
            effc_cli("opt", str(source), f"--pass-pipeline=builtin.module(effc-quantize-dynamic{{{options}}})")
        )

    missing = tmp_path / "missing.json"
    assert opt(f"smooth={missing}") == (
        f"effc: error: cannot read int8 smoothing file '{missing}': No such file or directory"
    )
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "effc-chai-plan", "version": 1}))
    assert opt(f"smooth={plan}") == (
        f"effc: error: int8 smoothing file '{plan}': not an effc int8 smoothing file (no \"format\": "
        "\"effc-int8-smoothing\"); make one with 'effc quantize calibrate'"
    )
    negative = tmp_path / "negative.json"
    negative.write_text(
        json.dumps({"format": "effc-int8-smoothing", "version": 1, "weights": {"ab": {"input_peaks": [1, -2]}}})
    )
    assert opt(f"smooth={negative}") == (
        f"effc: error: int8 smoothing file '{negative}': weight ab has input_peaks that are negative or not finite"
    )
    assert opt("alpha=1.5") == "effc: error: effc-quantize-dynamic: alpha must be in [0, 1], got 1.5"
    bad_alpha = tmp_path / "bad-alpha.json"
    bad_alpha.write_text(
        json.dumps({"format": "effc-int8-smoothing", "version": 1, "alpha": 2, "weights": {"ab": {"input_peaks": [1]}}})
    )
    assert opt(f"smooth={bad_alpha}") == (
        f"effc: error: int8 smoothing file '{bad_alpha}': alpha 2 is not a number in [0, 1]"
    )
    other = tmp_path / "other.json"
    other.write_text(
        json.dumps(
            {"format": "effc-int8-smoothing", "version": 1, "model": "other", "weights": {"ab": {"input_peaks": [1]}}}
        )
    )
    linear = tmp_path / "linear.mlir"
    linear.write_text(
        "func.func @main(%x: !torch.vtensor<[4,3],f32>) -> !torch.vtensor<[4,2],f32> {\n"
        "  %w = torch.vtensor.literal(dense<1.0> : tensor<3x2xf32>) : !torch.vtensor<[3,2],f32>\n"
        "  %y = torch.aten.mm %x, %w : !torch.vtensor<[4,3],f32>, !torch.vtensor<[3,2],f32> -> !torch.vtensor<[4,2],f32>\n"
        "  return %y : !torch.vtensor<[4,2],f32>\n}\n"
    )
    pipeline = f"--pass-pipeline=builtin.module(effc-quantize-dynamic{{smooth={other}}})"
    assert one_line_error(effc_cli("opt", str(linear), pipeline)) == (
        "effc: error: int8 smoothing: the peaks of model 'other' match none of this module's 1 matmuls by constant "
        "weights; calibrate this model with 'effc quantize calibrate'"
    )
    no_text = tmp_path / "empty.txt"
    no_text.write_text("\n")
    line = one_line_error(effc_cli("quantize", "calibrate", "minilm", "--data", str(no_text)))
    assert line == f"effc: error: calibration data '{no_text}' has no text; give one document per line"
