"""Pipeline parser, PassManager builder, `effc.passes.run` and `effc opt`'s pieces.

Error messages are compared exactly: they are the interface users read. IR is compared after real
upstream passes ran on it, so a pipeline that silently dropped a pass would fail.
"""

from __future__ import annotations

import dataclasses
import io
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from torch_mlir import ir

import effc.passes
from effc.compiler.errors import EffcError
from effc.compiler.mlir_context import new_context
from effc.passes import diagnostics, opt_cmd, registry
from effc.passes.base import ModulePass, PassFailure
from effc.passes.lower import LowerToLinalgPass
from effc.passes.pipeline import NestedPipeline, build_pass_manager, parse_pipeline

TWICE = """\
func.func @twice(%a: i32) -> i32 {
  %0 = arith.addi %a, %a : i32
  %1 = arith.addi %a, %a : i32
  %2 = arith.muli %0, %1 : i32
  return %2 : i32
}
"""

TWICE_AFTER_CSE = """\
module {
  func.func @twice(%arg0: i32) -> i32 {
    %0 = arith.addi %arg0, %arg0 : i32
    %1 = arith.muli %0, %0 : i32
    return %1 : i32
  }
}
"""

NEG = """\
func.func @neg(%arg0: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32> {
  %0 = torch.aten.neg %arg0 : !torch.vtensor<[2,3],f32> -> !torch.vtensor<[2,3],f32>
  return %0 : !torch.vtensor<[2,3],f32>
}
"""

UNLOWERABLE = """\
func.func @unlowerable(%arg0: !torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32> {
  %0 = torch.aten.relu %arg0 : !torch.vtensor<[2,3],f32> -> !torch.vtensor<[2,3],f32>
  %1 = torch.operator "torch.aten.frobnicate"(%0) : (!torch.vtensor<[2,3],f32>) -> !torch.vtensor<[2,3],f32>
  return %1 : !torch.vtensor<[2,3],f32>
}
"""


@dataclasses.dataclass(frozen=True)
class TagPass(ModulePass):
    """A test pass: tags every function, or fails the way `fail` says."""

    name = "effc-test-tag"
    description = "Tag each func.func with effc.tag."

    label: str = dataclasses.field(default="x", metadata={"help": "the tag's value"})
    fail: str = ""

    def apply(self, module: ir.Operation) -> None:
        for op in module.regions[0].blocks[0].operations:
            if op.operation.name != "func.func":
                continue
            if self.fail == "diagnostic":
                raise PassFailure("cannot tag this function", op.location)
            if self.fail == "effc":
                raise EffcError("tagging is switched off")
            if self.fail == "bug":
                raise KeyError("bug in a pass")
            op.attributes["effc.tag"] = ir.StringAttr.get(self.label)


@pytest.fixture
def tag_pass(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Register `effc-test-tag` next to the real passes for one test."""
    monkeypatch.setitem(registry._PASSES, TagPass.name, lambda: TagPass)
    yield


def error_of(pipeline: str) -> EffcError:
    """The error building `pipeline` raises."""
    with new_context(), pytest.raises(EffcError) as info:
        build_pass_manager(pipeline)
    return info.value


# --- parsing ------------------------------------------------------------------------------------------


def test_parse_normalizes_whitespace_and_keeps_option_text() -> None:
    parsed = parse_pipeline(
        " builtin.module( func.func( cse ) ,canonicalize{max-iterations=3   top-down=false},"
        "p{a='x y' b={c d} e=1,2 flag})"
    )
    assert str(parsed) == (
        "builtin.module(func.func(cse),canonicalize{max-iterations=3 top-down=false},p{a='x y' b={c d} e=1,2 flag})"
    )
    spec = parsed.root.elements[2]
    assert not isinstance(spec, NestedPipeline)
    assert [(o.key, o.unquoted()) for o in spec.options] == [
        ("a", "x y"),
        ("b", "c d"),
        ("e", "1,2"),
        ("flag", ""),
    ]
    assert spec.text == "p{a='x y' b={c d} e=1,2 flag}"


def test_parse_accepts_mlir_printed_pipeline() -> None:
    """What `str(pm)` prints (canonicalize's full option list) parses back to the same PassManager."""
    with new_context():
        printed = str(build_pass_manager("builtin.module(func.func(cse),canonicalize{max-iterations=3})"))
        assert "    max-iterations=3" in printed
        assert str(build_pass_manager(printed)) == printed


@pytest.mark.parametrize(
    ("pipeline", "message", "caret_col"),
    [
        ("builtin.module(cse", "pipeline:1:19: expected ')' to close 'builtin.module(' at column 15", 19),
        ("builtin.module(cse canonicalize)", "pipeline:1:20: expected ',' or ')'", 20),
        (
            "builtin.module(cse))",
            "pipeline:1:20: unexpected ')' after the pipeline; put every pass inside 'builtin.module(...)'",
            20,
        ),
        ("builtin.module(,cse)", "pipeline:1:16: expected a pass name, found ','", 16),
        ("", "pipeline:1:1: empty pipeline; expected e.g. 'builtin.module(canonicalize)'", 1),
        (
            "cse,canonicalize",
            "pipeline:1:1: expected the pipeline to be wrapped in its anchor op, "
            "e.g. 'builtin.module(cse,canonicalize)'",
            1,
        ),
        (
            "func.func(cse)",
            "pipeline:1:1: the pipeline must be anchored on 'builtin.module' (effc runs on modules), "
            "not 'func.func'; write 'builtin.module(func.func(...))'",
            1,
        ),
        (
            "builtin.module(canonicalize{max-iterations=3)",
            "pipeline:1:28: expected '}' to close the options of 'canonicalize'",
            28,
        ),
        ("builtin.module(p{=3})", "pipeline:1:18: expected an option name in the options of 'p'", 18),
        ("builtin.module(p{a=})", "pipeline:1:20: expected a value for option 'a'", 20),
        ("builtin.module(p{a='x})", "pipeline:1:20: unterminated ' in the value of option 'a'", 20),
        ("builtin.module(p{a={x y)", "pipeline:1:20: expected '}' to close the value of option 'a'", 20),
    ],
)
def test_syntax_errors_point_at_the_column(pipeline: str, message: str, caret_col: int) -> None:
    with pytest.raises(EffcError) as info:
        parse_pipeline(pipeline)
    assert info.value.message == message
    assert info.value.detail == f"  {pipeline}\n  {' ' * (caret_col - 1)}^"


def test_syntax_error_on_a_later_line() -> None:
    with pytest.raises(EffcError) as info:
        parse_pipeline("builtin.module(\n  cse\n  canonicalize)")
    assert info.value.message == "pipeline:3:3: expected ',' or ')'"
    assert info.value.detail == "    canonicalize)\n    ^"


# --- building -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        (
            "builtin.module(func.func(cse),canonicalise)",
            "pipeline:1:31: unknown pass 'canonicalise'; did you mean canonicalize? "
            "(effc passes: 'effc opt --list-passes')",
        ),
        (
            "builtin.module(func.func(torch-simplify-shape-calculation))",
            "pipeline:1:26: unknown pass 'torch-simplify-shape-calculation'; did you mean "
            "torch-simplify-shape-calculations, torch-simplify-dtype-calculations, "
            "torch-reify-shape-calculations? (effc passes: 'effc opt --list-passes')",
        ),
        (
            "builtin.module(effc-lower-to-linalg{allow-non-finite=false})",
            "pipeline:1:37: pass 'effc-lower-to-linalg' has no option 'allow-non-finite'; "
            "did you mean allow-non-finites? (options: allow-non-finites)",
        ),
        (
            "builtin.module(effc-lower-to-linalg{allow-non-finites=2})",
            "pipeline:1:37: pass 'effc-lower-to-linalg': option 'allow-non-finites' got '2', expected true or false",
        ),
        (
            "builtin.module(canonicalize{max-iteration=3})",
            "pipeline:1:29: pass 'canonicalize' has no option 'max-iteration'; did you mean max-iterations?",
        ),
        (
            "builtin.module(cse,canonicalize{region-simplify=sometimes})",
            "pipeline:1:33: invalid value for option 'region-simplify' of 'canonicalize': "
            "Cannot find option named 'sometimes'!",
        ),
        (
            "builtin.module(torch-simplify-shape-calculations)",
            "pipeline:1:16: pass 'torch-simplify-shape-calculations' runs on 'func.func', not "
            "'builtin.module'; nest it: func.func(torch-simplify-shape-calculations)",
        ),
        (
            "builtin.module(func.func(torch-simplification-pipeline))",
            "pipeline:1:26: pass 'torch-simplification-pipeline' runs on 'builtin.module', not "
            "'func.func'; move it out of 'func.func(...)'",
        ),
        (
            "builtin.module(gpu.module(effc-lower-to-linalg))",
            "pipeline:1:27: effc pass 'effc-lower-to-linalg' cannot run under 'gpu.module': effc passes run "
            "on builtin.module (or inside func.func, hoisted); move it out of 'gpu.module(...)'",
        ),
    ],
)
def test_build_errors_name_the_culprit(pipeline: str, message: str) -> None:
    assert error_of(pipeline).message == message


def test_mixed_pipeline_becomes_one_pass_manager(tag_pass: None) -> None:
    with new_context():
        pm = build_pass_manager("builtin.module(canonicalize{max-iterations=2},effc-test-tag{label='a b'},cse)")
    text = str(pm)
    assert text.startswith("builtin.module(canonicalize{")
    assert text.endswith(
        " max-iterations=2 max-num-rewrites=-1 region-simplify=normal test-convergence=false "
        "top-down=true},effc-test-tag{label='a b'},cse)"
    )


def test_effc_pass_under_func_func_is_hoisted(tag_pass: None) -> None:
    with new_context():
        pm = build_pass_manager("builtin.module(func.func(cse,effc-test-tag,cse),func.func(cse))")
    assert str(pm) == "builtin.module(func.func(cse),effc-test-tag,func.func(cse),func.func(cse))"
    tagged = effc.passes.run(TWICE, "builtin.module(func.func(cse,effc-test-tag{label=hoisted},canonicalize))")
    assert 'func.func @twice(%arg0: i32) -> i32 attributes {effc.tag = "hoisted"}' in tagged


def test_lowering_stage_expands_to_torch_mlir_pipeline() -> None:
    assert LowerToLinalgPass(allow_non_finites=False).pipeline_text() == "effc-lower-to-linalg{allow-non-finites=false}"
    with new_context():
        text = str(build_pass_manager("builtin.module(effc-lower-to-linalg{allow-non-finites=false},canonicalize)"))
    assert "func.func(convert-torch-to-linalg{allow-non-finites=false})" in text
    assert text.endswith(
        "torch-verify-linalg-on-tensors-backend-contract,canonicalize{cse-between-iterations=false"
        "    max-iterations=10 max-num-rewrites=-1 region-simplify=normal test-convergence=false "
        "top-down=true})"
    )


# --- running --------------------------------------------------------------------------------------------


def test_chain_pipelines_runs_them_in_order() -> None:
    from effc.passes.pipeline import chain_pipelines

    assert chain_pipelines(None, None) is None
    assert chain_pipelines("builtin.module(cse)", None) == "builtin.module(cse)"
    chained = chain_pipelines("builtin.module(func.func(cse))", "builtin.module(canonicalize,effc-profile)")
    assert chained == "builtin.module(func.func(cse),canonicalize,effc-profile)"


def test_optimize_appends_its_passes_to_the_users() -> None:
    import argparse

    from effc.compiler.compile_cmd import model_options

    flags = {"input": [], "target": "llvm-cpu", "cuda_arch": "sm_80", "attention": "auto", "iree_flag": []}
    flags |= {"matmul_precision": "highest", "trust_pickle": False}
    optimized = argparse.Namespace(**flags, optimize=True)
    passes = "effc-hoist-softmax-guard,effc-move-matmul-scale,effc-rational-gelu,effc-split-concat-matmul,"
    passes += "effc-fold-broadcast-bmm"
    assert model_options(optimized, "builtin.module(cse)")["pipeline"] == f"builtin.module(cse,{passes})"
    assert model_options(optimized)["pipeline"] == f"builtin.module({passes})"
    assert model_options(argparse.Namespace(**flags, optimize=False))["pipeline"] is None


@pytest.mark.parametrize("target", ["llvm-cpu", "cuda"])
def test_dash_o_on_the_command_line_carries_every_best_known_option(target: str) -> None:
    import argparse

    from effc.compiler.compile_cmd import model_options
    from effc.compiler.optimize import best_known

    flags = {"input": [], "target": target, "cuda_arch": "sm_80", "attention": "auto", "iree_flag": []}
    flags |= {"matmul_precision": "highest", "trust_pickle": False}
    options = model_options(argparse.Namespace(**flags, optimize=True))
    assert {key: options[key] for key in best_known(target)} == best_known(target)


def test_run_on_text_returns_text() -> None:
    assert effc.passes.run(TWICE, "builtin.module(func.func(cse),canonicalize)") == TWICE_AFTER_CSE


def test_run_on_module_rewrites_in_place(tag_pass: None) -> None:
    ctx = new_context()
    with ctx:
        module = ir.Module.parse(TWICE)
    assert effc.passes.run(module, "builtin.module(effc-test-tag{label=t},func.func(cse))") is module
    assert 'attributes {effc.tag = "t"}' in str(module)
    assert str(module).count("arith.addi") == 1


def test_run_lowers_torch_to_linalg() -> None:
    lowered = effc.passes.run(NEG, "builtin.module(effc-lower-to-linalg,canonicalize)")
    assert "func.func @neg(%arg0: tensor<2x3xf32>) -> tensor<2x3xf32>" in lowered
    assert "linalg.generic" in lowered and "arith.negf" in lowered and "torch." not in lowered


def test_failure_saves_repro_and_names_the_command(tmp_path: Path) -> None:
    with pytest.raises(EffcError) as info:
        effc.passes.run(
            UNLOWERABLE,
            "builtin.module( effc-lower-to-linalg )",
            source_name="model.mlir",
            repro_dir=tmp_path / "repros",
        )
    (repro,) = (tmp_path / "repros").iterdir()
    assert repro.name.startswith("effc-repro-") and repro.suffix == ".mlir"
    message = info.value.message
    assert message.startswith(
        "pass pipeline failed: model.mlir:3:8: error: failed to legalize operation 'torch.operator': "
    )
    assert message.endswith(
        f"; reproduce with: effc opt {repro} --pass-pipeline='builtin.module(effc-lower-to-linalg)'"
    )
    assert info.value.detail.startswith("model.mlir:3:8: error: failed to legalize operation 'torch.operator'")
    # The repro is the input as it was before the pipeline touched it, and it fails the same way.
    saved = repro.read_text()
    assert "torch.aten.relu" in saved and "linalg" not in saved
    ctx = new_context()
    pm = build_pass_manager("builtin.module(effc-lower-to-linalg)", context=ctx)
    result = opt_cmd.process_chunk(ctx, pm, saved, 1)
    assert result.output is None
    assert [d.message.split(":")[0] for d in result.diagnostics] == ["failed to legalize operation 'torch.operator'"]


def test_pass_failure_is_an_mlir_diagnostic(tag_pass: None, tmp_path: Path) -> None:
    with pytest.raises(EffcError) as info:
        effc.passes.run(TWICE, "builtin.module(effc-test-tag{fail=diagnostic})", repro_dir=tmp_path)
    assert info.value.message.startswith("pass pipeline failed: <input>:1:1: error: cannot tag this function; ")
    assert info.value.detail == "<input>:1:1: error: cannot tag this function"


def test_effc_error_in_a_pass_keeps_its_message(tag_pass: None, tmp_path: Path) -> None:
    with pytest.raises(EffcError) as info:
        effc.passes.run(TWICE, "builtin.module(effc-test-tag{fail=effc})", repro_dir=tmp_path)
    (repro,) = tmp_path.iterdir()
    assert info.value.message == (
        f"tagging is switched off; reproduce with: effc opt {repro} "
        "--pass-pipeline='builtin.module(effc-test-tag{fail=effc})'"
    )


def test_bug_in_a_pass_propagates_with_a_repro_note(tag_pass: None, tmp_path: Path) -> None:
    with pytest.raises(KeyError) as info:
        effc.passes.run(TWICE, "builtin.module(effc-test-tag{fail=bug})", repro_dir=tmp_path)
    (repro,) = tmp_path.iterdir()
    assert info.value.__notes__ == [
        f"reproduce with: effc opt {repro} --pass-pipeline='builtin.module(effc-test-tag{{fail=bug}})'"
    ]


def test_importing_the_cli_module_does_not_load_mlir() -> None:
    code = "import sys, effc.passes.opt_cmd; print('torch_mlir' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


# --- effc opt's pieces ----------------------------------------------------------------------------------


def test_split_input_keeps_file_line_numbers() -> None:
    text = "a\n// -----\nb\nc\n// ----- trailing words\nd"
    assert opt_cmd.split_input(text) == [(1, "a"), (3, "b\nc"), (6, "d")]


def test_list_passes_shows_options_with_types_and_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        registry,
        "_PASSES",
        {"effc-lower-to-linalg": lambda: LowerToLinalgPass, TagPass.name: lambda: TagPass},
    )
    assert opt_cmd.list_passes() == (
        "effc passes (use in --pass-pipeline next to any upstream MLIR/torch-mlir pass):\n"
        "\n"
        "effc-lower-to-linalg\n"
        "  Lower a torch-backend-contract module (stage 2) to linalg-on-tensors (stage 3), IREE's input,\n"
        "  with torch-mlir's torch-backend-to-linalg-on-tensors-backend-pipeline, after decomposing what\n"
        "  effc's torch-level passes wrote (aten.amax, aten.clamp_min: ops the linalg lowering takes only\n"
        "  decomposed). Ops with no lowering fail with torch-mlir's 'failed to legalize operation' errors\n"
        "  at their source locations.\n"
        "  options:\n"
        "    allow-non-finites: bool = true\n"
        "        let ops emit inf/nan (max pooling starts at -inf); false: closest finite value\n"
        "\n"
        "effc-test-tag\n"
        "  Tag each func.func with effc.tag.\n"
        "  options:\n"
        "    label: str = x\n"
        "        the tag's value\n"
        "    fail: str = ''\n"
    )


def test_verify_matches_like_mlir_opt() -> None:
    source = "\n".join(
        [
            "op1  // expected-warning {{slow}}",
            "// expected-remark @below {{fused}}",
            "// expected-note @below {{here}}",
            "op2",
            "op3",
            "// expected-error @-1 {{bad op3}}",
            "// expected-error-re @unknown {{code {{[0-9]+}}}}",
            "// expected-error @above {{never}}",
        ]
    )
    expectations = diagnostics.parse_expectations(source, first_line=10)
    assert [(e.severity, e.line) for e in expectations] == [
        ("warning", 10),
        ("remark", 13),
        ("note", 13),
        ("error", 14),
        ("error", None),
        ("error", 16),
    ]
    found = [
        diagnostics.Diagnostic("warning", "too slow here", "-", 10, 1),
        diagnostics.Diagnostic(
            "remark",
            "fused 2 ops",
            "-",
            13,
            1,
            notes=(diagnostics.Diagnostic("note", "here it is", "-", 13, 1),),
        ),
        diagnostics.Diagnostic(
            "error",
            "bad op3 indeed",
            "-",
            14,
            1,
            notes=(diagnostics.Diagnostic("note", "see current operation: op3", "-", 14, 1),),
        ),
        diagnostics.Diagnostic("error", "exit code 42"),
        diagnostics.Diagnostic("error", "surprise", "-", 12, 3),
    ]
    problems = diagnostics.verify(expectations, found)
    assert [p.render("f.mlir") for p in problems] == [
        "f.mlir:12:3: error: unexpected error: surprise",
        'f.mlir:17:4: error: expected error "never" was not produced',
    ]


def test_opt_writes_output_atomically_and_only_on_success(effc_cli: Callable[..., Any], tmp_path: Path) -> None:
    good, bad, out = tmp_path / "good.mlir", tmp_path / "bad.mlir", tmp_path / "out.mlir"
    good.write_text(TWICE)
    bad.write_text(UNLOWERABLE)
    pipeline = "--pass-pipeline=builtin.module(func.func(cse),effc-lower-to-linalg)"
    result = effc_cli("opt", str(good), pipeline, "-o", str(out))
    assert (result.code, result.out, result.err) == (0, "", "")
    assert out.read_text() == TWICE_AFTER_CSE
    result = effc_cli("opt", str(bad), pipeline, "-o", str(out))
    assert result.code == 1
    assert result.err.startswith(f"{bad}:3:8: error: failed to legalize operation 'torch.operator': ")
    assert result.err.endswith(f"\neffc: error: {bad} failed (diagnostics above)\n")
    assert out.read_text() == TWICE_AFTER_CSE  # untouched, and no temporary file left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mlir", "good.mlir", "out.mlir"]


def test_opt_reads_stdin(effc_cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(TWICE))
    result = effc_cli("opt", "-p", "builtin.module(func.func(cse))")
    assert (result.code, result.out) == (0, TWICE_AFTER_CSE)
    monkeypatch.setattr(sys, "stdin", io.StringIO("func.func @f() {\n  return %x : i32\n}\n"))
    result = effc_cli("opt", "-")
    assert result.err == (
        "<stdin>:2:10: error: use of undeclared SSA value name\n"
        "  return %x : i32\n"
        "         ^\n"
        "effc: error: <stdin> failed (diagnostics above)\n"
    )
