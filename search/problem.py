"""A search problem as data: annotated original IR, target, and the splits that score error.

Kept free of torch so that evaluation workers start fast; it travels to workers (and Ray nodes) as
one .npz file and is stored in the search database.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from typing import Literal

import numpy as np

from effc.runtime.runner import relative_error

ErrorKind = Literal["accuracy", "relative"]


@dataclass
class Split:
    """Batches of model inputs and, per batch, the class labels or torch's reference outputs."""

    batches: list[list[np.ndarray]]
    targets: list[np.ndarray]


def error_of(kind: ErrorKind, outputs: list[np.ndarray], targets: list[np.ndarray]) -> float:
    """Classification error (1 - accuracy) or relative output error, over all batches of a split."""
    if kind == "accuracy":
        predicted = np.concatenate([np.asarray(o).argmax(axis=-1) for o in outputs])
        return float(np.mean(predicted != np.concatenate(targets)))
    return relative_error(
        np.concatenate([np.ravel(o) for o in outputs]), np.concatenate([np.ravel(t) for t in targets])
    )


@dataclass(frozen=True)
class Problem:
    """Everything a worker needs: the annotated original IR, target and scored splits."""

    name: str
    original: str
    target: str
    error_kind: ErrorKind
    validation: Split
    test: Split

    @property
    def digest(self) -> str:
        """A content hash (npz bytes carry timestamps, so they are not hashed)."""
        h = hashlib.sha256()
        for name, array in self._arrays().items():
            h.update(name.encode())
            h.update(np.ascontiguousarray(array).tobytes())
        return h.hexdigest()[:16]

    def _arrays(self) -> dict[str, np.ndarray]:
        header = {"name": self.name, "target": self.target, "error_kind": self.error_kind}
        arrays = {
            "header": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8),
            "original": np.frombuffer(self.original.encode(), dtype=np.uint8),
        }
        for split_name, split in (("validation", self.validation), ("test", self.test)):
            for b, (batch, target) in enumerate(zip(split.batches, split.targets, strict=True)):
                arrays[f"{split_name}/{b}/target"] = target
                for i, array in enumerate(batch):
                    arrays[f"{split_name}/{b}/input/{i}"] = array
        return arrays

    def to_bytes(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **self._arrays())
        return buffer.getvalue()

    @staticmethod
    def from_bytes(data: bytes) -> Problem:
        with np.load(io.BytesIO(data)) as archive:
            arrays = {name: archive[name] for name in archive.files}
        header = json.loads(arrays.pop("header").tobytes())
        original = arrays.pop("original").tobytes().decode()

        def split(name: str) -> Split:
            count = len({k.split("/")[1] for k in arrays if k.startswith(f"{name}/")})
            batches = []
            for b in range(count):
                inputs = sorted(
                    (k for k in arrays if k.startswith(f"{name}/{b}/input/")), key=lambda k: int(k.rsplit("/", 1)[1])
                )
                batches.append([arrays[k] for k in inputs])
            return Split(batches, [arrays[f"{name}/{b}/target"] for b in range(count)])

        return Problem(
            header["name"], original, header["target"], header["error_kind"], split("validation"), split("test")
        )
