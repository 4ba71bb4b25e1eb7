"""`--matmul-precision int8` (effc-quantize-dynamic): IREE computes exactly the quantization the pass describes,
stores the weights in int8, and stays within int8's check tolerance of torch eager."""

from __future__ import annotations

from pathlib import Path

import torch

import effc
from effc.runtime.runner import relative_error
from effc.tests import model_zoo


class TwoLinears(torch.nn.Module):
    """Linear, ReLU, Linear: ReLU is exact, so a reference can follow the int8 arithmetic step by step."""

    def __init__(self, width: int = 64, hidden: int = 96, out: int = 32) -> None:
        super().__init__()
        self.up = torch.nn.Linear(width, hidden)
        self.down = torch.nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.relu(self.up(x)))


def quantized_linear(x: torch.Tensor, linear: torch.nn.Linear, smoothing: torch.Tensor | None = None) -> torch.Tensor:
    """The pass's arithmetic in torch: with SmoothQuant's s, x / s and W * s per input channel first; then symmetric
    int8, activations per row (times the reciprocal of their scale), weights per output channel (divided by theirs)."""
    w = linear.weight.t()
    if smoothing is not None:
        x, w = x * (1 / smoothing), w * smoothing[:, None]
    x_scale = x.abs().amax(dim=1, keepdim=True).clamp_min(127e-30) / 127
    w_scale = w.abs().amax(dim=0, keepdim=True).clamp_min(127e-30) / 127
    x_q = torch.round(x * (1 / x_scale)).to(torch.int64)
    w_q = torch.round(w / w_scale).to(torch.int64)
    return (x_q @ w_q).to(torch.float32) * x_scale * w_scale + linear.bias


def _model() -> tuple[TwoLinears, torch.Tensor]:
    torch.manual_seed(0)
    return TwoLinears().eval(), torch.randn(8, 64) * torch.linspace(0.1, 3.0, 8)[:, None]  # rows of unequal range


def test_int8_computes_the_dynamic_quantization_it_describes() -> None:
    model, x = _model()
    compiled = effc.compile(model, (x,), matmul_precision="int8")
    assert compiled.matmul_precision == "int8"
    assert compiled.mlir.count("!torch.vtensor<[8,64],si8>") >= 1 and "-> !torch.vtensor<[8,32],si32>" in compiled.mlir
    (ours,) = compiled.run()
    with torch.no_grad():
        reference = quantized_linear(torch.relu(quantized_linear(x, model.up)), model.down).numpy()
        f32 = model(x).numpy()
    assert relative_error(ours, reference) <= 1e-5  # int32 products are exact; only the f32 rescaling rounds
    assert 1e-3 < relative_error(ours, f32) <= compiled.tolerance == 0.2  # 8-bit rounding acted


def test_int8_rounds_activations_half_to_even_as_torch_round() -> None:
    """The pass rounds by adding and subtracting 1.5 * 2^23, which IREE leaves alone: ties must still go to even."""
    identity = torch.nn.Linear(6, 6, bias=False)
    with torch.no_grad():
        identity.weight.copy_(torch.eye(6))
    x = torch.tensor([[127.0, 63.5, -63.5, 0.5, 1.5, -2.5]])  # row scale 1: x_q = round(x), read back through I
    compiled = effc.compile(identity.eval(), (x,), matmul_precision="int8")
    (ours,) = compiled.run()
    assert ours.tolist() == [[127.0, 64.0, -64.0, 0.0, 2.0, -2.0]] == torch.round(x).tolist()


def test_int8_with_a_parameter_archive_keeps_the_int8_weights_there(tmp_path: Path) -> None:
    """With `--params` the archive holds the int8 weight (64x96; the smaller ones stay in the module)."""
    model, x = _model()
    compiled = effc.compile(model, (x,), matmul_precision="int8", parameters=tmp_path / "w.irpa")
    assert compiled.parameters is not None and 64 * 96 <= compiled.parameters.stat().st_size < 64 * 96 * 2
    (ours,) = compiled.run()
    with torch.no_grad():
        reference = quantized_linear(torch.relu(quantized_linear(x, model.up)), model.down).numpy()
    assert relative_error(ours, reference) <= 1e-5


def test_int8_compiles_for_cuda() -> None:
    """IREE's CUDA backend takes the int8 matmuls too (sm_80 here; unmeasured on a GPU so far)."""
    model, x = _model()
    compiled = effc.compile(model, (x,), target="cuda", matmul_precision="int8")
    assert compiled.vmfb and compiled.matmul_precision == "int8" and compiled.notes == []


def test_int8_stores_the_weights_in_int8() -> None:
    """The pass quantizes the weights at compile time: the module holds int8 weights."""
    torch.manual_seed(0)
    model, x = TwoLinears(width=256, hidden=512, out=256).eval(), torch.randn(4, 256)
    sizes = {p: len(effc.compile(model, (x,), matmul_precision=p).vmfb or b"") for p in ("highest", "int8")}
    f32_weights = 2 * 256 * 512 * 4
    assert sizes["highest"] - sizes["int8"] >= 0.7 * f32_weights * 3 / 4  # 4 bytes a weight -> 1, plus scales


def test_int8_on_an_encoder_stays_within_its_tolerance() -> None:
    model, inputs = model_zoo.bert()
    compiled = effc.compile(model, inputs, matmul_precision="int8")
    assert "effc.quantize_dynamic" in compiled.mlir
    assert 1e-4 < max(compiled.compare()) <= compiled.tolerance  # f32 gives ~1e-6: int8 rounding acted


def test_int8_with_emit_torch_gives_the_quantized_ir() -> None:
    model, x = _model()
    compiled = effc.compile(model, (x,), matmul_precision="int8", emit="torch")
    assert compiled.matmul_precision == "int8" and compiled.vmfb is None
    assert 'effc.quantize_dynamic = "2/2 matmuls by constant weights in int8"' in compiled.mlir
    # Quantized by the pass, not left to IREE as constant expressions: no f32 weight, no weight amax.
    assert "tensor<64x96xsi8>" in compiled.mlir and "tensor<96x64xf32>" not in compiled.mlir
    assert compiled.mlir.count("torch.aten.amax") == 2  # the two activations'


def _dense(array: torch.Tensor) -> str:
    return "[" + ", ".join(_dense(row) if row.dim() else f"{float(row):.8e}" for row in array) + "]"


def test_int8_linear_of_mlir_input_matches_the_reference(tmp_path: Path) -> None:
    """IR that kept `aten.linear` (a 3-D activation, a bias) is quantized with its rows flattened."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(16, 8).eval()
    x = torch.randn(2, 4, 16)
    w, b = linear.weight.detach(), linear.bias.detach()
    source = tmp_path / "linear.mlir"
    source.write_text(
        "func.func @main(%x: !torch.vtensor<[2,4,16],f32>) -> !torch.vtensor<[2,4,8],f32> {\n"
        f"  %w = torch.vtensor.literal(dense<{_dense(w)}> : tensor<8x16xf32>) : !torch.vtensor<[8,16],f32>\n"
        f"  %b = torch.vtensor.literal(dense<{_dense(b)}> : tensor<8xf32>) : !torch.vtensor<[8],f32>\n"
        "  %y = torch.aten.linear %x, %w, %b : !torch.vtensor<[2,4,16],f32>, !torch.vtensor<[8,16],f32>, "
        "!torch.vtensor<[8],f32> -> !torch.vtensor<[2,4,8],f32>\n"
        "  return %y : !torch.vtensor<[2,4,8],f32>\n}\n"
    )
    compiled = effc.compile(str(source), matmul_precision="int8")
    (ours,) = compiled.run(x.numpy())
    with torch.no_grad():
        reference = quantized_linear(x.reshape(8, 16), linear).reshape(2, 4, 8).numpy()
        f32 = linear(x).numpy()
    assert relative_error(ours, reference) <= 1e-5
    assert 1e-4 < relative_error(ours, f32) <= compiled.tolerance


def test_int8_quantizes_a_linear_imported_as_bmm_by_a_broadcast_weight() -> None:
    """The attention block's output projection reads sdpa's heads transposed back to rows, and torch-mlir imports it
    as bmm by the weight broadcast over the batch: one weight matrix, quantized like the QKV projection."""
    from effc.bench.perf.workloads import AttentionBlock

    torch.manual_seed(0)
    block, x = AttentionBlock(dim=32, heads=4).eval(), torch.randn(2, 6, 32)
    imported = effc.compile(block, (x,), attention="decomposed", emit="torch").mlir
    assert "torch.aten.bmm" in imported and "torch.aten.broadcast_to" in imported
    compiled = effc.compile(block, (x,), attention="decomposed", matmul_precision="int8")
    assert 'effc.quantize_dynamic = "2/2 matmuls by constant weights in int8"' in compiled.mlir
    (ours,) = compiled.run()
    with torch.no_grad():
        q, k, v = quantized_linear(x.reshape(12, 32), block.qkv).reshape(2, 6, 3, 4, 8).permute(2, 0, 3, 1, 4)
        heads = torch.nn.functional.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(12, 32)
        reference = quantized_linear(heads, block.out).reshape(2, 6, 32).numpy()
    assert relative_error(ours, reference) <= 1e-4  # f32 attention between the int8 matmuls rounds a little
