"""torch.export + torch-mlir's FX importer: from a loaded model to value-semantic torch-dialect MLIR.

Two things make real models import: non-persistent buffers (rotary `inv_freq`, BERT `position_ids`)
live in `ExportedProgram.constants`, where the frozen importer does not look, so they are copied into
the state dict after decomposition; and `scaled_dot_product_attention` is either kept whole (IREE
then emits one fused attention dispatch, the better choice on GPUs) or decomposed into the
matmul/softmax chain (faster on small CPUs), chosen per target.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensor
from torch_mlir import ir
from torch_mlir.compiler_utils import TorchMlirCompilerError, run_pipeline_with_repro_report
from torch_mlir.extras.fx_decomp_util import get_decomposition_table
from torch_mlir.extras.fx_importer import (
    TORCH_DTYPE_TO_MLIR_TYPE_ASM,
    FxImporter,
    FxImporterHooks,
    GraphNodeImporter,
    InputInfo,
    create_mlir_tensor_type,
)

from effc.compiler.errors import EffcError, first_line
from effc.compiler.fold_gqa import fold_repeated_kv
from effc.compiler.input_spec import InputSpec, example_tensor
from effc.compiler.loader import LoadedModel
from effc.compiler.mlir_context import new_context, parse_module

Attention = Literal["auto", "fused", "decomposed"]

# `--attention auto`, measured (bench/perf/NOTES.md): on a 2-core CPU the decomposed form was faster (MiniLM,
# seq 128: 0.77x fused). On an H200, IREE 3.13's fused attention was faster in f16/bf16 (block: 0.333 vs
# 0.340 ms with -O; 0.308 vs 0.545 ms in bf16 earlier) but 2x slower in f32 (19.7 vs 9.6 ms).
HALF_PRECISION = (torch.float16, torch.bfloat16)


def torch_backend_pipeline(attention: Literal["fused", "decomposed"]) -> str:
    """torch-mlir's lowering to its backend contract; with fused attention, sdpa is a legal op there, because
    torch-mlir otherwise decomposes an sdpa that has neither a mask nor is_causal."""
    legal = " backend-legal-ops=aten.scaled_dot_product_attention" if attention == "fused" else ""
    return (
        "builtin.module(func.func(torch-match-quantized-custom-ops),"
        f"torchdynamo-export-to-torch-backend-pipeline{{ extra-library={legal}}})"
    )


def decomposition_table(
    attention: Literal["fused", "decomposed"], key_multiple: int = 1, padded_keys: list[tuple[int, int]] | None = None
) -> dict[Any, Any]:
    """torch-mlir's decompositions; with fused attention, sdpa stays whole unless its query has one row.

    A decode step's attention (one query row) is always decomposed: on an H200, IREE's fused attention
    made the SmolLM2 decode step 3x slower than the decomposed form (bench/perf/NOTES.md). With `key_multiple`,
    decomposed attention over more keys than queries has its keys padded to a multiple of that (`pad_cache_keys`),
    each (length, padded length) appended to `padded_keys`.
    """
    table = get_decomposition_table()
    sdpa = torch.ops.aten.scaled_dot_product_attention.default
    decompose = pad_cache_keys(table[sdpa], key_multiple, padded_keys) if key_multiple > 1 else table[sdpa]
    if attention == "decomposed":
        return table | {sdpa: decompose}

    def single_query_only(query: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        return decompose(query, *args, **kwargs) if query.shape[-2] == 1 else NotImplemented

    return table | {sdpa: single_query_only}


def pad_cache_keys(
    decompose: Callable[..., Any], multiple: int, padded_keys: list[tuple[int, int]] | None = None
) -> Callable[..., Any]:
    """sdpa's decomposition, with the keys and values of attention over more keys than queries (a decode step's, also
    with its query heads folded onto their KV heads: fold_gqa.py) padded to a multiple of `multiple` rows, masked out.

    A decode step attends over its cache plus the new token: 2049 keys at 2048 context. IREE 3.13's CUDA codegen
    reduces a row whose length is no multiple of 32 with one thread (TileAndFuse), one that is no multiple of 128
    with one subgroup, and others with a subgroup per 128 (VectorDistribute): SmolLM2's step spent 9.3 of its 16.1
    ms of kernels in its 9x2049 softmaxes (H200, run 20). The padded rows get -inf scores (a False mask entry), so
    they add 0 to the softmax's sum and to p·v: the output is unchanged. Each padding is appended to `padded_keys`.
    """

    def decompose_padded(
        query: torch.Tensor,
        key: torch.Tensor,
        value: torch.Tensor,
        attn_mask: torch.Tensor | None = None,
        dropout_p: float = 0.0,
        is_causal: bool = False,
        **kwargs: Any,
    ) -> Any:
        queries, length = query.shape[-2], key.shape[-2]
        # Left alone: dynamic lengths (padding would be a run-time fmod torch-mlir cannot lower), a prompt attending
        # to itself, causal attention (its queries see the first keys), and keys already a multiple.
        static = isinstance(queries, int) and isinstance(length, int)
        if not static or queries >= length or is_causal or length % multiple == 0:
            return decompose(query, key, value, attn_mask, dropout_p, is_causal, **kwargs)
        extra = -length % multiple
        rows = (0, 0, 0, extra)
        if attn_mask is None:
            attn_mask = (torch.arange(length + extra, device=query.device) < length).view(1, length + extra)
        else:
            attn_mask = attn_mask.expand(*attn_mask.shape[:-1], length)
            fill = False if attn_mask.dtype == torch.bool else -math.inf
            tail = torch.full((*attn_mask.shape[:-1], extra), fill, dtype=attn_mask.dtype, device=attn_mask.device)
            attn_mask = torch.cat([attn_mask, tail], dim=-1)
        if padded_keys is not None:
            padded_keys.append((length, length + extra))
        padded_key = torch.nn.functional.pad(key, rows)
        padded_value = torch.nn.functional.pad(value, rows)
        return decompose(query, padded_key, padded_value, attn_mask, dropout_p, is_causal, **kwargs)

    return decompose_padded


@dataclass
class ImportedModel:
    """Torch-dialect MLIR plus what is needed to run the same model in torch for reference."""

    module: ir.Module
    context: ir.Context
    example_inputs: tuple[torch.Tensor, ...]
    reference: torch.nn.Module | None
    padded_keys: tuple[tuple[int, int], ...] = ()  # (length, padded length) of attention whose keys were padded

    def padding_note(self) -> str | None:
        """What `key_multiple` did, for the compile's notes (the module's attention shapes differ from the model's)."""
        if not self.padded_keys:
            return None
        # Distinct lengths: torch traces the decomposition more than once per attention op.
        lengths = ", ".join(f"from {a} to {b}" for a, b in sorted(set(self.padded_keys)))
        return f"attention keys and values padded, masked out: {lengths}"


def resolve_attention(
    attention: Attention, target: str, loaded: LoadedModel | None = None
) -> Literal["fused", "decomposed"]:
    """`auto`: fused only on CUDA for a half-precision model (see the measurements above)."""
    if attention != "auto":
        return attention
    return "fused" if target == "cuda" and floating_dtype(loaded) in HALF_PRECISION else "decomposed"


def floating_dtype(loaded: LoadedModel | None) -> torch.dtype:
    """The dtype of the model's first floating-point parameter (f32 when it has none or is MLIR text)."""
    module = loaded.module if loaded is not None else None
    params = module.parameters() if module is not None else iter(())
    return next((p.dtype for p in params if p.is_floating_point()), torch.float32)


def example_inputs_for(loaded: LoadedModel, specs: tuple[InputSpec, ...]) -> tuple[torch.Tensor, ...]:
    """`--input` specs win; otherwise the model's own example inputs; otherwise a one-line error."""
    if specs:
        return tuple(example_tensor(spec, seed=i) for i, spec in enumerate(specs))
    if loaded.example_inputs is not None:
        return loaded.example_inputs
    raise EffcError(
        f"model '{loaded.name}' carries no example inputs; give each input with --input, e.g. --input 1x128xi64"
    )


def export_model(
    loaded: LoadedModel, specs: tuple[InputSpec, ...]
) -> tuple[torch.export.ExportedProgram, tuple[torch.Tensor, ...]]:
    """torch.export the model; `?` dimensions in the specs become dynamic dims."""
    example = example_inputs_for(loaded, specs)
    if loaded.program is not None:
        return loaded.program, example
    assert loaded.module is not None
    dynamic = None
    if any(spec.dynamic_dims for spec in specs):
        dynamic = tuple({dim: torch.export.Dim.DYNAMIC for dim in spec.dynamic_dims} or None for spec in specs)
    if specs and len(specs) != len(example):
        raise EffcError(f"model '{loaded.name}' got {len(specs)} --input specs for {len(example)} inputs")
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch-internal deprecations, not the user's
            program = torch.export.export(loaded.module, example, dynamic_shapes=dynamic, strict=False)
    except Exception as err:
        kind = type(err).__name__
        raise EffcError(
            f"torch.export failed for '{loaded.name}' ({kind}): {first_line(err)}; check the --input shapes "
            "and dtypes match what the model's forward expects"
        ) from None
    return program, example


# Element types numpy holds as they are (bf16 and the 8-bit floats take torch-mlir's own path, through ml_dtypes).
_NUMPY_DTYPES = frozenset(
    {torch.float16, torch.float32, torch.float64, torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8}
)


class _WeightLiterals(FxImporterHooks):
    """Weights become `dense_resource` literals straight from their memory. torch-mlir's default goes through a
    Python list per tensor (`np.array(tensor.tolist())`): 14 of the 47 s that SmolLM2's export and import took.
    The blobs, their names and the literals are the same; one tensor used twice (tied embeddings) is one blob."""

    def __init__(self) -> None:
        self.blobs: dict[int, tuple[torch.Tensor, ir.Attribute]] = {}  # the tensor is held so its id stays its own

    def resolve_literal(self, gni: GraphNodeImporter, literal: Any, info: InputInfo | None) -> ir.Value | None:
        if (
            not isinstance(literal, torch.Tensor)
            or isinstance(literal, FakeTensor)
            or literal.dtype not in _NUMPY_DTYPES
            or literal.numel() <= 1  # torch-mlir makes these splats
        ):
            return None
        entry = self.blobs.get(id(literal))
        if entry is None:
            data = np.array(literal.detach().numpy(), order="C")  # a copy: the module must not see later edits
            shape = "_".join(str(d) for d in literal.shape)
            blob = ir.DenseResourceElementsAttr.get_from_buffer(
                data, f"torch_tensor_{shape}_{literal.dtype}", create_mlir_tensor_type(literal)
            )
            entry = self.blobs[id(literal)] = (literal, blob)
        dims = ",".join(str(d) for d in literal.shape)
        vtensor = ir.Type.parse(f"!torch.vtensor<[{dims}],{TORCH_DTYPE_TO_MLIR_TYPE_ASM[literal.dtype]}>")
        return ir.Operation.create("torch.vtensor.literal", results=[vtensor], attributes={"value": entry[1]}).result


def import_program(
    program: torch.export.ExportedProgram,
    *,
    attention: Literal["fused", "decomposed"],
    name: str = "main",
    fold_gqa: bool = False,
    key_multiple: int = 1,
    padded_keys: list[tuple[int, int]] | None = None,
) -> tuple[ir.Module, ir.Context]:
    """FX-import an ExportedProgram and lower it to torch-mlir's value-semantic backend contract.

    With `fold_gqa` and decomposed attention, attention over repeated KV heads uses them unrepeated (fold_gqa.py).
    With `key_multiple`, attention over more keys than queries has its keys padded to a multiple of it
    (`pad_cache_keys`), each (length, padded length) appended to `padded_keys`.
    """
    if fold_gqa and attention == "decomposed":
        program, _ = fold_repeated_kv(program)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        program = program.run_decompositions(decomposition_table(attention, key_multiple, padded_keys))
    state = program.state_dict
    for buffer in program.graph_signature.non_persistent_buffers:
        state[buffer] = program.constants[buffer]
    ctx = new_context()
    importer = FxImporter(context=ctx, hooks=_WeightLiterals())
    importer.import_frozen_program(program, func_name=name)
    module = importer.module
    _check_no_unknown_ops(module)
    try:
        run_pipeline_with_repro_report(
            module, torch_backend_pipeline(attention), "Lowering TorchFX IR -> Torch Backend IR"
        )
    except TorchMlirCompilerError as err:
        diagnostics = [line for line in str(err).splitlines() if "error:" in line]
        summary = diagnostics[0].split("error:", 1)[1].strip() if diagnostics else first_line(err)
        raise EffcError(
            f"torch-mlir could not lower the model to its backend contract: {summary}", detail=str(err)
        ) from None
    return module, ctx


def import_model(
    loaded: LoadedModel,
    specs: tuple[InputSpec, ...],
    *,
    attention: Literal["fused", "decomposed"],
    fold_gqa: bool = False,
    key_multiple: int = 1,
) -> ImportedModel:
    """Loaded model → torch-dialect module (or the user's own MLIR, parsed)."""
    if loaded.mlir_text is not None:
        ctx = new_context()
        module = parse_module(loaded.mlir_text, ctx, source=f"{loaded.name}.mlir")
        example = tuple(example_tensor(spec, seed=i) for i, spec in enumerate(specs))
        return ImportedModel(module, ctx, example, reference=None)
    program, example = export_model(loaded, specs)
    padded_keys: list[tuple[int, int]] = []
    module, ctx = import_program(
        program, attention=attention, fold_gqa=fold_gqa, key_multiple=key_multiple, padded_keys=padded_keys
    )
    reference = loaded.module if loaded.module is not None else program.module()
    return ImportedModel(module, ctx, example, reference, tuple(padded_keys))


def unsupported_ops(module: ir.Module) -> list[tuple[str, str, int]]:
    """Ops torch-mlir could not map to a known torch op (`torch.operator`): (name, first location, count)."""
    found: Counter[str] = Counter()
    first_loc: dict[str, str] = {}

    def visit(op: ir.Operation) -> ir.WalkResult:
        if op.name == "torch.operator":
            name = ir.StringAttr(op.attributes["name"]).value
            found[name] += 1
            first_loc.setdefault(name, format_location(op.location))
        return ir.WalkResult.ADVANCE

    module.operation.walk(visit)
    return [(name, first_loc[name], count) for name, count in found.most_common()]


def format_location(location: ir.Location) -> str:
    """`file.py:12` from an MLIR location, or the raw text when it carries no file position."""
    text = str(location)
    if text.startswith("loc(") and '"' in text:
        inner = text[text.index('"') + 1 :]
        file, _, rest = inner.partition('"')
        line = rest.lstrip(":").split(":")[0]
        return f"{file}:{line}" if line.isdigit() else file
    return text


def unsupported_table(rows: list[tuple[str, str, int]]) -> str:
    """A plain-text table of unsupported ops for the detail lines of an error."""
    width = max(len(name) for name, _, _ in rows)
    lines = [f"  {'op'.ljust(width)}  count  first location"]
    lines += [f"  {name.ljust(width)}  {count:5d}  {loc}" for name, loc, count in rows]
    return "\n".join(lines)


def _check_no_unknown_ops(module: ir.Module) -> None:
    rows = unsupported_ops(module)
    if rows:
        names = ", ".join(name for name, _, _ in rows)
        raise EffcError(
            f"the model uses {len(rows)} op(s) that torch-mlir cannot lower: {names}; rewrite them in the model "
            "or register a decomposition",
            detail=unsupported_table(rows),
        )
