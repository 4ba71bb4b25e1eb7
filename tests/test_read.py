"""READ: the taps rewrite, the side network, training on a compiled frozen backbone, save/load, merge.

Most tests use a 2-layer, 32-wide BERT with a word-level tokenizer saved as a Hugging Face directory,
and a small CSV in which one word per sentence carries the label, so training has a signal.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from effc.compiler.errors import EffcError
from effc.runtime.read import ReadConfig, ReadModel, SideNetwork, attach, backbone_shape, masked_mean
from effc.tests.conftest import EffcCli
from effc.tests.model_zoo import bert, gpt2, llama

POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
NEUTRAL = ["the", "movie", "film", "was", "plot", "actors", "very", "and"]


def make_encoder(directory: Path, width: int = 32) -> Path:
    """A tiny BERT and a word-level tokenizer, saved like a Hugging Face model directory."""
    from transformers import BertConfig, BertModel, BertTokenizer

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *POSITIVE, *NEGATIVE, *NEUTRAL]
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=width,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=2 * width,
        max_position_embeddings=32,
    )
    perturbed(BertModel(config)).save_pretrained(directory)
    BertTokenizer(vocab={word: i for i, word in enumerate(vocab)}).save_pretrained(directory)
    return directory


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    """Fresh models have LayerNorm weight 1 and bias 0, which would hide a tap taken one op early."""
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model


def make_task(directory: Path, **overrides: object) -> Path:
    """120 labelled sentences plus one row to exclude, and a task file for them."""
    rng = random.Random(0)
    with (directory / "data.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sentence", "label"])
        for i in range(120):
            label = rng.choice(["pos", "neg"])
            words = [rng.choice(NEUTRAL) for _ in range(rng.randint(2, 8))]
            words.append(rng.choice(POSITIVE if label == "pos" else NEGATIVE))
            rng.shuffle(words)
            writer.writerow([f"{' '.join(words)} {i}", label])
        writer.writerow(["a plot summary", "plot"])
    task = {
        "data": "data.csv",
        "text_column": "sentence",
        "label_column": "label",
        "labels": ["neg", "pos"],
        "exclude_labels": ["plot"],
        "epochs": 2,
        "lr": 0.01,
        "batch_size": 16,
        "max_length": 16,
        "read": {"hidden_size": 16},
    } | overrides
    path = directory / "task.json"
    path.write_text(json.dumps(task))
    return path


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = make_encoder(tmp_path_factory.mktemp("encoder"))
    make_task(directory)
    return directory


@pytest.fixture(scope="module")
def encoder(encoder_dir: Path) -> tuple[torch.nn.Module, object]:
    from effc.runtime.read_cmd import load_encoder

    return load_encoder(str(encoder_dir))


@pytest.fixture(scope="module")
def compiled_backbone(encoder: tuple[torch.nn.Module, object]) -> object:
    from effc.runtime.read_compile import compile_backbone

    return compile_backbone(encoder[0], batch_size=16, max_length=16, target="llvm-cpu")


# --- effc-read-taps ---------------------------------------------------------------------------------


def test_taps_leave_outputs_bit_identical_and_return_each_layer() -> None:
    from effc.compiler.api import compile_model

    model, example = bert()
    perturbed(model)
    plain = compile_model(model, example)
    tapped = compile_model(model, example, pipeline="builtin.module(effc-read-taps{expect-layers=2})")
    before, after = plain.run(), tapped.run()
    assert len(before) == 1 and len(after) == 3
    assert np.array_equal(before[0], after[0])
    with torch.no_grad():
        hidden = model.model(input_ids=example[0], output_hidden_states=True).hidden_states
    for layer, (got, expected) in enumerate(zip(after[1:], hidden[1:], strict=True)):
        np.testing.assert_allclose(got, expected.numpy(), rtol=1e-5, atol=1e-5, err_msg=f"layer {layer + 1}")


@pytest.mark.parametrize("builder", [gpt2, llama], ids=["gpt2", "llama"])
def test_taps_find_the_layers_of_pre_norm_decoders(builder: object) -> None:
    from torch_mlir import ir

    from effc.compiler.importer import import_model
    from effc.compiler.loader import LoadedModel
    from effc.passes import run

    model, example = builder()  # type: ignore[operator]
    imported = import_model(LoadedModel("m", module=model, example_inputs=example), (), attention="decomposed")
    run(imported.module, "builtin.module(effc-read-taps{expect-layers=2})")
    main = imported.module.body.operations[0]
    results = ir.FunctionType(ir.TypeAttr(main.attributes["function_type"]).value).results
    assert [str(t) for t in results[1:]] == ["!torch.vtensor<[1,16,64],f32>"] * 2


def test_taps_refuse_a_wrong_layer_count() -> None:
    from effc.compiler.importer import import_model
    from effc.compiler.loader import LoadedModel
    from effc.passes.read_taps import ReadTapsPass

    model, example = bert()
    imported = import_model(LoadedModel("bert", module=model, example_inputs=example), (), attention="decomposed")
    with imported.context, pytest.raises(EffcError, match="found 2 repeated layers in @main, expected 3"):
        ReadTapsPass(expect_layers=3).apply(imported.module.operation)


# --- side network -----------------------------------------------------------------------------------


@pytest.mark.parametrize("aggregation", ["mean", "last"])
def test_gru_runs_over_depth_at_each_token(aggregation: str) -> None:
    torch.manual_seed(0)
    side = SideNetwork(width=24, hidden_size=8, aggregation=aggregation)  # type: ignore[arg-type]
    torch.nn.init.normal_(side.out.weight)  # as after training (it starts at zero)
    states = torch.randn(5, 3, 7, 24)  # layers, batch, tokens, width
    out = side(states)
    assert out.shape == (3, 7, 24)
    # Every token position is its own sequence over the 5 layers: changing one token moves only it.
    changed = states.clone()
    changed[:, 1, 4] += 1.0
    moved = (side(changed) - out).abs().sum(dim=-1) > 0
    assert moved[1, 4] and moved.sum() == 1
    # The same weights run any depth: the side network does not grow with the backbone.
    assert side(torch.randn(12, 2, 3, 24)).shape == (2, 3, 24)
    gru = 3 * 8 * 24 + 3 * 8 * 8 + 6 * 8
    assert sum(p.numel() for p in side.parameters()) == gru + (8 * 24 + 24) + 2 * 24
    # mean and last aggregate the GRU outputs differently.
    outputs, _ = side.rnn(side.norm(states).reshape(5, 21, 24))  # time = depth, batch = token positions
    summary = outputs.mean(0) if aggregation == "mean" else outputs[-1]
    torch.testing.assert_close(out, side.out(summary).reshape(3, 7, 24))


def test_untrained_side_network_leaves_the_backbone_features_unchanged() -> None:
    """The output map starts at zero, so READ starts from the head-only probe's features and improves on them."""
    from effc.runtime.read import ReadHead

    torch.manual_seed(0)
    head = ReadHead(ReadConfig(hidden_size=8, model_width=24, num_layers=3))
    final, states, mask = torch.randn(4, 9, 24), torch.randn(3, 4, 9, 24), torch.ones(4, 9, dtype=torch.int64)
    torch.testing.assert_close(head(final, states, mask), head.classifier(masked_mean(final, mask)))
    head(final, states, mask).sum().backward()
    assert head.side.out.weight.grad is not None and head.side.out.weight.grad.abs().sum() > 0


def test_dropout_acts_only_while_training() -> None:
    """READ's dropout regularises training; evaluation and the exported module see the whole correction."""
    from effc.runtime.read import ReadHead

    torch.manual_seed(0)
    dropped = ReadHead(ReadConfig(hidden_size=8, model_width=24, num_layers=3, dropout=0.5))
    torch.nn.init.normal_(dropped.side.out.weight)  # a trained correction, not the zero one it starts from
    plain = ReadHead(ReadConfig(hidden_size=8, model_width=24, num_layers=3)).eval()
    plain.load_state_dict(dropped.state_dict())  # dropout has no weights: the same state dict fits both
    final, states, mask = torch.randn(4, 9, 24), torch.randn(3, 4, 9, 24), torch.ones(4, 9, dtype=torch.int64)
    torch.testing.assert_close(dropped.eval()(final, states, mask), plain(final, states, mask), rtol=0, atol=0)
    assert not torch.allclose(dropped.train()(final, states, mask), plain(final, states, mask))
    with pytest.raises(EffcError, match=r"dropout must be in \[0, 1\), not 1.0"):
        ReadConfig(dropout=1.0)


def test_side_network_on_real_tokens_only_gives_the_same_logits() -> None:
    from effc.runtime.read import ReadHead

    torch.manual_seed(0)
    head = ReadHead(ReadConfig(hidden_size=8, model_width=24, num_layers=3))
    torch.nn.init.normal_(head.side.out.weight)  # a trained correction, not the zero one it starts from
    final, states = torch.randn(4, 9, 24), torch.randn(3, 4, 9, 24)
    mask = torch.ones(4, 9, dtype=torch.int64)
    mask[0, 5:], mask[2, 1:] = 0, 0
    packed = head(final, states, mask, real_tokens_only=True)
    torch.testing.assert_close(packed, head(final, states, mask), rtol=1e-6, atol=1e-6)
    packed.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in head.parameters())


def test_attach_freezes_the_backbone_and_prints_trainable_parameters(
    encoder: tuple[torch.nn.Module, object], capsys: pytest.CaptureFixture[str]
) -> None:
    model = attach(encoder[0], ReadConfig(hidden_size=16))
    assert (model.config.model_width, model.config.num_layers) == (32, 2)
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.print_trainable_parameters()
    trainable, total = model.trainable_parameters()
    assert capsys.readouterr().out == (
        f"trainable params: {trainable:,d} || all params: {total:,d} || trainable%: {100 * trainable / total:.4f}\n"
    )
    assert trainable == sum(p.numel() for p in model.read.parameters())


# --- training ---------------------------------------------------------------------------------------


def test_training_changes_only_the_side_network(
    encoder_dir: Path, encoder: tuple[torch.nn.Module, object], compiled_backbone: object
) -> None:
    from effc.runtime.read_task import load_task, read_config_fields
    from effc.runtime.read_train import LiveStates, tokenize, train

    backbone, tokenizer = encoder
    task = load_task(encoder_dir / "task.json")
    torch.manual_seed(0)
    model = attach(backbone, ReadConfig(**read_config_fields(task)))
    frozen = {k: v.clone() for k, v in backbone.state_dict().items()}
    side = {k: v.clone() for k, v in model.read.state_dict().items()}
    data = tokenize(task, tokenizer)
    report = train(model, task, data, LiveStates(compiled_backbone, data))
    assert report.fit.epochs and report.test_accuracy is not None
    assert all(torch.equal(frozen[k], v) for k, v in backbone.state_dict().items())
    assert all(p.grad is None and not p.requires_grad for p in backbone.parameters())
    assert any(not torch.equal(side[k], v) for k, v in model.read.state_dict().items())
    # The eager composition backpropagates into the side network only, too.
    ids = torch.from_numpy(data["train"].input_ids[:4])
    mask = torch.from_numpy(data["train"].attention_mask[:4])
    model(ids, mask).sum().backward()
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is not None for p in model.read.parameters())


def test_cached_states_train_the_same_network(
    encoder_dir: Path, encoder: tuple[torch.nn.Module, object], compiled_backbone: object
) -> None:
    from effc.runtime.read_task import load_task, read_config_fields
    from effc.runtime.read_train import LiveStates, StateCache, tokenize, train

    task = load_task(encoder_dir / "task.json")
    data = tokenize(task, encoder[1])
    trained = []
    for cached in (False, True):
        torch.manual_seed(0)
        model = attach(encoder[0], ReadConfig(**read_config_fields(task)))
        if cached:  # stores and trains from real tokens only
            with StateCache(compiled_backbone, data) as cache:
                report = train(model, task, data, cache)
            real_tokens = sum(int(split.attention_mask.sum()) for split in data.values())
            assert report.cache["bytes"] == real_tokens * 3 * 32 * 4  # tokens x (1 + layers) x width x f32
        else:
            train(model, task, data, LiveStates(compiled_backbone, data))
        trained.append(model.read.state_dict())
    for key, value in trained[0].items():
        torch.testing.assert_close(trained[1][key], value, rtol=1e-6, atol=1e-7)


def test_backbone_runs_batches_shorter_than_it_was_compiled_for(
    encoder_dir: Path, encoder: tuple[torch.nn.Module, object], compiled_backbone: object
) -> None:
    from effc.runtime.read_task import load_task
    from effc.runtime.read_train import tokenize

    data = tokenize(load_task(encoder_dir / "task.json"), encoder[1])["train"]
    short = np.flatnonzero(data.attention_mask.sum(axis=1) <= 8)[:5]
    assert len(short)
    ids, mask = data.input_ids[short, :8], data.attention_mask[short, :8]
    final, states = compiled_backbone(ids, mask)  # padded to 16 tokens inside, trimmed back
    assert final.shape == (5, 8, 32) and states.shape == (2, 5, 8, 32)
    by_token = compiled_backbone.token_major(ids, mask)  # type: ignore[attr-defined]
    np.testing.assert_array_equal(by_token, np.concatenate([final[None], states]).transpose(1, 2, 0, 3))
    full_final, full_states = compiled_backbone(data.input_ids[short], data.attention_mask[short])
    real = mask.astype(bool)
    np.testing.assert_array_equal(final[real], full_final[:, :8][real])
    np.testing.assert_array_equal(states[:, real], full_states[:, :, :8][:, real])
    with pytest.raises(EffcError, match="16 rows of 16 tokens got 1 of 17"):
        compiled_backbone(np.ones((1, 17), np.int64), np.ones((1, 17), np.int64))


def test_state_cache_meters_only_the_train_split(
    encoder_dir: Path, encoder: tuple[torch.nn.Module, object], compiled_backbone: object
) -> None:
    from effc.runtime.read_task import load_task
    from effc.runtime.read_train import EnergyLog, StateCache, tokenize

    data = tokenize(load_task(encoder_dir / "task.json"), encoder[1])
    energy = EnergyLog(on_gpu=False)
    with StateCache(compiled_backbone, data, energy) as cache:
        assert set(cache.seconds) == {"train", "dev", "test"}
        assert energy.seconds == pytest.approx(cache.seconds["train"], abs=0.05)
        savings = cache.savings(epochs=3)
    assert savings["build_seconds"] == cache.seconds["train"]
    assert savings["eval_build_seconds"] == cache.seconds["dev"] + cache.seconds["test"] > 0
    assert savings["saved_seconds_estimate"] == 2 * cache.seconds["train"]


def test_micro_batches_refuse_live_states(
    encoder_dir: Path, encoder: tuple[torch.nn.Module, object], compiled_backbone: object
) -> None:
    from effc.runtime.read_task import load_task, read_config_fields
    from effc.runtime.read_train import LiveStates, tokenize, train

    task = load_task(encoder_dir / "task.json")
    data = tokenize(task, encoder[1])
    model = attach(encoder[0], ReadConfig(**read_config_fields(task)))
    with pytest.raises(EffcError, match="micro-batches need cached states"):
        train(model, task, data, LiveStates(compiled_backbone, data), micro_batch=4)


def test_micro_batches_take_the_same_step() -> None:
    from effc.runtime.read_train import Tokens, fit

    rng = np.random.default_rng(0)
    data = {"train": Tokens(np.zeros((10, 1), np.int64), np.ones((10, 1), np.int64), rng.integers(0, 2, 10))}
    features = torch.from_numpy(rng.normal(size=(10, 6)).astype(np.float32))
    trained = []
    for micro_batch in (0, 3):
        torch.manual_seed(0)
        layer = torch.nn.Linear(6, 2)
        result = fit(
            list(layer.parameters()),
            lambda rows, layer=layer: layer(features[rows]),
            data,
            lambda split: np.zeros(10, np.int64),
            epochs=2,
            lr=0.1,
            batch_size=8,
            seed=0,
            eval_splits=(),
            micro_batch=micro_batch,
        )
        trained.append((layer.state_dict(), [e.loss for e in result.epochs]))
    for key, value in trained[0][0].items():
        torch.testing.assert_close(trained[1][0][key], value, rtol=1e-5, atol=1e-6)
    assert trained[1][1] == pytest.approx(trained[0][1], rel=1e-5)
    torch.manual_seed(0)
    assert not torch.equal(trained[0][0]["weight"], torch.nn.Linear(6, 2).weight.detach())  # it did train


# --- save, load, merge ------------------------------------------------------------------------------


def _randomize(model: ReadModel) -> ReadModel:
    torch.manual_seed(1)
    with torch.no_grad():
        for param in model.read.parameters():
            param.normal_(0, 0.3)
    return model


def test_save_pretrained_round_trip(tmp_path: Path, encoder: tuple[torch.nn.Module, object]) -> None:
    model = _randomize(attach(encoder[0], ReadConfig(hidden_size=16, dropout=0.25, label_names=["neg", "pos"])))
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["read_config.json", "read_model.safetensors"]
    config = json.loads((tmp_path / "read_config.json").read_text())
    assert config["peft_type"] == "READ" and config["model_width"] == 32 and config["label_names"] == ["neg", "pos"]
    assert config["dropout"] == 0.25
    loaded = ReadModel.from_pretrained(encoder[0], tmp_path)
    ids = torch.randint(5, 20, (3, 10))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, mask), model.eval()(ids, mask), rtol=0, atol=0)
    assert loaded.config == model.config and not loaded.training


def test_merged_module_matches_the_pytorch_composition(encoder: tuple[torch.nn.Module, object]) -> None:
    from effc.runtime.read_compile import merge

    model = _randomize(attach(encoder[0], ReadConfig(hidden_size=16)))
    ids = torch.randint(5, 20, (2, 16), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    mask[0, 9:] = 0
    merged = merge(model, (ids, mask), target="llvm-cpu")
    assert merged.mlir.count("func.func") == 1  # one inference function: the side branch is inlined
    (logits,) = merged.run()
    with torch.no_grad():
        expected = model(ids, mask).numpy()
    assert logits.shape == (2, 2)
    assert np.abs(logits - expected).max() <= 1e-5 * max(1.0, np.abs(expected).max())


# --- command line -----------------------------------------------------------------------------------


def test_cli_train_then_merge(tmp_path: Path, encoder_dir: Path, effc_cli: EffcCli) -> None:
    adapter = tmp_path / "adapter"
    result = effc_cli(
        "read",
        "train",
        str(encoder_dir),
        "--task",
        str(encoder_dir / "task.json"),
        "--cache-states",
        "-o",
        str(adapter),
    )
    assert result.code == 0, result.err
    assert "trainable params:" in result.out and "cached states saved about" in result.out
    assert "layer taps for llvm-cpu, 8 rows per call" in result.out  # only the state cache calls the backbone
    report = json.loads((adapter / "train_report.json").read_text())
    assert report["energy"]["source"] in ("measured-rapl", "measured-nvml", "modeled")
    assert report["cache"]["saved_seconds_estimate"] >= 0
    merged = tmp_path / "merged.vmfb"
    result = effc_cli("read", "merge", str(encoder_dir), str(adapter), "-o", str(merged), "--max-length", "16")
    assert result.code == 0, result.err
    assert "relative error" in result.out and " ok" in result.out and merged.stat().st_size > 0


def test_builtin_rotten_tomatoes_split(tmp_path: Path) -> None:
    from effc.runtime.read_task import load_task

    path = tmp_path / "task.json"
    path.write_text(
        json.dumps({"dataset": "rotten-tomatoes", "split": {"seed": 3, "train": 0.8, "dev": 0.1, "test": 0.1}})
    )
    task = load_task(path)
    sizes = {name: len(split) for name, split in task.splits.items()}
    assert sum(sizes.values()) == 4863 and task.dropped == 5022 - 4863  # 156 plot rows, 3 duplicates
    assert sizes == {"train": 3890, "dev": 486, "test": 487}
    texts = [set(split.texts) for split in task.splits.values()]
    assert not (texts[0] & texts[1] or texts[0] & texts[2] or texts[1] & texts[2])
    assert set(task.splits["train"].labels.tolist()) == {0, 1}
    assert load_task(path).splits["test"].texts == task.splits["test"].texts  # the seed fixes the split


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (None, "task file '{dir}/missing.json' not found"),
        ({"label_column": "sentiment"}, "unknown label column 'sentiment' in 'data.csv' (row 1 has: sentence, label)"),
        ({"exclude_labels": []}, "'data.csv' has label 'plot' in column 'label', which is neither in \"labels\""),
        ({"epoch": 3}, "unknown key 'epoch'; did you mean 'epochs'?"),
        ({"dataset": "imdb"}, 'give either "data"'),
    ],
    ids=["missing-task", "label-column", "unlisted-label", "typo", "data-and-dataset"],
)
def test_bad_task_files_are_one_line_errors(
    tmp_path: Path, encoder_dir: Path, effc_cli: EffcCli, change: dict | None, message: str
) -> None:
    if change is None:
        task = tmp_path / "missing.json"
    else:
        (tmp_path / "data.csv").write_text((encoder_dir / "data.csv").read_text())
        task = make_task(tmp_path, **change)
    result = effc_cli("read", "train", str(encoder_dir), "--task", str(task), "-o", str(tmp_path / "out"))
    assert result.code == 1
    assert result.err.startswith("effc: error: ") and result.err.count("\n") == 1
    assert message.format(dir=tmp_path) in result.err


def test_adapter_for_another_width_is_refused(
    tmp_path: Path, encoder_dir: Path, effc_cli: EffcCli, capsys: pytest.CaptureFixture[str]
) -> None:
    from effc.runtime.read_cmd import load_encoder

    wide = make_encoder(tmp_path / "wide", width=64)
    attach(load_encoder(str(wide))[0], ReadConfig(hidden_size=16)).save_pretrained(tmp_path / "adapter")
    capsys.readouterr()  # only the command's own output below
    result = effc_cli("read", "merge", str(encoder_dir), str(tmp_path / "adapter"), "-o", str(tmp_path / "m.vmfb"))
    assert result.code == 1 and result.err.count("\n") == 1
    assert "was saved for a model of width 64 with 2 layers" in result.err and "has width 32 and 2 layers" in result.err
    with pytest.raises(EffcError, match="width 64"):
        ReadModel.from_pretrained(load_encoder(str(encoder_dir))[0], tmp_path / "adapter")


def test_backbone_shape_needs_a_hugging_face_encoder() -> None:
    with pytest.raises(EffcError, match="READ needs a Hugging Face encoder"):
        backbone_shape(torch.nn.Linear(2, 2))


@pytest.mark.usefixtures("bf16_cpu")  # "medium" is bf16 on any host
@pytest.mark.parametrize(("precision", "floor"), [("medium", 2e-5), ("int8", 1e-4)])
def test_backbone_at_lower_precision_stays_close_to_the_f32_one(
    encoder: tuple[torch.nn.Module, object], compiled_backbone: object, precision: str, floor: float
) -> None:
    """bf16 matmul inputs or int8 matmuls must change the states (f32 gives ~1e-6: the rounding acted) by no more than
    the precision's tolerance."""
    from effc.compiler.optimize import CHECK_TOLERANCE
    from effc.runtime.read_compile import compile_backbone
    from effc.runtime.runner import relative_error

    lower = compile_backbone(encoder[0], batch_size=16, max_length=16, target="llvm-cpu", matmul_precision=precision)
    ids = np.random.default_rng(0).integers(5, encoder[0].config.vocab_size, (4, 16))  # type: ignore[attr-defined]
    mask = np.ones_like(ids)
    for ours, reference in zip(lower(ids, mask), compiled_backbone(ids, mask), strict=True):  # type: ignore[operator]
        assert floor < relative_error(ours, reference) <= CHECK_TOLERANCE[precision]


def test_backbone_stays_f32_with_a_warning_on_a_cpu_without_bf16_dot_products(
    encoder: tuple[torch.nn.Module, object], compiled_backbone: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    from effc.compiler import optimize
    from effc.runtime.read_compile import compile_backbone
    from effc.runtime.runner import relative_error

    monkeypatch.setattr(optimize, "has_bf16_dot", lambda: False)
    with pytest.warns(
        UserWarning, match=r"^matmul precision 'medium' keeps f32 arithmetic: this CPU \(.*\) has no bf16 dot"
    ):
        kept = compile_backbone(encoder[0], batch_size=16, max_length=16, target="llvm-cpu", matmul_precision="medium")
    ids = np.random.default_rng(0).integers(5, encoder[0].config.vocab_size, (4, 16))  # type: ignore[attr-defined]
    mask = np.ones_like(ids)
    for ours, reference in zip(kept(ids, mask), compiled_backbone(ids, mask), strict=True):  # type: ignore[operator]
        assert relative_error(ours, reference) <= 1e-6  # the f32 module
