"""`effc-chai`: clustered head attention (CHAI) as a rewrite of torch-dialect attention.

Per attention layer, in program order (layer i of the plan = the i-th attention of each function):

* `scaled_dot_product_attention` (kept whole by `--attention fused`) becomes, per cluster size m,
  one sdpa over the representatives' Q and K with the V of each cluster's m members concatenated
  along the feature axis, split back per head. That equals sharing the representative's
  probabilities exactly and keeps the fused kernel.
* the matmul → scale → mask → softmax → matmul chain (`--attention decomposed`, or a model's own
  eager attention) computes scores and softmax for the representatives only; an index_select shares
  each representative's probabilities with its cluster before the product with every head's own V.

Q and K are narrowed back to the projection weights (`chai_narrow`), so the Q/K projections shrink
to the representatives' rows and, for grouped-query models, to the KV heads still needed. With
`shrink-io`, function arguments and results that carry only K (a KV cache) shrink too.

`mode=online` recomputes membership per request inside the graph from the first `online-tokens`
tokens (the plan gives only the cluster counts); it calls `chai_reference.online_membership`,
exported from PyTorch. `method=meanpool` is the training-free GQA baseline at the plan's K budget.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass
from effc.passes.chai_narrow import (
    VIEW_OPS,
    Builder,
    HeadMap,
    Layout,
    Narrower,
    TensorType,
    constant_bool,
    constant_int,
    constant_int_list,
    constant_number,
    erase_dead_ops,
    is_none,
    pad_keeps_axis,
    producer,
    tensor_type,
)
from effc.passes.chai_plan import ChaiPlan, LayerPlan, LayerShape, load_plan
from effc.passes.chai_reference import meanpool_groups

SDPA = "torch.aten.scaled_dot_product_attention"
REPORT_ATTRIBUTE = "effc.chai"


# --- finding attention ----------------------------------------------------------------------------


@dataclass
class Site:
    """One attention in a function: an sdpa op, or a softmax chain identified by its probabilities."""

    kind: Literal["sdpa", "matmul"]
    anchor: ir.Operation
    function: str
    shape: LayerShape
    q: ir.Value | None
    k: ir.Value | None
    scale: float | None
    probs: ir.Value | None = None
    # matmul form: the probabilities-times-V matmul, V as [B, H, Tk, dv] and the output as [B, H, Tq, dv]
    pv: ir.Operation | None = None
    values: ir.Value | None = None
    output: ir.Value | None = None
    # matmul form: the ops stepped over from the probabilities back to the score matmul, in that order: casts
    # and guards around the softmax and its last op, then the score path (scaling, masks, casts, views)
    softmax_ops: tuple[ir.Operation, ...] = ()
    score_ops: tuple[ir.Operation, ...] = ()


def _rank(value: ir.Value) -> int:
    t = tensor_type(value)
    return -1 if t is None else len(t.shape)


def _kv_heads(k: ir.Value, heads: int) -> int:
    """KV heads behind a K of `heads` heads: fewer when it is repeat_kv's view(broadcast(unsqueeze)).

    Casts in front are skipped (torch's sdpa decomposition upcasts f16/bf16 K to f32 after repeat_kv), and so is
    padding along the sequence (a decode step's keys padded at import).
    """
    view = producer(k)
    while view is not None and (view.name == "torch.aten.to.dtype" or pad_keeps_axis(view, 1)):
        view = producer(view.operands[0])
    if view is None or view.name not in VIEW_OPS:
        return heads
    expand = producer(view.operands[0])
    if expand is None or expand.name not in ("torch.aten.broadcast_to", "torch.aten.expand"):
        return heads
    unsqueeze = producer(expand.operands[0])
    if unsqueeze is None or unsqueeze.name != "torch.aten.unsqueeze":
        return heads
    source = tensor_type(unsqueeze.operands[0])
    return source.shape[1] if source is not None and len(source.shape) == 4 else heads


def _last_axis(value: ir.Value, dims: list[int] | None) -> bool:
    """`dims` names only the last axis of `value`."""
    return dims is not None and len(dims) == 1 and dims[0] in (-1, _rank(value) - 1)


def _softmax_input(value: ir.Value) -> tuple[ir.Value, list[ir.Operation]] | None:
    """The scores whose last-axis softmax is `value` (torch's op, or its max/exp/sum/div decomposition), and
    the ops from `value` back to the softmax's last op (casts and where guards first)."""
    walked: list[ir.Operation] = []
    op = producer(value)
    while op is not None and op.name in ("torch.aten.to.dtype", "torch.aten.where.self"):
        walked.append(op)
        value = op.operands[0] if op.name == "torch.aten.to.dtype" else op.operands[2]
        op = producer(value)
    if op is None:
        return None
    walked.append(op)
    if op.name in ("torch.aten._softmax", "torch.aten.softmax.int"):
        dim = constant_int(op.operands[1])
        return (op.operands[0], walked) if dim is not None and _last_axis(value, [dim]) else None
    if op.name != "torch.aten.div.Tensor":
        return None
    exp, total = producer(op.operands[0]), producer(op.operands[1])
    if (
        exp is None
        or total is None
        or exp.name != "torch.aten.exp"
        or total.name != "torch.aten.sum.dim_IntList"
        or total.operands[0] != exp.result
        or not _last_axis(value, constant_int_list(total.operands[1]))
        or not constant_bool(total.operands[2])
    ):
        return None
    shifted = producer(exp.operands[0])
    if shifted is not None and shifted.name == "torch.aten.sub.Tensor":
        shift = tensor_type(shifted.operands[1])
        if shift is not None and shift.shape[-1:] == (1,):  # one number per row (the max): the same softmax
            return shifted.operands[0], walked
    return exp.operands[0], walked


_SCORE_PATH = {
    "torch.aten.add.Tensor": 0,
    "torch.aten.sub.Tensor": 0,
    "torch.aten.masked_fill.Scalar": 0,
    "torch.aten.masked_fill.Tensor": 0,
    "torch.aten.where.self": 1,
    "torch.aten.mul.Scalar": 0,
    "torch.aten.div.Scalar": 0,
    "torch.aten.mul.Tensor": 0,
    "torch.aten.to.dtype": 0,
}


def _score_matmul(scores: ir.Value) -> tuple[ir.Operation, float, list[ir.Operation]] | None:
    """The bmm/matmul producing the scores (through views, scaling and masking), the scale met and the ops
    stepped over."""
    factor = 1.0
    value = scores
    walked: list[ir.Operation] = []
    for _ in range(32):
        op = producer(value)
        if op is None:
            return None
        if op.name in ("torch.aten.bmm", "torch.aten.matmul"):
            return op, factor, walked
        walked.append(op)
        if _merges_heads(op):
            value = op.operands[0]
            continue
        if op.name not in _SCORE_PATH:
            return None
        if op.name in ("torch.aten.mul.Scalar", "torch.aten.div.Scalar"):
            number = constant_number(op.operands[1])
            if number is None:
                return None
            factor *= number if op.name == "torch.aten.mul.Scalar" else 1.0 / number
        value = op.operands[_SCORE_PATH[op.name]]
    return None


def _merges_heads(op: ir.Operation) -> bool:
    """A view that only merges or splits the axes before the last two ([B, H, X, Y] <-> [B·H, X, Y])."""
    if op.name not in VIEW_OPS:
        return False
    a, b = tensor_type(op.operands[0]), tensor_type(op.result)
    return a is not None and b is not None and len(a.shape) >= 2 and a.shape[-2:] == b.shape[-2:]


def _swaps_last_two(op: ir.Operation) -> bool:
    """A permute/transpose of a 4D tensor that exchanges only its last two axes (K → Kᵀ)."""
    if op.name == "torch.aten.permute":
        return constant_int_list(op.operands[1]) in ([0, 1, 3, 2], [0, 1, -1, -2])
    if op.name == "torch.aten.transpose.int":
        dims = {constant_int(op.operands[1]), constant_int(op.operands[2])}
        return dims in ({2, 3}, {-1, -2}, {2, -1}, {-2, 3})
    return False


def _strip_operand(value: ir.Value, heads: int) -> tuple[ir.Value | None, float, bool]:
    """Walk a score-matmul operand back to its 4D [B, H, T, d] tensor: (tensor, scale met, transposed)."""
    factor, transposed = 1.0, False
    for _ in range(16):
        op = producer(value)
        if op is None:
            break
        name = op.name
        if name in ("torch.aten.mul.Scalar", "torch.aten.div.Scalar"):
            number = constant_number(op.operands[1])
            if number is None:
                break
            factor *= number if name == "torch.aten.mul.Scalar" else 1.0 / number
        elif (_merges_heads(op) and _rank(value) == 3 and _rank(op.operands[0]) == 4) or (
            name in ("torch.aten.expand", "torch.aten.broadcast_to", "torch.aten.clone")
            and str(op.operands[0].type) == str(value.type)
        ):
            pass
        elif _rank(value) == 4 and _swaps_last_two(op):
            transposed = not transposed
        else:
            break
        value = op.operands[0]
    t = tensor_type(value)
    if t is None or len(t.shape) != 4 or t.shape[1] != heads:
        return None, factor, transposed
    return value, factor, transposed


def _matmul_site(bmm: ir.Operation, function: str) -> Site | None:
    """A probabilities-times-V matmul whose left operand is a softmax of Q·Kᵀ scores, as a Site."""
    value, consumer = bmm.operands[0], bmm
    while (op := producer(value)) is not None and _merges_heads(op):
        consumer, value = op, op.operands[0]
    probs_type = tensor_type(value)
    softmax = _softmax_input(value)
    if probs_type is None or len(probs_type.shape) != 4 or softmax is None:
        return None
    scores, softmax_ops = softmax
    found = _score_matmul(scores)
    if found is None:
        return None
    qk, factor, score_ops = found
    heads = probs_type.shape[1]
    q, q_scale, q_transposed = _strip_operand(qk.operands[0], heads)
    k, k_scale, transposed = _strip_operand(qk.operands[1], heads)
    head_dim_type = tensor_type(qk.operands[0])
    if head_dim_type is None:
        return None
    head_dim = head_dim_type.shape[-1]
    if q is not None and q_transposed:
        q = None
    if k is not None and not transposed:
        k = None
    shape = LayerShape(heads, _kv_heads(k, heads) if k is not None else heads, head_dim)
    scale = factor * q_scale * k_scale
    values, output = _values_and_output(bmm, heads)
    return Site(
        "matmul",
        consumer,
        function,
        shape,
        q,
        k,
        scale,
        probs=value,
        pv=bmm,
        values=values,
        output=output,
        softmax_ops=tuple(softmax_ops),
        score_ops=tuple(score_ops),
    )


def _values_and_output(pv: ir.Operation, heads: int) -> tuple[ir.Value | None, ir.Value | None]:
    """V as [B, H, Tk, dv] behind the P-times-V matmul's flattening views, and its output as [B, H, Tq, dv]."""
    values = pv.operands[1]
    while (op := producer(values)) is not None and (
        (_merges_heads(op) and _rank(values) == 3 and _rank(op.operands[0]) == 4)
        or (
            op.name in ("torch.aten.expand", "torch.aten.broadcast_to") and str(op.operands[0].type) == str(values.type)
        )
    ):
        values = op.operands[0]
    output = pv.result
    users = list(output.uses)
    if _rank(output) == 3 and len(users) == 1 and _merges_heads(users[0].owner.operation):
        output = users[0].owner.operation.result
    vt, ot = tensor_type(values), tensor_type(output)
    if vt is None or ot is None or len(vt.shape) != 4 or len(ot.shape) != 4 or heads not in (vt.shape[1], ot.shape[1]):
        return None, None
    return (values, output) if vt.shape[1] == heads == ot.shape[1] else (None, None)


def _sdpa_site(op: ir.Operation, function: str) -> Site | None:
    q, k = op.operands[0], op.operands[1]
    qt, kt = tensor_type(q), tensor_type(k)
    if qt is None or kt is None or len(qt.shape) != 4:
        return None
    heads = qt.shape[1]
    kv = kt.shape[1] if constant_bool(op.operands[7]) else _kv_heads(k, heads)
    scale = None if is_none(op.operands[6]) else constant_number(op.operands[6])
    return Site(
        "sdpa",
        op,
        function,
        LayerShape(heads, kv, qt.shape[3]),
        q,
        k,
        scale if scale is not None else qt.shape[3] ** -0.5,
    )


def functions(module: ir.Operation) -> list[tuple[str, ir.Operation, ir.Block]]:
    """(name, op, entry block) of every function with a body in a `builtin.module` op."""
    found = []
    for op in module.regions[0].blocks[0].operations:
        func = op.operation
        if func.name == "func.func" and func.regions[0].blocks:
            found.append((ir.StringAttr(func.attributes["sym_name"]).value, func, func.regions[0].blocks[0]))
    return found


def find_sites(module: ir.Operation) -> dict[str, list[Site]]:
    """Attention sites per function, in program order (functions without attention are left out)."""
    sites: dict[str, list[Site]] = {}
    for name, _, block in functions(module):
        found = []
        for op in block.operations:
            operation = op.operation
            site = None
            if operation.name == SDPA:
                site = _sdpa_site(operation, name)
            elif operation.name in ("torch.aten.bmm", "torch.aten.matmul"):
                site = _matmul_site(operation, name)
            if site is not None:
                found.append(site)
        if found:
            sites[name] = found
    return sites


# --- rewriting ------------------------------------------------------------------------------------


@dataclass
class ChaiReport:
    """What the rewrite did, per function and layer, including what it actually freed."""

    mode: str
    method: str
    layers: list[dict[str, Any]] = field(default_factory=list)
    io: list[str] = field(default_factory=list)

    def summary(self) -> str:
        rewritten = [r for r in self.layers if r["rewritten"]]
        qk_before = sum(r["heads"] for r in self.layers)
        qk_after = sum(r["qk_heads"] for r in self.layers)
        k_before = sum(r["kv_heads"] for r in self.layers)
        k_after = sum(r["k_heads"] for r in self.layers)
        flops = sum(r["qk_flops_saved"] for r in self.layers)
        return (
            f"{len(rewritten)}/{len(self.layers)} attention layers rewritten ({self.method}, {self.mode}); "
            f"QK^T heads {qk_before}->{qk_after}, K heads {k_before}->{k_after}, QK^T FLOPs saved {flops:.3g}"
        )

    def to_json(self) -> str:
        return json.dumps(
            {"summary": self.summary(), "mode": self.mode, "method": self.method, "layers": self.layers, "io": self.io}
        )


def _cluster_order(lp: LayerPlan) -> tuple[list[tuple[int, list[int]]], list[int]]:
    """Clusters grouped by size (ascending), as (size, cluster indices), and the heads in that order."""
    by_size: dict[int, list[int]] = {}
    for c, members in enumerate(lp.clusters):
        by_size.setdefault(len(members), []).append(c)
    classes = sorted(by_size.items())
    order = [h for _, cs in classes for c in cs for h in lp.clusters[c]]
    return classes, order


class _Rewriter:
    def __init__(self, module: ir.Operation, plan: ChaiPlan, mode: str, method: str, tokens: int) -> None:
        self.module = module
        self.plan = plan
        self.mode = mode
        self.method = method
        self.tokens = tokens
        self.narrowers: list[Narrower] = []
        self.helpers: dict[str, str] = {}

    def site(self, site: Site, lp: LayerPlan) -> dict[str, Any]:
        shape = site.shape
        row: dict[str, Any] = {
            "function": site.function,
            "layer": lp.layer,
            "form": site.kind,
            "heads": shape.heads,
            "kv_heads": shape.kv_heads,
            "clusters": lp.k,
            "rewritten": False,
            "qk_heads": shape.heads,
            "k_heads": shape.kv_heads,
            "qk_flops_saved": 0,
            "stops": {},
        }
        trivial = lp.representatives == tuple(range(lp.heads)) and lp.is_identity()
        if self.method == "chai" and (trivial or (lp.is_identity() and self.mode == "online")):
            return row  # every head its own cluster, in order: nothing to share
        if self.method == "meanpool" and len(lp.kept_kv_heads()) == lp.kv_heads:
            return row  # the budget keeps every K head: nothing to pool
        builder = Builder(site.anchor)
        if self.method == "meanpool":
            narrower = self._meanpool(site, lp)
            row["k_heads"] = len(lp.kept_kv_heads())
        elif self.mode == "online":
            narrower = self._online(site, lp, builder)
            row["qk_heads"] = len(lp.kept_kv_heads()) * lp.group
        elif site.kind == "sdpa":
            narrower = self._static_sdpa(site, lp, builder)
            row.update(qk_heads=lp.k, k_heads=len(lp.kept_kv_heads()))
        else:
            narrower = self._static_matmul(site, lp, builder)
            row.update(qk_heads=lp.k, k_heads=len(lp.kept_kv_heads()))
        self.narrowers.append(narrower)
        row["rewritten"] = True
        row["stops"] = _count(stop.producer for stop in narrower.stops)
        row["qk_flops_saved"] = self._qk_flops(site) * (shape.heads - row["qk_heads"]) // shape.heads
        return row

    def _qk_flops(self, site: Site) -> int:
        qt = tensor_type(site.q) if site.q is not None else None
        probs = tensor_type(site.probs) if site.probs is not None else None
        kt = tensor_type(site.k) if site.k is not None else None
        if probs is not None and probs.static:
            b, h, tq, tk = probs.shape
        elif qt is not None and kt is not None and qt.static and kt.static:
            b, h, tq, tk = qt.shape[0], qt.shape[1], qt.shape[2], kt.shape[2]
        else:
            return 0
        return 2 * b * h * tq * tk * site.shape.head_dim

    def _static_matmul(self, site: Site, lp: LayerPlan, b: Builder) -> Narrower:
        assert site.probs is not None
        if _prefer_grouped(site):
            return self._grouped_matmul(site, lp)
        narrower = Narrower(b)
        shared = narrower.narrow(site.probs, Layout(1, lp.heads), HeadMap.select(lp.representatives, lp.heads))
        shared = b.index_select(shared, 1, lp.cluster_of_head())
        site.anchor.replace_uses_of_with(site.probs, shared)
        return narrower

    def _grouped_matmul(self, site: Site, lp: LayerPlan) -> Narrower:
        """Per cluster size m: P of the representatives times V of each cluster's m members side by side."""
        assert site.probs is not None and site.values is not None and site.output is not None and site.pv is not None
        b = Builder(site.pv)
        classes, order = _cluster_order(lp)
        reps = [lp.representatives[c] for _, cs in classes for c in cs]
        narrower = Narrower(b)
        probs = narrower.narrow(site.probs, Layout(1, lp.heads), HeadMap.select(reps, lp.heads))
        values = narrower.narrow(site.values, Layout(1, lp.heads), HeadMap.select(order, lp.heads))

        def attend(count: int, start: int, size: int) -> ir.Value:
            pt, vt = tensor_type(probs), tensor_type(values)
            assert pt is not None and vt is not None
            head_at = sum(len(cs) * m for m, cs in classes if m < size)  # classes ascend by size
            v_c = _side_by_side(b, b.slice(values, 1, head_at, head_at + count * size), count, size)
            out_type = TensorType((pt.shape[0], count, pt.shape[2], size * vt.shape[3]), vt.dtype)
            return b.matmul(b.slice(probs, 1, start, start + count), v_c, out_type)

        self._join_classes(b, lp, classes, order, attend, site.output)
        return narrower

    def _join_classes(
        self,
        b: Builder,
        lp: LayerPlan,
        classes: list[tuple[int, list[int]]],
        order: list[int],
        attend: Any,
        output: ir.Value,
    ) -> None:
        """Run `attend(clusters, first representative, size)` per size class, split each result back per
        head, restore the original head order and let it replace `output`."""
        ot = tensor_type(output)
        assert ot is not None
        batch, _, tq, dv = ot.shape
        outputs, rep_at = [], 0
        for size, clusters in classes:
            n = len(clusters)
            out = attend(n, rep_at, size)
            if size > 1:
                out = b.view(
                    b.permute(b.view(out, [batch, n, tq, size, dv]), [0, 1, 3, 2, 4]), [batch, n * size, tq, dv]
                )
            outputs.append(out)
            rep_at += n
        joined = outputs[0] if len(outputs) == 1 else b.cat(outputs, 1)
        restore = [order.index(h) for h in range(lp.heads)]
        if restore != list(range(lp.heads)):
            joined = b.index_select(joined, 1, restore)
        output.replace_all_uses_with(joined)

    def _static_sdpa(self, site: Site, lp: LayerPlan, b: Builder) -> Narrower:
        op = site.anchor
        q, k, v, mask = op.operands[0], op.operands[1], op.operands[2], op.operands[3]
        gqa = bool(constant_bool(op.operands[7]))
        classes, order = _cluster_order(lp)
        reps = [lp.representatives[c] for _, cs in classes for c in cs]
        kv_layout = Layout(1, lp.kv_heads if gqa else lp.heads)
        as_kv = (lambda heads: [h // lp.group for h in heads]) if gqa else list
        narrower = Narrower(b)
        q_r = narrower.narrow(q, Layout(1, lp.heads), HeadMap.select(reps, lp.heads))
        k_r = narrower.narrow(k, kv_layout, HeadMap.select(as_kv(reps), kv_layout.heads))
        v_o = narrower.narrow(v, kv_layout, HeadMap.select(as_kv(order), kv_layout.heads))
        mt = None if is_none(mask) else tensor_type(mask)
        mask_r = mask
        if mt is not None and len(mt.shape) == 4 and mt.shape[1] == lp.heads and lp.heads > 1:
            mask_r = narrower.narrow(mask, Layout(1, lp.heads), HeadMap.select(reps, lp.heads))
        qt, vt = tensor_type(q_r), tensor_type(v_o)
        assert qt is not None and vt is not None

        def attend(count: int, start: int, size: int) -> ir.Value:
            head_at = sum(len(cs) * m for m, cs in classes if m < size)  # classes ascend by size
            v_c = _side_by_side(b, b.slice(v_o, 1, head_at, head_at + count * size), count, size)
            m_c = b.slice(mask_r, 1, start, start + count) if mask_r is not mask else mask
            q_c, k_c = b.slice(q_r, 1, start, start + count), b.slice(k_r, 1, start, start + count)
            out_type = TensorType((qt.shape[0], count, qt.shape[2], size * vt.shape[3]), vt.dtype).ir_type()
            operands = [q_c, k_c, v_c, m_c, op.operands[4], op.operands[5], op.operands[6], b.bool(False)]
            return b.op(SDPA, operands, [out_type]).result

        self._join_classes(b, lp, classes, order, attend, op.result)
        op.erase()
        return narrower

    def _meanpool(self, site: Site, lp: LayerPlan) -> Narrower:
        if site.k is None:
            raise EffcError(
                f"effc-chai: cannot find K of attention layer {lp.layer} in '{site.function}' for method=meanpool"
            )
        groups = meanpool_groups(lp.kv_heads, len(lp.kept_kv_heads()))
        owner = [next(i for i, g in enumerate(groups) if j in g) for j in range(lp.kv_heads)]
        kt = tensor_type(site.k)
        assert kt is not None
        users = [use.owner.operation for use in site.k.uses]
        first = users[0]
        for user in users[1:]:
            if user.is_before_in_block(first):
                first = user
        b = Builder(first)  # the pooled K must dominate every user of K, not only the attention
        narrower = Narrower(b)
        if kt.shape[1] == lp.kv_heads:
            pooled = narrower.narrow(site.k, Layout(1, lp.kv_heads), HeadMap.mean(groups, lp.kv_heads))
            expanded = b.index_select(pooled, 1, owner)
        else:  # K already repeated to every query head: mean over the query heads of each group's KV heads
            members = [[h for h in range(lp.heads) if h // lp.group in g] for g in groups]
            pooled = narrower.narrow(site.k, Layout(1, lp.heads), HeadMap.mean(members, lp.heads))
            expanded = b.index_select(pooled, 1, [owner[h // lp.group] for h in range(lp.heads)])
        for user in users:
            user.replace_uses_of_with(site.k, expanded)
        return narrower

    def _online(self, site: Site, lp: LayerPlan, b: Builder) -> Narrower:
        if site.q is None or site.k is None or site.scale is None:
            raise EffcError(
                f"effc-chai: cannot find Q and K of attention layer {lp.layer} in '{site.function}' for mode=online"
            )
        kept = len(lp.kept_kv_heads())
        count = kept * lp.group
        if site.kind == "sdpa":
            op = site.anchor
            mask = None if is_none(op.operands[3]) else op.operands[3]
            callee = self._helper("attention", site, kept, mask)
            operands = [op.operands[0], op.operands[1], op.operands[2]] + ([mask] if mask is not None else [])
            call = b.op("func.call", operands, [op.result.type], {"callee": ir.FlatSymbolRefAttr.get(callee)})
            op.result.replace_all_uses_with(call.result)
            op.erase()
            return Narrower(b)
        assert site.probs is not None
        callee = self._helper("membership", site, kept, None)
        index = ir.Type.parse(f"!torch.vtensor<[{count}],si64>")
        owner = ir.Type.parse(f"!torch.vtensor<[{lp.heads}],si64>")
        call = b.op("func.call", [site.q, site.k], [index, owner], {"callee": ir.FlatSymbolRefAttr.get(callee)})
        reps, assign = call.results[0], call.results[1]
        narrower = Narrower(b, stop_at=frozenset({site.q, site.k}), dynamic=reps)
        shared = narrower.narrow(site.probs, Layout(1, lp.heads), HeadMap.select(range(count), lp.heads))
        shared = b.index_select_dynamic(shared, 1, assign, lp.heads)
        site.anchor.replace_uses_of_with(site.probs, shared)
        return narrower

    def _helper(self, kind: str, site: Site, kept: int, mask: ir.Value | None) -> str:
        """A private function exported from `chai_reference` for this signature (created once)."""
        assert site.q is not None and site.k is not None and site.scale is not None
        operands = (
            [site.q, site.k]
            + ([site.anchor.operands[2]] if kind == "attention" else [])
            + ([mask] if mask is not None else [])
        )
        types = [tensor_type(v) for v in operands]
        if any(t is None or not t.static for t in types):
            raise EffcError("effc-chai mode=online needs static shapes at the attention")
        is_causal = bool(constant_bool(site.anchor.operands[5])) if kind == "attention" else False
        group = site.shape.group
        key = json.dumps(
            [
                kind,
                [(t.shape, t.dtype) for t in types if t is not None],
                site.scale,
                kept,
                group,
                self.tokens,
                is_causal,
            ]
        )
        if key not in self.helpers:
            name = f"effc_chai_online_{kind}_{len(self.helpers)}"
            _export_online_helper(
                self.module,
                name,
                kind,
                [t for t in types if t is not None],
                scale=site.scale,
                kept_kv=kept,
                group=group,
                tokens=self.tokens,
                is_causal=is_causal,
            )
            self.helpers[key] = name
        return self.helpers[key]


def _export_online_helper(
    module: ir.Operation,
    name: str,
    kind: str,
    types: list[TensorType],
    *,
    scale: float,
    kept_kv: int,
    group: int,
    tokens: int,
    is_causal: bool,
) -> None:
    """Export `chai_reference`'s online clustering (and, for sdpa, the clustered attention) into `module`
    as the private function `name`, so the graph computes membership exactly as the reference does."""
    import torch

    from effc.compiler.importer import import_program
    from effc.passes.chai_reference import clustered_attention, online_membership

    class Membership(torch.nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return online_membership(q, k, scale, kept_kv, tokens, group=group)

    class Attention(torch.nn.Module):
        def forward(
            self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None
        ) -> torch.Tensor:
            reps, owner = online_membership(q, k, scale, kept_kv, tokens, group=group)
            return clustered_attention(q, k, v, reps, owner, scale=scale, mask=mask, is_causal=is_causal)

    dtypes = {
        "f32": torch.float32,
        "f16": torch.float16,
        "bf16": torch.bfloat16,
        "f64": torch.float64,
        "i1": torch.bool,
    }
    if any(t.dtype not in dtypes for t in types):
        raise EffcError(f"effc-chai mode=online does not support attention tensors of type {[t.dtype for t in types]}")
    examples = tuple(torch.ones(t.shape, dtype=dtypes[t.dtype]) for t in types)
    program = torch.export.export(Membership() if kind == "membership" else Attention(), examples, strict=False)
    imported, _ = import_program(program, attention="decomposed", name=name)
    with module.context:
        parsed = ir.Module.parse(str(imported))
        helper = parsed.body.operations[0].operation.clone(
            ip=ir.InsertionPoint.at_block_begin(module.regions[0].blocks[0])
        )
    helper.attributes["sym_visibility"] = ir.StringAttr.get("private")


def _side_by_side(b: Builder, values: ir.Value, count: int, size: int) -> ir.Value:
    """[B, count*size, T, dv] (clusters' members consecutive) -> [B, count, T, size*dv]."""
    if size == 1:
        return values
    vt = tensor_type(values)
    assert vt is not None
    batch, _, length, dv = vt.shape
    grouped = b.permute(b.view(values, [batch, count, size, length, dv]), [0, 1, 3, 2, 4])
    return b.view(grouped, [batch, count, length, size * dv])


def _prefer_grouped(site: Site) -> bool:
    """Share probabilities by grouping V when copying P (H·Tq·Tk) would cost more than re-laying out V and
    the output (H·(Tk+Tq)·dv): long prefills. Decode steps (Tq = 1) gather P and leave V alone."""
    pt = tensor_type(site.probs) if site.probs is not None else None
    ot = tensor_type(site.output) if site.output is not None else None
    if pt is None or ot is None or site.values is None or not pt.static or not ot.static:
        return False
    tq, tk, dv = pt.shape[2], pt.shape[3], ot.shape[3]
    return tq * tk > (tq + tk) * dv


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def _shrink_io(module: ir.Operation, narrowers: list[Narrower], report: ChaiReport) -> None:
    """Let function arguments and results that only carry selected K heads take the smaller type."""
    for name, func, block in functions(module):
        changed = False
        for stop in (s for n in narrowers for s in n.stops):
            arg = stop.value
            if (
                stop.producer != "argument"
                or stop.heads.selection is None
                or not isinstance(arg.owner, ir.Block)
                or arg.owner != block
            ):
                continue
            users = list(arg.uses)
            if len(users) != 1 or users[0].owner.operation != producer(stop.result):
                continue
            old = str(arg.type)
            select = producer(stop.result)
            assert select is not None
            arg.set_type(stop.result.type)
            stop.result.replace_all_uses_with(arg)
            select.erase()
            report.io.append(f"{name}: argument {arg.arg_number} {old} -> {arg.type}")
            changed = True
        terminator = block.operations[len(block.operations) - 1].operation
        selected = {value: result for n in narrowers for value, (result, _) in n.selected.items()}
        for index, operand in enumerate(terminator.operands):
            if operand in selected:
                new = selected[operand]
                terminator.operands[index] = new
                report.io.append(f"{name}: result {index} {operand.type} -> {new.type}")
                changed = True
        if changed:
            inputs = [arg.type for arg in block.arguments]
            results = [v.type for v in terminator.operands]
            func.attributes["function_type"] = ir.TypeAttr.get(ir.FunctionType.get(inputs, results))


def rewrite_module(
    module: ir.Operation,
    plan: ChaiPlan,
    *,
    mode: str = "static",
    method: str = "chai",
    online_tokens: int = 5,
    shrink_io: bool = True,
) -> ChaiReport:
    """Apply CHAI (or the mean-pool baseline) to every attention of `module` (a builtin.module op) in place."""
    with module.context:
        return _rewrite(module, plan, mode, method, online_tokens, shrink_io)


def _rewrite(
    module: ir.Operation, plan: ChaiPlan, mode: str, method: str, online_tokens: int, shrink_io: bool
) -> ChaiReport:
    sites = find_sites(module)
    if not sites:
        raise EffcError(
            "effc-chai: the module has no attention (no scaled_dot_product_attention and no "
            "matmul → softmax → matmul chain); there is nothing to cluster"
        )
    for function, found in sites.items():
        plan.check_fits([s.shape for s in found], f"function '{function}' of the module")
    if mode == "online" and online_tokens < 1:
        raise EffcError(f"effc-chai: online-tokens must be at least 1 (got {online_tokens})")
    report = ChaiReport(mode, method)
    rewriter = _Rewriter(module, plan, mode, method, online_tokens)
    for found in sites.values():
        for site, lp in zip(found, plan.layers, strict=True):
            report.layers.append(rewriter.site(site, lp))
    for _, _, block in functions(module):
        erase_dead_ops(block)  # first, so that arguments narrowed by a selection have no other use
    if shrink_io and mode == "static":
        _shrink_io(module, rewriter.narrowers, report)
        for _, _, block in functions(module):
            erase_dead_ops(block)
    from effc.passes.matmul_weights import fold_constant_selections  # it builds on this module's helpers

    if fold_constant_selections(module):
        for _, _, block in functions(module):
            erase_dead_ops(block)
    module.attributes[REPORT_ATTRIBUTE] = ir.StringAttr.get(report.summary())
    return report


@dataclasses.dataclass(frozen=True)
class ChaiPass(ModulePass):
    name: ClassVar[str] = "effc-chai"
    reads_query_heads: ClassVar[bool] = True
    description: ClassVar[str] = (
        "Clustered head attention (CHAI): compute Q·Kᵀ and softmax only for each cluster's representative "
        "head and share its probabilities with the cluster (each head keeps its own V); Q/K projections, "
        "the K cache and grouped-query KV heads shrink to what the representatives need. Handles "
        "scaled_dot_product_attention (kept fused) and the matmul/softmax chain."
    )

    plan: str = dataclasses.field(
        default="", metadata={"help": "cluster plan JSON from 'effc chai calibrate' (required)"}
    )
    mode: Literal["static", "online"] = dataclasses.field(
        default="static",
        metadata={"help": "static: membership from the plan; online: per request from the first tokens"},
    )
    online_tokens: int = dataclasses.field(
        default=5, metadata={"help": "mode=online: tokens whose attention decides membership"}
    )
    method: Literal["chai", "meanpool"] = dataclasses.field(
        default="chai",
        metadata={"help": "meanpool: training-free GQA baseline, mean of K heads at the plan's K budget"},
    )
    shrink_io: bool = dataclasses.field(
        default=True, metadata={"help": "shrink function arguments/results that only carry K heads (KV caches)"}
    )

    def apply(self, module: ir.Operation) -> None:
        if not self.plan:
            raise EffcError("effc-chai needs a plan: effc-chai{plan=plan.json} (make one with 'effc chai calibrate')")
        plan = load_plan(self.plan)
        rewrite_module(
            module,
            plan,
            mode=self.mode,
            method=self.method,
            online_tokens=self.online_tokens,
            shrink_io=self.shrink_io,
        )
