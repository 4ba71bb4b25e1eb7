"""Small models for tests: the architectures effc must compile, built from configs with random weights.

Each builder returns (module, example_inputs). Sizes are small so that export, import and an IREE
compile take seconds on two cores, but every architectural feature is kept (GQA, rotary embeddings,
non-persistent buffers, causal masks, convolutions with padding and stride).
"""

from __future__ import annotations

import torch

VOCAB = 128


def _tokens(batch: int = 1, length: int = 16) -> torch.Tensor:
    return torch.randint(0, VOCAB, (batch, length), generator=torch.Generator().manual_seed(0))


class Mlp(torch.nn.Module):
    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(32, width),
            torch.nn.GELU(),
            torch.nn.Linear(width, width),
            torch.nn.ReLU(),
            torch.nn.Linear(width, 10),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(x), dim=-1)


class ConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1),
            torch.nn.BatchNorm2d(8),
            torch.nn.ReLU(),
            torch.nn.Conv2d(8, 16, 3, stride=2, padding=1),
            torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
        )
        self.head = torch.nn.Linear(16 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.flatten(self.features(x), 1))


def mlp() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    return Mlp().eval(), (torch.randn(4, 32),)


def conv_net() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    torch.manual_seed(0)
    model = ConvNet().eval()
    with torch.no_grad():  # non-trivial running statistics, so batch norm is not an identity
        model.features[1].running_mean.uniform_(-0.5, 0.5)
        model.features[1].running_var.uniform_(0.5, 1.5)
    return model, (torch.randn(2, 3, 16, 16),)


class HiddenStates(torch.nn.Module):
    """An HF model as tokens → last hidden state (encoders) or logits (decoders)."""

    def __init__(self, model: torch.nn.Module, causal: bool) -> None:
        super().__init__()
        self.model = model
        self.causal = causal

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.causal:
            return self.model(input_ids=input_ids, use_cache=False).logits
        return self.model(input_ids=input_ids).last_hidden_state


def gpt2() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=64, n_layer=2, n_head=4)
    return HiddenStates(GPT2LMHeadModel(config).eval(), causal=True), (_tokens(),)


def bert() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
    )
    return HiddenStates(BertModel(config).eval(), causal=False), (_tokens(),)


def llama(num_key_value_heads: int = 4) -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    """LLaMA with multi-head attention (4 KV heads) or grouped-query attention (fewer KV heads)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=num_key_value_heads,
        max_position_embeddings=64,
    )
    return HiddenStates(LlamaForCausalLM(config).eval(), causal=True), (_tokens(),)


def llama_gqa() -> tuple[torch.nn.Module, tuple[torch.Tensor, ...]]:
    return llama(num_key_value_heads=2)
