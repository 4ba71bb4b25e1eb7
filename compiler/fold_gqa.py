"""Grouped-query attention without repeated keys and values: each KV head serves its group's query rows.

LLaMA-family models (SmolLM2: 9 query heads, 3 KV heads) write GQA as `repeat_kv` (unsqueeze, expand,
reshape) in front of `scaled_dot_product_attention`, and the reshape materialises every KV head once per query
head of its group. IREE copies those repeats on every call, and with data tiling packs them too: in SmolLM2's
decode step at 2048 context with bf16 matmuls, the two copies per layer took 132 of 155 ms (bench/perf/NOTES.md).
Folding a group's g query heads into g query rows of their KV head computes the same attention (the same dot
products, the same softmax rows) from the caches as they are.

Only attention with one query row (a decode step) is folded: there the repeats are copies of the whole KV cache
for one row of output. With a 128-token prompt (SmolLM2 prefill) the repeats are small, and the folded graph
made IREE 3.13 reject data tiling ("operations with large vector sizes"): 190 -> 232 ms in f32.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import fx
from torch._guards import detect_fake_mode
from torch.export.graph_signature import OutputSpec, TensorArgument

_aten = torch.ops.aten
_SDPA = _aten.scaled_dot_product_attention.default
_RESHAPES = (_aten.reshape.default, _aten.view.default, _aten._unsafe_view.default)


@dataclass(frozen=True)
class _Repeat:
    """A `repeat_kv` output: `source` [B, Hkv, 1, L, d] expanded to `group` copies per KV head."""

    source: fx.Node
    group: int


def fold_repeated_kv(program: torch.export.ExportedProgram) -> tuple[torch.export.ExportedProgram, int]:
    """A copy of `program` whose one-query-row sdpa calls on repeated keys and values use the KV heads directly,
    and how many calls were folded. The original program is left as it was (it is --check's reference)."""
    graph_module = copy.deepcopy(program.graph_module)
    renamed = dict(filter(None, (_fold(graph_module.graph, node) for node in list(graph_module.graph.nodes))))
    if not renamed:
        return program, 0
    graph_module.graph.eliminate_dead_code()
    graph_module.recompile()
    signature = program.graph_signature
    outputs = [_renamed_output(spec, renamed) for spec in signature.output_specs]
    return program._update(graph_module, replace(signature, output_specs=outputs)), len(renamed)


def _renamed_output(spec: OutputSpec, renamed: dict[str, str]) -> OutputSpec:
    """The graph signature names its outputs by node: a folded sdpa that was an output is now its reshape."""
    name = getattr(spec.arg, "name", None)
    return replace(spec, arg=TensorArgument(renamed[name])) if name in renamed else spec


def _fold(graph: fx.Graph, sdpa: fx.Node) -> tuple[str, str] | None:
    """Fold one sdpa call if it attends over repeated KV heads: (its node name, its replacement's), else None."""
    if sdpa.op != "call_function" or sdpa.target is not _SDPA:
        return None
    args = _sdpa_arguments(sdpa)
    query, key, value, mask = args["query"], args["key"], args["value"], args["attn_mask"]
    if args["dropout_p"] or args["is_causal"] or args["enable_gqa"]:
        return None
    keys, values = _repeat(key), _repeat(value)
    if keys is None or values is None or keys.group != values.group or not _static(query):
        return None
    if len(_shape(query)) != 4:
        return None
    batch, heads, rows, _ = _shape(query)
    group = keys.group
    if rows != 1 or heads != _shape(keys.source)[1] * group:
        return None
    if isinstance(mask, fx.Node) and not _mask_folds(mask, heads):
        return None
    with graph.inserting_before(sdpa):
        folded_query = _call(graph, _aten.reshape.default, query, [batch, heads // group, group, -1])
        kv = [_call(graph, _aten.squeeze.dim, repeat.source, 2) for repeat in (keys, values)]
        folded_mask = _fold_mask(graph, mask, heads // group, group) if isinstance(mask, fx.Node) else mask
        out = _call(graph, _SDPA, folded_query, *kv, folded_mask, scale=args["scale"])
        result = _call(graph, _aten.reshape.default, out, [batch, heads, 1, -1])
    sdpa.replace_all_uses_with(result)
    graph.erase_node(sdpa)
    return sdpa.name, result.name


def _sdpa_arguments(sdpa: fx.Node) -> dict[str, object]:
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal")
    given = dict(zip(names, sdpa.args, strict=False)) | dict(sdpa.kwargs)
    defaults = {"attn_mask": None, "dropout_p": 0.0, "is_causal": False, "scale": None, "enable_gqa": False}
    return defaults | given


def _repeat(node: object) -> _Repeat | None:
    """The repeat_kv pattern: reshape(expand(x [B, Hkv, 1, L, d], [B, Hkv, g, L, d]), [B, Hkv*g, L, d])."""
    if not (isinstance(node, fx.Node) and node.target in _RESHAPES):
        return None
    expand = node.args[0]
    if not (isinstance(expand, fx.Node) and expand.target is _aten.expand.default):
        return None
    source = expand.args[0]
    if not (isinstance(source, fx.Node) and _static(source) and _static(expand) and _static(node)):
        return None
    before, after, out = _shape(source), _shape(expand), _shape(node)
    ok = len(before) == 5 and before[2] == 1 and after[:2] == before[:2] and after[3:] == before[3:]
    if not ok or out != (after[0], after[1] * after[2], *after[3:]):
        return None
    return _Repeat(source, after[2])


def _mask_folds(mask: fx.Node, heads: int) -> bool:
    """A static mask shared by all heads or given per query head (torch broadcasts the others the same way)."""
    return _static(mask) and len(_shape(mask)) <= 4 and _four_dims(mask)[1] in (1, heads)


def _fold_mask(graph: fx.Graph, mask: fx.Node, kv_heads: int, group: int) -> fx.Node:
    """The mask for folded query rows: one mask shared by all heads stays as it is; one per query head (one row
    each) is regrouped like the query's heads, [B, H, 1, L] -> [B, Hkv, g, L]."""
    batch, mask_heads, _, length = _four_dims(mask)
    if mask_heads == 1:
        return mask
    return _call(graph, _aten.reshape.default, mask, [batch, kv_heads, group, length])


def _four_dims(node: fx.Node) -> tuple[int, ...]:
    return (1,) * (4 - len(_shape(node))) + _shape(node)


def _call(graph: fx.Graph, target: Any, *args: object, **kwargs: object) -> fx.Node:
    """A new call with its fake-tensor value, which ExportedProgram's verifier requires of every node."""
    node = graph.call_function(target, args, kwargs)
    values = fx.node.map_arg((args, kwargs), lambda arg: arg.meta["val"])
    with detect_fake_mode(values):
        node.meta["val"] = target(*values[0], **values[1])
    return node


def _static(node: fx.Node) -> bool:
    value = node.meta.get("val")
    return isinstance(value, torch.Tensor) and all(isinstance(size, int) for size in value.shape)


def _shape(node: fx.Node) -> tuple[int, ...]:
    return tuple(node.meta["val"].shape)
