"""Run effc-hopper-kernels' kernels in Triton's interpreter (on the CPU) on a small attention block, with the
specializations the pass chose, in the order its calls come; print the relative error against the torch block.

`python hopper_interpreted.py float16` (or float32). Run with TRITON_INTERPRET=1 set (tests/test_hopper_kernels.py does): Triton reads it when it is first imported.
"""

from __future__ import annotations

import json
import sys

import torch

from effc.bench.perf.workloads import AttentionBlock
from effc.compiler.api import compile_model
from effc.passes.hopper_kernels import KernelSpec, declared_kernels
from effc.passes.hopper_triton import launch


def _run(spec: KernelSpec, *tensors: torch.Tensor) -> None:
    launch(spec.kernel, spec.grid, tuple(name for name, _ in spec.pointers), spec.constants, *tensors)


def main(dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    block = AttentionBlock(dim=128, heads=2).eval()
    x = torch.randn(2, 128, 128)
    reference = block(x)
    block, x = block.to(dtype), x.to(dtype)
    compiled = compile_model(
        block, (x,), target="cuda", attention="fused", pipeline="builtin.module(effc-hopper-kernels)", emit="torch"
    )
    specs = declared_kernels(compiled.mlir)
    qkv = torch.empty(256, 384, dtype=dtype)
    _run(specs["effc_hopper_linear_0"], x.view(256, 128), block.qkv.weight, block.qkv.bias, qkv)
    heads = torch.empty(2, 128, 2, 64, dtype=dtype)
    _run(specs["effc_hopper_attention_0"], qkv, qkv, qkv, heads)
    y = torch.empty(256, 128, dtype=dtype)
    _run(specs["effc_hopper_linear_1"], heads.view(256, 128), block.out.weight, block.out.bias, y)
    error = ((y.float().view(2, 128, 128) - reference).norm() / reference.norm()).item()
    print(json.dumps({"kernels": sorted(specs), "relative_error": error}))


if __name__ == "__main__":
    main(getattr(torch, sys.argv[1]))
