"""External weights (`--params`): the module shrinks, the archive holds the weights, numerics are unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from effc.tests.conftest import EffcCli


def test_externalized_module_matches_torch_and_holds_no_weights(tmp_path: Path) -> None:
    from effc.compiler.api import compile_model
    from effc.tests import model_zoo

    model, inputs = model_zoo.mlp()
    inline = compile_model(model, inputs)
    external = compile_model(model, inputs, parameters=tmp_path / "mlp.irpa")
    assert external.parameters == tmp_path / "mlp.irpa"
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.numel() * 4 >= 4096)
    assert external.parameters.stat().st_size >= weight_bytes
    assert len(external.vmfb or b"") < len(inline.vmfb or b"") - weight_bytes + 4096
    assert max(external.compare()) < 1e-5
    np.testing.assert_array_equal(external.run()[0], inline.run()[0])


def test_externalize_rewrites_large_literals_only() -> None:
    from effc.compiler.parameters import externalize

    text = (
        "module {\n"
        "  func.func @main() -> !torch.vtensor<[1024],f32> {\n"
        "    %0 = torch.vtensor.literal(dense_resource<big> : tensor<1024xf32>) : !torch.vtensor<[1024],f32>\n"
        "    %1 = torch.vtensor.literal(dense_resource<small> : tensor<2xf32>) : !torch.vtensor<[2],f32>\n"
        "    return %0 : !torch.vtensor<[1024],f32>\n"
        "  }\n"
        "}\n"
        "{-#\n  dialect_resources: {\n    builtin: {\n"
        f'      big: "0x04000000{"00" * 4096}",\n'
        f'      small: "0x04000000{"00" * 8}"\n'
        "    }\n  }\n#-}\n"
    )
    result = externalize(text)
    assert list(result.parameters) == ["big"]
    assert len(result.parameters["big"]) == 4096
    assert 'util.global private @big = #stream.parameter.named<"model"::"big"> : tensor<1024xf32>' in result.text
    assert "%effc_param_0 = util.global.load @big : tensor<1024xf32>" in result.text
    assert "torch_c.from_builtin_tensor %effc_param_0" in result.text
    assert "dense_resource<small>" in result.text and 'small: "0x04000000' in result.text
    assert 'big: "0x' not in result.text


def test_cli_compile_and_run_with_params(effc_cli: EffcCli, pt2_file: Path, tmp_path: Path) -> None:
    vmfb, params = tmp_path / "mlp.vmfb", tmp_path / "mlp.irpa"
    result = effc_cli("compile", str(pt2_file), "-o", str(vmfb), "--params", str(params), "--check")
    assert result.code == 0, result.err
    assert f"weights in {params}" in " ".join(result.out.split())
    ran = effc_cli("run", str(vmfb), "--params", str(params), "--input", "4x32xf32", "-o", str(tmp_path))
    assert ran.code == 0, ran.err
    assert (tmp_path / "output_0.npy").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ((), "it was compiled with external weights: pass its archive with --params FILE.irpa"),
        (("--params", "missing.irpa"), "parameter archive 'missing.irpa' not found"),
    ],
)
def test_run_without_the_archive_says_what_to_pass(
    effc_cli: EffcCli, pt2_file: Path, tmp_path: Path, extra: tuple[str, ...], message: str
) -> None:
    vmfb = tmp_path / "mlp.vmfb"
    assert effc_cli("compile", str(pt2_file), "-o", str(vmfb), "--params", str(tmp_path / "mlp.irpa")).code == 0
    result = effc_cli("run", str(vmfb), "--input", "4x32xf32", *extra)
    assert result.code == 1
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_another_module_of_the_same_architecture_fills_the_archive(tmp_path: Path) -> None:
    """bench/perf's GPU check: the compiled module's keys mapped to parameter names let a module built elsewhere
    (other weights) write an archive the module runs with; given the weights left inline in the module (too
    small to externalize), its output is the vmfb's."""
    import torch

    from effc.compiler.api import compile_model
    from effc.compiler.parameters import archive_sources, named_tensor_bytes, restore_tensors, write_archive
    from effc.runtime.runner import run_vmfb
    from effc.tests import model_zoo

    model, inputs = model_zoo.mlp()
    compiled = compile_model(model, inputs, parameters=tmp_path / "mlp.irpa")
    assert compiled.parameters is not None
    names, missing = archive_sources(compiled.parameters, named_tensor_bytes(model))
    assert not missing and names and set(names.values()) <= {name for name, _ in model.named_parameters()}

    torch.manual_seed(1)
    other = type(model)().eval()
    original = named_tensor_bytes(model)
    restore_tensors(other, {name: data for name, data in original.items() if name not in set(names.values())})
    weights = named_tensor_bytes(other)
    archive = write_archive({key: weights[name] for key, name in names.items()}, tmp_path / "other.irpa")
    vmfb = compiled.save(tmp_path / "mlp.vmfb")
    (got,) = run_vmfb(vmfb, [inputs[0].numpy()], parameters=archive)
    with torch.no_grad():
        expected, before = other(inputs[0]).numpy(), model(inputs[0]).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, before, atol=1e-3)


def test_splat_archive_has_every_key_and_size_as_zeros(tmp_path: Path) -> None:
    import iree.runtime as rt

    from effc.compiler.parameters import write_archive, write_splat_archive

    real = write_archive({"w": b"\x01" * 8192, "b": b"\x02" * 4096}, tmp_path / "real.irpa")
    splat = write_splat_archive(real, tmp_path / "splat.irpa")
    index = rt.ParameterIndex()
    index.load(str(splat))
    entries = {key: (entry.length, entry.is_splat) for key, entry in index.items()}
    assert entries == {"w": (8192, True), "b": (4096, True)}
    assert splat.stat().st_size < 8192


def test_archives_share_a_fingerprint_only_with_the_same_keys_and_bytes(tmp_path: Path) -> None:
    """bench/perf/cuda.py lets modules share a real archive by this: a module whose pass rewrote its weights (int8,
    `high`'s bf16 pieces) must not get the f32 one."""
    from effc.compiler.parameters import archive_fingerprint, write_archive

    def fingerprint(name: str, parameters: dict[str, bytes]) -> str:
        return archive_fingerprint(write_archive(parameters, tmp_path / f"{name}.irpa"))

    f32 = {"w": b"\x01" * 8192, "b": b"\x02" * 4096}
    assert fingerprint("a", f32) == fingerprint("b", dict(reversed(f32.items())))
    assert fingerprint("a", f32) != fingerprint("renamed", {"effc_split_weight": f32["w"], "b": f32["b"]})
    assert fingerprint("a", f32) != fingerprint("changed", {**f32, "b": b"\x03" * 4096})
