"""Reward-weighted fine-tuning: where rewards come from, the pre-training term, full-UNet training."""

from __future__ import annotations

import json

import pytest
import torch

from prefalign.adapt.config import RewardWeightedConfig
from prefalign.adapt.errors import AdaptError
from prefalign.adapt.reward_weighted import rewarded_examples, train_reward_weighted
from prefalign.data import Record, load_dataset, save_dataset


@pytest.fixture
def half_rated(tmp_path, shapes_data):
    """The shape images, the first record rated by people (good, bad), the rest unrated."""
    src = load_dataset(shapes_data)
    records = []
    for i, rec in enumerate(src):
        images = [str(src.image_path(p)) for p in rec.images[:2]]
        records.append(Record(prompt=rec.prompt, images=images, ratings=[1.0, 0.0] if i == 0 else None))
    save_dataset(records, tmp_path / "rated")
    return tmp_path / "rated"


def test_human_ratings_win_and_the_model_fills_the_rest(half_rated):
    calls = []

    def reward(images, prompts):
        calls.append(len(images))
        return torch.full((len(images),), 0.25)

    examples, human, modelled = rewarded_examples(load_dataset(half_rated), reward)
    assert (human, modelled) == (2, 14) and calls == [14]
    assert [e.weight for e in examples[:2]] == [1.0, 0.0]
    assert {e.weight for e in examples[2:]} == {0.25}


def test_unrated_images_without_a_reward_model_are_an_error(half_rated):
    with pytest.raises(AdaptError, match="no human rating"):
        rewarded_examples(load_dataset(half_rated), None)


def test_non_finite_rewards_are_refused(half_rated):
    with pytest.raises(AdaptError, match="reward is nan"):
        rewarded_examples(load_dataset(half_rated), lambda im, p: torch.full((len(im),), float("nan")))


def _config(data, prior, base, out, **overrides):
    settings = dict(
        data=str(data),
        prior_data=None if prior is None else str(prior),
        base=str(base),
        output_dir=str(out),
        max_steps=2,
        per_device_train_batch_size=2,
        resolution=32,
        rank=4,
        learning_rate=1e-3,
        save_steps=0,
        logging_steps=1,
        beta=0.5,
        cpu=True,
    )
    settings.update(overrides)
    return RewardWeightedConfig(**settings)


def test_lora_run_logs_both_terms(tmp_path, half_rated, shapes_data, tiny_sd):
    out = train_reward_weighted(
        _config(half_rated, shapes_data, tiny_sd, tmp_path / "rwr", train="lora"),
        reward=lambda im, p: torch.full((len(im),), 0.5),
    )
    log = [json.loads(line) for line in (out / "training_log.jsonl").read_text().splitlines()]
    assert all("prior_mse" in r and "model_mse" in r for r in log)
    info = json.loads((out / "prefalign_adapter.json").read_text())
    assert info["method"] == "reward-weighted" and info["identifier"] is None
    assert (info["rewards_from_labels"], info["rewards_from_model"]) == (2, 14)


def test_full_unet_run_saves_a_pipeline(tmp_path, half_rated, tiny_sd, tiny_hps):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    out = train_reward_weighted(
        _config(half_rated, None, tiny_sd, tmp_path / "full", train="unet", beta=0.0, reward=str(tiny_hps))
    )
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None, requires_safety_checker=False)
    base = UNet2DConditionModel.from_pretrained(tiny_sd, subfolder="unet")
    changed = [n for n, p in pipe.unet.state_dict().items() if not torch.equal(p, base.state_dict()[n])]
    assert changed  # every UNet weight was trainable
    info = json.loads((out / "prefalign_finetune.json").read_text())
    assert info["method"] == "reward-weighted" and info["train"] == "unet"
    # The HPS scorer's 100·cos scores went through the sigmoid into Lee et al.'s [0, 1].
    assert info["reward_kind"] == "hps" and info["reward_transform"] == "sigmoid"
    assert 0.0 <= info["reward_range"][0] <= info["reward_range"][1] <= 1.0
    assert info["recipe_notes"] == ["no pre-training set (--prior-data): not the paper's recipe"]


def test_merge_is_for_lora_runs(tmp_path, half_rated, tiny_sd):
    with pytest.raises(AdaptError, match="--merge"):
        train_reward_weighted(
            _config(half_rated, None, tiny_sd, tmp_path / "m", train="unet", merge=True),
            reward=lambda im, p: torch.ones(len(im)),
        )
