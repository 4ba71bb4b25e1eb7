"""`effc.compile`: the Python API behind `effc compile`.

model → torch.export → torch-mlir (torch dialect) → effc pass pipeline → IREE → .vmfb, returning a
`CompiledModel` that can run, compare itself with torch, and save atomically.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from effc.compiler.dispatch_configs import ConfigEdit, compile_with_edits
from effc.compiler.errors import EffcError
from effc.compiler.fileio import write_atomic
from effc.compiler.importer import Attention, import_model, resolve_attention
from effc.compiler.input_spec import InputSpec, parse_input_spec
from effc.compiler.iree_backend import (
    BF16_DEMOTION_FLAG,
    DEFAULT_CUDA_ARCH,
    RUNTIME_DEVICE,
    check_target,
    compile_mlir,
    executable_compiles,
)
from effc.compiler.loader import LoadedModel, load_model
from effc.compiler.optimize import (
    CHECK_TOLERANCE,
    DEMOTION_IGNORED_AT,
    DISPATCH_CREATION_DATA_TILING,
    GLOBAL_OPT_DATA_TILING,
    MatmulPrecision,
    for_one_row_matmuls,
    precision_fallback_flags,
    precision_flags,
    with_precision_flags,
    with_precision_passes,
)
from effc.compiler.parameters import externalize, write_archive
from effc.compiler.progress import Stages
from effc.runtime.runner import relative_error, run_vmfb

Emit = Literal["torch", "linalg", "vmfb"]


@dataclass
class CompiledModel:
    """The result of a compile: IR text, the .vmfb bytes, and the torch model it came from."""

    name: str
    target: str
    mlir: str
    vmfb: bytes | None
    example_inputs: tuple[torch.Tensor, ...]
    reference: torch.nn.Module | None = field(repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    parameters: Path | None = None
    notes: list[str] = field(default_factory=list)
    matmul_precision: MatmulPrecision = "highest"

    @property
    def tolerance(self) -> float:
        """The largest relative error against torch eager that this module's precision allows."""
        return CHECK_TOLERANCE[self.matmul_precision]

    @property
    def device(self) -> str:
        return RUNTIME_DEVICE[self.target]

    def numpy_inputs(self) -> list[np.ndarray]:
        return [t.detach().numpy() for t in self.example_inputs]

    def run(self, *inputs: np.ndarray | torch.Tensor, device: str | None = None) -> list[np.ndarray]:
        """Run the compiled `main` (on the example inputs when none are given)."""
        if self.vmfb is None:
            raise EffcError(f"'{self.name}' was compiled with emit != vmfb; there is no module to run")
        arrays = [np.asarray(x.detach().numpy() if isinstance(x, torch.Tensor) else x) for x in inputs]
        return run_vmfb(
            self.vmfb, arrays or self.numpy_inputs(), device=device or self.device, parameters=self.parameters
        )

    def reference_outputs(self, *inputs: torch.Tensor) -> list[np.ndarray]:
        """torch eager outputs on the same inputs, flattened like the compiled module's results."""
        if self.reference is None:
            raise EffcError(f"'{self.name}' came from MLIR text; there is no torch model to compare with")
        with torch.no_grad():
            out = self.reference(*(inputs or self.example_inputs))
        flat = torch.utils._pytree.tree_leaves(out)
        return [t.detach().numpy() for t in flat if isinstance(t, torch.Tensor)]

    def argument_shapes(self) -> list[tuple[int, ...]] | None:
        """The static shapes of `main`'s arguments in the torch-dialect module (None where any is dynamic or the
        module is not in the torch dialect)."""
        signature = re.search(r"func\.func @main\(([^)]*)\)", self.mlir)
        shapes = re.findall(r"!torch\.vtensor<\[([\d,]*)\]", signature.group(1)) if signature else []
        if not signature or len(shapes) != signature.group(1).count("!torch.vtensor"):
            return None
        return [tuple(int(d) for d in shape.split(",") if d) for shape in shapes]

    def changed_arguments(self) -> list[str]:
        """`main`'s arguments whose shape a pass changed (effc-chai's shrink-io narrows KV caches), as "argument N
        [model's shape] -> [module's shape]": the example inputs do not fit those."""
        shapes = self.argument_shapes()
        if shapes is None or len(shapes) != len(self.example_inputs):
            return []
        given = [tuple(t.shape) for t in self.example_inputs]
        return [
            f"argument {i} [{','.join(map(str, g))}] -> [{','.join(map(str, m))}]"
            for i, (g, m) in enumerate(zip(given, shapes, strict=True))
            if g != m
        ]

    def compare(self) -> list[float]:
        """Relative error of each output against torch eager on the example inputs."""
        changed = self.changed_arguments()
        if changed:
            raise EffcError(
                f"cannot check '{self.name}' against torch eager: a pass changed main's inputs "
                f"({', '.join(changed)}; effc-chai's shrink-io narrows KV caches); drop --check, or measure CHAI's "
                "accuracy with 'effc chai calibrate' / 'effc chai report'"
            )
        ours = self.run()
        theirs = self.reference_outputs()
        if len(ours) != len(theirs):
            raise EffcError(f"compiled module returned {len(ours)} outputs, torch returned {len(theirs)}")
        return [relative_error(a, e) for a, e in zip(ours, theirs, strict=True)]

    def save(self, path: str | Path) -> Path:
        """Write the .vmfb (or the MLIR text when no module was built) atomically."""
        return write_atomic(path, self.vmfb if self.vmfb is not None else self.mlir)


def note_weight_rewrites(module: Any, stages: Stages) -> tuple[bool, bool]:
    """Note what the bf16-weight and bf16-split passes changed, as their reports say; whether each acted.

    Both act only on matmuls by suitable operands, so a user who asked for them is told how many they took.
    """
    from effc.passes import narrow_weights, split_bf16
    from effc.passes.site_rewrites import acted_report

    narrowed = acted_report(module.operation, narrow_weights.REPORT_ATTRIBUTE)
    if narrowed:
        stages.note(f"effc-narrow-weights: {narrowed}")
    split = acted_report(module.operation, split_bf16.REPORT_ATTRIBUTE)
    if split:
        stages.note(f"effc-split-bf16: {split}")
    return bool(narrowed), bool(split)


def effc_kernel_passes(module: Any, stages: Stages) -> list[str]:
    """The passes that put effc's own kernels (IREE custom dispatches) into `module`, each noted with its report."""
    from effc.passes import hopper_kernels, vnni_matmul
    from effc.passes.site_rewrites import acted_report

    found = []
    for name, attributes in (
        ("effc-vnni-matmul", (vnni_matmul.REPORT_ATTRIBUTE,)),
        ("effc-hopper-kernels", (hopper_kernels.LINEAR_REPORT, hopper_kernels.ATTENTION_REPORT)),
    ):
        reports = [report for attribute in attributes if (report := acted_report(module.operation, attribute))]
        if reports:
            stages.note(f"{name}: {'; '.join(reports)}")
            found.append(name)
    return found


def compile_model(
    model: Any,
    example_inputs: Any = None,
    *,
    inputs: tuple[str | InputSpec, ...] = (),
    pipeline: str | None = None,
    target: str = "llvm-cpu",
    cuda_arch: str = DEFAULT_CUDA_ARCH,
    attention: Attention = "auto",
    fold_gqa: bool = False,
    key_multiple: int = 1,
    emit: Emit = "vmfb",
    iree_flags: tuple[str, ...] = (),
    optional_iree_flags: tuple[str, ...] = (),
    matmul_precision: MatmulPrecision = "highest",
    dispatch_edits: tuple[ConfigEdit, ...] = (),
    parameters: str | Path | None = None,
    save_temps: str | Path | None = None,
    trust_pickle: bool = False,
    progress: bool = False,
    print_ir_after_all: bool = False,
    print_ir_after_change: bool = False,
) -> CompiledModel:
    """Compile `model` (a module, ExportedProgram, LoadedModel or MODEL spec string) for `target`.

    With `parameters`, weights go to that IREE parameter archive instead of into the module.
    `fold_gqa` imports attention over repeated KV heads (LLaMA's repeat_kv) with the KV heads unrepeated, where
    attention is decomposed and no pass of `pipeline` reads attention per query head (fold_gqa.py). `key_multiple`
    pads the keys of attention over more keys than queries (a decode step) to a multiple of it, masked out.
    `optional_iree_flags` are tried first and dropped, with a note, if iree-compile fails with them (`-O`
    uses this for options that IREE cannot apply to every graph). `matmul_precision="medium"` rounds contraction
    inputs to bf16 with f32 accumulation (torch.set_float32_matmul_precision's name), through optional flags:
    where IREE rejects them the module stays f32, with a note. `matmul_precision="int8"` quantizes the matmuls by
    constant weights (`effc-quantize-dynamic`, run after `pipeline`). `dispatch_edits` change the kernel configuration
    IREE picks for the dispatches they match (`-O` on CUDA uses them); edits that match none, or whose values a
    dispatch's configuration lacks, are skipped.
    """
    check_target(target)
    specs = tuple(parse_input_spec(s) if isinstance(s, str) else s for s in inputs)
    stages = Stages(enabled=progress)
    flags = resolve_iree_flags(target, matmul_precision, iree_flags, optional_iree_flags, stages)
    # effc's kernels are IREE custom dispatches, which torch-mlir's linalg pipeline cannot lower.
    pipeline = with_precision_passes(pipeline, matmul_precision, target, for_iree=emit != "linalg")
    temps = Path(save_temps) if save_temps is not None else None
    if temps is not None:
        temps.mkdir(parents=True, exist_ok=True)
    with stages.stage("load model"):
        loaded = _as_loaded(model, example_inputs, trust_pickle=trust_pickle)
    with stages.stage("export and import to torch-mlir"):
        fold_gqa = fold_gqa and fold_allowed(pipeline, stages)
        imported = import_model(
            loaded,
            specs,
            attention=resolve_attention(attention, target, loaded),
            fold_gqa=fold_gqa,
            key_multiple=key_multiple,
        )
        if note := imported.padding_note():
            stages.note(note)
        if temps is not None:
            (temps / "01-imported.mlir").write_text(str(imported.module))
    if pipeline:
        from effc.passes import run as run_pipeline

        with stages.stage("effc pass pipeline"):
            run_pipeline(
                imported.module,
                pipeline,
                print_ir_after_all=print_ir_after_all,
                print_ir_after_change=print_ir_after_change,
            )
    narrowed, split = note_weight_rewrites(imported.module, stages)
    if split and emit == "linalg":
        raise EffcError(
            "effc-split-bf16 masks bits with aten.view.dtype, which IREE's torch input lowers and torch-mlir's "
            "linalg pipeline does not: emit a vmfb (or mlir), or drop matmul precision 'high'"
        )
    kernel_passes = effc_kernel_passes(imported.module, stages)
    if emit == "linalg" and kernel_passes:
        raise EffcError(
            f"{kernel_passes[0]}'s kernels are IREE custom dispatches, which torch-mlir's linalg pipeline cannot "
            f"lower: emit a vmfb (or mlir), or drop {kernel_passes[0]} from the pipeline"
        )
    if emit == "linalg":
        from torch_mlir.compiler_utils import run_pipeline_with_repro_report

        from effc.passes.lower import LowerToLinalgPass

        with stages.stage("lower to linalg-on-tensors"):
            linalg = f"builtin.module({LowerToLinalgPass().upstream_pipeline()})"
            run_pipeline_with_repro_report(imported.module, linalg, "Lowering Torch Backend IR -> Linalg")
    mlir = str(imported.module)
    if temps is not None:
        (temps / "02-after-passes.mlir").write_text(mlir)
    vmfb = None
    archive = Path(parameters) if parameters is not None else None
    demotion = flags.demotion
    ignored = [what for what, given in (("parameters", archive), ("matmul precision 'medium'", demotion)) if given]
    if emit != "vmfb" and ignored:
        stages.note(f"{' and '.join(ignored)} act in iree-compile: not applied with emit='{emit}'")
    if emit == "vmfb":
        with stages.stage(f"IREE compile for {target}"):
            external = externalize(mlir) if archive is not None else None
            text = external.text if external else mlir
            vmfb, demotion = iree_compile(
                text, imported.module, flags, cuda_arch=cuda_arch, dispatch_edits=dispatch_edits, save_temps=temps
            )
        if external is not None and archive is not None:
            with stages.stage("write parameter archive"):
                write_archive(external.parameters, archive)
    return CompiledModel(
        loaded.name,
        target,
        mlir,
        vmfb,
        imported.example_inputs,
        imported.reference,
        dict(stages.timings),
        archive if vmfb is not None else None,
        stages.notes,
        _compiled_precision(
            matmul_precision, demoted=bool(demotion) and emit == "vmfb", narrowed=narrowed, split=split
        ),
    )


def _compiled_precision(requested: MatmulPrecision, *, demoted: bool, narrowed: bool, split: bool) -> MatmulPrecision:
    """The precision a module got: "medium" is "highest" where neither IREE's demotion nor effc-narrow-weights
    acted, "high" where effc-split-bf16 did not, and a pass of one's own pipeline that rounds makes "highest" what
    it does (weights stored in bf16 or f16 "medium", matmuls split into bf16 pieces "high"), so that `--check`
    allows for the rounding."""
    if narrowed:
        return "medium" if requested in ("highest", "high") else requested
    if requested in ("highest", "high"):
        return "high" if split else "highest"
    return "highest" if requested == "medium" and not demoted else requested


def _without_demotion_blockers(
    iree_flags: tuple[str, ...], optional_iree_flags: tuple[str, ...], stages: Stages
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Flags under which IREE would silently ignore the bf16 demotion: an error if the user gave them,
    dropped with a note if `-O` chose them."""
    given = [flag for flag in iree_flags if flag in DEMOTION_IGNORED_AT]
    if given:
        raise EffcError(
            f"matmul precision 'medium' has no effect with {given[0]}: IREE 3.13 ignores contraction demotion at "
            "O2 and O3; drop one of them"
        )
    dropped = [flag for flag in optional_iree_flags if flag in DEMOTION_IGNORED_AT]
    if dropped:
        stages.note(f"{' '.join(dropped)} dropped: IREE 3.13 ignores matmul precision 'medium' with it")
    return iree_flags, tuple(flag for flag in optional_iree_flags if flag not in dropped)


@dataclass(frozen=True)
class IreeFlags:
    """iree-compile's flags for one compile, as effc's policy resolves them for a target and matmul precision."""

    target: str
    matmul_precision: MatmulPrecision
    required: tuple[str, ...]  # the user's, and -O's that every graph takes
    optional: tuple[str, ...]  # dropped, with a note, where iree-compile rejects them (-O's data tiling, precision's)
    precision: tuple[str, ...]  # what the precision adds (among `optional`)
    demotion: tuple[str, ...]  # "medium"'s bf16 demotion flags, where it has them
    stages: Stages  # where the compile's notes go: which flags fell away, and why


def resolve_iree_flags(
    target: str,
    matmul_precision: MatmulPrecision,
    iree_flags: tuple[str, ...],
    optional_iree_flags: tuple[str, ...],
    stages: Stages,
) -> IreeFlags:
    """The flags for `matmul_precision` on `target` beside the given ones, with a note (or error) where they clash."""
    precision = precision_flags(target, matmul_precision, stages.note)
    demotion = precision if matmul_precision == "medium" else ()
    if demotion:
        iree_flags, optional_iree_flags = _without_demotion_blockers(iree_flags, optional_iree_flags, stages)
    optional = with_precision_flags(optional_iree_flags, precision)
    return IreeFlags(target, matmul_precision, iree_flags, optional, precision, demotion, stages)


def iree_compile(
    text: str,
    module: Any,
    flags: IreeFlags,
    *,
    cuda_arch: str = DEFAULT_CUDA_ARCH,
    dispatch_edits: tuple[ConfigEdit, ...] = (),
    extra_flags: tuple[str, ...] = (),
    save_temps: Path | None = None,
    before_each: Callable[[], None] | None = None,
) -> tuple[bytes, tuple[str, ...]]:
    """`text` (the MLIR of `module`, possibly with its weights external) compiled by IREE under effc's policy: the
    optional flags that can pay on `module`, dropped or replaced by the precision's fallback where IREE rejects them,
    then `dispatch_edits` (a second compile where they match). `before_each` runs before every iree-compile (to clear
    what an earlier attempt dumped). Returns the module and the demotion flags that took effect."""
    from effc.passes.matmul_weights import weight_matmul_rows
    from effc.passes.split_concat_matmul import k_sliced_batch_matmuls
    from effc.passes.vnni_matmul import kernel_call_rows

    optional = flags.optional
    # IREE's int8 matmuls data-tile to pay; f32, bf16 and int8 on effc's kernel (which IREE does not tile) only where a
    # weight matmul has more than one row: a decode step reads its weights and KV cache once, where packing reads twice.
    kernel_rows = kernel_call_rows(module.operation)
    if not flags.precision or kernel_rows or flags.demotion:
        rows = weight_matmul_rows(module.operation) + kernel_rows
        optional = for_one_row_matmuls(optional, flags.target, rows, flags.stages.note)
    demotion = flags.demotion if set(flags.demotion) <= set(optional) else ()
    if demotion and DISPATCH_CREATION_DATA_TILING in optional and k_sliced_batch_matmuls(module.operation):
        optional = tuple(GLOBAL_OPT_DATA_TILING if flag == DISPATCH_CREATION_DATA_TILING else flag for flag in optional)
        flags.stages.note(
            f"{GLOBAL_OPT_DATA_TILING} instead of {DISPATCH_CREATION_DATA_TILING}: IREE 3.13 computes bf16 batch "
            "matmuls of 3, 6 or 7 rows whose first operand is sliced along k wrongly under the latter"
        )

    def with_flags(chosen: tuple[str, ...]) -> bytes:
        def run(extra: tuple[str, ...]) -> bytes:
            if before_each is not None:
                before_each()
            return compile_mlir(
                text,
                target=flags.target,
                cuda_arch=cuda_arch,
                extra_flags=[*chosen, *extra_flags, *extra],
                save_temps=save_temps,
                note=flags.stages.note,
            )

        # With bf16 demotion on llvm-cpu, IREE 3.13 configures some dispatches differently from run to run, and LLVM
        # stalls on one form: configure first, check those dispatches alone (bench/perf/NOTES.md).
        checks = None
        if flags.target == "llvm-cpu" and BF16_DEMOTION_FLAG in chosen:
            checks = functools.partial(executable_compiles, flags=(*chosen, *extra_flags))
        return compile_with_edits(run, dispatch_edits, flags.stages.note, save_temps, compiles_alone=checks)

    fallback = precision_fallback_flags(flags.target, flags.matmul_precision)
    return _compile_with_optional_flags(with_flags, flags.required, optional, demotion, flags.stages, fallback)


def _compile_with_optional_flags(
    compile_with: Callable[[tuple[str, ...]], bytes],
    flags: tuple[str, ...],
    optional_flags: tuple[str, ...],
    demotion: tuple[str, ...],
    stages: Stages,
    demotion_fallback: tuple[str, ...] = (),
) -> tuple[bytes, tuple[str, ...]]:
    """`compile_with` the optional flags; where iree-compile rejects them, with `demotion_fallback` instead (if any),
    else without them, each time with a note. Also returns the demotion flags that took effect."""
    try:
        return compile_with((*flags, *optional_flags)), demotion
    except EffcError as err:
        if not optional_flags:
            raise
        failed = f"iree-compile failed with {' '.join(optional_flags)} ({err.message})"
    if demotion_fallback:
        try:
            module = compile_with((*flags, *demotion_fallback))
        except EffcError:
            pass
        else:
            stages.note(f"{failed}; compiled with {' '.join(demotion_fallback)} instead")
            return module, demotion_fallback
    stages.note(
        f"{failed}; compiled without them" + (", so matmul precision stays 'highest' (f32)" if demotion else "")
    )
    return compile_with(flags), ()


def fold_allowed(pipeline: str | None, stages: Stages) -> bool:
    """False, with a note, where a pass of `pipeline` reads attention per query head (CHAI): it needs them unfolded."""
    if not pipeline:
        return True
    from effc.passes.pipeline import passes_in
    from effc.passes.registry import get_pass, pass_names

    effc_passes = [name for name in passes_in(pipeline) if name in pass_names()]
    readers = [name for name in effc_passes if get_pass(name).reads_query_heads]
    if readers:
        stages.note(f"grouped-query attention left unfolded: {readers[0]} reads attention per query head")
    return not readers


def _as_loaded(model: Any, example_inputs: Any, *, trust_pickle: bool) -> LoadedModel:
    if isinstance(model, LoadedModel):
        loaded = model
    elif isinstance(model, (str, Path)):
        loaded = load_model(str(model), trust_pickle=trust_pickle)
    elif isinstance(model, torch.export.ExportedProgram):
        loaded = LoadedModel("main", program=model)
    elif isinstance(model, torch.nn.Module):
        loaded = LoadedModel(type(model).__name__, module=model.eval())
    else:
        raise EffcError(
            f"cannot compile a {type(model).__name__}; pass a torch.nn.Module, an ExportedProgram or a MODEL spec"
        )
    if example_inputs is not None:
        loaded.example_inputs = (example_inputs,) if isinstance(example_inputs, torch.Tensor) else tuple(example_inputs)
    return loaded
