"""`effc-hopper-kernels`: linears and attention on effc's Triton kernels for Hopper, as IREE custom dispatches.

IREE 3.13 compiles CUDA for sm_80 at most, so on an H100 or H200 its f16 matmuls and attention run as `mma.sync`
code, and its f32 ones on CUDA cores: 3x slower than cuBLAS's and cuDNN's kernels on the attention block
(bench/perf/NOTES.md). This pass replaces, in the torch dialect,
- a **linear**: `mm(f32(x), f32(permute(W)))` of an f16/bf16 activation `x` [M, K] by a constant weight `W` [N, K],
  with torch's bias add and rounding to f16 after it where they follow (`linear` in f16, decomposed), by a call of
  `effc_linear`: y = x·Wᵀ + bias, accumulated in f32, rounded once; likewise `mm(x, permute(W))` in f32, whose
  products are IEEE FMAs or tensor-core products of TF32 or bf16 pieces (`f32-precision`);
- an **attention**: `scaled_dot_product_attention(q, k, v)` without mask, dropout or causality, by a call of
  `effc_attention` (flash attention: running maximum and sum over blocks of keys). q, k and v are read where their
  producer wrote them: the layout ops between (a fused projection's views, permute and slices) are replayed on
  element indices, and where the result is one offset and three strides the kernel takes those instead of a copy.
  Its output is written heads-last ([B, T, H, D]), which is what the output projection reads.

Each call is declared (`func.func private @effc_hopper_*`) with its kernel's specialization in `effc.hopper_kernel`.
`define_kernels` builds the cubins with Triton (hopper_triton.py) when the module goes to iree-compile, and defines
the calls as `flow.dispatch`es of `hal.executable.source`s that carry them. The cubins are for sm_90a: such a module
loads on compute capability 9.0 only, so the pass is for `--target cuda` on a Hopper card, and opt-in.

Left as they are, counted in the module attributes `effc.hopper_linear` and `effc.hopper_attention`: other dtypes,
dynamic shapes, shapes that are not multiples of the kernels' tiles, weights that are not constants, masks.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import (
    CAST,
    TRANSPOSE_OPS,
    VIEW_OPS,
    Builder,
    constant_bool,
    constant_int_list,
    constant_number,
    is_none,
    producer,
    replay_layout,
    tensor_type,
)
from effc.passes.custom_dispatch import declare_function, declared_functions, with_executables
from effc.passes.matmul_weights import constant_source
from effc.passes.site_rewrites import Skip, rewrite_sites

LINEAR_REPORT, ATTENTION_REPORT = "effc.hopper_linear", "effc.hopper_attention"
KERNEL_PREFIX = "effc_hopper_"
SPEC_ATTRIBUTE = "effc.hopper_kernel"
HALF = ("f16", "bf16")
TRITON_TYPES = {"f16": "fp16", "bf16": "bf16", "f32": "fp32"}
# How f32 operands are multiplied (Triton's `input_precision`): IEEE FMAs, or on tensor cores three products of
# TF32 or bf16 pieces (about f32's and torch's "high" accuracy), or one TF32 product.
F32_PRECISIONS = ("ieee", "tf32x3", "bf16x3", "tf32")
# Tiles: 128x128 outputs in 8 warps (two warpgroups of wgmma), K in steps of 64 (f32: 32), 4 stages (f32: 3), 128
# KiB (96) of shared memory; attention 128 queries a block, keys 64 at a time. Indexed by "is f32".
LINEAR_TILE, LINEAR_WARPS, LINEAR_GROUP = 128, 8, 8
LINEAR_K, LINEAR_STAGES = (64, 32), (4, 3)
QUERY_BLOCK, KEY_BLOCK, ATTENTION_WARPS, ATTENTION_STAGES = 128, 64, 8, 3
HEAD_DIMS = (16, 32, 64, 128)
_LAYOUT_OPS = VIEW_OPS | TRANSPOSE_OPS | {"torch.aten.slice.Tensor", "torch.aten.squeeze.dim", "torch.aten.unsqueeze"}


@dataclass(frozen=True)
class KernelSpec:
    """One kernel launch: which kernel, its pointer arguments with Triton's types (IREE's bindings in order), its
    constants and grid."""

    kernel: str
    pointers: tuple[tuple[str, str], ...]
    constants: tuple[tuple[str, int | float | bool | str], ...]
    grid: tuple[int, int, int]
    warps: int
    stages: int
    image: str = "cubin"

    def text(self) -> str:
        """The spec as the declaration's attribute holds it: readable, no quotes."""
        pointers = ",".join(f"{name}:{kind}" for name, kind in self.pointers)
        grid = "x".join(map(str, self.grid))
        launch = f"ptrs={pointers} grid={grid} warps={self.warps} stages={self.stages} image={self.image}"
        return f"{self.kernel} {launch} " + " ".join(f"{k}={v}" for k, v in self.constants)

    @staticmethod
    def parse(text: str) -> KernelSpec:
        kernel, *fields = text.split()
        values = dict(field.split("=", 1) for field in fields)
        pointers = tuple(tuple(pointer.split(":")) for pointer in values.pop("ptrs").split(","))
        grid = values.pop("grid").split("x")
        warps, stages, image = int(values.pop("warps")), int(values.pop("stages")), values.pop("image")
        return KernelSpec(
            kernel,
            pointers,
            tuple((k, _number(v)) for k, v in values.items()),
            (int(grid[0]), int(grid[1]), int(grid[2])),
            warps,
            stages,
            image,
        )


@dataclass(frozen=True)
class Build:
    """The pass's options for every kernel: pipeline stages (0: each kernel's default), the image kind, and how f32
    operands multiply."""

    stages: int = 0
    image: str = "cubin"
    f32_precision: str = "ieee"

    def apply(self, spec: KernelSpec) -> KernelSpec:
        return dataclasses.replace(spec, stages=self.stages or spec.stages, image=self.image)


def called_spec(call: ir.Operation) -> KernelSpec | None:
    """The spec of the Hopper kernel that `call` (a `func.call`) calls, or None for any other callee."""
    callee = ir.FlatSymbolRefAttr(call.attributes["callee"]).value
    if not callee.startswith(KERNEL_PREFIX):
        return None
    declared = declared_functions(_module_of(call)).get(callee)
    return KernelSpec.parse(ir.StringAttr(declared.attributes[SPEC_ATTRIBUTE]).value) if declared else None


def _module_of(op: ir.Operation) -> ir.Operation:
    """The `builtin.module` that holds `op`."""
    while op.name != "builtin.module":
        op = op.parent
    return op


def _number(text: str) -> int | float | bool | str:
    """A constant of the spec's text: a bool, int or float, else the word itself (a precision's name)."""
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _declare_call(anchor: ir.Operation, operands: list[ir.Value], result: ir.Type, spec: KernelSpec) -> ir.Value:
    """A call, placed before `anchor`, of a fresh private declaration that carries `spec`."""
    module = _module_of(anchor)
    taken = declared_functions(module)
    stem = KERNEL_PREFIX + spec.kernel.removeprefix("effc_")
    name = next(f"{stem}_{i}" for i in range(len(taken) + 1) if f"{stem}_{i}" not in taken)
    inputs = [v.type for v in operands]
    declare_function(module, name, inputs, result, {SPEC_ATTRIBUTE: ir.StringAttr.get(spec.text())})
    callee = {"callee": ir.FlatSymbolRefAttr.get(name)}
    return Builder(anchor).op("func.call", operands, [result], callee).result


def _kernel_operand(value: ir.Value) -> ir.Value:
    """What the kernel reads for a matmul operand: the f16/bf16 tensor that `value` is a cast of to f32 (torch's f16
    `linear` decomposed), or `value` itself in f32 (else `Skip`)."""
    cast = producer(value)
    source = tensor_type(cast.operands[0]) if cast is not None and cast.name == CAST else None
    if source is not None and source.dtype in HALF:
        return cast.operands[0]
    own = tensor_type(value)
    if own is None or own.dtype != "f32":
        raise Skip("operand neither f32 nor an f16/bf16 tensor cast to f32")
    return value


def _weight(value: ir.Value) -> ir.Value:
    """The constant [N, K] weight that `value` is the transpose of (cast to f32 for an f16 one; else `Skip`)."""
    found = constant_source(_kernel_operand(value))
    if found is None or not found[1]:
        raise Skip("weight not a transposed constant")
    return found[0].results[0]


def _only_user(value: ir.Value, name: str) -> ir.Operation | None:
    users = [use.owner for use in value.uses]
    return users[0] if len(users) == 1 and users[0].name == name else None


def _scaled_by_one(value: ir.Value) -> ir.Value:
    """`value` past a `mul.Scalar` by 1 (torch's addmm decomposition multiplies both terms by their alpha/beta)."""
    mul = _only_user(value, "torch.aten.mul.Scalar")
    return mul.results[0] if mul is not None and constant_number(mul.operands[1]) == 1 else value


def _unscaled(value: ir.Value) -> ir.Value:
    op = producer(value)
    return (
        op.operands[0]
        if op is not None and op.name == "torch.aten.mul.Scalar" and constant_number(op.operands[1]) == 1
        else value
    )


def _bias_tail(mm: ir.Operation, dtype: str) -> tuple[ir.Value, ir.Operation] | None:
    """(the bias, the op that ends the linear) where `mm`'s product gets a 1-D bias of `dtype`: the add in f32; in
    f16/bf16 the rounding to `dtype` after it, the bias cast from `dtype` to f32 before."""
    add = _only_user(_scaled_by_one(mm.results[0]), "torch.aten.add.Tensor")
    if add is None or constant_number(add.operands[2]) != 1:
        return None
    bias = _unscaled(add.operands[1])
    if dtype == "f32":
        found = tensor_type(bias)
        return (bias, add) if found is not None and found.dtype == "f32" and len(found.shape) == 1 else None
    bias_cast = producer(bias)
    source = tensor_type(bias_cast.operands[0]) if bias_cast is not None and bias_cast.name == CAST else None
    rounding = _only_user(add.results[0], CAST)
    rounded = tensor_type(rounding.results[0]) if rounding is not None else None
    if source is None or source.dtype != dtype or len(source.shape) != 1 or rounded is None or rounded.dtype != dtype:
        return None
    return bias_cast.operands[0], rounding


def _rewrite_linear(mm: ir.Operation, build: Build) -> None:
    """Replace `mm` (and its bias, and rounding) by a call of `effc_linear` (else `Skip`)."""
    x, w = _kernel_operand(mm.operands[0]), _weight(mm.operands[1])
    x_type, w_type = tensor_type(x), tensor_type(w)
    assert x_type is not None and w_type is not None
    if x_type.dtype != w_type.dtype:
        raise Skip("operands of two dtypes")
    if not (x_type.static and w_type.static):
        raise Skip("dynamic shape")
    (m, k), n = x_type.shape, w_type.shape[0]
    step = LINEAR_K[x_type.dtype == "f32"]
    if m % LINEAR_TILE or n % LINEAR_TILE or k % step:
        raise Skip(f"shape not a multiple of the kernel's tiles ({LINEAR_TILE}x{LINEAR_TILE}, K {step})")
    tail = _bias_tail(mm, x_type.dtype)
    kind = "*" + TRITON_TYPES[x_type.dtype]
    operands, out = [x, w], tensor_type(mm.results[0])
    assert out is not None
    replaced = mm.results[0]
    if tail is not None:
        operands.append(tail[0])
        replaced = tail[1].results[0]
        out = dataclasses.replace(out, dtype=x_type.dtype)
    constants: tuple[tuple[str, int | float | bool | str], ...] = (
        ("M", m), ("N", n), ("K", k), ("HAS_BIAS", tail is not None),
        ("BM", LINEAR_TILE), ("BN", LINEAR_TILE), ("BK", step), ("GROUP", LINEAR_GROUP),
    )  # fmt: skip
    if x_type.dtype == "f32":
        constants += (("PRECISION", build.f32_precision),)
    names = ("x", "w", "bias", "y") if tail is not None else ("x", "w", "y")
    kinds = (*(kind for _ in operands), kind if tail is not None else "*fp32")
    spec = KernelSpec(
        "effc_linear",
        tuple(zip(names, kinds, strict=True)),
        constants,
        ((m // LINEAR_TILE) * (n // LINEAR_TILE), 1, 1),
        LINEAR_WARPS,
        LINEAR_STAGES[x_type.dtype == "f32"],
    )
    anchor = tail[1] if tail is not None else mm
    replaced.replace_all_uses_with(_declare_call(anchor, operands, out.ir_type(), build.apply(spec)))


def _strided(value: ir.Value) -> tuple[ir.Value, tuple[int, int, int, int]]:
    """(base, (offset, batch, head and row strides)) such that `value` [B, H, T, D] is base's elements at
    offset + b·batch + h·head + t·row + d; `value` itself, contiguous, where its layout ops give no such form."""
    chain: list[ir.Operation] = []
    op = producer(value)
    while op is not None and op.name in _LAYOUT_OPS:
        chain.insert(0, op)
        op = producer(op.operands[0])
    shape = tensor_type(value).shape  # type: ignore[union-attr]
    contiguous = (value, (0, shape[1] * shape[2] * shape[3], shape[2] * shape[3], shape[3]))
    if not chain:
        return contiguous
    base = chain[0].operands[0]
    base_type = tensor_type(base)
    if base_type is None or not base_type.static:
        return contiguous
    indices = np.arange(int(np.prod(base_type.shape)), dtype=np.int64).reshape(base_type.shape)
    try:
        for layout in chain:
            indices = replay_layout(layout, indices)
    except ValueError:
        return contiguous
    at = int(indices[0, 0, 0, 0])
    strides = [
        int(indices[tuple(1 if a == axis else 0 for a in range(4))]) - at if shape[axis] > 1 else 0 for axis in range(4)
    ]
    b, h, t, d = np.ogrid[: shape[0], : shape[1], : shape[2], : shape[3]]
    affine = at + b * strides[0] + h * strides[1] + t * strides[2] + d * strides[3]
    if strides[3] != 1 or not np.array_equal(indices, affine):
        return contiguous
    return base, (at, strides[0], strides[1], strides[2])


def _rewrite_attention(sdpa: ir.Operation, build: Build) -> None:
    """Replace `sdpa` by a call of `effc_attention` (else `Skip`)."""
    q, k, v, mask, dropout, causal = list(sdpa.operands)[:6]
    scale = sdpa.operands[6] if len(sdpa.operands) > 6 else None
    gqa = sdpa.operands[7] if len(sdpa.operands) > 7 else None
    if not is_none(mask) or constant_number(dropout) != 0 or constant_bool(causal) is not False:
        raise Skip("a mask, dropout or causal attention")
    if gqa is not None and constant_bool(gqa) is not False:
        raise Skip("grouped-query attention")
    types = [tensor_type(t) for t in (q, k, v, sdpa.results[0])]
    if any(t is None or not t.static or len(t.shape) != 4 for t in types):
        raise Skip("not static 4-D tensors")
    qt, kt, vt, ot = types
    assert qt is not None and kt is not None and vt is not None and ot is not None
    if len({t.dtype for t in types}) != 1 or qt.dtype not in TRITON_TYPES:
        raise Skip("not one of f16, bf16, f32 throughout")
    batch, heads, queries, dim = qt.shape
    keys = kt.shape[2]
    if kt.shape != (batch, heads, keys, dim) or vt.shape != kt.shape or dim not in HEAD_DIMS:
        raise Skip(f"shapes other than q, k, v of one head dim in {HEAD_DIMS}")
    if queries % QUERY_BLOCK or keys % KEY_BLOCK:
        raise Skip(f"queries not a multiple of {QUERY_BLOCK} or keys of {KEY_BLOCK}")
    factor = (1 / math.sqrt(dim)) if scale is None or is_none(scale) else constant_number(scale)
    if factor is None:
        raise Skip("a scale that is not a constant")
    bases = [_strided(t) for t in (q, k, v)]
    constants: list[tuple[str, int | float | bool | str]] = []
    for name, (_, (at, sb, sh, st)) in zip("QKV", bases, strict=True):
        constants += [(f"{name}_AT", at), (f"{name}_B", sb), (f"{name}_H", sh), (f"{name}_T", st)]
    constants += [
        ("O_B", queries * heads * dim), ("O_H", dim), ("O_T", heads * dim),
        ("HEADS", heads), ("QUERIES", queries), ("KEYS", keys), ("D", dim),
        ("SCALE_LOG2", factor * math.log2(math.e)), ("BM", QUERY_BLOCK), ("BN", KEY_BLOCK),
    ]  # fmt: skip
    if qt.dtype == "f32":
        constants.append(("PRECISION", build.f32_precision))
    kind = "*" + TRITON_TYPES[qt.dtype]
    spec = KernelSpec(
        "effc_attention",
        tuple((name, kind) for name in ("q", "k", "v", "o")),
        tuple(constants),
        (queries // QUERY_BLOCK, batch * heads, 1),
        ATTENTION_WARPS,
        ATTENTION_STAGES,
    )
    heads_last = dataclasses.replace(ot, shape=(batch, queries, heads, dim))
    b = Builder(sdpa)
    # q, k and v read from one tensor are three bindings of it: IREE keeps an external dispatch's bindings as declared.
    out = _declare_call(sdpa, [base for base, _ in bases], heads_last.ir_type(), build.apply(spec))
    back = _only_user(sdpa.results[0], "torch.aten.permute")
    if back is not None and constant_int_list(back.operands[1]) == [0, 2, 1, 3]:
        back.results[0].replace_all_uses_with(out)  # the model's own transpose back to heads-last
    else:
        sdpa.results[0].replace_all_uses_with(b.permute(out, (0, 2, 1, 3)))


def hopper_kernels_module(
    module: ir.Operation, *, linear: bool = True, attention: bool = True, build: Build = Build()
) -> list[str]:
    """Rewrite the linears and attention of `module` (a builtin.module op) that fit; the two reports."""
    reports = []
    with module.context, module.location:
        for wanted, op_name, rewrite, attribute, what in (
            (linear, "torch.aten.mm", _rewrite_linear, LINEAR_REPORT, "matmuls as effc's Hopper linear kernel"),
            (attention, "torch.aten.scaled_dot_product_attention", _rewrite_attention, ATTENTION_REPORT,
             "attentions as effc's Hopper attention kernel"),
        ):  # fmt: skip
            if not wanted:
                continue
            sites = [
                op.operation
                for _, _, block in functions(module)
                for op in block.operations
                if op.operation.name == op_name
            ]
            reports.append(
                rewrite_sites(module, sites, functools.partial(rewrite, build=build), attribute=attribute, what=what)
            )
    return reports


# ---- definitions, when the module goes to iree-compile (as text: torch-mlir's bindings know no `hal` dialect) ----
_DECLARATION = re.compile(
    rf"^(\s*)func\.func private @({KERNEL_PREFIX}\w+)\((.*)\) -> (!torch\.vtensor<[^>]*>) "
    rf'attributes \{{{re.escape(SPEC_ATTRIBUTE)} = "([^"]*)"\}}(?: loc\(.*\))?\s*$',
    re.MULTILINE,
)
_VTENSOR = re.compile(r"!torch\.vtensor<\[([^\]]*)\],(\w+)>")


def _builtin(torch_type: str) -> str:
    found = _VTENSOR.fullmatch(torch_type)
    assert found is not None
    return f"tensor<{found.group(1).replace(',', 'x')}x{found.group(2)}>"


def _executable(name: str, spec: KernelSpec) -> str:
    """The `hal.executable.source` that carries `spec`'s cubin."""
    from effc.passes.hopper_triton import cubin

    built = cubin(spec.kernel, spec.pointers, spec.constants, spec.warps, spec.stages, spec.image)
    bindings = ", ".join(
        ["#hal.pipeline.binding<storage_buffer, ReadOnly>"] * (len(spec.pointers) - 1)
        + ["#hal.pipeline.binding<storage_buffer>"]
    )
    data = built.image.hex().upper()
    grid = [f"%g{i} = arith.constant {n} : index" for i, n in enumerate(spec.grid)]
    return "\n".join(
        [
            f"  hal.executable.source private @{name}_exe <{{objects = #hal.executable.objects<{{"
            f'#hal.executable.target<"cuda", "cuda-nvptx-fb"> = [#hal.executable.object<{{data = dense<"0x{data}"> '
            f": vector<{len(built.image)}xi8>}}>]}}>}}> {{",
            f"    hal.executable.export public @{built.name} ordinal(0) layout(#hal.pipeline.layout<bindings = "
            f"[{bindings}]>) count(%device: !hal.device) -> (index, index, index) {{",
            *(f"      {line}" for line in grid),
            "      hal.return %g0, %g1, %g2 : index, index, index",
            f"    }} <{{workgroup_size = [{built.threads} : index, 1 : index, 1 : index], "
            f"workgroup_local_memory = {built.shared_bytes} : index}}>",
            "  }",
        ]
    )


def _definition(found: re.Match[str], executables: list[str]) -> str:
    indent, name, arguments, result, spec_text = found.groups()
    spec = KernelSpec.parse(spec_text)
    executables.append(_executable(name, spec))
    inputs = _VTENSOR.findall(arguments)
    torch_types = [f"!torch.vtensor<[{shape}],{dtype}>" for shape, dtype in inputs]
    builtins = [_builtin(t) for t in torch_types]
    params = ", ".join(f"%a{i}: {t}" for i, t in enumerate(torch_types))
    kernel_name = spec.kernel
    lines = [f"func.func private @{name}({params}) -> {result} {{"]
    lines += [
        f"  %b{i} = torch_c.to_builtin_tensor %a{i} : {t} -> {b}"
        for i, (t, b) in enumerate(zip(torch_types, builtins, strict=True))
    ]
    lines += [
        f"  %r = flow.dispatch @{name}_exe::@{kernel_name}({', '.join(f'%b{i}' for i in range(len(builtins)))})"
        f" : ({', '.join(builtins)}) -> {_builtin(result)}",
        f"  %y = torch_c.from_builtin_tensor %r : {_builtin(result)} -> {result}",
        f"  return %y : {result}",
        "}",
    ]
    return "\n".join(indent + line for line in lines)


def declared_kernels(text: str) -> dict[str, KernelSpec]:
    """The kernel declarations of a module's text (as the pass leaves it), by function name."""
    return {found.group(2): KernelSpec.parse(found.group(5)) for found in _DECLARATION.finditer(text)}


def define_kernels(text: str, target: str) -> str:
    """`text` with its Hopper kernel declarations defined and their executables added; unchanged where it has none."""
    if KERNEL_PREFIX not in text:
        return text
    executables: list[str] = []
    defined, count = _DECLARATION.subn(lambda found: _definition(found, executables), text)
    if not count:
        return text
    if target != "cuda":
        raise EffcError(
            f"effc-hopper-kernels' kernels run on NVIDIA Hopper GPUs, not target {target}: compile with "
            "--target cuda, or drop effc-hopper-kernels from the pipeline"
        )
    return with_executables(defined, "\n".join(executables), "effc-hopper-kernels")


@dataclasses.dataclass(frozen=True)
class HopperKernelsPass(ModulePass):
    name: ClassVar[str] = "effc-hopper-kernels"
    description: ClassVar[str] = (
        "Run linears by constant weights and unmasked attention on effc's Triton kernels for Hopper (wgmma, sm_90a; "
        "IREE 3.13 emits sm_80 code), as IREE custom dispatches: --target cuda on an H100/H200 only."
    )

    linear: bool = dataclasses.field(default=True, metadata={"help": "rewrite linears (mm by a constant weight)"})
    attention: bool = dataclasses.field(default=True, metadata={"help": "rewrite scaled_dot_product_attention"})
    stages: int = dataclasses.field(
        default=0, metadata={"help": "software pipeline stages of every kernel (0: linear 4, attention 3)"}
    )
    image: str = dataclasses.field(
        default="cubin",
        metadata={"help": "what the module carries: cubin (ptxas here) or ptx (the driver compiles it)"},
    )
    f32_precision: str = dataclasses.field(
        default="ieee",
        metadata={"help": f"how f32 operands multiply: {', '.join(F32_PRECISIONS)} (Triton's input_precision)"},
    )

    def apply(self, module: ir.Operation) -> None:
        if self.image not in ("cubin", "ptx"):
            raise EffcError(f"effc-hopper-kernels: image={self.image} is not one of: cubin, ptx")
        if self.stages < 0:
            raise EffcError(f"effc-hopper-kernels: stages={self.stages} must be 0 (the defaults) or more")
        if self.f32_precision not in F32_PRECISIONS:
            raise EffcError(
                f"effc-hopper-kernels: f32-precision={self.f32_precision} is not one of: {', '.join(F32_PRECISIONS)}"
            )
        build = Build(self.stages, self.image, self.f32_precision)
        hopper_kernels_module(module, linear=self.linear, attention=self.attention, build=build)
