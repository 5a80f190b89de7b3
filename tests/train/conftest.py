"""Fixtures of the trainer tests: a tiny 32-px CLIP, synthetic choice and rating data, and a
preference model trained once per session (the learning proof, reused as a pretrained base)."""

from __future__ import annotations

from pathlib import Path

import pytest

from prefalign.testing import BACKGROUNDS, COLOURS, SHAPES

# The prompts of the synthetic data ("a red circle on a white background") as a prompt family.
SHAPE_FAMILY_WORDS = {
    "objects": list(SHAPES),
    "colours": list(COLOURS),
    "backgrounds": [f"on a {b} background" for b in BACKGROUNDS],
    "counts": [1],
}


def tiny_preference_config(data, base, out, **overrides):
    """Settings for a tiny CLIP: the last block of each tower trains, at a tiny-model learning rate."""
    from prefalign.train import PreferenceConfig

    values = dict(
        data=str(data),
        base=str(base),
        output_dir=str(out),
        vision_blocks=1,
        text_blocks=1,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        max_steps=10,
        eval_fraction=0.25,
        eval_steps=0,
        save_steps=0,
        progress=False,
    )
    values.update(overrides)
    return PreferenceConfig(**values)


def tiny_reward_config(data, base, out, **overrides):
    from prefalign.train import RewardConfig

    values = dict(
        data=str(data),
        base=str(base),
        output_dir=str(out),
        learning_rate=1e-2,
        hidden_size=256,
        per_device_train_batch_size=32,
        max_steps=10,
        eval_fraction=0.25,
        eval_steps=0,
        save_steps=0,
        progress=False,
    )
    values.update(overrides)
    return RewardConfig(**values)


@pytest.fixture(scope="package", autouse=True)
def one_thread():
    """Tiny models run fastest on one thread: four times faster on a busy two-core machine."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="package")
def shape_family():
    from prefalign.train import CompositionalFamily

    return CompositionalFamily(**SHAPE_FAMILY_WORDS)


@pytest.fixture(scope="package")
def tiny_clip32(tmp_path_factory) -> Path:
    """A tiny random CLIP (32-px images, 8-px patches, 2 blocks per tower)."""
    from prefalign.testing import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip32") / "clip", image_size=32, patch_size=8)


@pytest.fixture(scope="package")
def choice_data(tmp_path_factory) -> Path:
    """240 choices among 2, 3 or 4 images; the prompt names what only the chosen image shows."""
    from prefalign.testing import make_choice_dataset

    return make_choice_dataset(tmp_path_factory.mktemp("choices"), 240, n_images=(2, 3, 4), size=32, seed=1)


@pytest.fixture(scope="package")
def small_choice_data(tmp_path_factory) -> Path:
    from prefalign.testing import make_choice_dataset

    return make_choice_dataset(
        tmp_path_factory.mktemp("small-choices"), 40, n_images=(2, 3, 4), size=32, seed=2
    )


@pytest.fixture(scope="package")
def rating_data(tmp_path_factory) -> Path:
    """Binary labels: bad images get the shape or the colour of their prompt wrong."""
    from prefalign.testing import make_rating_dataset

    return make_rating_dataset(
        tmp_path_factory.mktemp("ratings"), 200, size=32, seed=1, mistakes=("shape", "colour")
    )


@pytest.fixture(scope="package")
def small_rating_data(tmp_path_factory) -> Path:
    from prefalign.testing import make_rating_dataset

    return make_rating_dataset(
        tmp_path_factory.mktemp("small-ratings"), 40, size=32, seed=2, mistakes=("shape", "colour")
    )


@pytest.fixture(scope="package")
def trained_preference(tiny_clip32, choice_data, tmp_path_factory):
    """The learning run: 200 steps from the random tiny CLIP (about 15 s on two cores)."""
    from prefalign.train import PreferenceTrainer

    out = tmp_path_factory.mktemp("trained") / "hps"
    config = tiny_preference_config(choice_data, tiny_clip32, out, max_steps=200, eval_steps=50)
    trainer = PreferenceTrainer(config)
    result = trainer.train()
    return trainer, result


@pytest.fixture(scope="package")
def tiny_scorer32(tiny_clip32, tmp_path_factory) -> Path:
    """The tiny CLIP in the prefalign model format (kind hps): a base the reward trainer loads."""
    from prefalign.scoring import convert_checkpoint

    return convert_checkpoint("hf-clip", tiny_clip32, tmp_path_factory.mktemp("scorer32") / "hps", kind="hps")


def trainer_case(kind, data, base, out, **overrides):
    """``(trainer, weights file)`` of a tiny run of trainer ``kind`` (scorer or reward)."""
    from prefalign.train import PreferenceTrainer, RewardTrainer

    if kind == "scorer":
        return PreferenceTrainer(tiny_preference_config(data, base, out, **overrides)), "model.safetensors"
    return RewardTrainer(tiny_reward_config(data, base, out, **overrides)), "head.safetensors"
