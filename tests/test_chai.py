"""CHAI: plans, calibration, the effc-chai rewrite on both attention forms, and KV-cache decoding.

Numerics run the rewritten module through IREE and compare with PyTorch: with every head its own
cluster the model must not change; with a real plan it must equal the hand-written clustered
attention in `chai_reference` (and differ from the original, so the comparison can fail).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from effc.compiler.errors import EffcError
from effc.compiler.importer import import_model, import_program
from effc.compiler.iree_backend import compile_mlir
from effc.compiler.loader import LoadedModel
from effc.passes.chai import rewrite_module
from effc.passes.chai_calibrate import (
    analyse,
    calibrate,
    cheapest_sizes,
    elbow,
    measure_output_costs,
    random_plan,
)
from effc.passes.chai_plan import ChaiPlan, LayerPlan, plan_from_json, structure_fingerprint
from effc.passes.chai_reference import layer_shapes, patched_attention
from effc.runtime.runner import run_vmfb
from effc.tests import model_zoo

TOLERANCE = 1e-5


def make_plan(model: torch.nn.Module, clusters: tuple[tuple[int, ...], ...], reps: tuple[int, ...]) -> ChaiPlan:
    shapes = layer_shapes(model)
    layers = tuple(LayerPlan(i, s.heads, s.kv_heads, clusters, reps) for i, s in enumerate(shapes))
    return ChaiPlan("test", structure_fingerprint(shapes), layers, shapes[0].head_dim)


def compiled_output(
    model: torch.nn.Module, inputs: tuple[torch.Tensor, ...], plan: ChaiPlan, attention: str, **options: object
) -> np.ndarray:
    imported = import_model(LoadedModel("m", module=model, example_inputs=inputs), (), attention=attention)  # type: ignore[arg-type]
    rewrite_module(imported.module.operation, plan, **options)  # type: ignore[arg-type]
    return run_vmfb(compile_mlir(str(imported.module), target="llvm-cpu"), [t.numpy() for t in inputs])[0]


def max_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# --- plans ------------------------------------------------------------------------------------


def test_plan_json_round_trip_and_cache_bytes() -> None:
    model, _ = model_zoo.llama_gqa()
    plan = make_plan(model, ((0, 2), (1, 3)), (0, 1))
    again = plan_from_json(plan.to_json())
    assert again == plan
    assert plan.layers[0].kept_kv_heads() == (0,)
    assert plan.layers[0].cluster_of_head() == (0, 1, 0, 1)
    sizes = plan.kv_cache_bytes(context=100)
    per_head = 100 * 16 * 4
    assert sizes == {
        "k_before": 4 * per_head,
        "v_before": 4 * per_head,
        "k_after": 2 * per_head,
        "v_after": 4 * per_head,
    }


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda b: b.update(version=99), "CHAI plan version 99 is not supported"),
        (lambda b: b.update(format="other"), "not an effc CHAI plan"),
        (
            lambda b: b["layers"][0].update(clusters=[[0, 2], [1], [9]], representatives=[0, 1, 9]),
            "layer 0 names head 9, but the layer has 4 heads (0..3)",
        ),
        (
            lambda b: b["layers"][0].update(clusters=[[0, 2], [1]], representatives=[0, 1]),
            "clusters must cover each head once (missing [3], repeated [])",
        ),
        (lambda b: b["layers"][0].update(representatives=[1, 3]), "representative 1 is not in its cluster [0, 2]"),
        (lambda b: b["layers"][0].pop("heads"), "malformed plan (KeyError: 'heads')"),
    ],
)
def test_bad_plans_fail_with_one_line(edit: object, message: str) -> None:
    model, _ = model_zoo.llama_gqa()
    body = json.loads(make_plan(model, ((0, 2), (1, 3)), (0, 1)).to_json())
    edit(body)  # type: ignore[operator]
    with pytest.raises(EffcError) as raised:
        plan_from_json(json.dumps(body))
    assert message in raised.value.message
    assert "\n" not in raised.value.message


def test_elbow() -> None:
    assert elbow([1.0, 0.3, 0.2, 0.15, 0.1, 0.0]) == 2
    assert elbow([1.0, 0.75, 0.5, 0.25, 0.0]) is None  # a straight line has no elbow
    assert elbow([1.0, 0.0]) is None


class _CharTokenizer:
    """Characters as token ids: enough text-to-ids for calibrating random-weight models."""

    def __call__(self, text: str, return_tensors: str, truncation: bool, max_length: int) -> dict[str, torch.Tensor]:
        ids = torch.tensor([[ord(c) % (model_zoo.VOCAB - 1) + 1 for c in text[:max_length]]])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


DOCUMENTS = [f"calibration document {i}: the heads attend to the same tokens, or they do not." for i in range(6)]


def test_calibration_is_deterministic_under_a_seed() -> None:
    model, _ = model_zoo.llama()
    first = calibrate(
        model, _CharTokenizer(), DOCUMENTS, name="llama", causal=True, tokens=24, seed=3, overrides={1: 2}
    )
    second = calibrate(
        model, _CharTokenizer(), DOCUMENTS, name="llama", causal=True, tokens=24, seed=3, overrides={1: 2}
    )
    assert first.to_json() == second.to_json()
    layer = first.layers[1]
    assert (layer.k, layer.k_source, layer.curve_unit, len(layer.error_curve)) == (2, "override", "clusters", 4)
    assert layer.error_curve[0] == pytest.approx(1.0) and layer.error_curve[-1] == pytest.approx(0.0, abs=1e-9)
    assert all(rep in members for members, rep in zip(layer.clusters, layer.representatives, strict=True))
    assert first.calibration["seed"] == 3 and first.weights_sha256


def test_plan_calibrated_on_other_weights_is_refused() -> None:
    model, inputs = model_zoo.llama()
    plan = calibrate(model, _CharTokenizer(), DOCUMENTS[:2], name="llama", causal=True, tokens=16, overrides={0: 2})
    with torch.no_grad():
        model.model.model.layers[0].self_attn.k_proj.weight.mul_(2)  # same architecture, other weights
    with (
        pytest.raises(EffcError, match=r"calibrated on other weights of this architecture"),
        patched_attention(model, plan),
    ):
        model(*inputs)


def test_calibration_meets_a_kv_reduction_target_on_gqa() -> None:
    model, _ = model_zoo.llama_gqa()
    plan = calibrate(model, _CharTokenizer(), DOCUMENTS, name="gqa", causal=True, tokens=24, kv_reduction=0.2)
    sizes = plan.kv_cache_bytes(64)
    freed = 1 - (sizes["k_after"] + sizes["v_after"]) / (sizes["k_before"] + sizes["v_before"])
    assert freed >= 0.2
    for lp in plan.layers:  # GQA: representatives are whole KV groups, so K heads really go
        assert lp.curve_unit == "kv_heads"
        assert lp.k == len(lp.kept_kv_heads()) * lp.group
    baseline = random_plan(plan, seed=1)
    assert [len(lp.kept_kv_heads()) for lp in baseline.layers] == [len(lp.kept_kv_heads()) for lp in plan.layers]


def test_cheapest_sizes_is_the_exact_optimum() -> None:
    rng = np.random.default_rng(0)
    for needed in (1, 3, 5, 8):
        layers = [(3, {1: float(rng.random()) + 1, 2: float(rng.random())}) for _ in range(4)]
        options = [
            [(size, 0.0 if size == full else cost[size]) for size in range(1, full + 1)] for full, cost in layers
        ]
        feasible = [choice for choice in itertools.product(*options) if sum(3 - size for size, _ in choice) >= needed]
        best = min(sum(c for _, c in choice) for choice in feasible)
        chosen = cheapest_sizes(layers, needed)
        assert chosen is not None and sum(3 - size for size in chosen) >= needed
        assert sum(0.0 if size == 3 else cost[size] for size, (_, cost) in zip(chosen, layers, strict=True)) == (
            pytest.approx(best)
        )
    assert cheapest_sizes([(3, {1: 1.0, 2: 0.5})], 3) is None  # one layer frees at most 2 of its 3
    assert cheapest_sizes([(3, {1: 1.0, 2: 0.5})], 0) == [3]


def test_output_cost_plan_minimises_the_measured_change() -> None:
    wrapper, _ = model_zoo.llama_gqa()
    tokenizer = _CharTokenizer()
    calibration = analyse(wrapper, tokenizer, DOCUMENTS, name="gqa", causal=True, tokens=24)
    passes: list[tuple[int, int]] = []
    measured = measure_output_costs(
        calibration, wrapper, tokenizer, DOCUMENTS, tokens=24, causal=True, on_pass=lambda *p: passes.append(p)
    )
    assert passes[-1] == (calibration.cost_passes(), calibration.cost_passes()) == (len(passes), len(passes))
    by_output = measured.plan(kv_reduction=0.2, cost="output")
    by_attention = measured.plan(kv_reduction=0.2)
    assert (by_output.calibration["cost"], by_attention.calibration["cost"]) == ("output", "attention")

    def kept(plan: ChaiPlan) -> list[int]:
        return [len(lp.kept_kv_heads()) for lp in plan.layers]

    for plan in (by_output, by_attention):
        assert sum(lp.kv_heads - k for lp, k in zip(plan.layers, kept(plan), strict=True)) >= 0.2 * 2 * 2 * 2
    costs = [{size: m.cost for size, m in layer.items()} | {2: 0.0} for layer in measured.measured]
    assert sum(c[k] for c, k in zip(costs, kept(by_output), strict=True)) <= sum(
        c[k] for c, k in zip(costs, kept(by_attention), strict=True)
    )
    # a measured cost is the KL divergence of the model's next-token distributions with that layer alone clustered
    layer = next(lp for lp in by_output.layers if not lp.is_identity())
    alone = replace(
        by_output,
        layers=tuple(
            lp if lp is layer else a.layer_plan(2, "full")
            for lp, a in zip(by_output.layers, calibration.analyses, strict=True)
        ),
    )
    batch = torch.cat([tokenizer(d, "pt", True, 24)["input_ids"] for d in DOCUMENTS[:6]])  # all 24 tokens long
    with torch.no_grad():
        reference = torch.log_softmax(wrapper(batch).double(), -1)
        with patched_attention(wrapper, alone):
            clustered = torch.log_softmax(wrapper(batch).double(), -1)
    expected = float(torch.nn.functional.kl_div(clustered, reference, log_target=True, reduction="sum")) / (
        batch.shape[0] * batch.shape[1]
    )
    assert measured.measured[layer.layer][len(layer.kept_kv_heads())].cost == pytest.approx(expected, rel=1e-4)
    assert expected > 0
    with pytest.raises(EffcError, match=r"^CHAI cost 'output' needs measured output costs"):
        calibration.plan(kv_reduction=0.2, cost="output")


def test_calibration_rejects_bad_overrides() -> None:
    model, _ = model_zoo.llama()
    with pytest.raises(EffcError, match=r"--layers-k 0=9: layer 0 allows 1..4 clusters"):
        calibrate(model, _CharTokenizer(), DOCUMENTS[:2], name="llama", causal=True, tokens=16, overrides={0: 9})
    with pytest.raises(EffcError, match=r"--layers-k names layer 5, but the model has 2 attention layers"):
        calibrate(model, _CharTokenizer(), DOCUMENTS[:2], name="llama", causal=True, tokens=16, overrides={5: 1})


# --- the rewrite ------------------------------------------------------------------------------

PERMUTED_IDENTITY = (((2,), (0,), (3,), (1,)), (2, 0, 3, 1))


@pytest.mark.parametrize(
    ("zoo", "attention"), [("llama", "fused"), ("llama", "decomposed"), ("bert", "fused"), ("llama_gqa", "decomposed")]
)
def test_every_head_its_own_cluster_leaves_the_model_unchanged(zoo: str, attention: str) -> None:
    model, inputs = getattr(model_zoo, zoo)()
    with torch.no_grad():
        expected = model(*inputs).numpy()
    got = compiled_output(model, inputs, make_plan(model, *PERMUTED_IDENTITY), attention)
    assert max_error(got, expected) < TOLERANCE


MHA_PLAN = (((0, 2), (1,), (3,)), (2, 1, 3))
GQA_PLAN = (((0, 2), (1, 3)), (0, 1))  # both representatives on KV head 0


@pytest.mark.parametrize(
    ("zoo", "attention", "clusters"),
    [
        ("llama", "fused", MHA_PLAN),
        ("llama", "decomposed", MHA_PLAN),
        ("bert", "decomposed", MHA_PLAN),
        ("llama_gqa", "fused", GQA_PLAN),
    ],
)
def test_plan_equals_the_clustered_attention_reference(zoo: str, attention: str, clusters: tuple) -> None:
    model, inputs = getattr(model_zoo, zoo)()
    plan = make_plan(model, *clusters)
    with torch.no_grad():
        original = model(*inputs).numpy()
        with patched_attention(model, plan):
            expected = model(*inputs).numpy()
    got = compiled_output(model, inputs, plan, attention)
    assert max_error(got, expected) < TOLERANCE
    assert max_error(expected, original) > 10 * TOLERANCE  # the plan really changes the model


def test_half_precision_decomposed_attention_keeps_its_kv_groups() -> None:
    """torch's sdpa decomposition upcasts f16 Q and K to f32: the GQA groups must still be found."""
    model, inputs = model_zoo.llama_gqa()
    model = model.half()
    plan = make_plan(model, *GQA_PLAN)
    with torch.no_grad(), patched_attention(model, plan):
        expected = model(*inputs).float().numpy()
    got = compiled_output(model, inputs, plan, "decomposed").astype(np.float32)
    assert max_error(got, expected) < 1e-2


@pytest.mark.parametrize(("mode", "method"), [("online", "chai"), ("static", "meanpool")])
def test_online_membership_and_meanpool_baseline_equal_the_reference(mode: str, method: str) -> None:
    model, inputs = model_zoo.llama_gqa()
    plan = make_plan(model, *GQA_PLAN)
    with torch.no_grad(), patched_attention(model, plan, mode=mode, method=method):  # type: ignore[arg-type]
        expected = model(*inputs).numpy()
    got = compiled_output(model, inputs, plan, "decomposed", mode=mode, method=method)
    assert max_error(got, expected) < TOLERANCE


def test_rewrite_report_says_what_was_freed() -> None:
    model, inputs = model_zoo.llama_gqa()
    imported = import_model(LoadedModel("m", module=model, example_inputs=inputs), (), attention="decomposed")
    report = rewrite_module(imported.module.operation, make_plan(model, *GQA_PLAN))
    assert report.summary().startswith("2/2 attention layers rewritten (chai, static); QK^T heads 8->4, K heads 4->2")
    assert all(row["stops"] == {"torch.vtensor.literal": 3} for row in report.layers)  # narrowed to the weights


def test_plans_that_do_not_fit_and_models_without_attention_fail_with_one_line() -> None:
    model, inputs = model_zoo.llama()
    other, _ = model_zoo.llama_gqa()
    imported = import_model(LoadedModel("m", module=model, example_inputs=inputs), (), attention="decomposed")
    gqa_plan = make_plan(other, *GQA_PLAN)
    with pytest.raises(
        EffcError, match=r"CHAI plan layer 0 is for 4 heads / 2 KV heads but function 'main' of the module has 4 / 4"
    ):
        rewrite_module(imported.module.operation, gqa_plan)
    one_layer = ChaiPlan("x", "0", make_plan(model, *MHA_PLAN).layers[:1], 16)
    with pytest.raises(EffcError, match=r"has 1 attention layers but function 'main' of the module has 2"):
        rewrite_module(imported.module.operation, one_layer)
    wrong_print = ChaiPlan("x", "0123456789abcdef", make_plan(model, *MHA_PLAN).layers, 16)
    with pytest.raises(EffcError, match=r"CHAI plan fingerprint 0123456789abcdef \(model 'x'\) does not match"):
        rewrite_module(imported.module.operation, wrong_print)
    mlp, mlp_inputs = model_zoo.mlp()
    plain = import_model(LoadedModel("mlp", module=mlp, example_inputs=mlp_inputs), (), attention="decomposed")
    with pytest.raises(EffcError, match=r"the module has no attention"):
        rewrite_module(plain.module.operation, one_layer)


def test_pass_pipeline_option_round_trip(tmp_path: Path) -> None:
    from effc.passes import parse_pipeline

    model, _ = model_zoo.llama()
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(make_plan(model, *MHA_PLAN).to_json())
    pipeline = parse_pipeline(f"builtin.module(effc-chai{{plan={plan_file} mode=online online-tokens=7}})")
    assert "online-tokens=7" in str(pipeline)


# --- decoding with a KV cache -----------------------------------------------------------------


def test_compiled_decoder_keeps_k_only_for_representatives() -> None:
    from effc.passes.chai_decode import DecodeStep, Prefill, generate

    wrapper, inputs = model_zoo.llama_gqa()
    model = wrapper.model
    plan = make_plan(wrapper, *GQA_PLAN)
    prompt = inputs[0][:, :8]
    length = 16
    shapes = layer_shapes(wrapper)
    caches = [torch.zeros(1, shapes[0].kv_heads, length, shapes[0].head_dim) for _ in range(2 * len(shapes))]
    functions = []
    for module, example in (
        (Prefill(model).eval(), (prompt,)),
        (DecodeStep(model).eval(), (prompt[:, :1], torch.tensor([8]), *caches)),
    ):
        program = torch.export.export(module, example, strict=False)
        mlir, _ = import_program(program, attention="decomposed")
        report = rewrite_module(mlir.operation, plan)
        functions.append((compile_mlir(str(mlir), target="llvm-cpu"), report))
    (prefill, prefill_report), (step, step_report) = functions
    assert "main: result 1 !torch.vtensor<[1,2,8,16],f32> -> !torch.vtensor<[1,1,8,16],f32>" in prefill_report.io
    assert "main: argument 2 !torch.vtensor<[1,2,16,16],f32> -> !torch.vtensor<[1,1,16,16],f32>" in step_report.io
    assert not any("argument 4" in line for line in step_report.io)  # V caches keep every head
    tokens = generate(
        lambda ids: run_vmfb(prefill, [ids]),
        lambda args: run_vmfb(step, args),
        prompt.numpy(),
        new_tokens=8,
        length=length,
    )
    with torch.no_grad(), patched_attention(model, plan):
        full = torch.tensor(prompt.tolist()[0] + tokens[:-1]).unsqueeze(0)
        expected = model(input_ids=full, use_cache=False).logits[0, 7:].argmax(-1).tolist()
    assert tokens == expected


def test_decode_step_with_padded_keys_keeps_chais_k_cache_and_outputs() -> None:
    """Keys padded at import (`key_multiple`, for IREE's CUDA reductions) sit between repeat_kv and attention:
    CHAI still finds the KV heads behind them, shrinks the same K caches, and computes what it does unpadded; so
    does the guard read off the row maximum after CHAI (which computes that maximum after the guard)."""
    from effc.passes.chai_decode import DecodeStep
    from effc.passes.softmax_guard_from_max import guard_from_max_module

    wrapper, inputs = model_zoo.llama_gqa()
    plan = make_plan(wrapper, *GQA_PLAN)
    shapes = layer_shapes(wrapper)
    torch.manual_seed(1)
    caches = [torch.randn(1, shapes[0].kv_heads, 16, shapes[0].head_dim) for _ in range(2 * len(shapes))]
    example = (inputs[0][:, :1], torch.tensor([11]), *caches)
    program = torch.export.export(DecodeStep(wrapper.model).eval(), example, strict=False)
    # The plan's representatives are all on KV head 0: the K caches CHAI narrows keep that head alone.
    narrowed = [c[:, :1] if i < len(shapes) else c for i, c in enumerate(caches)]
    arrays = [t.numpy() for t in (*example[:2], *narrowed)]
    outputs, reports = [], []
    for key_multiple, guard_from_max in ((1, False), (8, False), (8, True)):  # 16 cached keys + 1, padded to 24
        mlir, _ = import_program(program, attention="decomposed", key_multiple=key_multiple)
        assert ("torch.aten.constant_pad_nd" in str(mlir)) == (key_multiple > 1)
        reports.append(rewrite_module(mlir.operation, plan))
        if guard_from_max:
            layers = len(shapes)
            assert guard_from_max_module(mlir.operation).startswith(f"{layers}/{layers} safe-softmax guards")
        outputs.append(run_vmfb(compile_mlir(str(mlir), target="llvm-cpu"), arrays))
    plain, *variants = outputs
    for report in reports[1:]:
        assert report.io == reports[0].io
    assert "main: argument 2 !torch.vtensor<[1,2,16,16],f32> -> !torch.vtensor<[1,1,16,16],f32>" in reports[1].io
    for variant in variants:
        for got, expected in zip(variant, plain, strict=True):
            assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max()


def test_decode_step_under_dash_o_reads_each_kv_head_once(tmp_path: Path) -> None:
    """CHAI reads attention per query head, so `-O` cannot fold the repeated KV heads at import: its passes split the
    cache's `cat` and fold the repeats at the matmuls instead (every layer's K and V), and the step computes what it
    does without them."""
    from effc.compiler.api import compile_model
    from effc.compiler.optimize import best_known
    from effc.passes.chai_decode import DecodeStep
    from effc.passes.pipeline import chain_pipelines

    wrapper, inputs = model_zoo.llama_gqa()
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(make_plan(wrapper, *GQA_PLAN).to_json())
    shapes = layer_shapes(wrapper)
    torch.manual_seed(2)
    caches = [torch.randn(1, shapes[0].kv_heads, 16, shapes[0].head_dim) for _ in range(2 * len(shapes))]
    example = (inputs[0][:, :1], torch.tensor([11]), *caches)
    options = best_known("llvm-cpu")
    pipeline = chain_pipelines(f"builtin.module(effc-chai{{plan={plan_file}}})", options.pop("pipeline"))
    optimized = compile_model(DecodeStep(wrapper.model).eval(), example, pipeline=pipeline, **options)
    layers = len(shapes)
    assert f'effc.split_concat_matmul = "{2 * layers}/{2 * layers} matmuls' in optimized.mlir
    assert f'effc.fold_broadcast_bmm = "{4 * layers}/{4 * layers} batch matmuls' in optimized.mlir
    program = torch.export.export(DecodeStep(wrapper.model).eval(), example, strict=False)
    mlir, _ = import_program(program, attention="decomposed")
    rewrite_module(mlir.operation, make_plan(wrapper, *GQA_PLAN))
    # The plan's representatives are all on KV head 0: CHAI's K caches keep that head alone.
    arrays = [t.numpy() for t in (*example[:2], *[c[:, :1] if i < layers else c for i, c in enumerate(caches)])]
    expected = run_vmfb(compile_mlir(str(mlir), target="llvm-cpu"), arrays)
    for got, want in zip(run_vmfb(optimized.vmfb, arrays), expected, strict=True):
        assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


def test_selected_projection_rows_are_constants_for_the_weight_passes(tmp_path: Path) -> None:
    """CHAI narrows the Q and K projections to the representatives' rows; those rows become literals of their own, so
    effc-narrow-weights (`medium`) and effc-quantize-dynamic (`int8`) take them like any other weight, and the
    full projections leave the module."""
    from effc.compiler.api import compile_model
    from effc.passes.chai_decode import DecodeStep

    wrapper, inputs = model_zoo.llama_gqa()
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(make_plan(wrapper, *GQA_PLAN).to_json())
    shapes = layer_shapes(wrapper)
    caches = [torch.zeros(1, shapes[0].kv_heads, 16, shapes[0].head_dim) for _ in range(2 * len(shapes))]
    example = (inputs[0][:, :1], torch.tensor([11]), *caches)
    chai = f"effc-chai{{plan={plan_file}}}"
    for follower, report in (("effc-narrow-weights", "narrow_weights"), ("effc-quantize-dynamic", "quantize_dynamic")):
        pipeline = f"builtin.module({chai},{follower})"
        mlir = compile_model(DecodeStep(wrapper.model).eval(), example, pipeline=pipeline, emit="torch").mlir
        assert re.search(rf'effc.{report} = "(\d+)/\1 ', mlir), re.findall(rf'effc.{report} = "[^"]*"', mlir)
        assert "dense_resource<effc_selected_weight" in mlir
        assert not re.search(r"torch.aten.index_select .* -> !torch.vtensor<\[\d+,\d+\],", mlir)  # no 2-D selection


def test_check_names_the_inputs_chai_narrowed(tmp_path: Path) -> None:
    """A decode step whose K caches CHAI narrowed takes other inputs than the model: `--check` (compare) says so and
    what to do, instead of feeding torch's inputs to the module."""
    from effc.compiler.api import compile_model
    from effc.passes.chai_decode import DecodeStep

    wrapper, inputs = model_zoo.llama_gqa()
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(make_plan(wrapper, *GQA_PLAN).to_json())
    caches = [torch.zeros(1, 2, 16, 16) for _ in range(4)]
    example = (inputs[0][:, :1], torch.tensor([11]), *caches)
    pipeline = f"builtin.module(effc-chai{{plan={plan_file}}})"
    compiled = compile_model(DecodeStep(wrapper.model).eval(), example, pipeline=pipeline)
    with pytest.raises(EffcError) as raised:
        compiled.compare()
    assert str(raised.value) == (
        "cannot check 'DecodeStep' against torch eager: a pass changed main's inputs (argument 2 [1,2,16,16] -> "
        "[1,1,16,16], argument 3 [1,2,16,16] -> [1,1,16,16]; effc-chai's shrink-io narrows KV caches); drop --check, "
        "or measure CHAI's accuracy with 'effc chai calibrate' / 'effc chai report'"
    )


# --- command line ---------------------------------------------------------------------------------


def test_cli_calibrate_and_report(tmp_path: Path, effc_cli: object) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from effc.passes.chai_plan import load_plan

    wrapper, _ = model_zoo.llama_gqa()
    directory = tmp_path / "tiny-llama"
    wrapper.model.save_pretrained(directory)
    words = sorted({w for document in DOCUMENTS for w in document.split()})
    tokenizer = Tokenizer(models.WordLevel({"[UNK]": 0, **{w: i + 1 for i, w in enumerate(words)}}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]").save_pretrained(directory)
    data = tmp_path / "calibration.txt"
    data.write_text("\n".join(DOCUMENTS))
    plan_file = tmp_path / "plan.json"

    result = effc_cli(
        "chai", "calibrate", str(directory), "--data", str(data), "-o", str(plan_file), "--layers-k", "1=1"
    )  # type: ignore[operator]
    assert result.code == 0, result.err
    plan = load_plan(plan_file)
    assert (plan.layers[1].k_source, plan.layers[1].kept_kv_heads()) == ("override", plan.layers[1].kept_kv_heads()[:1])
    assert plan.calibration["documents"] == len(DOCUMENTS)
    report = effc_cli("chai", "report", str(plan_file), "--context", "1024")  # type: ignore[operator]
    assert report.code == 0 and "context 1024: K cache" in report.out

    measured_file = tmp_path / "measured.json"
    measured = effc_cli(
        "chai",
        "calibrate",
        str(directory),
        "--data",
        str(data),
        "-o",
        str(measured_file),
        "--kv-reduction",
        "0.25",
        "--cost",
        "output",
    )  # type: ignore[operator]
    assert measured.code == 0, measured.err
    assert "✓ attention on 6 documents, clustering, output costs" in measured.err  # the stage is timed as usual
    assert load_plan(measured_file).calibration["cost"] == "output"
    assert sum(len(lp.kept_kv_heads()) for lp in load_plan(measured_file).layers) == 2  # 2 of 4 K heads: 25% of K+V
    no_target = effc_cli("chai", "calibrate", str(directory), "--data", str(data), "--cost", "output")  # type: ignore[operator]
    assert (no_target.code, no_target.err) == (
        1,
        "effc: error: --cost output only chooses layers for --kv-reduction; add --kv-reduction FRACTION\n",
    )
    bad = effc_cli("chai", "calibrate", str(directory), "--data", str(data), "--layers-k", "1:1")  # type: ignore[operator]
    assert (bad.code, bad.err) == (1, "effc: error: --layers-k expects LAYER=K pairs such as 3=4,5=6, got '1:1'\n")
    missing = effc_cli("chai", "report", str(tmp_path / "none.json"))  # type: ignore[operator]
    assert missing.code == 1 and missing.err.startswith("effc: error: cannot read CHAI plan")


def test_padding_mask_is_respected() -> None:
    from effc.compiler.models import EncoderWrapper

    wrapper, (ids,) = model_zoo.bert()
    encoder = EncoderWrapper(wrapper.model).eval()
    mask = torch.ones_like(ids)
    mask[:, 11:] = 0  # padding: the last keys must be ignored by every head
    inputs = (ids, mask)
    plan = make_plan(wrapper, *MHA_PLAN)
    with torch.no_grad():
        original = encoder(*inputs).numpy()
        with patched_attention(wrapper.model, None):
            assert max_error(encoder(*inputs).numpy(), original) < TOLERANCE
        with patched_attention(wrapper.model, plan):
            expected = encoder(*inputs).numpy()
    assert max_error(compiled_output(encoder, inputs, plan, "decomposed"), expected) < TOLERANCE


def test_long_prefill_groups_v_instead_of_copying_probabilities() -> None:
    model, _ = model_zoo.llama()
    ids = torch.randint(0, model_zoo.VOCAB, (1, 48), generator=torch.Generator().manual_seed(1))
    plan = make_plan(model, *MHA_PLAN)
    with torch.no_grad(), patched_attention(model, plan):
        expected = model(ids).numpy()
    imported = import_model(LoadedModel("m", module=model, example_inputs=(ids,)), (), attention="decomposed")
    rewrite_module(imported.module.operation, plan)
    text = str(imported.module)
    # 48 x 48 probabilities per head cost more to copy than V and the output: the pair {0, 2} reads
    # its two V heads side by side ([1,1,48,32]) instead of each head taking a copy of P.
    assert "!torch.vtensor<[1,1,48,48],f32>, !torch.vtensor<[1,1,48,32],f32> -> !torch.vtensor<[1,1,48,32],f32>" in text
    assert "-> !torch.vtensor<[1,4,48,48],f32>" not in text
    got = run_vmfb(compile_mlir(text, target="llvm-cpu"), [ids.numpy()])[0]
    assert max_error(got, expected) < TOLERANCE
