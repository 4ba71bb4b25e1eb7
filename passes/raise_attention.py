"""`effc-raise-attention`: attention written by hand becomes one `scaled_dot_product_attention`.

Why: IREE emits one fused attention dispatch for sdpa, but a matmul, a softmax and another matmul for
attention that a model writes itself (HF `attn_implementation="eager"`: BERT/MiniLM, GPT-2, LLaMA). On an
H200 the fused form took an f16/bf16 attention block from 0.545 to 0.308 ms. Compile with
`--attention fused` so that torch-mlir keeps the raised sdpa whole.

Opt-in, never in a default pipeline: on CPUs fused attention was slower (2 cores: MiniLM 24.6 vs 21.9 ms,
a large block 4x slower; bench/perf/NOTES.md).

CHAI's matcher (`chai.find_sites`) finds the matmul → scale → mask → softmax → matmul chains. A chain is
raised only where sdpa(Q, K, V, mask, dropout_p=0, is_causal=False, scale, enable_gqa=False) computes the
same thing: Q, K, V and the output found as [B, H, T, d] tensors; on the scores only constant scaling,
float casts and at most one additive float mask (added after the scaling, in Q's dtype, broadcastable to
the [B, H, Tq, Tk] scores); a plain last-axis softmax; no other user of anything inside the chain. Casts
are dropped: sdpa picks its own intermediate precision. Everything else stays as it is, counted by reason
in the module attribute `effc.raise_attention`:

* boolean masks applied with masked_fill/where, and other ops on the scores sdpa has no operand for;
* torch's safe-softmax guard where(all(scores == -inf), 0, softmax): sdpa means the same in torch, but
  IREE's fused attention returns NaN for a row whose every score is -inf where the guard gives 0
  (measured on llvm-cpu). The unguarded chain gives NaN there too, so it is raised;
* a single query row (a decode step): the importer keeps that attention decomposed on purpose (fused was
  3x slower on an H200), and so does this pass.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from torch_mlir import ir

from effc.passes.base import ModulePass
from effc.passes.chai import SDPA, Site, find_sites
from effc.passes.chai_narrow import (
    FLOAT_DTYPES,
    VIEW_OPS,
    Builder,
    TensorType,
    constant_number,
    producer,
    tensor_type,
)
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.raise_attention"
_SCALES = ("torch.aten.mul.Scalar", "torch.aten.div.Scalar")
_SOFTMAX = ("torch.aten._softmax", "torch.aten.softmax.int", "torch.aten.div.Tensor")
_CHAIN_LIMIT = 64  # ops in one attention chain; a walk that goes further has left the chain


def _short(op: ir.Operation) -> str:
    return op.name.removeprefix("torch.aten.")


def _is_float_cast(op: ir.Operation) -> bool:
    result = tensor_type(op.result)
    return op.name == "torch.aten.to.dtype" and result is not None and result.dtype in FLOAT_DTYPES


def _types(site: Site) -> tuple[TensorType, TensorType]:
    """Q's and the probabilities' types, once every shape and dtype agrees with sdpa's."""
    if site.q is None or site.k is None or site.values is None or site.output is None or site.probs is None:
        raise Skip("Q, K or V not found")
    q, k, v, out, probs = (tensor_type(x) for x in (site.q, site.k, site.values, site.output, site.probs))
    if q is None or k is None or v is None or out is None or probs is None:
        raise Skip("Q, K or V not found")
    batch_heads = {x.shape[:2] for x in (q, k, v, out, probs)}
    rows = {q.shape[2], out.shape[2], probs.shape[2]}
    keys = {k.shape[2], v.shape[2], probs.shape[3]}
    if (
        len(batch_heads) != 1
        or len(rows) != 1
        or len(keys) != 1
        or q.shape[3] != k.shape[3]
        or v.shape[3] != out.shape[3]
    ):
        raise Skip("shapes sdpa cannot take")
    if q.dtype not in FLOAT_DTYPES or {k.dtype, v.dtype, out.dtype} != {q.dtype}:
        raise Skip("Q, K, V of different dtypes")
    if q.shape[2] == 1:
        raise Skip("one query row (decode steps stay decomposed)")
    return q, probs


def _mask(site: Site, q: TensorType, probs: TensorType) -> ir.Value | None:
    """The additive mask that sdpa needs (None for none); raises `_Skip` where sdpa computes something else."""
    for op in site.softmax_ops:
        if op.name == "torch.aten.where.self":
            raise Skip("safe-softmax guard (fused attention gives NaN for fully masked rows)")
        if op.name not in _SOFTMAX and not _is_float_cast(op):
            raise Skip(f"{_short(op)} around the softmax")
    mask, scaled_after = None, False
    for op in site.score_ops:  # from the softmax back: an op met earlier ran later
        if op.name in VIEW_OPS or _is_float_cast(op):
            continue
        if op.name in _SCALES:
            scaled_after = True
            continue
        if op.name != "torch.aten.add.Tensor":
            raise Skip(f"{_short(op)} on the scores")
        if mask is not None:
            raise Skip("several masks added to the scores")
        if scaled_after:
            raise Skip("mask added before the scaling")
        scores, mask_type = tensor_type(op.operands[0]), tensor_type(op.operands[1])
        if constant_number(op.operands[2]) != 1.0 or scores is None or scores.shape != probs.shape:
            raise Skip("mask added in another layout")
        if (
            mask_type is None
            or mask_type.dtype != q.dtype
            or len(mask_type.shape) != 4
            or any(m not in (1, p) for m, p in zip(mask_type.shape, probs.shape, strict=True))
        ):
            raise Skip("mask of a shape or dtype sdpa cannot take")
        mask = op.operands[1]
    return mask


def _check_private(site: Site, inputs: list[ir.Value]) -> None:
    """Every op between the inputs and the output serves only the output, so raising removes the chain."""
    assert site.output is not None
    stop = set(inputs)
    first = producer(site.output)
    chain: set[ir.Operation] = set()
    pending = [first] if first is not None else []
    while pending:
        op = pending.pop()
        if op in chain:
            continue
        chain.add(op)
        if len(chain) > _CHAIN_LIMIT:
            raise Skip("attention values used outside the chain")
        for operand in op.operands:
            source = producer(operand)
            if operand in stop or tensor_type(operand) is None or source is None or not list(source.operands):
                continue  # an input, a scalar or list, an argument, a constant
            pending.append(source)
    for op in chain:
        for result in op.results:
            if result != site.output and any(use.owner.operation not in chain for use in result.uses):
                raise Skip("attention values used outside the chain")


def _raise(site: Site) -> None:
    """Replace the uses of the chain's output with one sdpa (raises `_Skip` where that would change it)."""
    q, probs = _types(site)
    mask = _mask(site, q, probs)
    assert site.q is not None and site.k is not None and site.values is not None and site.output is not None
    assert site.pv is not None and site.scale is not None
    inputs = [site.q, site.k, site.values] + ([mask] if mask is not None else [])
    _check_private(site, inputs)
    b = Builder(site.pv)  # Q, K, V and the mask all come before the P·V matmul
    if mask is None:
        mask = b.none()
    operands = [site.q, site.k, site.values, mask, b.float(0.0), b.bool(False), b.float(site.scale), b.bool(False)]
    site.output.replace_all_uses_with(b.op(SDPA, operands, [site.output.type]).result)


def raise_module(module: ir.Operation) -> str:
    """Raise every attention chain of `module` (a builtin.module op) that sdpa expresses; returns the report."""
    with module.context:
        chains = [s for found in find_sites(module).values() for s in found if s.kind == "matmul"]
        what = "attention chains raised to scaled_dot_product_attention"
        return rewrite_sites(module, chains, _raise, attribute=REPORT_ATTRIBUTE, what=what)


@dataclasses.dataclass(frozen=True)
class RaiseAttentionPass(ModulePass):
    name: ClassVar[str] = "effc-raise-attention"
    description: ClassVar[str] = (
        "Raise hand-written attention (matmul → scale → additive mask → softmax → matmul, e.g. HF eager "
        "attention) to one scaled_dot_product_attention, so that IREE emits a fused attention dispatch "
        "(compile with --attention fused). Opt-in: faster on GPUs in f16/bf16, slower on CPUs."
    )

    def apply(self, module: ir.Operation) -> None:
        raise_module(module)
