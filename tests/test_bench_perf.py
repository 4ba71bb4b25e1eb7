"""bench/perf's alternating rounds: torch and effc modules timed in turn, and the ratios drawn from them."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

import effc
from effc.bench.perf.run import config_options, json_options, torch_callable
from effc.runtime.benchmark import alternate, round_ratios
from effc.runtime.runner import benchmark_vmfb, relative_error
from effc.tests import model_zoo


def test_every_configurations_options_go_into_the_results_json() -> None:
    """`-O` carries dispatch edits (dataclasses) on llvm-cpu too; a results file must still be written."""
    options = json.loads(json.dumps(json_options(config_options("O"))))
    (edit,) = options["dispatch_edits"]
    assert edit["every_op"] is True and edit["lowering"] == {
        "vector_common_parallel": {"1": 1},
        "vector_reduction": {"2": 32},
    }
    assert options["iree_flags"] == ["--iree-llvmcpu-reassociate-fp-reductions"]


def test_round_ratios_are_taken_round_by_round() -> None:
    alternating = {"torch_ms": [10.0, 20.0, 30.0], "effc_ms": [[1.0, 1.0, 1.0], [5.0, 5.0, 10.0]]}
    assert round_ratios(alternating, 1) == {
        "median": 3.0,
        "min": 2.0,
        "max": 4.0,
        "rounds": 3,
        "torch_ms": 20.0,
        "effc_ms": 5.0,
    }


def test_alternate_times_torch_and_every_module_in_each_round(tmp_path: Path) -> None:
    model, inputs = model_zoo.mlp()
    paths = []
    for name, flags in (("plain", ()), ("reassociated", ("--iree-llvmcpu-reassociate-fp-reductions",))):
        paths.append(tmp_path / f"{name}.vmfb")
        paths[-1].write_bytes(effc.compile(model, inputs, iree_flags=flags).vmfb or b"")
    result = alternate(model, inputs, paths, rounds=4)
    assert len(result["torch_ms"]) == 4 and [len(times) for times in result["effc_ms"]] == [4, 4]
    assert all(t > 0 for t in result["torch_ms"]) and all(t > 0 for times in result["effc_ms"] for t in times)


def test_the_iree_tools_peak_memory_is_its_own(tmp_path: Path) -> None:
    """Not this process's: Linux hands a parent's peak RSS to a child's ru_maxrss at exec."""
    model, inputs = model_zoo.mlp()
    path = tmp_path / "mlp.vmfb"
    path.write_bytes(effc.compile(model, inputs).vmfb or b"")
    ballast = np.ones(600 * 2**20 // 8)  # 600 MiB resident here
    result = benchmark_vmfb(path, [t.numpy() for t in inputs], repetitions=2)
    assert ballast.sum() > 0 and result.peak_rss_mb is not None and 1 < result.peak_rss_mb < 300
    assert result.median_s > 0


def test_torch_int8_mode_runs_torch_aos_dynamic_quantization() -> None:
    """effc's `int8` is compared with torch eager under `quantize_dynamic`: int8 Linears, outputs off by rounding."""
    import torch

    model, inputs = model_zoo.mlp()
    with torch.no_grad():
        f32 = model(*inputs).numpy()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn, _ = torch_callable("eager-int8", model, inputs)
    assert not caught, "torch.ao's deprecation notices are torch's, not for the user of `effc bench`"
    linears = [m for m in fn.modules() if "Linear" in type(m).__name__]
    assert linears and all(type(m).__module__.startswith("torch.ao.nn.quantized") for m in linears)
    with torch.no_grad():
        assert 1e-4 < relative_error(fn(*inputs).numpy(), f32) < 0.1
    assert torch.get_float32_matmul_precision() == "highest"


def test_only_selects_by_substring_or_by_the_keys_end() -> None:
    """`prepare --only` and `profile --only`: a part is a substring of the key unless it ends in `$`, which pins the
    key's end, so a GPU pack can hold `-O` rows without their `-O+hoist` variants."""
    from effc.bench.perf.cuda import selected

    keys = ["attention-block-f16--O", "attention-block-f16--O-hoist", "smollm2-decode-f16--O-fold"]
    assert [k for k in keys if selected(k, "--O")] == keys
    assert [k for k in keys if selected(k, "attention-block-f16--O$")] == ["attention-block-f16--O"]
    assert [k for k in keys if selected(k, "f16--O$,-O-fold")] == [keys[0], keys[2]]


def test_cuda_prepare_defaults_to_the_chai_benchs_budget_plan(tmp_path: Path) -> None:
    """Preparing a GPU pack needs no plan argument: the committed SmolLM2 budget plan is written into the pack."""
    from effc.bench.perf.cuda import committed_budget_plan
    from effc.passes.chai_plan import load_plan

    path = committed_budget_plan(tmp_path / "pack")
    assert path.parent == tmp_path / "pack"
    plan = load_plan(path)
    assert len(plan.layers) == 30  # SmolLM2-135M's layers
    assert any(not layer.is_identity() for layer in plan.layers)
