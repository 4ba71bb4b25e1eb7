"""READ training on a compiled backbone, cached backbone states, and the merged inference module.

The backbone never runs under autograd: `compile_backbone` imports it, applies `effc-read-taps` and
compiles it with IREE, so each training step is one IREE call (final state + every layer's output,
`LiveStates`) followed by a PyTorch step of the side network and head only. A `StateCache` runs the
backbone once per split instead and writes its outputs to files (row layout tokens x (1 + L) x d, so a
batch trimmed to its longest sentence is one contiguous read per example); every epoch then reads
them. `fit` is the training loop both use (and the baselines of bench/read). `merge` links the tapped
backbone and the exported `ReadHead` into one MLIR module and compiles it.

    backbone = compile_backbone(encoder, batch_size=32, max_length=64)
    data = tokenize(task, tokenizer)
    with StateCache(backbone, data) as states:
        report = train(model, task, data, states)
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
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
from effc.runtime.energy import Measurement, MeterUnavailable, modeled, open_meter
from effc.runtime.read import ReadHead, ReadModel
from effc.runtime.read_task import Task

Log = Callable[[str], None]


def default_target() -> str:
    """CUDA when this machine has a GPU, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "llvm-cpu"


def import_tapped(backbone: nn.Module, example: tuple[torch.Tensor, torch.Tensor], target: str) -> ImportedModel:
    """The encoder as torch-dialect MLIR returning (final state, layer 1..L outputs)."""
    from effc.passes.read_taps import ReadTapsPass

    layers = backbone.config.num_hidden_layers
    loaded = LoadedModel(type(backbone).__name__, module=EncoderWrapper(backbone).eval(), example_inputs=example)
    imported = import_model(loaded, (), attention=resolve_attention("auto", target))
    with imported.context:  # applied directly: a failure is an EffcError naming what was found
        ReadTapsPass(expect_layers=layers).apply(imported.module.operation)
    return imported


class CompiledBackbone:
    """The tapped backbone compiled by IREE for fixed (batch, tokens); smaller batches are padded."""

    def __init__(self, vmfb: bytes | Path, target: str, batch_size: int, max_length: int) -> None:
        import iree.runtime as rt

        self.target, self.batch_size, self.max_length = target, batch_size, max_length
        driver = RUNTIME_DEVICE[target]
        if isinstance(vmfb, Path):  # mapped, not copied
            self._module = rt.load_vm_flatbuffer_file(str(vmfb), driver=driver)
        else:
            self._module = rt.load_vm_flatbuffer(vmfb, driver=driver)

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(final (B, T, d), layer outputs (L, B, T, d)) as float32 arrays."""
        count = len(input_ids)
        if count > self.batch_size:
            raise EffcError(f"backbone compiled for batch {self.batch_size} got {count} rows")
        pad = self.batch_size - count
        ids = np.concatenate([input_ids, np.repeat(input_ids[:1], pad, axis=0)])
        mask = np.concatenate([attention_mask, np.repeat(attention_mask[:1], pad, axis=0)])
        results = self._module.main(ids, mask)
        arrays = [np.asarray(r.to_host())[:count] for r in results]
        return arrays[0], np.stack(arrays[1:])


def backbone_vmfb(backbone: nn.Module, *, batch_size: int, max_length: int, target: str) -> bytes:
    """The frozen encoder compiled with every layer's output as an extra result."""
    ids = torch.zeros(batch_size, max_length, dtype=torch.int64)
    imported = import_tapped(backbone, (ids, torch.ones_like(ids)), check_target(target))
    return compile_mlir(str(imported.module), target=target)


def compile_backbone(
    backbone: nn.Module, *, batch_size: int, max_length: int, target: str | None = None
) -> CompiledBackbone:
    """`backbone_vmfb`, loaded and ready to call."""
    target = target or default_target()
    vmfb = backbone_vmfb(backbone, batch_size=batch_size, max_length=max_length, target=target)
    return CompiledBackbone(vmfb, target, batch_size, max_length)


@dataclass(frozen=True)
class Tokens:
    """A tokenized split, padded to `max_length` on the right."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray


def tokenize(task: Task, tokenizer: Any) -> dict[str, Tokens]:
    """Every split of `task`, tokenized to the task's max_length."""
    out = {}
    for name, split in task.splits.items():
        enc = tokenizer(
            split.texts,
            max_length=task.max_length,
            truncation=True,
            padding="max_length",
            return_tensors="np",
        )
        out[name] = Tokens(enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64), split.labels)
    return out


class EnergyLog:
    """Energy of the training phases only: a hardware counter if readable (polled every step), else modeled.

    The CPU model charges this process's CPU time (all threads, IREE's included) at the host's TDP
    per core, so other processes sharing the machine do not inflate it; a GPU is charged its TDP over
    wall time.
    """

    def __init__(self, on_gpu: bool) -> None:
        self.on_gpu = on_gpu
        self.joules = self.seconds = self.cpu_seconds = 0.0
        try:
            self.meter: Any = open_meter("gpu" if on_gpu else "cpu")
            self.why_modeled = ""
        except MeterUnavailable as err:
            self.meter, self.why_modeled = None, str(err)
        self._last: float | None = None

    def start(self) -> None:
        self._start = (time.perf_counter(), time.process_time())
        self._last = self.meter.read_j() if self.meter else None

    def poll(self) -> None:
        """Read the counter often enough that RAPL cannot wrap unseen."""
        if self.meter and self._last is not None:
            now = self.meter.read_j()
            self.joules += now - self._last
            self._last = now

    def stop(self) -> None:
        self.poll()
        self._last = None
        self.seconds += time.perf_counter() - self._start[0]
        self.cpu_seconds += time.process_time() - self._start[1]

    def result(self) -> Measurement:
        if self.meter is not None:
            return Measurement(self.joules, self.seconds, self.meter.source, self.meter.device)
        from effc.passes.hardware import load_hardware

        if self.on_gpu:
            gpu = load_hardware(gpu_hardware_id())
            note = f"no counter ({self.why_modeled}); {gpu.tdp_w:g} W TDP x {self.seconds:.1f} s wall time"
            return modeled(self.seconds, gpu.tdp_w, gpu.name, note)
        host = load_hardware("host-cpu")
        per_core = host.tdp_w / (os.cpu_count() or 1)
        note = (
            f"no counter ({self.why_modeled}); {self.cpu_seconds:.1f} s of process CPU time x "
            f"{per_core:g} W TDP per core of {host.name}"
        )
        return modeled(self.seconds, self.cpu_seconds * per_core / max(self.seconds, 1e-9), host.name, note)


def gpu_hardware_id() -> str:
    """The hardware.json id of this machine's GPU, for modeled energy."""
    name = torch.cuda.get_device_name().lower()
    return next(
        (hid for key, hid in (("h200", "h200-sxm"), ("h100", "h100-sxm"), ("a100", "a100")) if key in name),
        "h100-sxm",
    )


class LiveStates:
    """Backbone states computed on demand: one compiled-backbone call per batch."""

    def __init__(self, backbone: CompiledBackbone, data: dict[str, Tokens]) -> None:
        self.backbone, self.data, self.batch_size = backbone, data, backbone.batch_size

    def read(self, split: str, rows: np.ndarray, tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(final, states) of `rows`, only the first `tokens` positions."""
        part = self.data[split]
        final, states = self.backbone(part.input_ids[rows], part.attention_mask[rows])
        return final[:, :tokens], states[:, :, :tokens]


class StateCache:
    """Backbone states of whole splits in files, so every epoch after the backbone pass skips it.

    Rows are read with `pread` (through the page cache, not mapped into this process), so training
    holds one batch of states at a time. Use as a context manager: the files go away on exit.
    """

    def __init__(self, backbone: CompiledBackbone, data: dict[str, Tokens], energy: EnergyLog | None = None) -> None:
        self.batch_size = backbone.batch_size
        self._tmp = tempfile.TemporaryDirectory(prefix="effc-read-cache-")
        self.files: dict[str, Path] = {}
        self.examples: dict[str, int] = {}
        if energy:
            energy.start()
        start = time.perf_counter()
        for name, tokens in data.items():
            path = Path(self._tmp.name) / f"{name}.f32"
            with path.open("wb") as handle:
                for rows in _chunks(len(tokens.labels), backbone.batch_size):
                    final, states = backbone(tokens.input_ids[rows], tokens.attention_mask[rows])
                    layout = np.concatenate([final[None], states]).transpose(1, 2, 0, 3)  # B, T, 1+L, d
                    handle.write(np.ascontiguousarray(layout, dtype=np.float32).tobytes())
                    self.row_shape = layout.shape[1:]
                    if energy:
                        energy.poll()
            self.files[name], self.examples[name] = path, len(tokens.labels)
        self.build_seconds = time.perf_counter() - start
        if energy:
            energy.stop()
        self.nbytes = sum(path.stat().st_size for path in self.files.values())

    def __enter__(self) -> StateCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def read(self, split: str, rows: np.ndarray, tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(final, states) of `rows`, only the first `tokens` positions."""
        length, stack, width = self.row_shape
        out = np.empty((len(rows), tokens, stack, width), dtype=np.float32)
        fd = os.open(self.files[split], os.O_RDONLY)
        try:
            for i, row in enumerate(rows):
                chunk = os.pread(fd, tokens * stack * width * 4, int(row) * length * stack * width * 4)
                out[i] = np.frombuffer(chunk, dtype=np.float32).reshape(tokens, stack, width)
        finally:
            os.close(fd)
        layers_first = out.transpose(2, 0, 1, 3)
        return layers_first[0], layers_first[1:]

    def savings(self, epochs: int) -> dict[str, float]:
        """Build cost, size, and the backbone passes over train that the other epochs did not run."""
        train_pass = self.build_seconds * self.examples["train"] / sum(self.examples.values())
        return {
            "build_seconds": self.build_seconds,
            "bytes": float(self.nbytes),
            "saved_seconds_estimate": (epochs - 1) * train_pass,
        }


def _tensor(array: np.ndarray, device: str) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _chunks(count: int, size: int) -> Iterator[np.ndarray]:
    for start in range(0, count, size):
        yield np.arange(start, min(start + size, count))


@dataclass
class EpochLog:
    epoch: int
    loss: float
    train_seconds: float
    accuracy: dict[str, float]


@dataclass
class FitResult:
    epochs: list[EpochLog]
    train_seconds: float
    best_epoch: int


def fit(
    parameters: list[nn.Parameter],
    logits_for: Callable[[np.ndarray], torch.Tensor],
    data: dict[str, Tokens],
    predict: Callable[[str], np.ndarray],
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    eval_splits: tuple[str, ...] = ("dev",),
    energy: EnergyLog | None = None,
    on_improve: Callable[[], None] | None = None,
    log: Log | None = None,
) -> FitResult:
    """AdamW with linear warmup (10%) and decay over `epochs` of shuffled train batches.

    `logits_for(rows)` gives the train rows' logits with a graph to `parameters` only; `predict(split)`
    gives a split's predicted classes. Evaluation is timed and metered apart from training;
    `on_improve` runs whenever dev accuracy improves (to keep the best weights).
    """
    labels = torch.from_numpy(data["train"].labels)
    steps_per_epoch = math.ceil(len(labels) / batch_size)
    total = steps_per_epoch * epochs
    warmup = max(1, total // 10)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    generator = torch.Generator().manual_seed(seed)
    history: list[EpochLog] = []
    best = (-1.0, 0)
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(labels), generator=generator).numpy()
        start, losses = time.perf_counter(), []
        if energy:
            energy.start()
        for step in range(steps_per_epoch):
            rows = order[step * batch_size : (step + 1) * batch_size]
            logits = logits_for(rows)
            loss = nn.functional.cross_entropy(logits, labels[rows].to(logits.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
            if energy:
                energy.poll()
        if energy:
            energy.stop()
        seconds = time.perf_counter() - start
        accuracy = {s: float((predict(s) == data[s].labels).mean()) for s in eval_splits if len(data[s].labels)}
        history.append(EpochLog(epoch, float(np.mean(losses)), seconds, accuracy))
        if log:
            scores = " ".join(f"{s} acc {a:.4f}" for s, a in accuracy.items())
            log(f"epoch {epoch}/{epochs}: loss {np.mean(losses):.4f} {scores} ({seconds:.1f} s)")
        if accuracy.get("dev", 0.0) > best[0]:
            best = (accuracy.get("dev", 0.0), epoch)
            if on_improve:
                on_improve()
    return FitResult(history, sum(e.train_seconds for e in history), best[1])


@dataclass
class ReadReport:
    """What `train` did: accuracies, time, energy and, with cached states, what the cache saved."""

    fit: FitResult
    test_accuracy: float | None
    trainable_parameters: int
    energy: Measurement
    cache: dict[str, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        """Training time: the epochs' steps plus the backbone pass that built the cache."""
        return self.fit.train_seconds + self.cache.get("build_seconds", 0.0)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"energy": self.energy.to_json(), "seconds": self.seconds}


def train(
    model: ReadModel,
    task: Task,
    data: dict[str, Tokens],
    states: LiveStates | StateCache,
    *,
    energy: EnergyLog | None = None,
    device: str | None = None,
    log: Log | None = None,
) -> ReadReport:
    """Train `model.read` (side network + head) on backbone `states`; the backbone is never in autograd.

    The model keeps the weights of its best dev epoch; the test split is scored once, with them.
    Pass the `energy` log that metered the `StateCache` build so the report covers both.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    energy = energy or EnergyLog(on_gpu=device.startswith("cuda"))
    head = model.read.to(device).train()

    def features(split: str, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mask = data[split].attention_mask[rows]
        length = int(mask.sum(axis=1).max())  # right padding: later positions are masked anyway
        final, layer_states = states.read(split, rows, length)
        return _tensor(final, device), _tensor(layer_states, device), _tensor(mask[:, :length], device)

    def predict(split: str) -> np.ndarray:
        head.eval()
        with torch.no_grad():
            chunks = _chunks(len(data[split].labels), states.batch_size)
            preds = [head(*features(split, rows)).argmax(-1).cpu().numpy() for rows in chunks]
        head.train()
        return np.concatenate(preds)

    best_state: dict[str, torch.Tensor] = {}
    result = fit(
        [p for p in head.parameters() if p.requires_grad],
        lambda rows: head(*features("train", rows)),
        data,
        predict,
        epochs=task.epochs,
        lr=task.lr,
        batch_size=states.batch_size,
        seed=task.seed,
        energy=energy,
        on_improve=lambda: best_state.update(copy.deepcopy(head.state_dict())),
        log=log,
    )
    head.load_state_dict(best_state)
    test = float((predict("test") == data["test"].labels).mean()) if len(data["test"].labels) else None
    head.eval()
    measured = energy.result()
    cache = states.savings(task.epochs) if isinstance(states, StateCache) else {}
    if cache:
        cache["saved_joules_estimate"] = cache["saved_seconds_estimate"] * measured.power_w
    return ReadReport(result, test, model.trainable_parameters()[0], measured, cache)


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
