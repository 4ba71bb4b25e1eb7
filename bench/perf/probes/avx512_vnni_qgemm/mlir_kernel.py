"""The kernel of `effc-vnni-matmul` (passes/vnni_matmul.py), written in MLIR, in a module of its own: a torch-dialect
`main(a: [m, k] si8, packed weights: [n * k] si8) -> [m, n] si32` that calls the kernel's declaration, defined as
iree-compile gets it from effc (`define_kernels`)."""

from effc.passes.vnni_matmul import KERNEL_PREFIX, define_kernels


def module(m: int, n: int, k: int) -> str:
    x, w, c = f"!torch.vtensor<[{m},{k}],si8>", f"!torch.vtensor<[{n * k}],si8>", f"!torch.vtensor<[{m},{n}],si32>"
    kernel = f"@{KERNEL_PREFIX}{m}x{n}x{k}"
    declared = f"""module @vnni_qgemm {{
  func.func @main(%x: {x}, %wp: {w}) -> {c} {{
    %y = call {kernel}(%x, %wp) : ({x}, {w}) -> {c}
    return %y : {c}
  }}
  func.func private {kernel}({x}, {w}) -> {c}
}}
"""
    return define_kernels(declared, "llvm-cpu")
