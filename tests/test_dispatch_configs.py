"""Edited dispatch configurations reach IREE's CUDA code generation (compiled here for sm_80, no GPU needed)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import pytest
import torch

import effc
from effc.compiler.dispatch_configs import (
    DUMP_FLAG,
    SUBSTITUTE_FLAG,
    ConfigEdit,
    apply_edit,
    checked_configurations,
    export_name,
    stall_prone,
    substitution_flags,
    workgroup_count,
)
from effc.compiler.errors import EffcError
from effc.compiler.iree_backend import executable_compiles


class _Attention(torch.nn.Module):
    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


def _compile(flags: tuple[str, ...]) -> bytes:
    q, k, v = torch.randn(3, 2, 4, 128, 64, generator=torch.Generator().manual_seed(0)).half()
    compiled = effc.compile(_Attention(), (q, k, v), target="cuda", attention="fused", iree_flags=flags)
    assert compiled.vmfb is not None
    return compiled.vmfb


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    directory = tmp_path_factory.mktemp("configs")
    return directory, _compile((f"{DUMP_FLAG}={directory}",))


def test_edited_attention_tiles_change_the_compiled_kernel(dumped: tuple[Path, bytes], tmp_path: Path) -> None:
    directory, original = dumped
    edit = ConfigEdit("attention", {"workgroup": {-3: 64}})
    flags = substitution_flags(directory, (edit,), tmp_path)
    assert len(flags) == 1 and flags[0].startswith(
        "--iree-hal-substitute-executable-configuration=main$async_dispatch_0="
    )
    edited = next(tmp_path.glob("configured_*.mlir")).read_text()
    assert "workgroup = [1, 64, 64, 0, 0]" in edited  # IREE tiles the head dim in halves: 32
    assert _compile(flags) != original


def test_subgroup_edit_changes_both_halves_of_an_attention(dumped: tuple[Path, bytes]) -> None:
    configured = next(dumped[0].glob("configured_*.mlir")).read_text()
    edited = apply_edit(configured, ConfigEdit("attention", workgroup_size=256, subgroups=8))
    assert edited.count("subgroup_basis = [[1, 8, 1, 1, 1]") == 2 and "workgroup_size = [256, 1, 1]" in edited


def test_edit_that_matches_no_dispatch_is_an_error(dumped: tuple[Path, bytes], tmp_path: Path) -> None:
    with pytest.raises(
        EffcError,
        match=r"^no dispatch matches matmul_like; dispatches are named like main\$async_dispatch_0_attention_8x128x64x64x128$",
    ):
        substitution_flags(dumped[0], (ConfigEdit("matmul_like", prefetch_stages=3),), tmp_path)


def test_edit_of_a_value_the_configuration_lacks_is_an_error(dumped: tuple[Path, bytes]) -> None:
    configured = next(dumped[0].glob("configured_*.mlir")).read_text()
    with pytest.raises(EffcError, match=r"^cannot edit the dispatch configuration: no subgroup in it"):
        apply_edit(configured, ConfigEdit("attention", {"subgroup": {-1: 1}}))
    with pytest.raises(
        EffcError, match=r"^cannot edit the dispatch configuration: no entry 9 in workgroup = \[1, 64, 32"
    ):
        apply_edit(configured, ConfigEdit("attention", {"workgroup": {9: 0}}))


def test_lenient_edits_skip_what_does_not_apply(dumped: tuple[Path, bytes], tmp_path: Path) -> None:
    """`-O`'s rules run over any model: no match, an unmet `requires`, a missing value are skipped, not errors."""
    edits = (
        ConfigEdit("matmul_like", {"reduction": {-1: 4}}),
        ConfigEdit("attention", {"workgroup": {-3: 0}}, requires="NO_SUCH_INTRINSIC"),
        ConfigEdit("attention", {"subgroup": {-1: 1}}),
        ConfigEdit("attention", {"workgroup": {9: 0}}),
    )
    assert substitution_flags(dumped[0], edits, tmp_path, strict=False) == ()


def test_dash_o_on_cuda_gives_a_fused_attention_its_whole_head_dim(tmp_path: Path) -> None:
    from effc.compiler.optimize import best_known

    q, k, v = torch.randn(3, 2, 4, 128, 64, generator=torch.Generator().manual_seed(0)).half()
    options = best_known("cuda") | {"attention": "fused"}  # "auto" cannot tell f16 without weights
    compiled = effc.compile(_Attention(), (q, k, v), target="cuda", save_temps=tmp_path, **options)
    assert compiled.notes == ["kernel configuration changed for 1 dispatch (dispatch_edits)"]
    (edited,) = (tmp_path / "dispatch-configs" / "edited").glob("configured_*.mlir")
    assert "workgroup = [1, 64, 0, 0, 0]" in edited.read_text()


def test_dash_o_on_cuda_steps_k_by_64_only_where_iree_chose_32(tmp_path: Path) -> None:
    """The f16 attention block of bench/perf: IREE gives its QKV projection a K step of 2 mma tiles (32) and its
    output projection 8 (128); `-O` raises the first to 4 and leaves the second alone."""
    from effc.bench.perf.workloads import AttentionBlock
    from effc.compiler.optimize import best_known

    x = torch.randn(4, 512, 1024, generator=torch.Generator().manual_seed(0)).half()
    compiled = effc.compile(AttentionBlock().half(), (x,), target="cuda", save_temps=tmp_path, **best_known("cuda"))
    assert compiled.notes == ["kernel configuration changed for 2 dispatches (dispatch_edits)"]
    configs = tmp_path / "dispatch-configs"
    edited = {export_name(p.read_text()): p.read_text() for p in (configs / "edited").glob("configured_*.mlir")}
    (qkv,) = [text for name, text in edited.items() if "matmul_like_3x4x16x512x64x1024" in name]
    assert "reduction = [0, 0, 0, 0, 0, 4]" in qkv
    assert any("attention" in name for name in edited)
    (out,) = [p.read_text() for p in (configs / "iree").glob("configured_*.mlir") if "2048x1024x1024" in p.read_text()]
    assert "reduction = [0, 0, 8]" in out


class _LinearNoBias(torch.nn.Module):
    def forward(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x @ weight.t()


def _f32_matmul_ptx(tmp_path: Path, name: str, flags: tuple[str, ...] = ()) -> str:
    x, weight = torch.randn(2, 128, 256, generator=torch.Generator().manual_seed(0))
    binaries = tmp_path / name
    effc.compile(
        _LinearNoBias(),
        (x, weight),
        target="cuda",
        iree_flags=(*flags, f"--iree-hal-dump-executable-binaries-to={binaries}"),
    )
    return "".join(p.read_text() for p in binaries.glob("*.ptx"))


def test_promoted_f32_matmul_operands_are_staged_in_shared_memory(tmp_path: Path) -> None:
    """IREE 3.13 gives f32 matmuls on CUDA no shared memory; `promote_operands` makes the kernel stage them there."""
    dumped = tmp_path / "dumped"
    before = _f32_matmul_ptx(tmp_path, "before", (f"{DUMP_FLAG}={dumped}",))
    edit = ConfigEdit("matmul", promote_operands=(0, 1), requires="pipeline<TileAndFuse>")
    flags = substitution_flags(dumped, (edit,), tmp_path / "edited")
    assert (
        "lowering_config<{promote_operands = [0, 1], reduction = " in next((tmp_path / "edited").iterdir()).read_text()
    )
    after = _f32_matmul_ptx(tmp_path, "after", flags)
    assert "st.shared" not in before and "st.shared" in after


def test_promote_edit_leaves_a_configuration_that_already_promotes(dumped: tuple[Path, bytes]) -> None:
    """IREE's attention config promotes its operands (with a promotion type each): an edit must not half-change it."""
    configured = next(dumped[0].glob("configured_*.mlir")).read_text()
    with pytest.raises(EffcError, match=r"^cannot edit the dispatch configuration: it already promotes operands"):
        apply_edit(configured, ConfigEdit("attention", promote_operands=(0, 1)))


@pytest.mark.parametrize(
    ("rows", "cols", "lowering", "tile", "workgroups"),
    [
        (128, 256, "[1, 2, 0]", "[16, 32, 1]", 8 * 8),
        (2048, 512, "[4, 4, 0]", "[32, 128, 1]", 64 * 4),
        (2048, 1024, "[8, 4, 0]", "[64, 128, 1]", 32 * 8),
    ],
)
def test_dash_o_tiles_f32_matmuls_by_how_many_workgroups_iree_would_launch(
    tmp_path: Path, rows: int, cols: int, lowering: str, tile: str, workgroups: int
) -> None:
    """IREE's f32 tiles (32x128, 1x16 outputs per thread) launch 8 workgroups for a 128x256 product, which leaves
    most of 132 SMs idle: `-O` gives it 16x32 tiles (1x2 per thread). A 2048x512 product (256 workgroups) keeps
    IREE's tiles, 4x4 per thread (bench/perf/NOTES.md, H100 runs 8-10). A 2048x1024 one (512) still fills the SMs
    with half as many workgroups: 8x4 per thread in 64x128 tiles (H100 run 19)."""
    from effc.compiler.optimize import best_known

    x, weight = torch.randn(rows, 256), torch.randn(cols, 256)
    compiled = effc.compile(_LinearNoBias(), (x, weight), target="cuda", save_temps=tmp_path, **best_known("cuda"))
    assert compiled.notes[-1] == "kernel configuration changed for 1 dispatch (dispatch_edits)"
    (original,) = (tmp_path / "dispatch-configs" / "iree").glob("configured_*.mlir")
    (edited,) = (tmp_path / "dispatch-configs" / "edited").glob("configured_*.mlir")
    assert "thread = [1, 16, 0], workgroup = [32, 128, 1]" in original.read_text()
    assert f"thread = {lowering}, workgroup = {tile}" in edited.read_text()
    assert workgroup_count(export_name(edited.read_text()), edited.read_text()) == workgroups


def test_workgroup_count_skips_reduction_loops_and_untiled_ones() -> None:
    configured = "lowering_config<{reduction = [0, 0, 4], thread = [1, 4, 0], workgroup = [1, 128, 0]}>"
    assert workgroup_count("main$async_dispatch_4_horizontal_multi_contract_128x384x384_f32", configured) == 128 * 3
    assert workgroup_count("main$async_dispatch_3_elementwise_128_i64xi1", configured) == math.inf


class _Projections(torch.nn.Module):
    """A decode step's MLP shape: two nn.Linear weights, read as [N, K]."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.up, self.down = torch.nn.Linear(96, 256), torch.nn.Linear(256, 96)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(torch.nn.functional.silu(self.up(x)))


def test_dash_o_on_llvm_cpu_gives_one_row_matmuls_a_dot_product_along_k(tmp_path: Path) -> None:
    """IREE steps a one-row matmul 8 columns by 8 of K, lowered to transposes and one chain of dependent FMAs; `-O`
    makes each step one column by 32 of K, in the fill and the fused consumer too (bench/perf/NOTES.md, seventeenth
    CPU session). Matmuls of more rows keep IREE's tiles."""
    from effc.compiler.optimize import best_known

    compiled = effc.compile(
        _Projections().eval(), (torch.randn(1, 96),), save_temps=tmp_path / "one", **best_known("llvm-cpu")
    )
    assert compiled.notes[-1] == "kernel configuration changed for 2 dispatches (dispatch_edits)"
    assert max(compiled.compare()) < 1e-5
    edited = sorted((tmp_path / "one" / "dispatch-configs" / "edited").glob("configured_*.mlir"))
    assert len(edited) == 2
    for path in edited:
        text = path.read_text()
        assert "vector_common_parallel = [1, 1, 0], vector_reduction = [0, 0, 32]" in text
        assert "vector_common_parallel = [1, 8" not in text

    rows = effc.compile(
        _Projections().eval(), (torch.randn(4, 96),), save_temps=tmp_path / "four", **best_known("llvm-cpu")
    )
    assert not any("dispatch_edits" in note for note in rows.notes)
    assert max(rows.compare()) < 1e-5


DATA = Path(__file__).parent / "data"
# The flags of MiniLM's `-O --matmul-precision medium` compile (its --save-temps iree-compile.sh), less the target's,
# when the fixtures were captured (all ukernels then, as their target attribute says).
_MEDIUM_CPU_FLAGS = (
    "--iree-llvmcpu-reassociate-fp-reductions",
    "--iree-dispatch-creation-data-tiling",
    "--iree-llvmcpu-enable-ukernels=all",
    "--iree-global-opt-demote-contraction-inputs-type=bf16",
    "--iree-global-opt-demote-contraction-inputs-operations=all",
    "--iree-llvmcpu-stack-allocation-limit=131072",
)


def test_a_dispatch_whose_module_configuration_stalls_llvm_is_configured_alone(tmp_path: Path) -> None:
    """MiniLM's LayerNorm stored as a bf16 and an f32 pack, as IREE 3.13 configured it in the whole module: LLVM's x86
    backend spins on it (no end within ALONE_TIMEOUT_S). Configured alone from its source, it compiles, and the
    compile substitutes that configuration, with a note."""
    stalling = DATA / "layernorm-two-packs.stalls.mlir"
    assert stall_prone(stalling.read_text())
    compiles = functools.partial(executable_compiles, flags=_MEDIUM_CPU_FLAGS)
    assert not compiles(stalling)
    configs = tmp_path / "dispatch-configs"
    for folder, name, fixture in (
        ("iree", "configured_module_main$async_dispatch_16.mlir", stalling),
        ("sources", "module_main$async_dispatch_16.mlir", DATA / "layernorm-two-packs.source.mlir"),
    ):
        (configs / folder).mkdir(parents=True)
        (configs / folder / name).write_text(fixture.read_text())
    notes: list[str] = []
    (flag,) = checked_configurations(configs, compiles, notes.append)
    symbol, chosen = flag.removeprefix(f"{SUBSTITUTE_FLAG}=").split("=", 1)
    assert symbol == "main$async_dispatch_16"
    assert "vector_inner_parallel = [0, 128]" in stalling.read_text()
    assert "vector_inner_parallel = [0, 128]" not in Path(chosen).read_text()
    assert compiles(Path(chosen))
    assert notes == [
        "1 dispatch configured alone, not as in the whole module (IREE 3.13 varies such a dispatch's configuration, "
        "and LLVM's x86 backend stalls on one form; bench/perf/NOTES.md)"
    ]


def test_bf16_matmuls_on_llvm_cpu_generate_code_from_configurations_dumped_first(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """With bf16 demotion, iree-compile first stops at the configurations (sources dumped beside them), and the
    module compiled from them matches torch within medium's tolerance. --save-temps' script is the full compile's."""
    from effc.compiler import optimize
    from effc.tests import model_zoo

    monkeypatch.setattr(optimize, "has_bf16_dot", lambda: True)
    model, inputs = model_zoo.bert()
    compiled = effc.compile(
        model, inputs, matmul_precision="medium", save_temps=tmp_path, **optimize.best_known("llvm-cpu")
    )
    assert compiled.matmul_precision == "medium"
    assert list((tmp_path / "dispatch-configs" / "sources").glob("module_*.mlir"))
    assert list((tmp_path / "dispatch-configs" / "iree").glob("configured_*.mlir"))
    script = (tmp_path / "iree-compile.sh").read_text()
    assert "--iree-global-opt-demote-contraction-inputs-type=bf16" in script and "--compile-to" not in script
    assert max(compiled.compare()) <= compiled.tolerance
