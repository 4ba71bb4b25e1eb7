"""Mutation and crossover of genomes (GEVO-ML's operators, reimplemented from its description).

Operators act on the tensor dataflow of the function body (values of `!torch.vtensor` type; scalar
and list constants are only ever drawn as operands of copies), and each one carries its repair:

* copy:    clone an op before a random position, re-draw every operand from dominating values of
           the operand's type, and rewire one later use of that type to the clone's result;
* delete:  erase an op, rewiring the uses of each result to a dominating value of the same type;
* operand: replace one operand with another dominating value of the same type;
* swap:    exchange two same-typed operands (of one op or of two), each still dominating its user;
* config:  change one compile gene (IREE options such as bf16 demotion or tile sizes).

Types must match exactly (torch value tensors carry their full static shape), so no reshapes are
synthesized. A drawn edit is applied to a copy of the parent and verified; one that fails is
dropped and re-drawn, so nothing that fails to verify reaches the compiler.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.compiler.mlir_context import new_context
from effc.search.genome import COMPILE_GENES, Edit, Genome, Program, ReplayError, apply_edit, op_id, replay, verify

OPERATORS = ("copy", "delete", "operand", "swap", "config")
MAX_TRIES = 32


def _is_tensor(value: ir.Value) -> bool:
    return str(value.type).startswith("!torch.vtensor")


def _candidates(program: Program, user: ir.Operation, type_: ir.Type, exclude: ir.Value | None = None) -> list[str]:
    return [
        ref
        for ref, value in program.values_before(user)
        if value.type == type_ and (exclude is None or value != exclude)
    ]


def _tensor_slots(program: Program) -> list[tuple[ir.Operation, int]]:
    return [(op, i) for op in program.order() for i, value in enumerate(op.operands) if _is_tensor(value)]


def _producers(program: Program) -> list[ir.Operation]:
    """Ops that may be copied or deleted: no regions, at least one tensor result."""
    return [
        op
        for op in program.order()
        if op.name != "func.return" and not len(op.regions) and any(_is_tensor(r) for r in op.results)
    ]


def draw_copy(program: Program, rng: random.Random) -> Edit | None:
    producers = _producers(program)
    order = program.order()
    if not producers:
        return None
    source = rng.choice(producers)
    position = rng.randrange(len(order))
    before = order[position]
    operands = []
    for operand in source.operands:
        pool = _candidates(program, before, operand.type)
        if not pool:
            return None
        operands.append(rng.choice(pool))
    result_type = source.results[0].type
    uses = [
        f"{op_id(op)}[{i}]"
        for op in order[position:]
        for i, value in enumerate(op.operands)
        if value.type == result_type
    ]
    if not uses:
        return None
    return Edit("copy", op_id(before), op_id(source), tuple(operands), (rng.choice(uses),))


def draw_delete(program: Program, rng: random.Random) -> Edit | None:
    used = [op for op in _producers(program) if any(list(r.uses) for r in op.results)]
    if not used:
        return None
    target = rng.choice(used)
    replacements: list[str | None] = []
    for result in target.results:
        if not list(result.uses):
            replacements.append(None)
            continue
        pool = _candidates(program, target, result.type)
        if not pool:
            return None
        replacements.append(rng.choice(pool))
    return Edit("delete", op_id(target), values=tuple(replacements))


def draw_operand(program: Program, rng: random.Random) -> Edit | None:
    slots = _tensor_slots(program)
    if not slots:
        return None
    user, index = rng.choice(slots)
    pool = _candidates(program, user, user.operands[index].type, exclude=user.operands[index])
    if not pool:
        return None
    return Edit("operand", op_id(user), values=(rng.choice(pool),), slots=(f"{op_id(user)}[{index}]",))


def draw_swap(program: Program, rng: random.Random) -> Edit | None:
    slots = _tensor_slots(program)
    if not slots:
        return None
    a, i = rng.choice(slots)
    va = a.operands[i]
    partners = [
        (b, j)
        for b, j in slots
        if b.operands[j].type == va.type
        and b.operands[j] != va
        and program.dominates(va, b)
        and program.dominates(b.operands[j], a)
    ]
    if not partners:
        return None
    b, j = rng.choice(partners)
    return Edit("swap", op_id(a), slots=(f"{op_id(a)}[{i}]", f"{op_id(b)}[{j}]"))


DRAW: dict[str, Callable[[Program, random.Random], Edit | None]] = {
    "copy": draw_copy,
    "delete": draw_delete,
    "operand": draw_operand,
    "swap": draw_swap,
}


def mutate_config(genome: Genome, rng: random.Random, target: str) -> Genome | None:
    """Move one compile gene to a different choice."""
    genes = COMPILE_GENES[target]
    gene = rng.choice(sorted(genes))
    choices = [c for c in genes[gene] if c != genome.gene(gene, target)]
    return genome.with_gene(gene, rng.choice(choices), target) if choices else None


def check_operators(operators: tuple[str, ...]) -> None:
    unknown = sorted(set(operators) - set(OPERATORS))
    if unknown or not operators:
        raise EffcError(
            f"unknown mutation operator(s) {', '.join(unknown) or '(none given)'}: choose from {', '.join(OPERATORS)}"
        )


class Mutator:
    """Draws verified single-step mutants of genomes over one original module."""

    def __init__(self, original: str, target: str = "llvm-cpu", operators: tuple[str, ...] = OPERATORS) -> None:
        check_operators(operators)
        self.original = original
        self.target = target
        self.operators = operators
        self.ctx = new_context()
        self.rejected = 0  # drawn edits dropped because the mutant did not verify

    def program(self, genome: Genome) -> Program:
        return replay(self.original, genome, self.ctx)

    def mutate(self, parent: Genome, rng: random.Random) -> Genome | None:
        """parent + one new edit (or one changed gene) that verifies; None when no draw does."""
        program: Program | None = None
        for _ in range(MAX_TRIES):
            operator = rng.choice(self.operators)
            if operator == "config":
                child = mutate_config(parent, rng, self.target)
                if child is not None:
                    return child
                continue
            if program is None:
                program = self.program(parent)
            with self.ctx:
                edit = DRAW[operator](program, rng)
            if edit is None or edit in parent.edits:
                continue
            if self._applies(program, edit):
                return parent.with_edit(edit)
            self.rejected += 1
        return None

    def _applies(self, program: Program, edit: Edit) -> bool:
        """Apply `edit` to a copy of the parent's module and verify it."""
        with self.ctx:
            trial = Program(program.module.operation.clone())
            try:
                apply_edit(trial, edit)
                verify(trial)
            except ReplayError:
                return False
        return True

    def valid(self, genome: Genome) -> bool:
        """Does the genome replay on the original and verify? (Crossover children are checked with this.)"""
        try:
            self.program(genome)
        except ReplayError:
            self.rejected += 1
            return False
        return True


def crossover(a: Genome, b: Genome, rng: random.Random, target: str) -> tuple[Genome, Genome]:
    """GEVO's messy one-point crossover: shared edits go to both children, the rest split at a random point.

    Each child keeps its edits in their parents' order (an edit that reads a copy stays after it);
    compile genes on which the parents differ are exchanged with probability 1/2 each.
    """
    shared = [e for e in a.edits if e in b.edits]
    rest = [e for e in a.edits if e not in shared] + [e for e in b.edits if e not in shared]
    moved = list(rest)
    rng.shuffle(moved)
    cut = rng.randint(0, len(moved))
    left = set(moved[:cut])
    first = tuple(shared) + tuple(e for e in rest if e in left)
    second = tuple(shared) + tuple(e for e in rest if e not in left)
    config_a, config_b = dict(a.config), dict(b.config)
    for gene in sorted(COMPILE_GENES[target]):
        if rng.random() < 0.5:
            ga, gb = config_a.pop(gene, None), config_b.pop(gene, None)
            if gb is not None:
                config_a[gene] = gb
            if ga is not None:
                config_b[gene] = ga
    return Genome(first, tuple(config_a.items())), Genome(second, tuple(config_b.items()))
