"""End-to-end numerics: effc-compiled modules on llvm-cpu against torch eager (relative error ≤ 1e-4)."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import effc
from effc.compiler.api import CHECK_TOLERANCE
from effc.compiler.errors import EffcError
from effc.compiler.iree_backend import compile_mlir
from effc.runtime.runner import relative_error, run_vmfb
from effc.tests import model_zoo

TOLERANCE = 1e-4

ARCHITECTURES: dict[str, Callable[[], tuple[torch.nn.Module, tuple[torch.Tensor, ...]]]] = {
    "mlp": model_zoo.mlp,
    "conv_net": model_zoo.conv_net,
    "gpt2": model_zoo.gpt2,
    "bert": model_zoo.bert,
    "llama_mha": model_zoo.llama,
    "llama_gqa": model_zoo.llama_gqa,
}


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_matches_torch_eager(name: str) -> None:
    model, inputs = ARCHITECTURES[name]()
    compiled = effc.compile(model, inputs, target="llvm-cpu")
    errors = compiled.compare()
    assert errors and max(errors) <= TOLERANCE, f"{name}: relative errors {errors}"


@pytest.mark.parametrize("attention", ["fused", "decomposed"])
def test_attention_import_modes_agree_with_torch(attention: str) -> None:
    model, inputs = model_zoo.llama_gqa()
    compiled = effc.compile(model, inputs, attention=attention)  # type: ignore[arg-type]
    has_sdpa = "torch.aten.scaled_dot_product_attention" in compiled.mlir
    assert has_sdpa == (attention == "fused")
    assert max(compiled.compare()) <= TOLERANCE


def test_dynamic_batch_stays_dynamic() -> None:
    model, _ = model_zoo.mlp()
    compiled = effc.compile(model, inputs=("?x32xf32",))
    assert "!torch.vtensor<[?,32],f32>" in compiled.mlir
    for batch in (3, 11):
        x = torch.randn(batch, 32)
        (out,) = compiled.run(x)
        with torch.no_grad():
            expected = model(x).numpy()
        assert out.shape == (batch, 10)
        assert relative_error(out, expected) <= TOLERANCE


def test_save_writes_a_loadable_module(tmp_path: Path) -> None:
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs)
    path = compiled.save(tmp_path / "mlp.vmfb")
    from effc.runtime.runner import run_vmfb

    (out,) = run_vmfb(path, [inputs[0].numpy()])
    np.testing.assert_allclose(out, compiled.run()[0], rtol=0, atol=0)


def test_benchmark_passes_runtime_flags_last(tmp_path: Path) -> None:
    """Driver options reach iree-benchmark-module after effc's own flags, so a caller's value wins."""
    from effc.runtime.runner import benchmark_vmfb

    model, inputs = model_zoo.mlp()
    path = effc.compile(model, inputs).save(tmp_path / "mlp.vmfb")
    result = benchmark_vmfb(path, [inputs[0].numpy()], repetitions=2, runtime_flags=("--benchmark_repetitions=3",))
    assert len(result.runs_s) == 3 and result.median_s > 0


def test_pipelined_calls_match_a_synchronous_call(tmp_path: Path) -> None:
    """Calls chained on device fences (`main$async`) give the synchronous call's outputs, and a time per call."""
    from effc.runtime.runner import pipelined_benchmark, run_vmfb

    model, inputs = model_zoo.mlp()
    path = effc.compile(model, inputs).save(tmp_path / "mlp.vmfb")
    result, outputs = pipelined_benchmark(path, [inputs[0].numpy()], depth=4, repetitions=3)
    assert len(result.runs_s) == 3 and result.median_s > 0
    np.testing.assert_array_equal(outputs[0], run_vmfb(path, [inputs[0].numpy()])[0])
    with pytest.raises(EffcError, match=r"^the module has no 'forward\$async' export; compile it with IREE's"):
        pipelined_benchmark(path, [inputs[0].numpy()], function="forward")


class _Attention(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize(("query_rows", "kept"), [(4, True), (1, False)])
def test_fused_keeps_sdpa_except_single_query(query_rows: int, kept: bool) -> None:
    """No mask and no is_causal (torch-mlir would decompose it); a decode step's one-row query decomposes."""
    generator = torch.Generator().manual_seed(0)
    q = torch.randn(1, 2, query_rows, 8, generator=generator)
    k, v = torch.randn(2, 1, 2, 6, 8, generator=generator)
    compiled = effc.compile(_Attention(), (q, k, v), attention="fused")
    assert ("torch.aten.scaled_dot_product_attention" in compiled.mlir) == kept
    assert max(compiled.compare()) <= TOLERANCE


@pytest.mark.parametrize(
    ("target", "dtype", "expected"),
    [
        ("llvm-cpu", torch.float16, "decomposed"),
        ("cuda", torch.float32, "decomposed"),
        ("cuda", torch.float16, "fused"),
        ("cuda", torch.bfloat16, "fused"),
    ],
)
def test_auto_attention_follows_the_measurements(target: str, dtype: torch.dtype, expected: str) -> None:
    from effc.compiler.importer import resolve_attention
    from effc.compiler.loader import LoadedModel

    loaded = LoadedModel("linear", module=torch.nn.Linear(2, 2).to(dtype))
    assert resolve_attention("auto", target, loaded) == expected
    assert resolve_attention("fused", target, loaded) == "fused"


def test_optional_flags_are_dropped_with_a_note_when_iree_rejects_them() -> None:
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs, optional_iree_flags=("--iree-no-such-flag",))
    assert compiled.notes == [
        "iree-compile failed with --iree-no-such-flag (iree-compile does not know the flag '--iree-no-such-flag'; "
        "check the spelling with `iree-compile --help`); compiled without them"
    ]
    assert max(compiled.compare()) <= TOLERANCE


@pytest.mark.parametrize("stalls", [1, 2])
def test_a_stalled_iree_compile_is_overtaken_by_a_twin(
    stalls: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first `stalls` iree-compiles stand in for IREE's x86 stall: they sleep. A twin starts once the first has
    run HEDGE_AFTER_S, a stalled twin is replaced after as long, and the stalled ones are stopped."""
    import time

    from effc.compiler import iree_backend

    real_command = iree_backend.compile_command
    wrapper = tmp_path / "iree-compile"

    def stalling(target: str, **kwargs: object) -> list[str]:
        command = real_command(target, **kwargs)  # type: ignore[arg-type]
        claims = "".join(
            f"if mkdir {tmp_path}/claim{i} 2>/dev/null; then echo $$ > {tmp_path}/stalled{i}; exec sleep 600; fi\n"
            for i in range(stalls)
        )
        wrapper.write_text(f'#!/bin/sh\n{claims}exec {command[0]} "$@"\n')
        wrapper.chmod(0o755)
        return [str(wrapper), *command[1:]]

    monkeypatch.setattr(iree_backend, "compile_command", stalling)
    monkeypatch.setattr(iree_backend, "HEDGE_AFTER_S", 2.0)
    model, inputs = model_zoo.mlp()
    start = time.monotonic()
    compiled = effc.compile(model, inputs)
    assert time.monotonic() - start < 120
    assert max(compiled.compare()) <= TOLERANCE
    assert len(compiled.notes) == stalls
    assert all(n.startswith("iree-compile still running after ") for n in compiled.notes)
    for i in range(stalls):
        with pytest.raises(ProcessLookupError):
            os.kill(int((tmp_path / f"stalled{i}").read_text()), 0)  # stopped and reaped


def test_a_twin_starts_sooner_where_bf16_demotion_may_stall_and_later_for_large_inputs() -> None:
    from effc.compiler.iree_backend import BF16_DEMOTION_FLAG, hedge_after
    from effc.compiler.optimize import MEDIUM_PRECISION

    assert BF16_DEMOTION_FLAG in MEDIUM_PRECISION["llvm-cpu"]
    assert hedge_after("llvm-cpu", [], 90_000_000) == 60.0
    assert hedge_after("llvm-cpu", list(MEDIUM_PRECISION["llvm-cpu"]), 90_000_000) == 30.0
    assert hedge_after("llvm-cpu", [BF16_DEMOTION_FLAG], 1_100_000_000) == pytest.approx(165.0)
    assert hedge_after("cuda", [BF16_DEMOTION_FLAG], 90_000_000) is None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/PID/personality")
def test_a_failing_twin_leaves_the_first_compile_running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A twin that fails (here: at once, as if killed for memory) does not fail a slow first compile that succeeds,
    and is replaced no sooner than HEDGE_AFTER_S after it started. Every attempt runs without address
    randomization."""
    from effc.compiler import iree_backend

    real_command = iree_backend.compile_command
    wrapper, starts = tmp_path / "iree-compile", tmp_path / "starts"

    def slow_first(target: str, **kwargs: object) -> list[str]:
        command = real_command(target, **kwargs)  # type: ignore[arg-type]
        wrapper.write_text(
            f"#!/bin/sh\ncat /proc/$$/personality >> {starts}\n"
            f'if mkdir {tmp_path}/claim 2>/dev/null; then sleep 5; exec {command[0]} "$@"; fi\nexit 3\n'
        )
        wrapper.chmod(0o755)
        return [str(wrapper), *command[1:]]

    monkeypatch.setattr(iree_backend, "compile_command", slow_first)
    monkeypatch.setattr(iree_backend, "HEDGE_AFTER_S", 2.0)
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs)
    assert max(compiled.compare()) <= TOLERANCE
    personalities = starts.read_text().splitlines()
    assert 2 <= len(personalities) <= 4  # the first, then a twin every 2 s while it sleeps 5 s
    assert all(int(p, 16) & 0x0040000 for p in personalities)  # ADDR_NO_RANDOMIZE: the stall is rarer without it
    assert not int(Path("/proc/self/personality").read_text(), 16) & 0x0040000  # effc's own setting is restored


@pytest.mark.usefixtures("bf16_cpu")
def test_medium_matmul_precision_rounds_matmul_inputs_to_bf16() -> None:
    """ "medium" must change the numerics (bf16 inputs) but stay within its check tolerance."""
    model, inputs = model_zoo.bert()
    compiled = effc.compile(model, inputs, matmul_precision="medium")
    assert compiled.matmul_precision == "medium" and compiled.notes == []
    worst = max(compiled.compare())
    assert 2e-5 < worst <= compiled.tolerance == 3e-2  # f32 gives ~1e-6: bf16 rounding acted


def test_medium_precision_stays_f32_with_a_note_on_a_cpu_without_bf16_dot_products(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where bf16 matmuls would be scalar code (MiniLM 85x slower than f32 on a Zen 3 host), "medium" is f32, as
    torch's is."""
    from effc.compiler import optimize
    from effc.compiler.host_cpu import cpu_model

    monkeypatch.setattr(optimize, "has_bf16_dot", lambda: False)
    model, inputs = model_zoo.bert()
    compiled = effc.compile(model, inputs, matmul_precision="medium")
    assert compiled.notes == [
        f"matmul precision 'medium' keeps f32 arithmetic: this CPU ({cpu_model()}) has no bf16 dot products "
        "(AVX512-BF16, AMX-BF16 or Arm BF16), without which IREE's bf16 matmuls run far slower than f32; only one-row "
        "matmuls (a decode step's) read their weights stored in bf16"
    ]
    assert compiled.matmul_precision == "highest" and compiled.tolerance == TOLERANCE
    assert max(compiled.compare()) <= TOLERANCE


def test_medium_precision_stays_f32_with_a_note_when_iree_rejects_it() -> None:
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(
        model, inputs, target="cuda", matmul_precision="medium", optional_iree_flags=("--iree-no-such-flag",)
    )
    assert compiled.matmul_precision == "highest"
    assert compiled.notes[0].endswith("compiled without them, so matmul precision stays 'highest' (f32)")


class _BoolMaskDecodeStep(torch.nn.Module):
    """One token attending to a cache under a boolean mask built in the graph, as SmolLM2's decode step does."""

    def __init__(self) -> None:
        super().__init__()
        self.q = torch.nn.Linear(32, 32)
        self.kv = torch.nn.Linear(32, 32)

    def forward(self, x: torch.Tensor, position: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        length = k.shape[2]
        valid = torch.cat([torch.arange(length) < position, torch.ones(1, dtype=torch.bool)]).view(1, 1, 1, -1)
        new = self.kv(x).view(1, 4, 1, 8)
        keys, values = torch.cat([k, new], 2), torch.cat([v, new], 2)
        return F.scaled_dot_product_attention(self.q(x).view(1, 4, 1, 8), keys, values, attn_mask=valid)


@pytest.mark.usefixtures("bf16_cpu")
def test_medium_decode_step_reads_bf16_weights_and_multiplies_in_f32(tmp_path: Path) -> None:
    """Every weight matmul of a decode step has one row: "medium" stores the weights in bf16 and leaves IREE's bf16
    demotion and data tiling out, even where the CPU has bf16 dot products (SmolLM2's step 38.2 -> 19.6 ms on the
    Zen 4: it reads its weights and KV cache once, where data tiling packed the cache on every call)."""
    from effc.compiler.optimize import best_known

    torch.manual_seed(0)
    inputs = (torch.randn(1, 32), torch.tensor([30]), torch.randn(1, 4, 48, 8), torch.randn(1, 4, 48, 8))
    model = _BoolMaskDecodeStep().eval()
    options = best_known("llvm-cpu")
    compiled = effc.compile(model, inputs, matmul_precision="medium", save_temps=tmp_path, **options)
    assert compiled.notes[:2] == [
        "effc-narrow-weights: 2/2 matmul weights stored in bf16",
        "--iree-dispatch-creation-data-tiling --iree-llvmcpu-enable-ukernels=mmt4d "
        "--iree-global-opt-demote-contraction-inputs-type=bf16 --iree-global-opt-demote-contraction-inputs-operations=all "
        "left out: every matmul by a constant weight has one row (a decode step), where data tiling does not pay on "
        "llvm-cpu; its weights are read in bf16 (effc-narrow-weights) and multiplied in f32 instead",
    ]
    command = (tmp_path / "iree-compile.sh").read_text()
    assert "data-tiling" not in command and "demote" not in command
    assert compiled.matmul_precision == "medium"
    assert 1e-5 < max(compiled.compare()) <= compiled.tolerance  # bf16 rounding acted


def test_precision_falls_back_to_its_other_flags_where_iree_rejects_them() -> None:
    """Where iree-compile rejects a precision's flags, its fallback flags are tried, with a note, and reported as
    the ones that took effect."""
    from effc.compiler.api import _compile_with_optional_flags
    from effc.compiler.progress import Stages

    model, inputs = model_zoo.mlp()
    mlir = effc.compile(model, inputs, emit="torch").mlir
    stages = Stages(enabled=False)
    rejected, fallback = ("--iree-global-opt-demote-contraction-inputs-type=bf17",), ("--iree-global-opt-data-tiling",)
    vmfb, took_effect = _compile_with_optional_flags(
        lambda flags: compile_mlir(mlir, extra_flags=list(flags)), (), rejected, rejected, stages, fallback
    )
    assert took_effect == fallback
    (note,) = stages.notes
    assert note.startswith("iree-compile failed with --iree-global-opt-demote-contraction-inputs-type=bf17 (")
    assert note.endswith("; compiled with --iree-global-opt-data-tiling instead")
    (out,) = run_vmfb(vmfb, [t.numpy() for t in inputs])
    with torch.no_grad():
        assert relative_error(out, model(*inputs).numpy()) <= TOLERANCE


def test_medium_precision_reads_one_row_weights_in_bf16_on_a_cpu_without_bf16_dot_products(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A decode step is bound by reading its weights: "medium" stores them in bf16 where every matmul by them has one
    row, and the matmuls stay f32 (bench/perf/NOTES.md, seventeenth CPU session)."""
    from effc.compiler import optimize

    monkeypatch.setattr(optimize, "has_bf16_dot", lambda: False)
    torch.manual_seed(0)
    inputs = (torch.randn(1, 32), torch.tensor([30]), torch.randn(1, 4, 48, 8), torch.randn(1, 4, 48, 8))
    model = _BoolMaskDecodeStep().eval()
    options = optimize.best_known("llvm-cpu")
    compiled = effc.compile(model, inputs, matmul_precision="medium", save_temps=tmp_path, **options)
    assert "effc-narrow-weights: 2/2 matmul weights stored in bf16" in compiled.notes
    assert "data-tiling" not in (tmp_path / "iree-compile.sh").read_text()  # the weights' rows still count as one
    assert compiled.matmul_precision == "medium"
    assert 1e-5 < max(compiled.compare()) <= compiled.tolerance  # bf16 rounding acted
    f32 = effc.compile(model, inputs, **options)
    assert compiled.vmfb is not None and f32.vmfb is not None
    # Two 32x32 weights, two bytes less a value (4 KB), less the widening's code.
    assert len(f32.vmfb) - len(compiled.vmfb) >= 2 * 32 * 32


def test_narrow_weights_in_ones_own_pipeline_make_the_module_medium() -> None:
    """Weights stored in f16 by a pipeline of one's own are no longer "highest": `--check` allows for their rounding."""
    torch.manual_seed(0)
    inputs = (torch.randn(1, 32), torch.tensor([30]), torch.randn(1, 4, 48, 8), torch.randn(1, 4, 48, 8))
    pipeline = "builtin.module(effc-narrow-weights{type=f16})"
    compiled = effc.compile(_BoolMaskDecodeStep().eval(), inputs, pipeline=pipeline)
    assert compiled.notes == ["effc-narrow-weights: 2/2 matmul weights stored in f16"]
    assert compiled.matmul_precision == "medium"
    assert 1e-6 < max(compiled.compare()) <= compiled.tolerance


def test_int8_data_tiles_in_global_optimization_which_takes_the_mask(tmp_path: Path) -> None:
    """int8 replaces `-O`'s DispatchCreation data tiling with GlobalOptimization's: one compile, no failed try."""
    from effc.compiler.optimize import best_known

    torch.manual_seed(0)
    inputs = (torch.randn(1, 32), torch.tensor([30]), torch.randn(1, 4, 48, 8), torch.randn(1, 4, 48, 8))
    model = _BoolMaskDecodeStep().eval()
    compiled = effc.compile(model, inputs, matmul_precision="int8", save_temps=tmp_path, **best_known("llvm-cpu"))
    assert compiled.notes == [] and compiled.matmul_precision == "int8"
    command = (tmp_path / "iree-compile.sh").read_text()
    assert "--iree-global-opt-data-tiling" in command and "--iree-dispatch-creation-data-tiling" not in command
    assert 1e-4 < max(compiled.compare()) <= compiled.tolerance  # int8 rounding acted


def test_f32_decode_step_leaves_data_tiling_out_instead_of_failing_on_the_mask(tmp_path: Path) -> None:
    """Every weight matmul of a decode step has one row, where data tiling does not pay in f32: `-O` leaves it out
    before compiling, with a note, rather than after IREE's failure on the boolean mask (one compile, not two)."""
    from effc.compiler.optimize import best_known

    torch.manual_seed(0)
    inputs = (torch.randn(1, 32), torch.tensor([30]), torch.randn(1, 4, 48, 8), torch.randn(1, 4, 48, 8))
    compiled = effc.compile(_BoolMaskDecodeStep().eval(), inputs, save_temps=tmp_path, **best_known("llvm-cpu"))
    assert compiled.notes == [
        "--iree-dispatch-creation-data-tiling --iree-llvmcpu-enable-ukernels=mmt4d left out: every matmul by a constant "
        "weight has one row (a decode step), where data tiling does not pay on llvm-cpu",
        "kernel configuration changed for 1 dispatch (dispatch_edits)",
    ]
    command = (tmp_path / "iree-compile.sh").read_text()
    assert "data-tiling" not in command and "ukernels" not in command
    assert max(compiled.compare()) <= 1e-4


def test_f32_matmuls_of_several_rows_keep_data_tiling(tmp_path: Path) -> None:
    from effc.compiler.optimize import best_known

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 16)).eval()
    compiled = effc.compile(model, (torch.randn(2, 32),), save_temps=tmp_path, **best_known("llvm-cpu"))
    assert compiled.notes == []
    assert "--iree-dispatch-creation-data-tiling" in (tmp_path / "iree-compile.sh").read_text()


def test_unknown_matmul_precision_is_a_one_line_error() -> None:
    model, inputs = model_zoo.mlp()
    with pytest.raises(EffcError, match=r"^unknown matmul precision 'fp8'; use one of: highest, high, medium, int8$"):
        effc.compile(model, inputs, matmul_precision="fp8")  # type: ignore[arg-type]


class _LinearAndScores(torch.nn.Module):
    """A matmul by a constant weight and one of two activations: effc-split-bf16's two cases."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(64, 64)

    def forward(self, x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.linear(x), torch.bmm(x, k)


@pytest.mark.parametrize(("pieces", "products", "low", "high"), [(2, 3, 2e-6, 5e-5), (3, 6, 0.0, 1e-6)])
def test_split_bf16_products_keep_16_bits_or_f32s_24(pieces: int, products: int, low: float, high: float) -> None:
    """Products of bf16 pieces through IREE, against the exact products (float64): two pieces keep about 16 bits,
    far above bf16's 8 (3e-3) and below f32's 24 (torch's f32: 1.4e-7 here); three keep f32's. A lost piece (IREE
    folds extf(truncf(x)) into x inside a dispatch, which is why the pieces are masks) would show as 2-piece error."""
    torch.manual_seed(0)
    model, inputs = _LinearAndScores().eval(), (torch.randn(2, 16, 64), torch.randn(2, 64, 16))
    compiled = effc.compile(model, inputs, pipeline=f"builtin.module(effc-split-bf16{{pieces={pieces}}})")
    assert compiled.notes == [f"effc-split-bf16: 2/2 f32 matmuls as {products} bf16 products"]
    assert compiled.matmul_precision == "high" and compiled.tolerance == 1e-3
    weight, bias = (p.detach().double() for p in (model.linear.weight, model.linear.bias))
    x, k = (t.double() for t in inputs)
    exact = [x @ weight.T + bias, torch.bmm(x, k)]
    for out, expected in zip(compiled.run(*inputs), exact, strict=True):
        assert low < relative_error(out, expected.numpy()) < high


def test_high_precision_is_split_bf16_on_cuda() -> None:
    """On CUDA, "high" runs every matmul on bf16 pieces with f32 results (dispatches named bf16 x bf16 -> f32), for
    IREE's tensor-core path, which f32 matmuls do not get in IREE 3.13."""
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs, target="cuda", matmul_precision="high")
    assert compiled.notes == ["effc-split-bf16: 3/3 f32 matmuls as 3 bf16 products"]
    assert compiled.matmul_precision == "high" and compiled.vmfb is not None
    matmuls = set(re.findall(rb"_matmul_\d+x\d+x\d+_(\w+?xf32)\b", compiled.vmfb))
    assert matmuls == {b"bf16xbf16xf32"}


def test_split_bf16_refuses_linalg_output_in_one_line() -> None:
    model, inputs = model_zoo.mlp()
    with pytest.raises(EffcError, match=r"^effc-split-bf16 masks bits with aten.view.dtype, which IREE's torch input"):
        effc.compile(model, inputs, target="cuda", matmul_precision="high", emit="linalg")


def test_int8_linalg_output_lowers_and_runs_in_iree() -> None:
    """int8's quantizing ops (aten.amax, aten.clamp_min) reach torch-mlir's linalg lowering only decomposed: the
    linalg text has no torch op left, and compiled by IREE it matches torch within int8's tolerance."""
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs, matmul_precision="int8", emit="linalg")
    assert " torch." not in compiled.mlir and "linalg.matmul" in compiled.mlir
    (out,) = run_vmfb(compile_mlir(compiled.mlir), [t.numpy() for t in inputs])
    with torch.no_grad():
        expected = model(*inputs).numpy()
    assert 1e-4 < relative_error(out, expected) <= CHECK_TOLERANCE["int8"]


def test_high_precision_stays_f32_with_a_note_on_llvm_cpu() -> None:
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs, matmul_precision="high")
    assert compiled.notes == [
        "matmul precision 'high' keeps f32 arithmetic on llvm-cpu: a CPU multiplies bf16 at most twice as fast as f32, "
        "so the three bf16 products that make up one f32 product cost more than it"
    ]
    assert compiled.matmul_precision == "highest"
    assert max(compiled.compare()) <= TOLERANCE


@pytest.mark.usefixtures("bf16_cpu")
def test_medium_precision_refuses_opt_levels_where_iree_ignores_demotion() -> None:
    model, inputs = model_zoo.mlp()
    with pytest.raises(EffcError, match=r"has no effect with --iree-opt-level=O3: IREE 3.13 ignores"):
        effc.compile(model, inputs, matmul_precision="medium", iree_flags=("--iree-opt-level=O3",))


def test_medium_precision_drops_o3_chosen_by_dash_o_on_cuda() -> None:
    from effc.compiler.optimize import best_known

    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs, target="cuda", matmul_precision="medium", **best_known("cuda"))
    assert compiled.notes == ["--iree-opt-level=O3 dropped: IREE 3.13 ignores matmul precision 'medium' with it"]
    assert compiled.matmul_precision == "medium"


@pytest.mark.usefixtures("bf16_cpu")
def test_precision_and_parameters_say_they_do_nothing_without_a_module(tmp_path: Path) -> None:
    model, inputs = model_zoo.mlp()
    compiled = effc.compile(model, inputs, emit="torch", matmul_precision="medium", parameters=tmp_path / "w.irpa")
    assert compiled.notes == [
        "parameters and matmul precision 'medium' act in iree-compile: not applied with emit='torch'"
    ]
    assert compiled.matmul_precision == "highest" and compiled.parameters is None
    assert not (tmp_path / "w.irpa").exists()


def test_benchmark_failure_is_one_line_naming_the_module(tmp_path: Path) -> None:
    from effc.runtime.runner import benchmark_vmfb

    model, inputs = model_zoo.mlp()
    path = tmp_path / "mlp.vmfb"
    path.write_bytes(effc.compile(model, inputs).vmfb or b"")
    with pytest.raises(EffcError) as raised:
        benchmark_vmfb(path, [inputs[0].numpy(), inputs[0].numpy()], repetitions=1)
    assert raised.value.message.startswith(f"iree-benchmark-module failed on {path}: ")
    assert "function expected fewer input values" in raised.value.message and "\n" not in raised.value.message
