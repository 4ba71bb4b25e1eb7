"""READ training on backbone states: live from the compiled backbone, or cached, and the loop.

Each training step gets the final state and every layer's output of a batch from `LiveStates` (one
call of the compiled backbone, `effc.runtime.read_compile`) or from a `StateCache`, which runs the
backbone once per split and writes the real tokens' outputs to files (row
layout tokens x (1 + L) x d, one contiguous read per example); then only the side network and head
take a PyTorch step. `fit` is the training loop (also used by bench/read's baselines).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from effc.compiler.errors import EffcError
from effc.runtime.energy import Measurement, MeterUnavailable, modeled, open_meter
from effc.runtime.read import ReadModel
from effc.runtime.read_compile import CompiledBackbone
from effc.runtime.read_task import Task

Log = Callable[[str], None]


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
    """Backbone states computed on demand: one compiled-backbone call per batch, at the batch's length."""

    def __init__(self, backbone: CompiledBackbone, data: dict[str, Tokens]) -> None:
        self.backbone, self.data = backbone, data

    def read(self, split: str, rows: np.ndarray, tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(final, states) of `rows`, only the first `tokens` positions."""
        part = self.data[split]
        return self.backbone(part.input_ids[rows, :tokens], part.attention_mask[rows, :tokens])


class StateCache:
    """Backbone states of whole splits in files, so every epoch after the backbone pass skips it.

    The pass stores only real tokens (row r is `length_r` x (1 + L) x d floats at `offsets[r]`). Only
    the train split's pass is training cost (metered with `energy`); dev and test are evaluation,
    timed apart. Rows are read with `pread` (through the page cache, not mapped into
    this process), so training holds one batch of states at a time. Use as a context manager: the
    files go away on exit.
    """

    def __init__(self, backbone: CompiledBackbone, data: dict[str, Tokens], energy: EnergyLog | None = None) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="effc-read-cache-")
        self.files: dict[str, Path] = {}
        self.lengths: dict[str, np.ndarray] = {}
        self.offsets: dict[str, np.ndarray] = {}
        self.seconds: dict[str, float] = {}
        for name in sorted(data, key=lambda split: split != "train"):  # train first, metered
            if energy and name == "train":
                energy.start()
            start = time.perf_counter()
            self._write(name, data[name], backbone, energy if name == "train" else None)
            self.seconds[name] = time.perf_counter() - start
            if energy and name == "train":
                energy.stop()
        self.nbytes = sum(path.stat().st_size for path in self.files.values())

    def _write(self, name: str, tokens: Tokens, backbone: CompiledBackbone, energy: EnergyLog | None) -> None:
        lengths = tokens.attention_mask.sum(axis=1).astype(np.int64)
        path = Path(self._tmp.name) / f"{name}.f32"
        offsets = np.zeros(len(lengths), dtype=np.int64)
        with path.open("wb") as handle:
            for rows in _chunks(len(lengths), backbone.batch_size):
                longest = int(lengths[rows].max())
                layout = backbone.token_major(tokens.input_ids[rows, :longest], tokens.attention_mask[rows, :longest])
                self.row_shape = layout.shape[2:]
                for i, row in enumerate(rows):
                    offsets[row] = handle.tell()
                    handle.write(layout[i, : lengths[row]].data)  # contiguous: written without a copy
                if energy:
                    energy.poll()
        self.files[name], self.lengths[name], self.offsets[name] = path, lengths, offsets

    def __enter__(self) -> StateCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self._tmp.cleanup()

    def read(self, split: str, rows: np.ndarray, tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """(final, states) of `rows`, only the first `tokens` positions (zeros past a row's real tokens)."""
        stack, width = self.row_shape
        out = np.zeros((len(rows), tokens, stack, width), dtype=np.float32)
        fd = os.open(self.files[split], os.O_RDONLY)
        try:
            for i, row in enumerate(rows):
                count = min(tokens, int(self.lengths[split][row]))
                chunk = os.pread(fd, count * stack * width * 4, int(self.offsets[split][row]))
                out[i, :count] = np.frombuffer(chunk, dtype=np.float32).reshape(count, stack, width)
        finally:
            os.close(fd)
        layers_first = out.transpose(2, 0, 1, 3)
        return layers_first[0], layers_first[1:]

    def savings(self, epochs: int) -> dict[str, float]:
        """The train pass (training cost), the dev/test passes (evaluation), size, and what later epochs skip."""
        return {
            "build_seconds": self.seconds["train"],
            "eval_build_seconds": sum(s for name, s in self.seconds.items() if name != "train"),
            "bytes": float(self.nbytes),
            "saved_seconds_estimate": (epochs - 1) * self.seconds["train"],
        }


# Rows per backbone call when the backbone only fills a StateCache: no training step needs a whole batch of
# states at once there, and the backbone's activations and results (and their copy) shrink with the rows.
CACHE_BATCH = 8


def backbone_batch(task_batch: int, *, cached: bool) -> int:
    """The batch to compile the backbone for: the task's, or at most CACHE_BATCH rows when states are cached."""
    return min(task_batch, CACHE_BATCH) if cached else task_batch


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
    micro_batch: int = 0,
    energy: EnergyLog | None = None,
    on_improve: Callable[[], None] | None = None,
    log: Log | None = None,
) -> FitResult:
    """AdamW with linear warmup (10%) and decay over `epochs` of shuffled train batches.

    `logits_for(rows)` gives the train rows' logits with a graph to `parameters` only; `predict(split)`
    gives a split's predicted classes. `micro_batch` > 0 runs each batch in parts of that many rows and
    accumulates their gradients (the same step, less activation memory). Evaluation is timed and
    metered apart from training; `on_improve` runs whenever dev accuracy improves (to keep the best weights).
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
            optimizer.zero_grad(set_to_none=True)
            loss = 0.0
            for part in np.array_split(rows, math.ceil(len(rows) / (micro_batch or len(rows)))):
                logits = logits_for(part)  # summed over the parts: the whole batch's mean loss and gradient
                part_loss = nn.functional.cross_entropy(logits, labels[part].to(logits.device), reduction="sum")
                (part_loss / len(rows)).backward()
                loss += float(part_loss.detach()) / len(rows)
            optimizer.step()
            schedule.step()
            losses.append(loss)
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
    micro_batch: int = 0,
    log: Log | None = None,
) -> ReadReport:
    """Train `model.read` (side network + head) on backbone `states`; the backbone is never in autograd.

    The model keeps the weights of its best dev epoch; the test split is scored once, with them.
    Pass the `energy` log that metered the `StateCache` build so the report covers both; `micro_batch`
    (rows per part, 0: whole batches; cached states only) bounds the side network's activation memory.
    """
    if micro_batch and isinstance(states, LiveStates):
        raise EffcError("micro-batches need cached states: live states would run the backbone once per part")
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
            chunks = _chunks(len(data[split].labels), task.batch_size)
            preds = [head(*features(split, rows), real_tokens_only=True).argmax(-1).cpu().numpy() for rows in chunks]
        head.train()
        return np.concatenate(preds)

    best_state: dict[str, torch.Tensor] = {}
    result = fit(
        [p for p in head.parameters() if p.requires_grad],
        lambda rows: head(*features("train", rows), real_tokens_only=True),
        data,
        predict,
        epochs=task.epochs,
        lr=task.lr,
        batch_size=task.batch_size,
        seed=task.seed,
        micro_batch=micro_batch,
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
