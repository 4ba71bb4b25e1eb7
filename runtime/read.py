"""READ (REcurrent ADaptation, arXiv 2305.15348): a small GRU beside a frozen backbone, PEFT-style.

    import effc
    model = effc.read.attach(hf_encoder, effc.read.ReadConfig(num_labels=2))
    model.print_trainable_parameters()
    model.save_pretrained("adapter/")          # read_model.safetensors + read_config.json
    model = effc.read.ReadModel.from_pretrained(hf_encoder, "adapter/")

At every token position a GRU runs over depth: its inputs are the layer-normed outputs of layers
1..L, its outputs (mean over layers, or the last) go through Linear(H -> d) and are added to the
backbone's final hidden state; a linear head on the masked mean over tokens gives the logits. The
side network's size depends on the model width d and the GRU width H, never on L, and no gradient
ever reaches the backbone: it runs frozen, compiled by IREE, so it needs no autograd graph at all.
Training: `effc.runtime.read_train`; the compiled backbone and the merged module: `effc.runtime.read_compile`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from effc.compiler.errors import EffcError, first_line
from effc.compiler.fileio import write_atomic

if TYPE_CHECKING:
    from effc.runtime import read_compile, read_task, read_train

CONFIG_NAME = "read_config.json"
WEIGHTS_NAME = "read_model.safetensors"
PEFT_TYPE = "READ"


@dataclass
class ReadConfig:
    """What defines a READ side network; saved as `read_config.json` next to the weights.

    `model_width`, `num_layers` and `base_model_name_or_path` are filled in from the backbone by
    `attach`; a saved adapter refuses to load onto a backbone with another width or depth. `dropout`
    (training only, off by default) drops the side network's normed inputs and its aggregated GRU output,
    a regulariser for small train sets, where the GRU memorises the train split within a few epochs (on
    bench/read's 1,200 sentences it did not raise dev accuracy: bench/read/results/dev-screen.md).
    """

    hidden_size: int = 256
    aggregation: Literal["mean", "last"] = "mean"
    dropout: float = 0.0
    num_labels: int = 2
    label_names: list[str] = field(default_factory=list)
    model_width: int = 0
    num_layers: int = 0
    base_model_name_or_path: str = ""

    def __post_init__(self) -> None:
        if self.aggregation not in ("mean", "last"):
            raise EffcError(f"READ aggregation must be 'mean' or 'last', not '{self.aggregation}'")
        if not 0.0 <= self.dropout < 1.0:
            raise EffcError(f"READ dropout must be in [0, 1), not {self.dropout}")
        if self.hidden_size < 1 or self.num_labels < 2:
            raise EffcError(
                f"READ needs hidden_size >= 1 and num_labels >= 2 (got {self.hidden_size}, {self.num_labels})"
            )
        if self.label_names and len(self.label_names) != self.num_labels:
            raise EffcError(f"READ config names {len(self.label_names)} labels for num_labels={self.num_labels}")

    def to_json(self) -> str:
        return json.dumps({"peft_type": PEFT_TYPE, **dataclasses.asdict(self)}, indent=2) + "\n"

    @classmethod
    def from_file(cls, path: Path) -> ReadConfig:
        """Read `read_config.json`; a missing or foreign file is a one-line error."""
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            raise EffcError(
                f"'{path.parent}' holds no {CONFIG_NAME}; is it a READ adapter saved by save_pretrained?"
            ) from None
        except (OSError, ValueError) as err:
            raise EffcError(f"cannot read READ config '{path}': {first_line(err)}") from None
        if not isinstance(raw, dict) or raw.pop("peft_type", None) != PEFT_TYPE:
            raise EffcError(f'\'{path}\' is not a READ adapter config (no "peft_type": "{PEFT_TYPE}")')
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise EffcError(f"'{path}' has unknown READ config keys: {', '.join(unknown)}")
        return cls(**raw)


class SideNetwork(nn.Module):
    """LayerNorm → GRU over depth → aggregate → Linear(H → d): the correction to the final state.

    `dropout` applies to the GRU's inputs and to its aggregated output while training (as LoRA drops its
    input); it has no parameters, so it changes neither the saved weights nor the exported module.
    """

    def __init__(
        self, width: int, hidden_size: int, aggregation: Literal["mean", "last"], dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.aggregation = aggregation
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(width)
        self.rnn = nn.GRU(width, hidden_size)  # time-major: the time axis is depth
        self.out = nn.Linear(hidden_size, width)
        # Zero-initialised like LoRA's B: training starts from the frozen backbone's own features (a random
        # correction would first have to be unlearned) and the GRU learns only what improves on them.
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        """(L, B, T, d) layer outputs → (B, T, d); every token position is one length-L sequence."""
        layers, batch, tokens, width = states.shape
        outputs, _ = self.rnn(self.dropout(self.norm(states.reshape(layers, batch * tokens, width))))
        summary = outputs.mean(dim=0) if self.aggregation == "mean" else outputs[-1]
        return self.out(self.dropout(summary)).reshape(batch, tokens, width)


def masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Mean over the real (mask = 1) tokens of (B, T, d), as sentence encoders pool."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1.0)


class ReadHead(nn.Module):
    """Everything READ adds after the backbone: side network, the add, pooling and the task head.

    It takes what the tapped, compiled backbone returns, so the same module trains on IREE outputs,
    on cached states, and is exported into the merged inference module.
    """

    def __init__(self, config: ReadConfig) -> None:
        super().__init__()
        self.side = SideNetwork(config.model_width, config.hidden_size, config.aggregation, config.dropout)
        self.classifier = nn.Linear(config.model_width, config.num_labels)

    def forward(
        self, final: torch.Tensor, states: torch.Tensor, attention_mask: torch.Tensor, *, real_tokens_only: bool = False
    ) -> torch.Tensor:
        """final (B, T, d), states (L, B, T, d), attention_mask (B, T) → logits (B, num_labels).

        `real_tokens_only` runs the side network on the unmasked tokens alone: the same logits (it works
        per token and pooling skips padding) for less work, but with data-dependent shapes, so training
        uses it and the exported module does not.
        """
        if real_tokens_only:
            keep = attention_mask.bool()
            correction = torch.zeros_like(final)
            correction[keep] = self.side(states[:, keep].unsqueeze(2)).squeeze(1)
        else:
            correction = self.side(states)
        return self.classifier(masked_mean(final + correction, attention_mask))


class ReadModel(nn.Module):
    """A frozen backbone plus a trainable `ReadHead`; only the head is saved and trained."""

    def __init__(self, backbone: nn.Module | None, config: ReadConfig) -> None:
        super().__init__()
        if config.model_width < 1 or config.num_layers < 1:
            raise EffcError("ReadConfig has no model_width/num_layers; build the model with effc.read.attach")
        self.config = config
        self.backbone = backbone
        self.read = ReadHead(config)
        if backbone is not None:
            backbone.requires_grad_(False)
            backbone.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Logits from the eager PyTorch composition (the reference the compiled modules must match)."""
        final, states = self.backbone_states(input_ids, attention_mask)
        return self.read(final, states, attention_mask)

    def backbone_states(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(final hidden state, stacked layer outputs) from the eager backbone, with no autograd graph."""
        if self.backbone is None:
            raise EffcError("this READ model was built without its backbone; feed backbone states to model.read")
        with torch.no_grad():
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.last_hidden_state, torch.stack(out.hidden_states[1:])

    def trainable_parameters(self) -> tuple[int, int]:
        """(trainable, all) parameter counts, backbone included in `all`."""
        params = {id(p): p for p in self.parameters()}.values()
        return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)

    def print_trainable_parameters(self) -> None:
        """PEFT's one-line summary of what trains."""
        trainable, total = self.trainable_parameters()
        print(
            f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}"
        )

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write the side network and head (safetensors) and the config (JSON); never the backbone."""
        from safetensors.torch import save

        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.read.state_dict().items()}
        write_atomic(out / WEIGHTS_NAME, save(tensors, metadata={"format": "pt", "peft_type": PEFT_TYPE}))
        write_atomic(out / CONFIG_NAME, self.config.to_json())
        return out

    @classmethod
    def from_pretrained(cls, backbone: nn.Module | None, directory: str | Path) -> ReadModel:
        """Load an adapter saved by `save_pretrained` onto `backbone` (None: head only, for compiled use).

        The model comes back in eval mode, as Hugging Face's and PEFT's `from_pretrained` return theirs: a
        saved dropout acts only after `.train()`.
        """
        config, state = load_adapter(directory)
        if backbone is not None:
            _check_fits(config, backbone, Path(directory))
        model = cls(backbone, config)
        model.read.load_state_dict(state)
        return model.eval()


def load_adapter(directory: str | Path) -> tuple[ReadConfig, dict[str, torch.Tensor]]:
    """(config, ReadHead state dict) of a saved adapter, checked against each other."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(directory)
    if not path.is_dir():
        raise EffcError(f"READ adapter directory '{path}' does not exist")
    config = ReadConfig.from_file(path / CONFIG_NAME)
    try:
        state = load_file(path / WEIGHTS_NAME)
    except (OSError, SafetensorError) as err:
        raise EffcError(f"cannot read '{path / WEIGHTS_NAME}': {first_line(err)}") from None
    expected = ReadHead(config).state_dict()
    bad = [k for k in expected if k not in state or state[k].shape != expected[k].shape]
    bad += sorted(set(state) - set(expected))
    if bad:
        raise EffcError(f"'{path / WEIGHTS_NAME}' does not match its {CONFIG_NAME} (first mismatch: {bad[0]})")
    return config, state


def backbone_shape(backbone: nn.Module) -> tuple[int, int, str]:
    """(width d, number of layers L, name) of a Hugging Face encoder."""
    config = getattr(backbone, "config", None)
    width, layers = getattr(config, "hidden_size", None), getattr(config, "num_hidden_layers", None)
    if not isinstance(width, int) or not isinstance(layers, int):
        raise EffcError(
            f"READ needs a Hugging Face encoder with config.hidden_size and config.num_hidden_layers, "
            f"got {type(backbone).__name__}"
        )
    return width, layers, str(getattr(config, "_name_or_path", "") or type(backbone).__name__)


def _check_fits(config: ReadConfig, backbone: nn.Module, where: Path) -> None:
    width, layers, name = backbone_shape(backbone)
    if (config.model_width, config.num_layers) != (width, layers):
        raise EffcError(
            f"READ adapter '{where}' was saved for a model of width {config.model_width} with "
            f"{config.num_layers} layers ({config.base_model_name_or_path or 'unnamed'}); '{name}' has width "
            f"{width} and {layers} layers"
        )


def attach(backbone: nn.Module, config: ReadConfig | None = None) -> ReadModel:
    """Freeze `backbone` (a Hugging Face encoder) and put a fresh READ side network and head beside it."""
    width, layers, name = backbone_shape(backbone)
    filled = dataclasses.replace(
        config or ReadConfig(), model_width=width, num_layers=layers, base_model_name_or_path=name
    )
    return ReadModel(backbone, filled)


def from_pretrained(backbone: nn.Module | None, directory: str | Path) -> ReadModel:
    """`ReadModel.from_pretrained`, PEFT's `PeftModel.from_pretrained(base, dir)` shape."""
    return ReadModel.from_pretrained(backbone, directory)


_LAZY = {
    "train": "effc.runtime.read_train",
    "compile_backbone": "effc.runtime.read_compile",
    "merge": "effc.runtime.read_compile",
    "load_task": "effc.runtime.read_task",
}


def __getattr__(name: str) -> Any:
    """`effc.read.train`, `.merge`, `.compile_backbone`, `.load_task` without importing IREE up front."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    train = read_train.train
    compile_backbone = read_compile.compile_backbone
    merge = read_compile.merge
    load_task = read_task.load_task
