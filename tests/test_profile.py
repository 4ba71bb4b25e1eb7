"""effc-profile against torch's own FLOP counter, its op classes, the hardware table, reports and
`effc profile` end to end.

FLOP totals must equal `torch.utils.flop_counter.FlopCounterMode` exactly. torch's counter has no
formula for the CPU flash-attention kernel, so the reference runs sdpa on the math backend (two bmms,
which its counter does count): the same FLOPs the pass gives sdpa.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.compiler.importer import import_model
from effc.compiler.loader import LoadedModel
from effc.passes.hardware import PEAK_DTYPES, hardware_ids, load_hardware
from effc.passes.profile import ProfilePass
from effc.passes.report import DispatchRow, OpRow, ProfileReport, Section, write_report
from effc.tests import model_zoo
from effc.tests.conftest import CliResult

Model = tuple[nn.Module, tuple[torch.Tensor, ...]]


class UNet(nn.Module):
    """A small UNet level: strided conv down, GroupNorm, transposed conv and nearest upsample up, skip concat."""

    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        c = channels
        self.inc = nn.Conv2d(3, c, 3, padding=1)
        self.down = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1)
        self.norm = nn.GroupNorm(8, 2 * c)
        self.mid = nn.Conv2d(2 * c, 2 * c, 3, padding=1)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.up_conv = nn.Conv2d(2 * c, c, 3, padding=1)
        self.out = nn.Conv2d(2 * c, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h1 = F.silu(self.inc(x))
        h2 = F.silu(self.norm(self.down(h1)))
        h3 = F.silu(self.mid(h2))
        u = self.up(h3) + self.up_conv(self.upsample(h3))
        return self.out(torch.cat([u, h1], dim=1))


class VideoAttention(nn.Module):
    """Factorized video attention: spatial over h*w per frame, then temporal over frames per position."""

    def __init__(self, channels: int = 32, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(channels, 3 * channels)

    def _attend(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, seq, channels]
        b, s, c = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, frames, h*w, channels]
        b, f, p, c = x.shape
        spatial = self._attend(x.reshape(b * f, p, c)).reshape(b, f, p, c)
        temporal = self._attend(spatial.transpose(1, 2).reshape(b * p, f, c))
        return temporal.reshape(b, p, f, c)


def unet() -> Model:
    torch.manual_seed(0)
    return UNet().eval(), (torch.randn(1, 3, 32, 32),)


def video_attention() -> Model:
    torch.manual_seed(0)
    return VideoAttention().eval(), (torch.randn(1, 4, 64, 32),)  # 4 frames of 8x8 positions


def gpt2_wide() -> Model:
    """GPT-2 small's width (768) with one layer: big enough that matmuls are compute-bound on an H100."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=128, n_positions=128, n_embd=768, n_layer=1, n_head=12)
    return model_zoo.HiddenStates(GPT2LMHeadModel(config).eval(), causal=True), (torch.randint(0, 128, (1, 128)),)


def profiled(model: Model, *, target: str = "h100-sxm", attention: str = "decomposed") -> ir.Module:
    module, inputs = model
    imported = import_model(LoadedModel("m", module=module, example_inputs=inputs), (), attention=attention)
    ProfilePass(target=target).apply(imported.module.operation)
    return imported.module


def torch_flops(model: Model) -> int:
    module, inputs = model
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        module(*inputs)
    return counter.get_total_flops()


def module_attr(module: ir.Module, name: str) -> ir.Attribute:
    return module.operation.attributes[f"effc.profile.{name}"]


def class_shares(module: ir.Module) -> dict[str, float]:
    shares = ir.DictAttr(module_attr(module, "class_share"))
    return {shares[i].name: ir.FloatAttr(shares[i].attr).value for i in range(len(shares))}


def annotated_ops(module: ir.Module) -> list[ir.Operation]:
    found: list[ir.Operation] = []

    def visit(op: ir.Operation) -> ir.WalkResult:
        if "effc.op_class" in op.attributes:
            found.append(op)
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return found


@pytest.mark.parametrize(
    ("build", "attention"),
    [
        (model_zoo.mlp, "decomposed"),
        (model_zoo.conv_net, "decomposed"),
        (model_zoo.gpt2, "decomposed"),
        (model_zoo.gpt2, "fused"),
        (unet, "decomposed"),
        (video_attention, "fused"),
    ],
    ids=["mlp", "conv_net", "gpt2", "gpt2-fused-sdpa", "unet", "video-attention"],
)
def test_flops_equal_torch_flop_counter(build: Callable[[], Model], attention: str) -> None:
    model = build()
    module = profiled(model, attention=attention)
    total = ir.IntegerAttr(module_attr(module, "total_flops")).value
    assert total == torch_flops(model)
    per_op = sum(ir.IntegerAttr(op.attributes["effc.flops"]).value for op in annotated_ops(module))
    assert per_op == total


def test_convolution_dominates_a_unet() -> None:
    shares = class_shares(profiled(unet()))
    assert max(shares, key=shares.__getitem__) == "convolution", shares
    assert sum(shares.values()) == pytest.approx(1.0)


def test_linear_dominates_a_transformer() -> None:
    shares = class_shares(profiled(gpt2_wide()))
    assert max(shares, key=shares.__getitem__) == "linear", shares
    assert shares["attention"] > 0


def test_temporal_attention_is_told_from_spatial() -> None:
    module = profiled(video_attention(), attention="fused")  # keeps heads a separate dim
    attention = [
        op for op in annotated_ops(module) if ir.StringAttr(op.attributes["effc.op_class"]).value == "attention"
    ]
    seen = {
        (
            ir.IntegerAttr(op.attributes["effc.seq_len"]).value,
            ir.StringAttr(op.attributes["effc.op_subclass"]).value if "effc.op_subclass" in op.attributes else None,
        )
        for op in attention
    }
    assert seen == {(64, None), (4, "temporal_attention")}  # 64 positions per frame; 4 frames per position
    temporal = ir.FloatAttr(ir.DictAttr(module_attr(module, "subclass_share"))["temporal_attention"]).value
    assert 0 < temporal < class_shares(module)["attention"]


def test_a_weight_stored_narrow_is_read_at_its_stored_size() -> None:
    """effc-narrow-weights' bf16 weight, widened to f32 for the matmul, is read in 2 bytes a value, not 4: IREE
    widens it inside the matmul instead of folding an f32 copy."""
    from effc.passes import run as run_pipeline

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 32, bias=False)).eval()
    loaded = LoadedModel("linear", module=model, example_inputs=(torch.randn(1, 64),))
    module = import_model(loaded, (), attention="decomposed").module
    text = run_pipeline(str(module), "builtin.module(effc-narrow-weights,effc-profile{target=host-cpu})")
    (mm,) = [line for line in text.splitlines() if "torch.aten.mm" in line]
    assert "effc.bytes_read = 4352 : i64" in mm  # x: 64 x 4 bytes; the weight: 64 x 32 x 2 bytes
    plain = run_pipeline(str(module), "builtin.module(effc-profile{target=host-cpu})")
    (mm,) = [line for line in plain.splitlines() if "torch.aten.mm" in line]
    assert "effc.bytes_read = 8448 : i64" in mm


def test_unknown_target_is_one_line_error() -> None:
    with pytest.raises(EffcError) as err:
        ProfilePass.from_options({"target": "h100"})
    assert str(err.value) == (
        "unknown hardware target 'h100'; did you mean a100, h100-sxm? (known: host-cpu, a100, h100-sxm, h200-sxm)"
    )


def test_hardware_table_is_complete_and_sourced() -> None:
    assert hardware_ids()[:4] == ["host-cpu", "a100", "h100-sxm", "h200-sxm"]
    for name in hardware_ids():
        hardware = load_hardware(name)
        assert set(hardware.peak_flops) == set(PEAK_DTYPES)
        assert all(v > 0 for v in hardware.peak_flops.values())
        assert hardware.memory_bandwidth > 0 and hardware.tdp_w > 0
        assert all(source.strip() for source in hardware.sources.values())
    h100 = load_hardware("h100-sxm")
    assert h100.peak("bf16") == pytest.approx(989.4e12) and h100.memory_bandwidth == pytest.approx(3.35e12)


def test_report_is_self_contained_and_renders_sections(tmp_path: Path) -> None:
    ops = [
        OpRow(0, "torch.aten.convolution", "convolution", "m.py:3", 1000, 0, 64, 2e-6),
        OpRow(1, "torch.aten.relu", "elementwise", "m.py:4", 0, 16, 32, 1e-6),
    ]
    dispatch = DispatchRow("main$async_dispatch_0_conv_8x8_f32", 5e-6, 1, "convolution", 0, (0, 1), 3e-6)
    report = ProfileReport(
        "toy", "llvm-cpu", "host-cpu", "a CPU", "local-task", {"predicted_time_s": 3e-6}, ops, [dispatch]
    )
    report.add_section(Section("carbon", ["scope", "g CO2e"], [["operational", 0.5]], bars={"operational": 0.5}))
    json_path, html_path = write_report(report, tmp_path / "out")
    page = html_path.read_text()
    assert (
        "<svg" in page
        and "carbon" in page
        and "<script" not in page
        and "http:" not in page.replace("http://www.w3.org/2000/svg", "")
    )
    data = json.loads(json_path.read_text())
    convolution = next(row for row in data["classes"] if row["op_class"] == "convolution")
    assert convolution == {
        "op_class": "convolution",
        "est_time_s": 2e-6,
        "measured_s": 5e-6,
        "ratio": pytest.approx(2.5),
    }
    assert data["sections"][0]["title"] == "carbon"


def test_host_cpu_takes_the_measurement_of_a_cpu_like_this_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """hardware.json's host-cpu holds a Zen 4 (AVX-512, bf16) and a Zen 3 (AVX2) measurement: each CPU gets its own,
    and a CPU like neither gets the first, with the note that says so."""
    from effc.passes import hardware

    table = json.loads(hardware.HARDWARE_JSON.read_text())["devices"]["host-cpu"]
    for measured in hardware.measurements(table):
        features = measured["cpu_features"]
        monkeypatch.setattr(hardware, "vector_isa", lambda isa=features["vector_isa"]: isa)
        monkeypatch.setattr(hardware, "has_bf16_dot", lambda bf16=features["bf16_dot"]: bf16)
        host = load_hardware("host-cpu")
        assert host.peak("f32") == measured["peak_flops"]["f32"]["dense"]
        assert host.memory_bandwidth == measured["memory_bandwidth"]["value"]
        assert hardware.host_cpu_mismatch() is None
    assert {(m["cpu_features"]["vector_isa"], m["cpu_features"]["bf16_dot"]) for m in hardware.measurements(table)} >= {
        ("avx512", True),
        ("avx2", False),
    }
    monkeypatch.setattr(hardware, "vector_isa", lambda: "neon")
    monkeypatch.setattr(hardware, "has_bf16_dot", lambda: False)
    assert load_hardware("host-cpu").peak("f32") == table["peak_flops"]["f32"]["dense"]
    assert "was measured on other CPUs (avx512, with bf16; avx2, no bf16; this one: neon, no bf16)" in str(
        hardware.host_cpu_mismatch()
    )


def test_measure_host_replaces_the_measurement_of_a_cpu_like_this_one() -> None:
    from effc.bench.measure_host import with_measurement

    def measured(isa: str, bf16: bool, f32: float) -> dict[str, object]:
        return {"kind": "cpu", "cpu_features": {"vector_isa": isa, "bf16_dot": bf16}, "peak_flops": {"f32": f32}}

    zen4 = measured("avx512", True, 1.0)
    assert with_measurement(None, zen4) == zen4
    assert with_measurement({"kind": "cpu", "peak_flops": {"f32": 0.5}}, zen4) == zen4  # an unknown CPU's: replaced
    with_zen3 = with_measurement(zen4, measured("avx2", False, 2.0))
    assert with_zen3["peak_flops"] == {"f32": 1.0}
    assert [(m["cpu_features"]["vector_isa"], m["peak_flops"]) for m in with_zen3["other_cpus"]] == [
        ("avx2", {"f32": 2.0})
    ]
    assert "kind" not in with_zen3["other_cpus"][0]
    zen3_again = with_measurement(with_zen3, measured("avx2", False, 3.0))
    assert [m["peak_flops"] for m in zen3_again["other_cpus"]] == [{"f32": 3.0}]
    zen4_again = with_measurement(zen3_again, measured("avx512", True, 4.0))
    assert zen4_again["peak_flops"] == {"f32": 4.0} and zen4_again["other_cpus"] == zen3_again["other_cpus"]


def test_effc_profile_command_maps_dispatches_to_op_classes(
    effc_cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from effc.passes import hardware

    monkeypatch.setattr(hardware, "vector_isa", lambda: "neon")  # a CPU unlike those host-cpu was measured on
    monkeypatch.setattr(hardware, "has_bf16_dot", lambda: False)
    result = effc_cli("profile", "effc.tests.model_zoo:conv_net", "--repetitions", "3", "-o", str(tmp_path / "r"))
    assert result.code == 0, result.err
    assert (
        "hardware.json's host-cpu was measured on other CPUs (avx512, with bf16; avx2, no bf16; this one: neon, no "
        "bf16), so its predicted times are not this machine's: rerun python -m effc.bench.measure_host"
    ) in " ".join((result.out + result.err).split())
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["dispatches"], "no dispatch timings"
    assert all(d["root_op"] is not None for d in data["dispatches"] if "conv" in d["name"])
    measured = {row["op_class"]: row["measured_s"] for row in data["classes"]}
    assert measured["convolution"] > 0 and measured["linear"] > 0
    assert "time per op class" in result.out
    assert "<svg" in (tmp_path / "r" / "report.html").read_text()


def test_effc_profile_dash_o_times_the_kernels_effc_compile_dash_o_makes(
    effc_cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    """`-O`'s kernel edits (one-row matmuls on llvm-cpu) apply under `effc profile` too, not only `effc compile`."""
    args = ("effc.tests.model_zoo:mlp", "--input", "1x32xf32", "-O", "--repetitions", "3")
    result = effc_cli("profile", *args, "-o", str(tmp_path / "r"))
    assert result.code == 0, result.err
    assert "kernel configuration changed for 3 dispatches (dispatch_edits)" in " ".join(
        (result.out + result.err).split()
    )
    names = [d["name"] for d in json.loads((tmp_path / "r" / "report.json").read_text())["dispatches"]]
    assert sum("_matmul_1x" in name for name in names) == 3, names


def test_effc_profile_says_which_weights_matmul_precision_stored_narrow(
    effc_cli: Callable[..., CliResult], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`effc profile` notes what the precision passes changed, as `effc compile` does, since its times depend on it."""
    from effc.compiler import optimize

    monkeypatch.setattr(optimize, "has_bf16_dot", lambda: False)  # "medium" then narrows one-row matmuls' weights
    args = ("effc.tests.model_zoo:mlp", "--input", "1x32xf32", "--matmul-precision", "medium", "--repetitions", "3")
    result = effc_cli("profile", *args, "-o", str(tmp_path / "r"))
    assert result.code == 0, result.err
    note = "effc-narrow-weights: 3/3 matmul weights stored in bf16"
    assert note in " ".join((result.out + result.err).split())
    assert note in json.loads((tmp_path / "r" / "report.json").read_text())["notes"]  # the report says what it timed
    assert f"<li>{note}</li>" in (tmp_path / "r" / "report.html").read_text()
    # Redirected output keeps 160 columns (report_console): each op's source location stays on its row.
    assert re.search(r"│ tests/model_zoo\.py:\d+ │", result.out), result.out


@pytest.mark.usefixtures("bf16_cpu")
def test_effc_profile_refuses_flags_that_would_silently_drop_medium(effc_cli: Callable[..., CliResult]) -> None:
    """`effc profile` resolves iree-compile's flags as `effc compile` does (api.resolve_iree_flags), checks included."""
    args = ("effc.tests.model_zoo:mlp", "--matmul-precision", "medium", "--iree-flag=--iree-opt-level=O3")
    for command in ("compile", "profile"):
        result = effc_cli(command, *args, *(("-o", "/dev/null") if command == "compile" else ()))
        assert result.code != 0
        assert result.err.strip() == (
            "effc: error: matmul precision 'medium' has no effect with --iree-opt-level=O3: IREE 3.13 ignores "
            "contraction demotion at O2 and O3; drop one of them"
        )


def test_a_runtime_without_hal_profiling_is_a_one_line_error_with_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """IREE 3.13's CUDA driver refuses HAL profiling (the message below is what an H100 printed, NOTES.md)."""
    import numpy as np

    from effc.passes import dispatch_profile

    def refuse(command: list[str], timeout_s: float, tool: str) -> str:
        raise EffcError(
            f"{tool} failed (exit 1): c/runtime/src/iree/hal/drivers/cuda/cuda_device.c:1214: UNIMPLEMENTED; "
            "CUDA HAL-native profiling is not implemented"
        )

    monkeypatch.setattr(dispatch_profile, "_run", refuse)
    with pytest.raises(EffcError) as caught:
        dispatch_profile.hal_profile(tmp_path / "m.vmfb", [np.zeros(2, np.float32)], device="cuda", calls=2)
    assert str(caught.value) == (
        "this IREE runtime cannot time dispatches on 'cuda' (CUDA HAL-native profiling is not implemented); "
        "profile on llvm-cpu, or time the kernels with Nsight Compute (python -m effc.bench.perf.cuda profile)"
    )


def test_cuda_profile_table_keeps_columns_when_a_module_lacks_a_variant() -> None:
    """H100 run 9's profile: only the attention block has real weights, so MiniLM's row has no 'default-real'
    cell; its other cells must still sit under their own columns."""
    from effc.bench.perf.cuda import RESULTS, profile_markdown

    report = json.loads((RESULTS / "cuda-profile-nvidia-h100-80gb-hbm3-run9.json").read_text())
    lines = profile_markdown(report).splitlines()
    header = next(line for line in lines if line.startswith("| module | default-splat"))
    assert header == "| module | default-splat | default-real | graphs-splat | inline-splat | sync-alloc-splat |"
    minilm = next(line for line in lines if line.startswith("| minilm-f32--O | 3.100 |") and "failed" in line)
    cells = [cell.strip() for cell in minilm.strip("|").split("|")]
    assert cells[2] == "" and cells[3].startswith("failed: ") and cells[4:] == ["3.089", "3.366"]
    assert "| attention-block-f16--O | 0.255 | 3 | 0.160 | 0.085 | 3 | 0.050 |" in lines
