"""Each method's defaults are its paper's (or its authors' code's), read from the parsed command
line; reward transforms put any score scale into Lee et al.'s [0, 1]; training images are cropped
as the authors' LoRA script crops them; a run without the paper's extra data says so."""

from __future__ import annotations

import argparse
import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from prefalign.adapt.config import LoraTrainingConfig, RewardWeightedConfig
from prefalign.adapt.rewards import default_transform, transform_rewards
from prefalign.adapt.trainer import crop_box, load_pixels, resize_shorter_side
from prefalign.data import Record, load_dataset, save_dataset

from .conftest import lora_config


def _parsed(command: str, config_cls):
    from prefalign.cli import adapt as cli_adapt

    parser = argparse.ArgumentParser()
    cli_adapt.register(parser.add_subparsers())
    args = parser.parse_args(["adapt", command, "--data", "d", "--base", "b", "--output_dir", "o"])
    return cli_adapt.config_from_args(config_cls, args)


def test_train_rwr_defaults_are_lee_et_al():
    config = _parsed("train-rwr", RewardWeightedConfig)
    assert config.train == "unet"  # Lee et al. fine-tune the UNet itself, text encoder frozen
    assert config.reward_transform == "auto"
    assert config.center_crop is False


def test_train_lora_defaults_are_the_authors_script():
    config = _parsed("train-lora", LoraTrainingConfig)
    assert (
        config.max_steps,
        config.per_device_train_batch_size,
        config.learning_rate,
        config.weight_decay,
    ) == (
        10_000,
        40,
        1e-5,
        1e-2,
    )
    assert (config.rank, config.resolution, config.center_crop) == (32, 512, False)


def test_help_says_where_defaults_come_from(capsys):
    from prefalign.cli.main import main

    with pytest.raises(SystemExit):
        main(["adapt", "train-rwr", "--help"])
    rwr = " ".join(capsys.readouterr().out.split())
    assert "as Lee et al." in rwr and "(ours)" in rwr and "(default: unet)" in rwr
    with pytest.raises(SystemExit):
        main(["adapt", "train-lora", "--help"])
    lora = " ".join(capsys.readouterr().out.split())
    assert "the authors' script: 10000" in lora and "6.5" in lora
    with pytest.raises(SystemExit):
        main(["adapt", "select", "--help"])
    select = " ".join(capsys.readouterr().out.split())
    assert "6.5, the paper's threshold" in select and "HPS v1" in select


# ---------------------------------------------------------------------- rewards into [0, 1]
HPS_SCALE = torch.tensor([19.5, 22.0, 24.3, 25.0, 27.8, 31.2])


@pytest.mark.parametrize("name", ["sigmoid", "minmax"])
def test_transforms_map_hps_scale_scores_into_0_1_keeping_the_order(name):
    mapped = transform_rewards(HPS_SCALE, name)
    assert float(mapped.min()) >= 0.0 and float(mapped.max()) <= 1.0
    assert torch.equal(mapped.argsort(), HPS_SCALE.argsort())


def test_sigmoid_is_the_choice_probability_against_the_median():
    # HPS units are choice-model logits: σ(s − m) is P(image preferred over the median image).
    scores = torch.tensor([20.0, 21.0, 23.0])
    assert transform_rewards(scores, "sigmoid").tolist() == pytest.approx(
        [1 / (1 + np.e), 0.5, 1 / (1 + np.exp(-2.0))]
    )
    assert transform_rewards(scores, "minmax").tolist() == pytest.approx([0.0, 1 / 3, 1.0])
    assert transform_rewards(torch.tensor([3.0, 3.0]), "minmax").tolist() == [1.0, 1.0]


def test_none_warns_once_outside_0_1_and_passes_probabilities_through():
    with pytest.warns(UserWarning, match="outside \\[0, 1\\]") as record:
        out = transform_rewards(HPS_SCALE, "none")
    assert len(record) == 1 and torch.equal(out, HPS_SCALE)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        probabilities = torch.tensor([0.0, 0.3, 1.0])
        assert torch.equal(transform_rewards(probabilities, "none"), probabilities)
    with pytest.raises(ValueError, match="reward transform"):
        transform_rewards(HPS_SCALE, "softplus")


def test_default_transform_per_score_kind():
    assert default_transform("reward", torch.tensor([0.2, 0.9])) == "none"
    assert default_transform("hps", HPS_SCALE) == "sigmoid"
    assert default_transform("pickscore", HPS_SCALE) == "sigmoid"
    assert default_transform("clip", torch.tensor([0.21, 0.3])) == "minmax"
    assert default_transform("aesthetic", torch.tensor([4.0, 6.5])) == "minmax"
    assert default_transform(None, torch.tensor([0.0, 1.0])) == "none"
    assert default_transform(None, HPS_SCALE) == "minmax"


def test_rewarded_examples_put_model_scores_in_0_1(tmp_path, shapes_data):
    from prefalign.adapt.reward_weighted import rewarded_examples

    data = load_dataset(shapes_data)
    hps_like = lambda images, prompts: torch.linspace(18.0, 32.0, len(images))  # noqa: E731
    report: dict = {}
    examples, human, modelled = rewarded_examples(data, hps_like, kind="hps", report=report)
    weights = [e.weight for e in examples]
    assert human == 0 and modelled == len(weights)
    assert min(weights) >= 0.0 and max(weights) <= 1.0
    assert report["reward_transform"] == "sigmoid" and report["raw_reward_range"] == [18.0, 32.0]
    with pytest.warns(UserWarning, match="outside \\[0, 1\\]"):
        examples, _, _ = rewarded_examples(data, hps_like, transform="none", kind="hps")
    assert max(e.weight for e in examples) == pytest.approx(32.0)


# ---------------------------------------------------------------------- crops
def test_training_images_resize_bilinear_then_crop_at_random(tmp_path):
    rng = np.random.default_rng(0)
    wide = Image.fromarray(rng.integers(0, 256, (20, 40, 3), dtype=np.uint8))  # 40 wide, 20 high
    path = tmp_path / "wide.png"
    wide.save(path)
    resized = resize_shorter_side(wide, 10)
    assert resized.size == (20, 10)
    assert np.array_equal(np.asarray(resized), np.asarray(wide.resize((20, 10), Image.Resampling.BILINEAR)))
    lefts = set()
    for seed in range(60):
        g = torch.Generator().manual_seed(seed)
        left, top = crop_box(20, 10, 10, g)
        assert top == 0 and 0 <= left <= 10
        lefts.add(left)
        pixels = load_pixels([str(path)], 10, [torch.Generator().manual_seed(seed)])
        expected = np.asarray(resized.crop((left, 0, left + 10, 10)), dtype=np.float32) / 127.5 - 1.0
        assert torch.allclose(pixels[0].permute(1, 2, 0), torch.from_numpy(expected))
    assert len(lefts) > 5  # the crop moves
    centre = load_pixels([str(path)], 10, None)[0].permute(1, 2, 0)
    expected = np.asarray(resized.crop((5, 0, 15, 10)), dtype=np.float32) / 127.5 - 1.0
    assert torch.allclose(centre, torch.from_numpy(expected))


# ---------------------------------------------------------------------- the recipe notes
def test_lora_without_regularisation_says_so(tmp_path, shapes_data, tiny_sd, caplog):
    from prefalign.adapt.lora import NO_REGULARIZATION_NOTE, train_lora

    with caplog.at_level("WARNING"):
        out = train_lora(lora_config(shapes_data, tiny_sd, tmp_path / "plain", max_steps=1))
    assert NO_REGULARIZATION_NOTE in caplog.text
    info = json.loads((out / "prefalign_adapter.json").read_text())
    assert info["recipe_notes"] == [NO_REGULARIZATION_NOTE] and info["regularization_pairs"] == 0

    src = load_dataset(shapes_data)
    records = [
        Record(
            prompt=r.prompt,
            images=[str(src.image_path(i)) for i in r.images],
            meta={"kind": "regularization"},
        )
        for r in src
    ]
    save_dataset(records, tmp_path / "with-reg")
    caplog.clear()
    with caplog.at_level("WARNING"):
        out = train_lora(lora_config(tmp_path / "with-reg", tiny_sd, tmp_path / "reg", max_steps=1))
    assert NO_REGULARIZATION_NOTE not in caplog.text
    info = json.loads((out / "prefalign_adapter.json").read_text())
    assert info["recipe_notes"] == [] and info["regularization_pairs"] > 0
