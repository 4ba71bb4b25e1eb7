"""`effc-vnni-matmul`: effc's own int8 matmul kernel for CPUs with AVX512-VNNI, as an IREE custom dispatch.

IREE 3.13's int8 tile for AVX-512 widens i8 to i16 pairs (`vpdpwssd`, 32 multiply-adds an instruction, as many as
bf16's `vdpbf16ps`), so `--matmul-precision int8` was no faster than `medium` on a Zen 4. AVX512-VNNI's `vpdpbusd`
multiplies u8 by s8 in fours, 64 an instruction (234 G multiply-adds/s per Zen 4 core against 117). It needs one
unsigned operand, so the weights are stored as u8 (w + 128) and 128 times each activation row's sum is taken back:

    C[m][n] = sum_k x[m][k] * (W[n][k] + 128) - 128 * sum_k x[m][k]

Each `aten.mm` of int8 rows by an int8 constant (what effc-quantize-dynamic makes) whose shape fits the kernel's
tiles (columns a multiple of 64, K of 64; any rows) becomes a call of `@effc_vnni_qgemm_MxNxK`, declared here, with
the weights packed in numpy into panels of 32 columns, [N/32][K/4][32][4], so that one 64-byte load holds 16
columns' four consecutive k. `define_kernels` turns the declarations into definitions when the module goes to iree-
compile (as text: torch-mlir's bindings do not know IREE's dialects): a `flow.dispatch` of a stream executable whose
function is the kernel, written in MLIR (scf loops, vector loads, `vpdpbusd` as an LLVM intrinsic), one workgroup
per 64 output columns, an 8x32 register tile (the rows left over, or a decode step's one, in 1x32 tiles). So no C
compiler is involved, and IREE still fuses the quantizing and rescaling around it. The results are exactly those of
IREE's int8 matmul (integer arithmetic). Measured on MiniLM's shapes, whole calls: 1.4-2.0x IREE's int8 matmul
(bench/perf/NOTES.md, twenty-second session).

Only for llvm-cpu on a host with AVX512-VNNI (`--matmul-precision int8` adds it there). Left as they are, counted
in the module attribute `effc.vnni_matmul`: matmuls that are not int8 by an int8 constant, or do not fit the tiles.
"""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar

import numpy as np
from torch_mlir import ir

from effc.compiler.errors import EffcError
from effc.compiler.host_cpu import has_int8_dot_u8s8
from effc.passes.base import ModulePass
from effc.passes.chai import functions
from effc.passes.chai_narrow import Builder, producer, tensor_type
from effc.passes.custom_dispatch import declare_function, declared_functions, with_executables
from effc.passes.matmul_weights import literal_array, resource_literal
from effc.passes.site_rewrites import Skip, rewrite_sites

REPORT_ATTRIBUTE = "effc.vnni_matmul"
KERNEL_PREFIX = "effc_vnni_qgemm_"
# The kernel's export: one executable for every shape (M, N and K are operands), so one dispatch name in a profile.
KERNEL_EXPORT = "matmul_u8s8"
TILE_ROWS, TILE_COLUMNS, K_STEP = 8, 64, 64  # rows per register tile, columns per workgroup, K per row-sum step
# How torch-mlir prints the declarations `_rewrite` makes (with a location where debug info is printed).
_DECLARATION = re.compile(
    rf"^(\s*)func\.func private @{KERNEL_PREFIX}(\d+)x(\d+)x(\d+)\(.*\) -> !torch\.vtensor<[^>]*>(?: loc\(.*\))?\s*$",
    re.MULTILINE,
)
# LLVM 20+ spells vpdpbusd's operands as bytes: (i32 accumulators, u8 x 64, s8 x 64).
_VPDPBUSD = '"llvm.x86.avx512.vpdpbusd.512"'
_DOT_TYPE = "(vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>"


def packed_weights(w: np.ndarray) -> np.ndarray:
    """[N, K] int8 weights as the kernel reads them: u8 (w + 128) in panels [N/32][K/4][32][4], as int8 bytes."""
    n, k = w.shape
    unsigned = (w.astype(np.int16) + 128).astype(np.uint8)
    return unsigned.reshape(n // 32, 32, k // 4, 4).transpose(0, 2, 1, 3).reshape(-1).view(np.int8)


def _int8_literal(value: ir.Value) -> ir.Operation:
    op = producer(value)
    if op is None or op.name != "torch.vtensor.literal":
        raise Skip("weight not an int8 constant")
    return op


def _rewrite(module: ir.Operation, mm: ir.Operation) -> None:
    """Replace an int8 `aten.mm` by a constant with a call of the kernel for its shape (else `Skip`)."""
    x, w, out = tensor_type(mm.operands[0]), tensor_type(mm.operands[1]), tensor_type(mm.results[0])
    if x is None or w is None or out is None or (x.dtype, w.dtype, out.dtype) != ("si8", "si8", "si32"):
        raise Skip("not int8 x int8 -> int32")
    if not (x.static and w.static and len(x.shape) == 2):
        raise Skip("dynamic shape")
    literal = _int8_literal(mm.operands[1])
    (m, k), n = x.shape, w.shape[1]
    if n % TILE_COLUMNS or k % K_STEP:
        raise Skip(f"shape not a multiple of the kernel's tiles (columns {TILE_COLUMNS}, K {K_STEP})")
    weights = literal_array(literal, np.int8)
    if weights is None:
        raise Skip("weight data not in the module")
    b = Builder(mm)
    packed = resource_literal(b, packed_weights(np.ascontiguousarray(weights.T)), "si8", "effc_vnni_weight")
    name = f"{KERNEL_PREFIX}{m}x{n}x{k}"
    if name not in declared_functions(module):
        declare_function(module, name, [mm.operands[0].type, packed.type], mm.results[0].type, {})
    callee = {"callee": ir.FlatSymbolRefAttr.get(name)}
    mm.results[0].replace_all_uses_with(
        b.op("func.call", [mm.operands[0], packed], [mm.results[0].type], callee).result
    )


def vnni_matmul_module(module: ir.Operation) -> str:
    """Rewrite every int8 matmul by a constant in `module` (a builtin.module op) that fits; returns the report."""
    with module.context, module.location:
        sites = [
            op.operation
            for _, _, block in functions(module)
            for op in block.operations
            if op.operation.name == "torch.aten.mm"
        ]
        return rewrite_sites(
            module,
            sites,
            lambda mm: _rewrite(module, mm),
            attribute=REPORT_ATTRIBUTE,
            what="matmuls on effc's AVX512-VNNI int8 kernel",
        )


def kernel_call_rows(module: ir.Operation) -> list[int]:
    """The rows of each call of the kernel in `module` (a builtin.module op): all 1 in a decode step."""
    rows = []
    with module.context:
        for _, _, block in functions(module):
            for op in block.operations:
                call = op.operation
                if call.name != "func.call":
                    continue
                x = tensor_type(call.operands[0])
                if ir.FlatSymbolRefAttr(call.attributes["callee"]).value.startswith(KERNEL_PREFIX) and x is not None:
                    rows.append(x.shape[0])
    return rows


def _row_offsets(rows: int) -> list[str]:
    """128 times each tile row's sum, broadcast (the weights' +128 offset in every output), from `vpdpbusd` by ones."""
    lines = []
    for r in range(rows):
        lines += [
            f"%r{r} = arith.constant {r} : index",
            f"%row{r} = arith.addi %m0, %r{r} : index",
            f"%a_row{r} = arith.muli %row{r}, %k : index",
            f"%c_row{r} = arith.muli %row{r}, %n : index",
            f"%sums{r} = scf.for %kk = %c0 to %k step %c64 iter_args(%s = %zeros) -> (vector<16xi32>) {{",
            f"  %at = arith.addi %a_row{r}, %kk : index",
            "  %x64 = vector.load %a[%at] : memref<?xi8>, vector<64xi8>",
            f"  %s_next = llvm.call_intrinsic {_VPDPBUSD}(%s, %ones, %x64) : {_DOT_TYPE}",
            "  scf.yield %s_next : vector<16xi32>",
            "}",
            f"%sum{r} = vector.reduction <add>, %sums{r} : vector<16xi32> into i32",
            f"%offset{r} = arith.muli %sum{r}, %c128_i32 : i32",
            f"%fix{r} = vector.broadcast %offset{r} : i32 to vector<16xi32>",
        ]
    return lines


def _tile(rows: int) -> list[str]:
    """The rows x 32 tile at columns %nt: K/4 steps of two 64-byte weight loads, `rows` broadcasts and 2 x `rows`
    `vpdpbusd`."""
    halves = [(r, h) for r in range(rows) for h in range(2)]
    types = ", ".join(["vector<16xi32>"] * len(halves))
    starts = ", ".join(f"%acc{r}_{h} = %zeros" for r, h in halves)
    lines = [
        "%panel = arith.divui %nt, %c32 : index",
        "%panel_at = arith.muli %panel, %k32 : index",
        f"%acc:{len(halves)} = scf.for %kk = %c0 to %k step %c4 iter_args({starts}) -> ({types}) {{",
        "  %kk32 = arith.muli %kk, %c32 : index",
        "  %w_at0 = arith.addi %panel_at, %kk32 : index",
        "  %w_at1 = arith.addi %w_at0, %c64 : index",
        "  %w0 = vector.load %w[%w_at0] : memref<?xi8>, vector<64xi8>",
        "  %w1 = vector.load %w[%w_at1] : memref<?xi8>, vector<64xi8>",
    ]
    for r in range(rows):
        lines += [
            f"  %x_at{r} = arith.addi %a_row{r}, %kk : index",
            f"  %x4_{r} = vector.load %a[%x_at{r}] : memref<?xi8>, vector<4xi8>",
            f"  %x1_{r} = vector.bitcast %x4_{r} : vector<4xi8> to vector<1xi32>",
            f"  %xs{r} = vector.extract %x1_{r}[0] : i32 from vector<1xi32>",
            f"  %xb{r} = vector.broadcast %xs{r} : i32 to vector<16xi32>",
            f"  %x{r} = vector.bitcast %xb{r} : vector<16xi32> to vector<64xi8>",
            *(
                f"  %next{r}_{h} = llvm.call_intrinsic {_VPDPBUSD}(%acc{r}_{h}, %w{h}, %x{r}) : {_DOT_TYPE}"
                for h in range(2)
            ),
        ]
    lines += [f"  scf.yield {', '.join(f'%next{r}_{h}' for r, h in halves)} : {types}", "}"]
    for i, (r, h) in enumerate(halves):
        lines += [
            f"%out{r}_{h} = arith.subi %acc#{i}, %fix{r} : vector<16xi32>",
            f"%c_at{r}_{h}_row = arith.addi %c_row{r}, %nt : index",
            f"%c_at{r}_{h} = arith.addi %c_at{r}_{h}_row, %c{16 * h} : index",
            f"vector.store %out{r}_{h}, %c[%c_at{r}_{h}] : memref<?xi32>, vector<16xi32>",
        ]
    return lines


def _row_tiles(rows: int, first: str, last: str) -> list[str]:
    """Rows `first` to `last` (SSA index names) in tiles of `rows`, over the workgroup's columns."""
    return [
        f"scf.for %m0 = {first} to {last} step %c{rows} {{",
        *("  " + line for line in _row_offsets(rows)),
        "  scf.for %nt = %n0 to %n1 step %c32 {",
        *("    " + line for line in _tile(rows)),
        "  }",
        "}",
    ]


def kernel_executable() -> str:
    """`stream.executable @effc_vnni` exporting `@matmul_u8s8(a, packed w, c, m, n, k)` (a name with "matmul": the
    profiler counts it as one): a workgroup per 64 columns."""
    body = [
        "%c0 = arith.constant 0 : index",
        "%c1 = arith.constant 1 : index",
        "%c4 = arith.constant 4 : index",
        "%c8 = arith.constant 8 : index",
        "%c16 = arith.constant 16 : index",
        "%c32 = arith.constant 32 : index",
        "%c64 = arith.constant 64 : index",
        "%c128_i32 = arith.constant 128 : i32",
        "%zeros = arith.constant dense<0> : vector<16xi32>",
        "%ones = arith.constant dense<1> : vector<64xi8>",
        "%workgroup = hal.interface.workgroup.id[0] : index",
        "%n0 = arith.muli %workgroup, %c64 : index",
        "%n1 = arith.addi %n0, %c64 : index",
        "%mk = arith.muli %m, %k : index",
        "%nk = arith.muli %n, %k : index",
        "%mn = arith.muli %m, %n : index",
        "%k32 = arith.muli %k, %c32 : index",
        "%a = stream.binding.subspan %a_binding[%c0] : !stream.binding -> memref<?xi8>{%mk}",
        "%w = stream.binding.subspan %w_binding[%c0] : !stream.binding -> memref<?xi8>{%nk}",
        "%c = stream.binding.subspan %c_binding[%c0] : !stream.binding -> memref<?xi32>{%mn}",
        # Whole 8-row tiles, then the rows left (fewer than 8, or a decode step's one) one at a time.
        "%m_tiles = arith.divui %m, %c8 : index",
        "%m_tiled = arith.muli %m_tiles, %c8 : index",
        *_row_tiles(TILE_ROWS, "%c0", "%m_tiled"),
        *_row_tiles(1, "%m_tiled", "%m"),
        "return",
    ]
    return "\n".join(
        [
            "  stream.executable private @effc_vnni {",
            f"    stream.executable.export public @{KERNEL_EXPORT} workgroups(%n: index) -> (index, index, index) {{",
            f"      %panels = affine.apply affine_map<()[s0] -> (s0 ceildiv {TILE_COLUMNS})>()[%n]",
            "      %c1 = arith.constant 1 : index",
            "      stream.return %panels, %c1, %c1 : index, index, index",
            "    }",
            "    builtin.module {",
            f"      func.func @{KERNEL_EXPORT}(%a_binding: !stream.binding, %w_binding: !stream.binding, "
            "%c_binding: !stream.binding, %m: index, %n: index, %k: index) {",
            *("        " + line for line in body),
            "      }",
            "    }",
            "  }",
        ]
    )


def _definition(found: re.Match[str]) -> str:
    """The body of a kernel declaration: torch tensors to builtin ones, the dispatch, and back."""
    indent, (m, n, k) = found.group(1), (int(found.group(i)) for i in (2, 3, 4))
    torch_x, torch_w, torch_c = (
        f"!torch.vtensor<[{m},{k}],si8>",
        f"!torch.vtensor<[{n * k}],si8>",
        f"!torch.vtensor<[{m},{n}],si32>",
    )
    x, w, c = f"tensor<{m}x{k}xi8>", f"tensor<{n * k}xi8>", f"tensor<{m}x{n}xi32>"
    return "\n".join(
        indent + line
        for line in (
            f"func.func private @{KERNEL_PREFIX}{m}x{n}x{k}(%x: {torch_x}, %wp: {torch_w}) -> {torch_c} {{",
            f"  %a = torch_c.to_builtin_tensor %x : {torch_x} -> {x}",
            f"  %w = torch_c.to_builtin_tensor %wp : {torch_w} -> {w}",
            f"  %m = arith.constant {m} : index",
            f"  %n = arith.constant {n} : index",
            f"  %k = arith.constant {k} : index",
            f"  %c = flow.dispatch @effc_vnni::@{KERNEL_EXPORT}[%n](%a, %w, %m, %n, %k)",
            f"      : ({x}, {w}, index, index, index) -> {c}",
            f"  %y = torch_c.from_builtin_tensor %c : {c} -> {torch_c}",
            f"  return %y : {torch_c}",
            "}",
        )
    )


def define_kernels(text: str, target: str) -> str:
    """`text` (a module as iree-compile takes it) with its kernel declarations defined and the kernel's executable
    added; unchanged where it declares none. The kernel runs on llvm-cpu hosts with AVX512-VNNI only (effc compiles
    for the host CPU)."""
    if KERNEL_PREFIX not in text:
        return text
    defined, count = _DECLARATION.subn(_definition, text)
    if not count:
        return text
    if target != "llvm-cpu" or not has_int8_dot_u8s8():
        where = f"target {target}" if target != "llvm-cpu" else "this host CPU (no AVX512-VNNI)"
        raise EffcError(
            f"effc-vnni-matmul's int8 kernel cannot run on {where}: drop effc-vnni-matmul from the pipeline "
            "(IREE's own int8 matmuls run without it)"
        )
    return with_executables(defined, kernel_executable(), "effc-vnni-matmul")


@dataclasses.dataclass(frozen=True)
class VnniMatmulPass(ModulePass):
    name: ClassVar[str] = "effc-vnni-matmul"
    description: ClassVar[str] = (
        "Run int8 matmuls by constant weights (effc-quantize-dynamic's) on effc's AVX512-VNNI kernel (u8 x s8 "
        "vpdpbusd, an IREE custom dispatch) instead of IREE's i16-pair int8 tile: llvm-cpu hosts with AVX512-VNNI."
    )

    def apply(self, module: ir.Operation) -> None:
        vnni_matmul_module(module)
