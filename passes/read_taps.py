"""`effc-read-taps`: return every transformer layer's output as extra results of a function.

READ (arXiv 2305.15348) trains a side network on the per-layer hidden states of a frozen backbone, so
the compiled backbone must hand out those states. Layers are found from the IR itself, with no
model-specific patterns, by one rule:

  The FX importer gives every op the Python call stack that created it (file:line frames). The
  layers of a transformer run the same code, so their ops carry the same (op name, call stack)
  signatures in the same order: the function body holds a tandem repeat X^L. Among the ops under
  each call-stack prefix (constants and weights, which have no operands and are hoisted by MLIR, are
  ignored), keep the ops whose signature occurs a multiple of L times (this drops work that CSE merged
  across layers, like a shared mask) and test whether the kept sequence is L copies of one block. The
  repeat covering the most ops wins (ties: more layers, then the outermost prefix).
  Layer i's output is the value that block i hands to block i+1: the block position whose value
  feeds the next block in every consecutive pair (the latest such position if several do). The last
  block's output is the value at that same position in block L.

This finds the post-LayerNorm output of BERT/MiniLM layers and the residual-stream output of pre-LN
GPT-2/LLaMA layers. The original results are left untouched and the taps are appended after them in
layer order, so a caller that reads only the first results sees the same module.
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, defaultdict
from typing import NamedTuple

from torch_mlir import ir
from torch_mlir.dialects import func

from effc.passes.base import ModulePass, PassFailure

_FRAME = re.compile(r'"([^"]*)":(\d+):\d+')

Signature = tuple[str, tuple[str, ...]]


class Repeat(NamedTuple):
    """L consecutive copies of one block of ops; `blocks[i]` lists block i's ops in order."""

    blocks: list[list[ir.Operation]]

    @property
    def layers(self) -> int:
        return len(self.blocks)


def call_stack(location: ir.Location) -> tuple[str, ...]:
    """The `file:line` frames of an importer location, outermost caller first (empty if unknown)."""
    return tuple(f"{file}:{line}" for file, line in reversed(_FRAME.findall(str(location))))


def find_repeat(body: ir.Block) -> Repeat | None:
    """The largest tandem repeat of op signatures in `body` (the module docstring's rule), or None."""
    ops = [op.operation for op in body.operations]
    ops = [op for op in ops if len(op.operands) and len(op.results) and call_stack(op.location)]
    signatures: list[Signature] = [(op.name, call_stack(op.location)) for op in ops]
    by_prefix: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, (_, stack) in enumerate(signatures):
        for depth in range(len(stack) + 1):
            by_prefix[stack[:depth]].append(index)
    best: tuple[tuple[int, int, int], list[int], int] | None = None
    for prefix, indices in by_prefix.items():
        counts = Counter(signatures[i] for i in indices)
        for layers in range(2, max(counts.values()) + 1):
            kept = [i for i in indices if counts[signatures[i]] % layers == 0]
            if not kept or len(kept) % layers:
                continue
            period = len(kept) // layers
            if any(signatures[kept[j]] != signatures[kept[j % period]] for j in range(period, len(kept))):
                continue
            rank = (len(kept), layers, -len(prefix))
            if best is None or rank > best[0]:
                best = (rank, kept, layers)
    if best is None:
        return None
    _, kept, layers = best
    period = len(kept) // layers
    return Repeat([[ops[i] for i in kept[b * period : (b + 1) * period]] for b in range(layers)])


def layer_outputs(repeat: Repeat) -> list[ir.Value] | None:
    """Each block's output value (see the module docstring), or None if no position qualifies."""
    position = {op: (b, k) for b, block in enumerate(repeat.blocks) for k, op in enumerate(block)}
    common: set[tuple[int, int]] | None = None
    for b in range(repeat.layers - 1):
        handed: set[tuple[int, int]] = set()
        for consumer in repeat.blocks[b + 1]:
            for operand in consumer.operands:
                owner = operand.owner
                if isinstance(owner, ir.Block):
                    continue
                where = position.get(owner.operation)
                if where is not None and where[0] == b:
                    handed.add((where[1], ir.OpResult(operand).result_number))
        common = handed if common is None else common & handed
    if not common:
        return None
    k, result = max(common)
    return [block[k].results[result] for block in repeat.blocks]


@dataclasses.dataclass(frozen=True)
class ReadTapsPass(ModulePass):
    name = "effc-read-taps"
    description = (
        "Append every transformer layer's output (hidden state) to the results of a function, for READ "
        "side-network training. Layers are the largest repeated block of ops, matched by the importer's "
        "call-stack locations; the original results stay first and unchanged."
    )

    function: str = dataclasses.field(default="main", metadata={"help": "the function to tap"})
    expect_layers: int = dataclasses.field(
        default=0, metadata={"help": "fail unless exactly this many layers are found (0: any number)"}
    )

    def apply(self, module: ir.Operation) -> None:
        target = self._function(module)
        body = target.regions[0].blocks[0]
        repeat = find_repeat(body)
        if repeat is None:
            raise PassFailure(
                f"effc-read-taps: no repeated layer block in @{self.function}; the rule matches ops by their "
                "importer call-stack locations, so import the model with effc and keep its locations",
                target.location,
            )
        if self.expect_layers and repeat.layers != self.expect_layers:
            raise PassFailure(
                f"effc-read-taps: found {repeat.layers} repeated layers in @{self.function}, expected "
                f"{self.expect_layers}",
                target.location,
            )
        taps = layer_outputs(repeat)
        if taps is None:
            raise PassFailure(
                f"effc-read-taps: the {repeat.layers} repeated blocks in @{self.function} hand no common "
                "value from one block to the next, so there is no layer output to tap",
                repeat.blocks[0][0].location,
            )
        old_return = body.operations[len(body.operations) - 1]
        with ir.InsertionPoint(old_return), old_return.location:
            func.ReturnOp([*old_return.operands, *taps])
        old_return.erase()
        signature = ir.FunctionType(ir.TypeAttr(target.attributes["function_type"]).value)
        new_type = ir.FunctionType.get(signature.inputs, [*signature.results, *(t.type for t in taps)])
        target.attributes["function_type"] = ir.TypeAttr.get(new_type)
        if "res_attrs" in target.attributes:
            res_attrs = list(ir.ArrayAttr(target.attributes["res_attrs"]))
            empty = ir.DictAttr.get({})
            target.attributes["res_attrs"] = ir.ArrayAttr.get(res_attrs + [empty] * len(taps))

    def _function(self, module: ir.Operation) -> ir.Operation:
        for op in module.regions[0].blocks[0].operations:
            if op.operation.name == "func.func" and ir.StringAttr(op.attributes["sym_name"]).value == self.function:
                return op.operation
        raise PassFailure(f"effc-read-taps: the module has no function @{self.function}", module.location)
