"""qgemm.c's kernel written in MLIR instead of C, so that no C compiler is needed: a stream executable whose function
IREE code-generates as usual, with `vpdpbusd` as an LLVM intrinsic call, launched by `flow.dispatch` from a
torch-dialect function (compiled with `--iree-input-type=torch`, as effc's modules are). The activation rows' sums
(the u8 offset's correction) come from `vpdpbusd` too, by a vector of ones. K a multiple of 64, M of 8, N of 64.
"""

# LLVM 20+ spells the operands as bytes: (i32 accumulators, u8 x 64, s8 x 64).
VPDPBUSD = '"llvm.x86.avx512.vpdpbusd.512"'
ROWS = 8  # the register tile: 8 rows x 32 columns, 16 zmm accumulators
DOT = "(vector<16xi32>, vector<64xi8>, vector<64xi8>) -> vector<16xi32>"


def _row_sums(lines: list[str]) -> None:
    """128 times each of the tile's rows' sum, broadcast: what the weights' +128 offset added to every output."""
    for r in range(ROWS):
        lines += [
            f"%r{r} = arith.constant {r} : index",
            f"%row{r} = arith.addi %m0, %r{r} : index",
            f"%a_row{r} = arith.muli %row{r}, %k : index",
            f"%c_row{r} = arith.muli %row{r}, %n : index",
            f"%sums{r} = scf.for %kk = %c0 to %k step %c64 iter_args(%s = %zeros) -> (vector<16xi32>) {{",
            f"  %at = arith.addi %a_row{r}, %kk : index",
            "  %x64 = vector.load %a[%at] : memref<?xi8>, vector<64xi8>",
            f"  %s_next = llvm.call_intrinsic {VPDPBUSD}(%s, %ones, %x64) : {DOT}",
            "  scf.yield %s_next : vector<16xi32>",
            "}",
            f"%sum{r} = vector.reduction <add>, %sums{r} : vector<16xi32> into i32",
            f"%offset{r} = arith.muli %sum{r}, %c128_i32 : i32",
            f"%fix{r} = vector.broadcast %offset{r} : i32 to vector<16xi32>",
        ]


def _tile(lines: list[str]) -> None:
    """The 8x32 tile at columns %nt: K/4 steps of two 64-byte weight loads and 16 `vpdpbusd`."""
    accumulators = [f"%acc{r}_{h}" for r in range(ROWS) for h in range(2)]
    types = ", ".join(["vector<16xi32>"] * len(accumulators))
    lines += [
        "%panel = arith.divui %nt, %c32 : index",
        "%panel_at = arith.muli %panel, %k32 : index",
        f"%acc:{len(accumulators)} = scf.for %kk = %c0 to %k step %c4 "
        f"iter_args({', '.join(f'{a} = %zeros' for a in accumulators)}) -> ({types}) {{",
        "  %kk32 = arith.muli %kk, %c32 : index",
        "  %w_at0 = arith.addi %panel_at, %kk32 : index",
        "  %w_at1 = arith.addi %w_at0, %c64 : index",
        "  %w0 = vector.load %w[%w_at0] : memref<?xi8>, vector<64xi8>",
        "  %w1 = vector.load %w[%w_at1] : memref<?xi8>, vector<64xi8>",
    ]
    updated = []
    for r in range(ROWS):
        lines += [
            f"  %x_at{r} = arith.addi %a_row{r}, %kk : index",
            f"  %x4_{r} = vector.load %a[%x_at{r}] : memref<?xi8>, vector<4xi8>",
            f"  %x1_{r} = vector.bitcast %x4_{r} : vector<4xi8> to vector<1xi32>",
            f"  %xs{r} = vector.extract %x1_{r}[0] : i32 from vector<1xi32>",
            f"  %xb{r} = vector.broadcast %xs{r} : i32 to vector<16xi32>",
            f"  %x{r} = vector.bitcast %xb{r} : vector<16xi32> to vector<64xi8>",
        ]
        for h in range(2):
            lines.append(f"  %next{r}_{h} = llvm.call_intrinsic {VPDPBUSD}(%acc{r}_{h}, %w{h}, %x{r}) : {DOT}")
            updated.append(f"%next{r}_{h}")
    lines += [f"  scf.yield {', '.join(updated)} : {types}", "}"]
    for i, (r, h) in enumerate((r, h) for r in range(ROWS) for h in range(2)):
        lines += [
            f"%out{r}_{h} = arith.subi %acc#{i}, %fix{r} : vector<16xi32>",
            f"%c_at{r}_{h}_row = arith.addi %c_row{r}, %nt : index",
            f"%c_at{r}_{h} = arith.addi %c_at{r}_{h}_row, %c{16 * h} : index",
            f"vector.store %out{r}_{h}, %c[%c_at{r}_{h}] : memref<?xi32>, vector<16xi32>",
        ]


def executable() -> str:
    """`stream.executable @vnni` exporting `@qgemm`: one workgroup per 64 output columns, every row."""
    body = [
        "%c0 = arith.constant 0 : index",
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
        "scf.for %m0 = %c0 to %m step %c8 {",
    ]
    rows: list[str] = []
    _row_sums(rows)
    tile: list[str] = []
    _tile(tile)
    body += ["  " + line for line in rows]
    body += ["  scf.for %nt = %n0 to %n1 step %c32 {", *("    " + line for line in tile), "  }", "}", "return"]
    indent = " " * 8
    return "\n".join(
        [
            "  stream.executable private @vnni {",
            "    stream.executable.export public @qgemm workgroups(%n: index) -> (index, index, index) {",
            "      %panels = affine.apply affine_map<()[s0] -> (s0 ceildiv 64)>()[%n]",
            "      %c1 = arith.constant 1 : index",
            "      stream.return %panels, %c1, %c1 : index, index, index",
            "    }",
            "    builtin.module {",
            "      func.func @qgemm(%a_binding: !stream.binding, %w_binding: !stream.binding, "
            "%c_binding: !stream.binding, %m: index, %n: index, %k: index) {",
            *(indent + line for line in body),
            "      }",
            "    }",
            "  }",
        ]
    )


def module(m: int, n: int, k: int) -> str:
    """A torch-dialect module whose `main(a: [m, k] si8, packed weights: [n * k] si8) -> [m, n] si32` runs the
    kernel (the weights packed as run.py's `packed_weights`)."""
    x86 = (
        '#hal.executable.target<"llvm-cpu", "embedded-elf-x86_64", {cpu = "generic", cpu_features = "+avx512f,'
        '+avx512bw,+avx512vl,+avx512dq,+avx512vnni", data_layout = "e-m:e-p270:32:32-p271:32:32-p272:64:64-i64:64-'
        'i128:128-f80:128-n8:16:32:64-S128", native_vector_size = 64 : index, target_triple = '
        '"x86_64-unknown-unknown-eabi-elf"}>'
    )
    return f"""#local = #hal.device.target<"local", [{x86}]>
module @vnni_qgemm attributes {{hal.device.targets = [#local]}} {{
{executable()}
  func.func @main(%x: !torch.vtensor<[{m},{k}],si8>, %wp: !torch.vtensor<[{n * k}],si8>)
      -> !torch.vtensor<[{m},{n}],si32> {{
    %a = torch_c.to_builtin_tensor %x : !torch.vtensor<[{m},{k}],si8> -> tensor<{m}x{k}xi8>
    %w = torch_c.to_builtin_tensor %wp : !torch.vtensor<[{n * k}],si8> -> tensor<{n * k}xi8>
    %m = arith.constant {m} : index
    %n = arith.constant {n} : index
    %k = arith.constant {k} : index
    %c = flow.dispatch @vnni::@qgemm[%n](%a, %w, %m, %n, %k)
        : (tensor<{m}x{k}xi8>, tensor<{n * k}xi8>, index, index, index) -> tensor<{m}x{n}xi32>
    %y = torch_c.from_builtin_tensor %c : tensor<{m}x{n}xi32> -> !torch.vtensor<[{m},{n}],si32>
    return %y : !torch.vtensor<[{m},{n}],si32>
  }}
}}
"""
