"""The HPS preference classifier learns, freezes what it should, and writes a usable model."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from prefalign.data import Record, load_dataset, save_dataset
from prefalign.testing import draw_shape
from prefalign.train.examples import choice_examples

from .conftest import tiny_preference_config

# With vision_blocks = text_blocks = 1 on a 2-block tiny CLIP, these train; nothing else may change.
TRAINABLE_PREFIXES = (
    "vision_model.encoder.layers.1.",
    "text_model.encoder.layers.1.",
    "vision_model.post_layernorm.",
    "text_model.final_layer_norm.",
    "visual_projection.",
    "text_projection.",
    "logit_scale",
)


def test_held_out_accuracy_rises_from_chance(trained_preference):
    _, result = trained_preference
    before, after = result.eval_before, result.eval_after
    assert before["eval_records"] == after["eval_records"] == 60
    # From about 1/n (n mixes 2, 3 and 4 images) to at least 0.9.
    assert before["eval_accuracy"] < before["eval_chance"] + 0.15
    assert after["eval_accuracy"] >= 0.9
    train = result.state.train_log
    assert len(train) == 200
    first, last = sum(r["loss"] for r in train[:20]) / 20, sum(r["loss"] for r in train[-20:]) / 20
    assert last < first / 2


def test_frozen_parameters_are_bit_identical_and_trainable_ones_moved(trained_preference, tiny_clip32):
    _, result = trained_preference
    base = load_file(tiny_clip32 / "model.safetensors")
    trained = load_file(result.model_dir / "model.safetensors")
    assert base.keys() == trained.keys()
    frozen = [k for k in base if not k.startswith(TRAINABLE_PREFIXES)]
    moved = [k for k in base if k.startswith(TRAINABLE_PREFIXES)]
    assert frozen and moved
    for key in frozen:
        assert torch.equal(base[key], trained[key]), key
    for key in moved:
        assert not torch.equal(base[key], trained[key]), key


def test_frozen_parameters_cost_no_gradient_or_optimizer_state(trained_preference):
    trainer, _ = trained_preference
    named = dict(trainer.accelerator.unwrap_model(trainer.model).clip.named_parameters())
    trainable = {id(p) for name, p in named.items() if name.startswith(TRAINABLE_PREFIXES)}
    assert {id(p) for p in named.values() if p.requires_grad} == trainable
    state = (
        trainer.optimizer.optimizer.state
        if hasattr(trainer.optimizer, "optimizer")
        else trainer.optimizer.state
    )
    assert {id(p) for p in state} == trainable
    assert all(p.grad is None for name, p in named.items() if not name.startswith(TRAINABLE_PREFIXES))
    # No weight decay on norms, biases and logit_scale.
    groups = trainer.optimizer.param_groups
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0.0 for p in g["params"]}
    for name, p in named.items():
        if id(p) in trainable:
            expect_none = "norm" in name or name.endswith("bias") or name == "logit_scale"
            assert (id(p) in no_decay) == expect_none, name


def test_output_is_a_model_directory_scored_as_hps(trained_preference, choice_data):
    from prefalign.scoring import load_scorer
    from prefalign.train import PreferenceConfig

    _, result = trained_preference
    out = result.model_dir
    scorer = load_scorer(out, device="cpu")
    assert scorer.kind == "hps" and scorer.preprocess.mode == "pad" and scorer.preprocess.size == 32
    record = load_dataset(choice_data)[0]
    images = [load_dataset(choice_data).image_path(i) for i in record.images]
    scores = scorer.score(images, record.prompt)
    cos = scorer.encode_images(images) @ scorer.encode_text([record.prompt])[0]
    assert torch.allclose(scores, 100 * cos, atol=1e-4)

    rows = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    train = [r for r in rows if r["type"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 201))
    assert all({"loss", "accuracy", "lr"} <= r.keys() for r in train)
    assert train[0]["lr"] == pytest.approx(1e-3) and train[-1]["lr"] < 1e-5  # cosine decay to ~0
    assert [r["step"] for r in rows if r["type"] == "eval"] == [0, 50, 100, 150, 200]
    config = PreferenceConfig.from_yaml(out / "training_config.yaml")
    assert config.max_steps == 200 and config.vision_blocks == 1
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["eval_after"]["eval_accuracy"] == result.eval_after["eval_accuracy"]


def test_rankings_and_pairs_become_choices(tmp_path):
    for i in range(3):
        draw_shape("circle", "red").save(tmp_path / f"{i}.png")
    imgs = ["0.png", "1.png", "2.png"]
    records = [
        Record("a", imgs, id="choice", chosen=1),
        Record("b", imgs, id="ranking", ranks=[2, 0, 1]),
        Record("c", imgs, id="ranking-tie-below-best", ranks=[0, 1, 1]),
        Record("d", imgs, id="tie-for-best", ranks=[1, 0, 0]),
        Record("e", imgs[:2], id="pair", ranks=[1, 0]),
        Record("f", imgs[:2], id="tied-pair", ranks=[0, 0]),
        Record("g", imgs[:1], id="one-image", chosen=0),
        Record("h", imgs, id="out-of-range", chosen=3),
        Record("i", imgs, id="ratings-only", ratings=[1.0, 0.0, 0.0]),
        Record("j", ["0.png", "missing.png"], id="missing-image", chosen=0),
    ]
    examples, skips = choice_examples(load_dataset(save_dataset(records, tmp_path)))
    assert {e.id: e.chosen for e in examples} == {
        "choice": 1,
        "ranking": 1,
        "ranking-tie-below-best": 0,
        "pair": 1,
    }
    assert skips.counts == {
        "tie for the best image": 2,
        "fewer than two images (a choice needs at least two)": 1,
        "chosen index out of range": 1,
        "no choice or ranking": 1,
        "image file not found": 1,
    }
    assert "tied-pair" in skips.summary()


def test_collate_pads_mixed_record_sizes(trained_preference):
    trainer, _ = trained_preference
    examples = sorted(trainer.train_examples[:12], key=lambda e: len(e.images))
    assert {len(e.images) for e in examples} == {2, 3, 4}
    batch = trainer.collate(examples)
    assert batch["pixel_values"].shape == (12, 4, 3, 32, 32)
    assert batch["image_mask"].sum(-1).tolist() == [len(e.images) for e in examples]
    padded = batch["pixel_values"][~batch["image_mask"]]
    assert padded.abs().sum() == 0


def test_scorer_trains_under_paper_defaults_except_size(tiny_clip32, small_choice_data, tmp_path):
    """The paper's optimiser settings run as they are (lr 1.7e-5, wd 3.1e-3, batch 5)."""
    from prefalign.train import PreferenceTrainer

    config = tiny_preference_config(
        small_choice_data,
        tiny_clip32,
        tmp_path / "out",
        learning_rate=1.7e-5,
        weight_decay=3.1e-3,
        per_device_train_batch_size=5,
        max_steps=0,
    )
    config.vision_blocks, config.text_blocks = 10, 6  # more than the tiny towers have: all blocks
    result = PreferenceTrainer(config).train()
    assert result.state.step == 6  # one epoch of 30 training records in batches of 5
