"""Genomes: lists of edits to the original torch-dialect IR, plus compile genes for IREE.

A genome never holds IR. Every candidate is rebuilt by replaying its edits, in order, on the one
original module (GEVO's contract), so any candidate can be cached by key, recombined, read and
rebuilt. Edits name operations by stable ids: each op in the function body of the original carries
a NameLoc `U<k>` (printed with the IR, so ids survive text round trips and show up as SSA names in
diffs and in IREE's diagnostics); a copy gets `<source>.c<hash of the edit>`, which is the same in
every genome that holds that edit. Values are `A<i>` (function argument i) or `U<k>#<r>` (result r),
operand slots `U<k>[<i>]`. Every random choice of a mutation, including its repairs, is resolved
into the edit, so replay is deterministic and needs no random numbers.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.compiler.mlir_context import new_context, parse_module

EDIT_KINDS = ("copy", "delete", "operand", "swap")

# Compile genes: gene -> choice -> iree-compile flags. The first choice is IREE's default.
COMPILE_GENES: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "llvm-cpu": {
        "demote": {
            "off": (),
            "bf16": (
                "--iree-global-opt-demote-contraction-inputs-type=bf16",
                "--iree-global-opt-demote-contraction-inputs-operations=all",
            ),
            "bf16-matmul": (
                "--iree-global-opt-demote-contraction-inputs-type=bf16",
                "--iree-global-opt-demote-contraction-inputs-operations=matmul",
            ),
            "f16": (
                "--iree-global-opt-demote-contraction-inputs-type=f16",
                "--iree-global-opt-demote-contraction-inputs-operations=all",
            ),
        },
        "opt-level": {"O2": (), "O1": ("--iree-opt-level=O1",), "O3": ("--iree-opt-level=O3",)},
        "data-tiling": {"on": (), "off": ("--iree-opt-data-tiling=false",)},
        "matmul-tile-bytes": {
            "default": (),
            "32K": ("--iree-llvmcpu-matmul-tile-bytes=32768",),
            "1M": ("--iree-llvmcpu-matmul-tile-bytes=1048576",),
        },
        "distribution-size": {
            "default": (),
            "16": ("--iree-llvmcpu-distribution-size=16",),
            "128": ("--iree-llvmcpu-distribution-size=128",),
        },
        "fusion": {"default": (), "aggressive": ("--iree-dispatch-creation-enable-aggressive-fusion",)},
        "fp-reassociation": {"off": (), "on": ("--iree-llvmcpu-reassociate-fp-reductions",)},
    },
    "cuda": {
        "demote": {
            "off": (),
            "bf16": (
                "--iree-global-opt-demote-contraction-inputs-type=bf16",
                "--iree-global-opt-demote-contraction-inputs-operations=all",
            ),
            "f16": (
                "--iree-global-opt-demote-contraction-inputs-type=f16",
                "--iree-global-opt-demote-contraction-inputs-operations=all",
            ),
        },
        "opt-level": {"O2": (), "O3": ("--iree-opt-level=O3",)},
        "fusion": {"default": (), "aggressive": ("--iree-dispatch-creation-enable-aggressive-fusion",)},
    },
}

_VALUE = re.compile(r"^(?:A(\d+)|([A-Za-z0-9.]+)#(\d+))$")
_SLOT = re.compile(r"^([A-Za-z0-9.]+)\[(\d+)\]$")


class ReplayError(EffcError):
    """An edit list does not apply to the original IR, or the result does not verify."""


@dataclass(frozen=True)
class Edit:
    """One mutation, every random choice (and every repair) resolved.

    copy:    clone `source` before `target`, operands = `values`, and rewire `slots[0]` to its result
    delete:  erase `target`; uses of result r go to `values[r]` (None: the result had no uses)
    operand: set operand slot `slots[0]` to `values[0]`
    swap:    exchange the values held by operand slots `slots[0]` and `slots[1]`
    """

    kind: str
    target: str
    source: str = ""
    values: tuple[str | None, ...] = ()
    slots: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "target": self.target}
        if self.source:
            data["source"] = self.source
        if self.values:
            data["values"] = list(self.values)
        if self.slots:
            data["slots"] = list(self.slots)
        return data

    @staticmethod
    def from_json(data: Any) -> Edit:
        if not isinstance(data, dict) or data.get("kind") not in EDIT_KINDS or not isinstance(data.get("target"), str):
            raise EffcError(
                f"not an edit: {json.dumps(data)[:80]} (need kind in {'/'.join(EDIT_KINDS)} and a target op id)"
            )
        values = data.get("values", [])
        slots = data.get("slots", [])
        if not (isinstance(values, list) and all(v is None or isinstance(v, str) for v in values)):
            raise EffcError(f"edit {json.dumps(data)[:80]}: 'values' must be a list of value ids")
        if not (isinstance(slots, list) and all(isinstance(s, str) for s in slots)):
            raise EffcError(f"edit {json.dumps(data)[:80]}: 'slots' must be a list of operand slots")
        return Edit(data["kind"], data["target"], str(data.get("source", "")), tuple(values), tuple(slots))

    @property
    def copy_id(self) -> str:
        """The stable id of the op a copy edit creates: the same in every genome holding this edit."""
        digest = hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()
        return f"{self.source}.c{digest[:8]}"

    def describe(self) -> str:
        """One readable line, e.g. `delete U41; its uses now read U33#0`."""
        if self.kind == "copy":
            operands = ", ".join(map(str, self.values))
            return f"copy {self.source} before {self.target} as {self.copy_id}({operands}); {self.slots[0]} reads it"
        if self.kind == "delete":
            uses = ", ".join(v for v in self.values if v)
            return f"delete {self.target}" + (f"; its uses now read {uses}" if uses else "")
        if self.kind == "operand":
            return f"operand {self.slots[0]} := {self.values[0]}"
        return f"swap operands {self.slots[0]} <-> {self.slots[1]}"


@dataclass(frozen=True)
class Genome:
    """An ordered edit list plus the non-default compile genes; `key` identifies it in the cache."""

    edits: tuple[Edit, ...] = ()
    config: tuple[tuple[str, str], ...] = ()
    key: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "config", tuple(sorted(self.config)))
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "key", hashlib.sha256(canonical.encode()).hexdigest()[:16])

    def to_json(self) -> dict[str, Any]:
        return {"edits": [e.to_json() for e in self.edits], "config": dict(self.config)}

    @staticmethod
    def from_json(data: Any, target: str = "llvm-cpu") -> Genome:
        if not isinstance(data, dict) or not isinstance(data.get("edits", []), list):
            raise EffcError('a genome is a JSON object {"edits": [...], "config": {...}}')
        config = data.get("config", {})
        if not isinstance(config, dict):
            raise EffcError('genome \'config\' must be an object of compile genes, e.g. {"demote": "bf16"}')
        genes = COMPILE_GENES[target]
        for gene, choice in config.items():
            if gene not in genes or not isinstance(choice, str) or choice not in genes[gene]:
                known = ", ".join(f"{g}={'|'.join(c)}" for g, c in genes.items())
                raise EffcError(f"unknown compile gene {gene}={choice} for {target}; known: {known}")
        return Genome(tuple(Edit.from_json(e) for e in data.get("edits", [])), tuple(config.items())).normalized(target)

    def normalized(self, target: str) -> Genome:
        """Drop genes set to IREE's default, so equal configurations share one key."""
        genes = COMPILE_GENES[target]
        kept = tuple((g, c) for g, c in self.config if c != next(iter(genes[g])))
        return self if kept == self.config else Genome(self.edits, kept)

    def gene(self, name: str, target: str) -> str:
        return dict(self.config).get(name, next(iter(COMPILE_GENES[target][name])))

    def with_gene(self, name: str, choice: str, target: str) -> Genome:
        config = dict(self.config)
        config[name] = choice
        return Genome(self.edits, tuple(config.items())).normalized(target)

    def with_edit(self, edit: Edit) -> Genome:
        return replace(self, edits=(*self.edits, edit))

    def flags(self, target: str) -> list[str]:
        """The iree-compile flags the compile genes select."""
        return [flag for gene, choice in self.config for flag in COMPILE_GENES[target][gene][choice]]


class Program:
    """A parsed candidate: the function body of a module, with ops and values addressable by id."""

    def __init__(self, module: ir.Module | ir.OpView) -> None:
        self.module = module
        funcs = [op for op in module.body.operations if op.operation.name == "func.func"]
        if len(funcs) != 1:
            raise EffcError(f"the search expects one func.func in the module, found {len(funcs)}")
        self.block = funcs[0].regions[0].blocks[0]
        self.ops: dict[str, ir.Operation] = {}
        for op in self.block.operations:
            self.ops[op_id(op.operation)] = op.operation

    def order(self) -> list[ir.Operation]:
        return [op.operation for op in self.block.operations]

    def value(self, ref: str) -> ir.Value:
        match = _VALUE.match(ref)
        if not match:
            raise ReplayError(f"'{ref}' is not a value id (A<i> or <op>#<result>)")
        if match.group(1) is not None:
            index = int(match.group(1))
            if index >= len(self.block.arguments):
                raise ReplayError(f"value {ref}: the function has {len(self.block.arguments)} arguments")
            return self.block.arguments[index]
        op = self.op(match.group(2))
        index = int(match.group(3))
        if index >= len(op.results):
            raise ReplayError(f"value {ref}: {match.group(2)} has {len(op.results)} results")
        return op.results[index]

    def op(self, uid: str) -> ir.Operation:
        if uid not in self.ops:
            raise ReplayError(f"op {uid} is not in the candidate (deleted, or never created by an earlier edit)")
        return self.ops[uid]

    def slot(self, ref: str) -> tuple[ir.Operation, int]:
        match = _SLOT.match(ref)
        if not match:
            raise ReplayError(f"'{ref}' is not an operand slot (<op>[<i>])")
        op = self.op(match.group(1))
        index = int(match.group(2))
        if index >= len(op.operands):
            raise ReplayError(f"slot {ref}: {match.group(1)} has {len(op.operands)} operands")
        return op, index

    def dominates(self, value: ir.Value, user: ir.Operation) -> bool:
        """Straight-line function body: arguments dominate everything, results what comes after their op."""
        owner = value.owner
        if isinstance(owner, ir.Block):
            return True
        producer = owner.operation
        return producer != user and producer.is_before_in_block(user)

    def values_before(self, user: ir.Operation) -> Iterator[tuple[str, ir.Value]]:
        """(id, value) of every value that dominates `user`, in program order."""
        for i, arg in enumerate(self.block.arguments):
            yield f"A{i}", arg
        for op in self.order():
            if op == user:
                return
            uid = op_id(op)
            for r, result in enumerate(op.results):
                yield f"{uid}#{r}", result


def op_id(op: ir.Operation) -> str:
    location = op.location
    return location.name_str if isinstance(location, ir.NameLoc) else ""


def annotate(mlir_text: str) -> str:
    """The original IR with a stable id (NameLoc `U<k>`) on every op of the function body."""
    ctx = new_context()
    module = parse_module(mlir_text, ctx, source="original")
    with ctx:
        program = Program(module)
        for k, op in enumerate(program.order()):
            op.location = ir.Location.name(f"U{k}")
        return module.operation.get_asm(enable_debug_info=True)


def apply_edit(program: Program, edit: Edit) -> None:
    """Apply one edit in place; a reference that does not resolve, a type or dominance mismatch raises."""
    if edit.kind == "copy":
        _apply_copy(program, edit)
    elif edit.kind == "delete":
        _apply_delete(program, edit)
    elif edit.kind == "operand":
        if len(edit.slots) != 1 or len(edit.values) != 1 or edit.values[0] is None:
            raise ReplayError(f"operand edit needs one slot and one value: {edit.to_json()}")
        user, index = program.slot(edit.slots[0])
        _set_operand(program, user, index, program.value(edit.values[0]), edit)
    elif edit.kind == "swap":
        if len(edit.slots) != 2:
            raise ReplayError(f"swap edit needs two slots: {edit.to_json()}")
        (a, i), (b, j) = program.slot(edit.slots[0]), program.slot(edit.slots[1])
        va, vb = a.operands[i], b.operands[j]
        _set_operand(program, a, i, vb, edit)
        _set_operand(program, b, j, va, edit)
    else:
        raise ReplayError(f"unknown edit kind '{edit.kind}'")


def _set_operand(program: Program, user: ir.Operation, index: int, value: ir.Value, edit: Edit) -> None:
    if value.type != user.operands[index].type:
        raise ReplayError(f"{edit.describe()}: type {value.type} does not match {user.operands[index].type}")
    if not program.dominates(value, user):
        raise ReplayError(f"{edit.describe()}: the value does not dominate {op_id(user)}")
    user.operands[index] = value


def _apply_copy(program: Program, edit: Edit) -> None:
    source, before = program.op(edit.source), program.op(edit.target)
    new_id = edit.copy_id
    if new_id in program.ops:
        raise ReplayError(f"{edit.describe()}: the genome holds this copy twice")
    if len(edit.values) != len(source.operands) or len(edit.slots) != 1 or len(source.regions):
        raise ReplayError(f"{edit.describe()}: does not match {edit.source} ({len(source.operands)} operands)")
    operands = [program.value(ref) for ref in edit.values if ref is not None]
    if len(operands) != len(source.operands):
        raise ReplayError(f"{edit.describe()}: every operand of the copy needs a value")
    for value, original in zip(operands, source.operands, strict=True):
        if value.type != original.type or not program.dominates(value, before):
            raise ReplayError(f"{edit.describe()}: operand {value.get_name()} has the wrong type or does not dominate")
    clone = source.clone(ip=ir.InsertionPoint(before))
    clone.location = ir.Location.name(new_id)
    program.ops[new_id] = clone
    for i, value in enumerate(operands):
        clone.operands[i] = value
    user, index = program.slot(edit.slots[0])
    _set_operand(program, user, index, clone.results[0], edit)


def _apply_delete(program: Program, edit: Edit) -> None:
    target = program.op(edit.target)
    if target.name == "func.return" or len(edit.values) != len(target.results):
        raise ReplayError(f"{edit.describe()}: {edit.target} has {len(target.results)} results")
    for result, ref in zip(target.results, edit.values, strict=True):
        if ref is None:
            if list(result.uses):
                raise ReplayError(f"{edit.describe()}: a result of {edit.target} is used but has no replacement")
            continue
        value = program.value(ref)
        if value.type != result.type or not program.dominates(value, target):
            raise ReplayError(f"{edit.describe()}: {ref} has the wrong type or does not dominate {edit.target}")
        result.replace_all_uses_with(value)
    del program.ops[edit.target]
    target.erase()


def verify(program: Program) -> None:
    """MLIR's verifier on the whole module; the first diagnostic becomes the error."""
    try:
        program.module.operation.verify()
    except ir.MLIRError as err:
        first = err.error_diagnostics[0].message if err.error_diagnostics else str(err).splitlines()[0]
        raise ReplayError(f"the candidate does not verify: {first}") from None


def replay(original: str, genome: Genome, ctx: ir.Context | None = None) -> Program:
    """Rebuild a candidate from the annotated original by applying its edits in order, then verify."""
    ctx = ctx or new_context()
    module = parse_module(original, ctx, source="original")
    with ctx:
        program = Program(module)
        for edit in genome.edits:
            apply_edit(program, edit)
        verify(program)
    return program


def candidate_text(program: Program) -> str:
    """The candidate as iree-compile input (keeps the ids as locations, so IREE's errors name them)."""
    return program.module.operation.get_asm(enable_debug_info=True, assume_verified=True)


def readable_text(program: Program) -> str:
    """The function body with ids as SSA names and weights elided: what a person diffs."""
    text = program.module.operation.get_asm(use_name_loc_as_prefix=True, large_elements_limit=16, assume_verified=True)
    return text.split("\n{-#", 1)[0]
