"""effc-hopper-kernels: effc's Triton kernels for Hopper as IREE custom dispatches (the IR: lit/effc-hopper-kernels.mlir).

No GPU here: the kernels' arithmetic runs in Triton's interpreter with the specializations the pass chose, and the
modules are compiled for CUDA and inspected. bench/perf/NOTES.md has the H200 runs (numerics against torch there).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import effc
from effc.bench.perf.workloads import AttentionBlock
from effc.compiler.errors import EffcError
from effc.compiler.iree_backend import target_flags
from effc.compiler.optimize import best_known
from effc.passes.hopper_kernels import declared_kernels, define_kernels
from effc.passes.hopper_triton import cubin
from effc.tests.conftest import EffcCli

_HOPPER = "builtin.module(effc-hopper-kernels)"


def _block() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return AttentionBlock(dim=128, heads=2).eval().half(), (torch.randn(2, 128, 128).half(),)


@pytest.mark.parametrize(("dtype", "tolerance"), [("float16", 2e-3), ("float32", 1e-5)])
def test_the_pass_specializations_compute_the_block_in_tritons_interpreter(dtype: str, tolerance: float) -> None:
    """The linears, and the attention reading q, k and v inside the QKV projection's output with the strides the
    pass derived, give the torch block's output (f32) to the accuracy of their type. (The interpreter multiplies f32
    in f32 whatever the precision; the GPU runs check "ieee" and the tensor-core ones, bench/perf/NOTES.md.)"""
    environment = os.environ | {"TRITON_INTERPRET": "1", "TRITON_DEFAULT_FP_FUSION": "1"}
    script = Path(__file__).with_name("hopper_interpreted.py")
    command = [sys.executable, str(script), dtype]
    done = subprocess.run(command, capture_output=True, text=True, env=environment, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kernels"] == ["effc_hopper_attention_0", "effc_hopper_linear_0", "effc_hopper_linear_1"]
    assert result["relative_error"] < tolerance


def test_the_block_compiles_to_three_dispatches_without_copies(tmp_path: Path) -> None:
    """QKV projection, attention and output projection are IREE's only dispatches: the layout ops between them
    (the heads' views, permutes and slices) cost no copy. The module carries the three cubins."""
    block, inputs = _block()
    compiled = effc.compile(block, inputs, target="cuda", pipeline=_HOPPER, save_temps=tmp_path)
    assert compiled.notes == [
        "effc-hopper-kernels: 2/2 matmuls as effc's Hopper linear kernel; 1/1 attentions as effc's Hopper attention "
        "kernel"
    ]
    hal = (tmp_path / "iree-phases" / "input.11.hal.mlir").read_text()
    dispatched = [line for line in hal.splitlines() if "hal.command_buffer.dispatch<" in line]
    assert len(dispatched) == 3 and all("effc_hopper_" in line for line in dispatched)
    assert "copy_buffer" not in hal
    assert compiled.vmfb is not None and compiled.vmfb.count(b"\x7fELF") >= 3
    assert "--iree-cuda-target=sm_80" in (tmp_path / "iree-compile.sh").read_text()


def test_images_have_only_irees_bindings_as_parameters() -> None:
    """Triton's two scratch pointers are dropped, so a kernel's parameters are the bindings IREE passes; a PTX
    image is text for the driver to compile, a cubin is ELF for sm_90a."""
    constants = (("M", 128), ("N", 128), ("K", 64), ("HAS_BIAS", False), ("BM", 128), ("BN", 128), ("BK", 64))
    constants += (("GROUP", 8),)
    pointers = (("x", "*fp16"), ("w", "*fp16"), ("y", "*fp32"))  # no bias: a constant None
    ptx = cubin("effc_linear", pointers, constants, 8, 4, "ptx").image.decode()
    assert ".target sm_90a" in ptx and "wgmma" in ptx
    assert "effc_linear_param_2" in ptx and "effc_linear_param_3" not in ptx
    built = cubin("effc_linear", pointers, constants, 8, 4)
    assert built.image.startswith(b"\x7fELF") and built.threads == 256 and built.shared_bytes > 48 * 1024


def test_dash_o_on_hopper_adds_the_kernels_and_compiles_iree_for_sm80() -> None:
    """`-O --cuda-arch sm_90a`: IREE 3.13 has no sm_90 target, so its code is sm_80's, and effc's kernels join."""
    hopper = best_known("cuda", "sm_90a")["pipeline"]
    assert hopper == best_known("cuda")["pipeline"][:-1] + ",effc-hopper-kernels{f32-precision=tf32x3})"
    assert best_known("cuda", "sm_89") == best_known("cuda")
    assert target_flags("cuda", cuda_arch="sm_90a")[-1] == "--iree-cuda-target=sm_80"
    block, inputs = _block()
    options = best_known("cuda", "sm_90a") | {"attention": "fused"}  # -O imports f32 attention decomposed
    compiled = effc.compile(block.float(), (inputs[0].float(),), target="cuda", emit="torch", **options)
    specs = declared_kernels(compiled.mlir)
    assert sorted(specs) == ["effc_hopper_attention_0", "effc_hopper_linear_0", "effc_hopper_linear_1"]
    assert all(dict(spec.constants)["PRECISION"] == "tf32x3" for spec in specs.values())


def test_kernels_need_the_cuda_target(effc_cli: EffcCli, tmp_path: Path) -> None:
    block, inputs = _block()
    text = effc.compile(block, inputs, target="cuda", pipeline=_HOPPER, emit="torch").mlir
    assert sorted(declared_kernels(text)) == ["effc_hopper_attention_0", "effc_hopper_linear_0", "effc_hopper_linear_1"]
    with pytest.raises(EffcError) as raised:
        define_kernels(text, "llvm-cpu")
    assert str(raised.value) == (
        "effc-hopper-kernels' kernels run on NVIDIA Hopper GPUs, not target llvm-cpu: compile with --target cuda, or "
        "drop effc-hopper-kernels from the pipeline"
    )
    source = tmp_path / "block.mlir"
    source.write_text(text)
    result = effc_cli("compile", str(source), "-o", str(tmp_path / "block.vmfb"))
    assert result.code != 0 and not (tmp_path / "block.vmfb").exists()
    assert result.err.strip().splitlines()[-1] == f"effc: error: {raised.value}"
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("image=elf", "effc-hopper-kernels: image=elf is not one of: cubin, ptx"),
        ("stages=-1", "effc-hopper-kernels: stages=-1 must be 0 (the defaults) or more"),
        ("f32-precision=fp64", "effc-hopper-kernels: f32-precision=fp64 is not one of: ieee, tf32x3, bf16x3, tf32"),
    ],
)
def test_bad_options(effc_cli: EffcCli, tmp_path: Path, options: str, message: str) -> None:
    source = tmp_path / "empty.mlir"
    source.write_text("module {\n}\n")
    result = effc_cli("opt", str(source), f"--pass-pipeline=builtin.module(effc-hopper-kernels{{{options}}})")
    assert result.code != 0
    assert result.err.strip().splitlines() == [f"effc: error: {message}"]


def test_the_profiler_counts_the_kernels_as_the_ops_they_replace() -> None:
    """effc-profile costs the calls from their kernels' specs: the block's FLOPs as its own ops count them, linear and
    attention; the attention reads the QKV projection's output once, not once per q, k and v."""
    block, inputs = _block()
    texts = [
        effc.compile(block, inputs, target="cuda", pipeline=f"builtin.module({pipeline})", emit="torch").mlir
        for pipeline in ("effc-profile{target=h100-sxm}", "effc-hopper-kernels,effc-profile{target=h100-sxm}")
    ]
    flops = [text.split("effc.profile.total_flops = ")[1].split(" ")[0] for text in texts]
    assert flops[0] == flops[1] == str(2 * 256 * 128 * (384 + 128) + 4 * 4 * 128 * 128 * 64)
    calls = {
        line.split("call @")[1].split("(")[0]: line for line in texts[1].splitlines() if "call @effc_hopper" in line
    }
    assert all('effc.op_class = "linear"' in calls[f"effc_hopper_linear_{i}"] for i in (0, 1))
    assert 'effc.op_class = "attention"' in calls["effc_hopper_attention_0"]
    assert f"effc.bytes_read = {256 * 384 * 2} : i64" in calls["effc_hopper_attention_0"]
