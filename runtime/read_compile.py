"""The IREE side of READ: the tapped, compiled backbone and the merged inference module.

`compile_backbone` imports a Hugging Face encoder, applies `effc-read-taps` and compiles it, so a
training step costs one IREE call that returns the final state and every layer's output, with no
autograd anywhere near the backbone. `merge` links that tapped backbone and the exported `ReadHead`
(side network, add, pooling, head) into one MLIR module and compiles it for deployment.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from effc.compiler.api import CompiledModel
from effc.compiler.errors import EffcError
from effc.compiler.importer import ImportedModel, import_model, resolve_attention
from effc.compiler.iree_backend import RUNTIME_DEVICE, check_target, compile_mlir
from effc.compiler.loader import LoadedModel
from effc.compiler.models import EncoderWrapper
from effc.compiler.optimize import precision_flags, with_precision_passes
from effc.passes import run as run_pipeline
from effc.runtime.read import ReadHead, ReadModel
from effc.runtime.runner import retain_freed_memory


def default_target() -> str:
    """CUDA when this machine has a GPU, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "llvm-cpu"


def import_tapped(backbone: nn.Module, example: tuple[torch.Tensor, torch.Tensor], target: str) -> ImportedModel:
    """The encoder as torch-dialect MLIR returning (final state, layer 1..L outputs)."""
    from effc.passes.read_taps import ReadTapsPass

    layers = backbone.config.num_hidden_layers
    loaded = LoadedModel(type(backbone).__name__, module=EncoderWrapper(backbone).eval(), example_inputs=example)
    imported = import_model(loaded, (), attention=resolve_attention("auto", target, loaded))
    with imported.context:  # applied directly: a failure is an EffcError naming what was found
        ReadTapsPass(expect_layers=layers).apply(imported.module.operation)
    return imported


class CompiledBackbone:
    """The tapped backbone compiled by IREE for fixed (batch, tokens); smaller batches are padded."""

    def __init__(self, vmfb: bytes | Path, target: str, batch_size: int, max_length: int) -> None:
        import iree.runtime as rt

        self.target, self.batch_size, self.max_length = target, batch_size, max_length
        driver = RUNTIME_DEVICE[target]
        if driver.startswith("local"):
            retain_freed_memory()
        if isinstance(vmfb, Path):  # mapped, not copied
            self._module = rt.load_vm_flatbuffer_file(str(vmfb), driver=driver)
        else:
            self._module = rt.load_vm_flatbuffer(vmfb, driver=driver)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(final (B, T, d), layer outputs (L, B, T, d)) as float32 arrays for (B, T <= max_length) inputs."""
        final, *layers = self._results(input_ids, attention_mask)
        states = np.empty((len(layers), *final.shape), dtype=np.float32)
        for layer, result in zip(states, layers, strict=True):
            layer[...] = result
        return np.array(final), states

    def token_major(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, T, 1 + L, d): each token's final state then its layer outputs, the layout StateCache stores.

        Filled straight from IREE's result buffers: one copy of the states, where `__call__` and a
        transpose would make three (MiniLM, 32 x 64 tokens: 22 MB each)."""
        results = self._results(input_ids, attention_mask)
        count, tokens, width = results[0].shape
        out = np.empty((count, tokens, len(results), width), dtype=np.float32)
        for index, result in enumerate(results):
            out[:, :, index] = result
        return out

    def _results(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> list[np.ndarray]:
        """The module's results for the real rows and tokens, as views of IREE's buffers.

        Views: IREE's allocator reuses those buffers for the next call's results, so callers copy them."""
        count, tokens = input_ids.shape
        if count > self.batch_size or tokens > self.max_length:
            raise EffcError(
                f"backbone compiled for {self.batch_size} rows of {self.max_length} tokens got {count} of {tokens}"
            )
        ids = np.zeros((self.batch_size, self.max_length), dtype=np.int64)
        mask = np.zeros_like(ids)
        ids[:count, :tokens], mask[:count, :tokens] = input_ids, attention_mask  # right padding, masked
        ids[count:], mask[count:] = ids[0], mask[0]  # padding rows: a copy of the first, discarded
        return [np.asarray(r.to_host())[:count, :tokens] for r in self._module.main(ids, mask)]


def backbone_vmfb(
    backbone: nn.Module, *, batch_size: int, max_length: int, target: str, matmul_precision: str = "highest"
) -> bytes:
    """The frozen encoder compiled with every layer's output as an extra result.

    `matmul_precision="medium"` compiles its matmuls with bf16 inputs (`effc compile --matmul-precision`): the
    states the side network trains on change by ~1e-2 relative, and the backbone runs faster in less memory.
    On a CPU without bf16 dot products it stays f32, with a warning, as `effc compile` does. "int8" quantizes
    its matmuls by constant weights (`effc-quantize-dynamic`).
    """
    ids = torch.zeros(batch_size, max_length, dtype=torch.int64)
    imported = import_tapped(backbone, (ids, torch.ones_like(ids)), check_target(target))
    flags = list(precision_flags(target, matmul_precision, lambda text: warnings.warn(text, stacklevel=4)))
    precision_passes = with_precision_passes(None, matmul_precision, target)
    if precision_passes is not None:
        run_pipeline(imported.module, precision_passes)
    return compile_mlir(str(imported.module), target=target, extra_flags=flags)


def compile_backbone(
    backbone: nn.Module,
    *,
    batch_size: int,
    max_length: int,
    target: str | None = None,
    matmul_precision: str = "highest",
) -> CompiledBackbone:
    """`backbone_vmfb`, loaded and ready to call."""
    target = target or default_target()
    vmfb = backbone_vmfb(
        backbone, batch_size=batch_size, max_length=max_length, target=target, matmul_precision=matmul_precision
    )
    return CompiledBackbone(vmfb, target, batch_size, max_length)


def merge(
    model: ReadModel, example_inputs: tuple[torch.Tensor, torch.Tensor], *, target: str | None = None
) -> CompiledModel:
    """One IREE module: tapped backbone → side network → add → pooling → head, for `example_inputs`' shapes.

    The backbone and the exported `ReadHead` are imported separately, linked as private functions
    called from a new `@main(input_ids, attention_mask)`, inlined and compiled.
    """
    from torch_mlir import ir
    from torch_mlir.dialects import func
    from torch_mlir.passmanager import PassManager

    from effc.compiler.mlir_context import parse_module

    if model.backbone is None:
        raise EffcError("merge needs the READ model's backbone; load it with ReadModel.from_pretrained(backbone, dir)")
    target = check_target(target or default_target())
    model = model.eval()
    backbone = import_tapped(model.backbone, example_inputs, target)
    final, states = model.backbone_states(*example_inputs)
    head_program = LoadedModel(
        "read_head", module=_HeadEntry(model.read).eval(), example_inputs=(final, example_inputs[1], *states)
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*_flat_weights.*")  # nn.GRU's weight cache; harmless here
        head = import_model(head_program, (), attention=resolve_attention("auto", target))
    module = backbone.module
    with backbone.context, ir.Location.unknown():
        head_module = parse_module(head.module.operation.get_asm(), backbone.context, "read_head")
        tapped = _rename_private(module.body.operations[0], "read_backbone")
        head_func = _rename_private(head_module.body.operations[0], "read_head")
        head_func.move_after(tapped)
        tapped_type = ir.FunctionType(ir.TypeAttr(tapped.attributes["function_type"]).value)
        head_type = ir.FunctionType(ir.TypeAttr(head_func.attributes["function_type"]).value)
        with ir.InsertionPoint(module.body):
            main = func.FuncOp("main", ir.FunctionType.get(tapped_type.inputs, head_type.results))
            entry = main.add_entry_block()
            with ir.InsertionPoint(entry):
                outs = func.CallOp(tapped_type.results, "read_backbone", list(entry.arguments)).results
                logits = func.CallOp(head_type.results, "read_head", [outs[0], entry.arguments[1], *outs[1:]])
                func.ReturnOp(list(logits.results))
        PassManager.parse("builtin.module(inline,symbol-dce,canonicalize)").run(module.operation)
    mlir = str(module)
    vmfb = compile_mlir(mlir, target=target)
    return CompiledModel("read_merged", target, mlir, vmfb, tuple(example_inputs), model)


class _HeadEntry(nn.Module):
    """`ReadHead` with flat tensor arguments, the calling convention of the tapped backbone's results."""

    def __init__(self, head: ReadHead) -> None:
        super().__init__()
        self.head = head

    def forward(self, final: torch.Tensor, attention_mask: torch.Tensor, *states: torch.Tensor) -> torch.Tensor:
        return self.head(final, torch.stack(states), attention_mask)


def _rename_private(op: Any, name: str) -> Any:
    from torch_mlir import ir

    op.attributes["sym_name"] = ir.StringAttr.get(name)
    op.attributes["sym_visibility"] = ir.StringAttr.get("private")
    return op.operation
