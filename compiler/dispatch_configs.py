"""Change the kernel configuration IREE picked for some dispatches, and hand it back to iree-compile.

IREE chooses tile sizes per dispatch by heuristics. On CUDA (sm_80 code, IREE 3.13) some choices are
plainly wasteful: the fused attention kernel tiles the head dimension in halves, so every workgroup
recomputes the whole Q·Kᵀ and softmax for half of the output. IREE's tuning-spec flag
(`--iree-codegen-tuning-spec-path`) is not wired into its CUDA configuration pipeline in 3.13 (the pass
runs with an empty path), so effc uses the route that is: compile once with
`--iree-hal-dump-executable-configurations-to`, edit the configured executables' `lowering_config` and
`translation_info`, and compile again with `--iree-hal-substitute-executable-configuration`.

The same route pins configurations on llvm-cpu: IREE 3.13 configures some dispatches differently from run to run,
and LLVM's x86 backend stalls on one form (`checked_configurations`).
"""

from __future__ import annotations

import functools
import math
import re
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from effc.compiler.errors import EffcError

DUMP_FLAG = "--iree-hal-dump-executable-configurations-to"
SUBSTITUTE_FLAG = "--iree-hal-substitute-executable-configuration"
SOURCES_FLAG = "--iree-hal-dump-executable-sources-to"
CONFIGURE_ONLY = "--compile-to=executable-configurations"
RECONFIGURE_ATTEMPTS = 16  # about half the attempts get the form that compiles; a stopped one costs ~0.5 s
# Whether iree-compile generates code for one dumped executable, given extra flags, in reasonable time; polling the
# callable (where given) stops it early when that returns True.
CompilesAlone = Callable[[Path, tuple[str, ...], Callable[[], bool] | None], bool]
# The root op's lowering_config: the one with workgroup tiles (an attention's nested ones carry only MMA layouts).
_ROOT_CONFIG = re.compile(r"lowering_config<\{([^}]*?\bworkgroup = [^}]*)\}")


@dataclass(frozen=True)
class ConfigEdit:
    """New values for the configuration of every dispatch whose export name matches `dispatch` (a regex).

    `lowering` maps a key of the root op's `lowering_config` (workgroup, reduction, subgroup) to the
    entries to change, by position; negative positions count from the end, so one edit fits ops of any
    rank (an attention's head dimension is at -3, a contraction's reduction step at -1). `subgroups` sets
    the subgroup count of an attention kernel's Q·Kᵀ and P·V (their `subgroup_basis`), whose
    `workgroup_size` must then be `subgroups * 32`. `promote_operands` names the root op's operands that a
    workgroup stages through shared memory (coalesced loads, reused by all its threads); IREE 3.13 gives f32
    matmuls on CUDA none, so every thread reads its operands from global memory. An edit applies only where
    `requires` matches the configuration's text, so a rule written for one code-generation pipeline leaves
    the others alone, and, with `below_workgroups`, only where IREE's tiles launch fewer workgroups than that
    (a small problem that leaves multiprocessors idle). With `every_op`, `lowering` changes each op's
    lowering_config that has the key, not only the first: on llvm-cpu a dispatch's fill and fused consumers carry
    vector tiles of their own, which must agree with the root's (positions from the start then fit them all).
    """

    dispatch: str
    lowering: dict[str, dict[int, int]] = field(default_factory=dict)
    requires: str = ""  # a regex the configuration must contain, e.g. the MMA intrinsic it was given
    workgroup_size: int | None = None
    prefetch_stages: int | None = None
    subgroups: int | None = None
    promote_operands: tuple[int, ...] | None = None
    below_workgroups: int | None = None
    every_op: bool = False


def _replace(
    text: str, pattern: str, replacement: str | Callable[[re.Match[str]], str], what: str, count: int = 1
) -> str:
    edited, found = re.subn(pattern, replacement, text, count=count)
    if found == 0:
        raise EffcError(f"cannot edit the dispatch configuration: no {what} in it (did IREE pick another pipeline?)")
    return edited


def apply_edit(configured: str, edit: ConfigEdit) -> str:
    """`configured` (one dumped executable) with `edit` applied; an error if a value to change is missing."""
    text = configured
    for key, changes in edit.lowering.items():
        # The root op's lowering_config is the one with tile sizes; nested ones (an attention's
        # decomposition_config) carry only MMA layouts. `[^}]` keeps the match inside one GPU attribute
        # (`lowering_config<{...}>`, which nests `<>`), `[^{}>]` inside one CPU attribute (`lowering_config<...>`).
        text = _replace(
            text,
            rf"(lowering_config<(?:\{{[^}}]*?|[^{{}}>]*?)\b{key} = )\[([^\]]*)\]",
            functools.partial(_entries, key=key, changes=changes),
            key,
            count=0 if edit.every_op else 1,
        )
    if edit.promote_operands is not None:
        root = _ROOT_CONFIG.search(text)
        if root is not None and "promote_operands" in root.group(1):
            raise EffcError("cannot edit the dispatch configuration: it already promotes operands (left as IREE chose)")
        promoted = f"promote_operands = [{', '.join(map(str, edit.promote_operands))}], "
        text = _replace(text, r"lowering_config<\{(?=[^}]*?\bworkgroup = )", rf"\g<0>{promoted}", "workgroup tiles")
    if edit.workgroup_size is not None:
        text = _replace(
            text,
            r"workgroup_size = \[\d+, 1, 1\]",
            f"workgroup_size = [{edit.workgroup_size}, 1, 1]",
            "1-d workgroup_size",
        )
    if edit.prefetch_stages is not None:
        text = _replace(
            text, r"prefetch_num_stages = \d+", f"prefetch_num_stages = {edit.prefetch_stages}", "prefetch_num_stages"
        )
    if edit.subgroups is not None:
        text = _replace(
            text, r"subgroup_basis = \[\[([\d, ]+)\]", lambda m: _basis(m, edit.subgroups), "subgroup_basis", 0
        )
    return text


def _entries(found: re.Match[str], key: str, changes: dict[int, int]) -> str:
    sizes = [int(size) for size in found.group(2).split(",")]
    for position, size in changes.items():
        if not -len(sizes) <= position < len(sizes):
            raise EffcError(
                f"cannot edit the dispatch configuration: no entry {position} in {key} = [{found.group(2)}]"
            )
        sizes[position] = size
    return f"{found.group(1)}[{', '.join(map(str, sizes))}]"


def _basis(found: re.Match[str], subgroups: int) -> str:
    """A subgroup_basis whose distributed dimension (its largest count) gets `subgroups`."""
    counts = [int(c) for c in found.group(1).split(",")]
    counts[counts.index(max(counts))] = subgroups
    return f"subgroup_basis = [[{', '.join(map(str, counts))}]"


def export_name(configured: str) -> str:
    """The export name that `ConfigEdit.dispatch` matches, e.g. main_dispatch_1_attention_4x16x512x64x64x512."""
    found = re.search(r"hal\.executable\.export public @([\w$.]+)", configured)
    if found is None:
        raise EffcError("not a dumped hal.executable configuration: no hal.executable.export in it")
    return found.group(1)


def executable_symbol(configured: str) -> str:
    """The `hal.executable` symbol that `--iree-hal-substitute-executable-configuration` names."""
    executable = re.search(r"hal\.executable public @([\w$.]+)", configured)
    assert executable is not None, "a dumped configuration without its hal.executable"
    return executable.group(1)


def workgroup_count(name: str, configured: str) -> float:
    """How many workgroups IREE's tiles launch: the export name carries the root op's loop ranges (matmul_MxNxK),
    its `lowering_config` one workgroup tile per loop (0: not tiled; reduction loops, which have a reduction
    tile, are not distributed). Infinite where they don't line up."""
    ranges = re.search(r"_(\d+(?:x\d+)+)(?:_|$)", name)
    root = _ROOT_CONFIG.search(configured)
    if ranges is None or root is None:
        return math.inf
    sizes = [int(r) for r in ranges.group(1).split("x")]
    lists = {
        key: [int(t) for t in found.split(",")] for key, found in re.findall(r"\b(\w+) = \[([\d, ]+)\]", root.group(1))
    }
    tiles, reduction = lists["workgroup"], lists.get("reduction", [0] * len(sizes))
    if not len(sizes) == len(tiles) == len(reduction):
        return math.inf
    return math.prod(
        -(-size // tile) for size, tile, step in zip(sizes, tiles, reduction, strict=True) if tile and not step
    )


def substitution_flags(
    dumped: Path, edits: tuple[ConfigEdit, ...], out: Path, *, strict: bool = True
) -> tuple[str, ...]:
    """Edit each configuration in `dumped` that an edit matches (the first that does), write it to `out`, and
    return the iree-compile flags that substitute it.

    Strict (a measurement of named edits): an edit that matches no dispatch, or a value a matched configuration
    lacks, is an error, since a silent no-op would be measured as if it had acted. Not strict (`-O`'s rules over
    any model): such edits are skipped.
    """
    out.mkdir(parents=True, exist_ok=True)
    flags: list[str] = []
    used: set[int] = set()
    for path in sorted(dumped.glob("configured_*.mlir")):
        configured = path.read_text()
        name = export_name(configured)
        for index, edit in enumerate(edits):
            if not re.search(edit.dispatch, name) or not re.search(edit.requires, configured):
                continue
            if edit.below_workgroups is not None and workgroup_count(name, configured) >= edit.below_workgroups:
                continue
            try:
                edited = apply_edit(configured, edit)
            except EffcError:
                if strict:
                    raise
                continue
            used.add(index)
            (out / path.name).write_text(edited)
            flags.append(f"{SUBSTITUTE_FLAG}={executable_symbol(configured)}={(out / path.name).resolve()}")
            break
    unused = [e.dispatch for i, e in enumerate(edits) if i not in used]
    if strict and unused:
        raise EffcError(f"no dispatch matches {', '.join(unused)}; dispatches are named like {name_examples(dumped)}")
    return tuple(flags)


def compile_with_edits(
    compile_with: Callable[[tuple[str, ...]], bytes],
    edits: tuple[ConfigEdit, ...],
    note: Callable[[str], None],
    keep: Path | None = None,
    *,
    compiles_alone: CompilesAlone | None = None,
) -> bytes:
    """`compile_with(extra_flags)` once; where `edits` (`-O`'s rules, lenient) change a dispatch's configuration,
    a second time with the changed ones. `keep`: where the dumped and edited configurations stay (`--save-temps`).
    With `compiles_alone` (whether iree-compile generates code for one dumped executable, given extra flags, in
    reasonable time), the first compile stops at the configurations, and those of the dispatches whose
    configuration IREE varies are checked before code is generated (`checked_configurations`).
    """
    if not edits and compiles_alone is None:
        return compile_with(())
    with tempfile.TemporaryDirectory(prefix="effc-dispatch-configs-") as scratch:
        configs = (keep or Path(scratch)) / "dispatch-configs"
        if compiles_alone is None:
            first = compile_with((f"{DUMP_FLAG}={configs / 'iree'}",))
        else:
            compile_with((CONFIGURE_ONLY, f"{DUMP_FLAG}={configs / 'iree'}", f"{SOURCES_FLAG}={configs / 'sources'}"))
        substitutions = substitution_flags(configs / "iree", edits, configs / "edited", strict=False)
        if substitutions:
            count = len(substitutions)
            note(f"kernel configuration changed for {count} dispatch{'es' * (count != 1)} (dispatch_edits)")
        if compiles_alone is not None:
            substitutions = checked_configurations(configs, compiles_alone, note)
        elif not substitutions:
            return first
        return compile_with(substitutions)


def stall_prone(configured: str) -> bool:
    """A dispatch that stores one result twice as data-tiled operands (two `linalg.pack`s, a LayerNorm feeding a bf16
    matmul and a residual): IREE 3.13's CPU configuration of it varies from run to run, and LLVM's x86 instruction
    selection spins for minutes on one of its forms (bench/perf/NOTES.md, twenty-first session)."""
    return len(re.findall(r"= linalg\.pack ", configured)) >= 2


def stalling_form(configured: str) -> bool:
    """The form of a stall-prone dispatch that LLVM spun on: its packs vectorized over several of their tiles at once
    (MiniLM's LayerNorm: 128 and 16 tiles, against 1 and none in the form that compiles in a second)."""
    steps = re.findall(r"= linalg\.pack [^\n]*vector_inner_parallel = \[([\d, ]+)\]", configured)
    return any(int(step) > 1 for found in steps for step in found.split(","))


def _dumped_in_stalling_form(folder: Path) -> bool:
    dumped = next(folder.glob("configured_*.mlir"), None)
    return dumped is not None and stalling_form(dumped.read_text())


def _checked_configuration(configured: Path, configs: Path, compiles_alone: CompilesAlone) -> Path | None:
    """A configuration of `configured`'s dispatch that compiles alone, or None (left to IREE). An edited one, or one
    not in the stalling form, is tried as it is. Otherwise its source is configured again alone, up to
    RECONFIGURE_ATTEMPTS times (IREE picks either form, alone too), each attempt stopped as soon as it dumps the
    stalling form."""
    edited = configs / "edited" / configured.name
    if edited.exists():
        return edited if compiles_alone(edited, (), None) else None
    if not stalling_form(configured.read_text()):
        return configured if compiles_alone(configured, (), None) else None
    source = configs / "sources" / configured.name.removeprefix("configured_")
    for attempt in range(RECONFIGURE_ATTEMPTS if source.exists() else 0):
        fresh = configs / "reconfigured" / f"{configured.stem}-{attempt}"
        if compiles_alone(source, (f"{DUMP_FLAG}={fresh}",), functools.partial(_dumped_in_stalling_form, fresh)):
            return next(fresh.glob("configured_*.mlir"), None)
    return None


def checked_configurations(
    configs: Path, compiles_alone: CompilesAlone, note: Callable[[str], None]
) -> tuple[str, ...]:
    """Substitution flags that fix every edited configuration and every stall-prone one that compiled alone, so that
    the compile generates code from configurations known to compile."""
    fixed = {executable_symbol(p.read_text()): p for p in (configs / "edited").glob("configured_*.mlir")}
    prone = [p for p in sorted((configs / "iree").glob("configured_*.mlir")) if stall_prone(p.read_text())]
    with ThreadPoolExecutor(max_workers=2) as pool:
        checked = list(pool.map(lambda p: _checked_configuration(p, configs, compiles_alone), prone))
    replaced = 0
    for configured, chosen in zip(prone, checked, strict=True):
        symbol = executable_symbol(configured.read_text())
        if chosen is None:
            fixed.pop(symbol, None)
            continue
        replaced += chosen.read_text() != configured.read_text()
        fixed[symbol] = chosen
    if replaced:
        note(
            f"{replaced} dispatch{'es' * (replaced != 1)} configured alone, not as in the whole module (IREE 3.13 "
            "varies such a dispatch's configuration, and LLVM's x86 backend stalls on one form; bench/perf/NOTES.md)"
        )
    return tuple(f"{SUBSTITUTE_FLAG}={symbol}={path.resolve()}" for symbol, path in sorted(fixed.items()))


def name_examples(dumped: Path) -> str:
    return (
        ", ".join(export_name(p.read_text()) for p in sorted(dumped.glob("configured_*.mlir"))[:3]) or "(none dumped)"
    )
