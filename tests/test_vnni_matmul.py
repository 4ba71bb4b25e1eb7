"""effc-vnni-matmul: effc's AVX512-VNNI int8 kernel in place of IREE's int8 matmuls (the IR: lit/effc-vnni-matmul.mlir)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import effc
from effc.compiler.errors import EffcError
from effc.compiler.host_cpu import has_int8_dot_u8s8
from effc.compiler.optimize import with_precision_passes
from effc.passes.vnni_matmul import KERNEL_EXPORT, define_kernels, packed_weights
from effc.tests.conftest import EffcCli

needs_vnni = pytest.mark.skipif(not has_int8_dot_u8s8(), reason="the kernel runs on CPUs with AVX512-VNNI only")


def test_weights_are_packed_as_the_kernel_reads_them() -> None:
    """u8 (w + 128), in panels of 32 columns: [N/32][K/4][32][4], so a 64-byte load is 16 columns' four k."""
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 128, (64, 8), dtype=np.int8)  # [N, K]
    packed = packed_weights(w).view(np.uint8)
    n, k = np.meshgrid(np.arange(64), np.arange(8), indexing="ij")
    at = (n // 32) * 8 * 32 + (k // 4) * 128 + (n % 32) * 4 + k % 4
    assert packed.shape == (64 * 8,)
    assert np.array_equal(packed[at], (w.astype(np.int16) + 128).astype(np.uint8))


class _Mlp(torch.nn.Module):
    """Two Linears whose int8 matmuls fit the kernel (16 rows, 64 and 128 columns, K 128 and 64), one that does not."""

    def __init__(self) -> None:
        super().__init__()
        self.up, self.down, self.head = torch.nn.Linear(64, 128), torch.nn.Linear(128, 64), torch.nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.down(torch.relu(self.up(x))))


def mlp() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """`_Mlp` as a factory for the CLI (effc.tests.test_vnni_matmul:mlp)."""
    torch.manual_seed(0)
    return _Mlp().eval(), (torch.randn(16, 64),)


@needs_vnni
@pytest.mark.parametrize("rows", [16, 13, 1])
def test_the_kernel_gives_iree_int8_results_bit_for_bit(rows: int) -> None:
    """Integer products are exact, so the kernel's module computes what IREE's int8 matmuls compute, to the bit: in
    8-row tiles, in the rows left over one at a time (13 = 8 + 5), and for a decode step's one row."""
    torch.manual_seed(0)
    model, x = _Mlp().eval(), torch.randn(rows, 64)
    ours = effc.compile(model, (x,), matmul_precision="int8")
    assert 'effc.vnni_matmul = "2/3 matmuls on effc' in ours.mlir
    iree_int8 = effc.compile(model, (x,), pipeline="builtin.module(effc-quantize-dynamic)")
    assert "effc.vnni_matmul" not in iree_int8.mlir
    (result,), (reference,) = ours.run(x.numpy()), iree_int8.run(x.numpy())
    assert np.array_equal(result, reference)
    assert 1e-4 < max(ours.compare()) <= ours.tolerance  # int8 rounding acted, within int8's tolerance


@needs_vnni
def test_one_row_kernel_calls_leave_data_tiling_out_under_dash_o(tmp_path: Path) -> None:
    """With every int8 matmul on the kernel and one row (a decode step), IREE's data tiling would only pack the
    attention's KV cache on every call: `-O` leaves it out, with a note, and the results stay IREE int8's."""
    from effc.compiler.optimize import best_known

    torch.manual_seed(0)
    model, x = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Linear(128, 64)).eval(), torch.randn(1, 64)
    compiled = effc.compile(model, (x,), matmul_precision="int8", save_temps=tmp_path, **best_known("llvm-cpu"))
    assert 'effc.vnni_matmul = "2/2 matmuls on effc' in compiled.mlir
    assert any("left out: every matmul by a constant weight has one row" in note for note in compiled.notes)
    assert "data-tiling" not in (tmp_path / "iree-compile.sh").read_text()
    iree_int8 = effc.compile(model, (x,), pipeline="builtin.module(effc-quantize-dynamic)")
    assert np.array_equal(compiled.run(x.numpy())[0], iree_int8.run(x.numpy())[0])


@needs_vnni
def test_save_temps_script_compiles_the_kernels_definitions(tmp_path: Path) -> None:
    torch.manual_seed(0)
    effc.compile(_Mlp().eval(), (torch.randn(16, 64),), matmul_precision="int8", save_temps=tmp_path)
    script = (tmp_path / "iree-compile.sh").read_text()
    assert "03-with-kernels.mlir" in script
    assert "stream.executable private @effc_vnni" in (tmp_path / "03-with-kernels.mlir").read_text()


_DECLARED = (
    "module {\n"
    "  func.func private @effc_vnni_qgemm_8x64x64(!torch.vtensor<[8,64],si8>, !torch.vtensor<[4096],si8>) "
    "-> !torch.vtensor<[8,64],si32>\n"
    "}\n"
)


def test_kernels_are_defined_as_a_dispatch_of_the_executable_where_declared() -> None:
    if not has_int8_dot_u8s8():
        with pytest.raises(EffcError, match="cannot run on this host CPU"):
            define_kernels(_DECLARED, "llvm-cpu")
        return
    defined = define_kernels(_DECLARED, "llvm-cpu")
    assert defined.count("stream.executable private @effc_vnni") == 1
    assert "flow.dispatch @effc_vnni::@matmul_u8s8[%n](%a, %w, %m, %n, %k)" in defined
    assert "func.func private @effc_vnni_qgemm_8x64x64(%x: !torch.vtensor<[8,64],si8>" in defined
    plain = "module {\n}\n"
    assert define_kernels(plain, "llvm-cpu") is plain


def test_kernels_on_another_target_are_an_error_that_says_what_to_drop() -> None:
    with pytest.raises(EffcError) as raised:
        define_kernels(_DECLARED, "cuda")
    assert str(raised.value) == (
        "effc-vnni-matmul's int8 kernel cannot run on target cuda: drop effc-vnni-matmul from the pipeline "
        "(IREE's own int8 matmuls run without it)"
    )


@needs_vnni
def test_effc_profile_counts_the_kernel_dispatch_as_the_matmuls_it_runs(effc_cli: EffcCli, tmp_path: Path) -> None:
    """One executable serves every shape and its source names no torch op: its row gets the kernel calls."""
    args = ("effc.tests.test_vnni_matmul:mlp", "--matmul-precision", "int8", "--repetitions", "3")
    result = effc_cli("profile", *args, "-o", str(tmp_path / "r"))
    assert result.code == 0, result.err
    rows = json.loads((tmp_path / "r" / "report.json").read_text())["dispatches"]
    (kernel,) = [row for row in rows if row["name"] == KERNEL_EXPORT]
    assert kernel["op_class"] == "linear" and kernel["launches"] == 2 and len(kernel["op_ids"]) == 2
    assert kernel["root_op"] in kernel["op_ids"] and kernel["est_time_s"] > 0


_INT8_MATMUL = """func.func @main(%x: !torch.vtensor<[8,64],si8>) -> !torch.vtensor<[8,64],si32> {
  %w = torch.vtensor.literal(dense<3> : tensor<64x64xsi8>) : !torch.vtensor<[64,64],si8>
  %y = torch.aten.mm %x, %w : !torch.vtensor<[8,64],si8>, !torch.vtensor<[64,64],si8> -> !torch.vtensor<[8,64],si32>
  return %y : !torch.vtensor<[8,64],si32>
}
"""


def test_linalg_output_refuses_the_kernel_and_int8_leaves_it_out(tmp_path: Path) -> None:
    """The kernel is an IREE custom dispatch: torch-mlir's linalg pipeline cannot lower it, so emit='linalg' says so
    where a pipeline asks for it, and int8 does not add it there."""
    source = tmp_path / "int8_matmul.mlir"
    source.write_text(_INT8_MATMUL)
    with pytest.raises(EffcError) as raised:
        effc.compile(str(source), pipeline="builtin.module(effc-vnni-matmul)", emit="linalg")
    assert str(raised.value) == (
        "effc-vnni-matmul's kernels are IREE custom dispatches, which torch-mlir's linalg pipeline cannot lower: "
        "emit a vmfb (or mlir), or drop effc-vnni-matmul from the pipeline"
    )
    assert with_precision_passes(None, "int8", "llvm-cpu", for_iree=False) == "builtin.module(effc-quantize-dynamic)"
