"""Sample grids during diffusion training (--validation_prompts / --validation_steps)."""

from __future__ import annotations

import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from tests.adapt.conftest import lora_config

VALIDATION = dict(validation_prompts=["a red square", "a blue circle"], num_validation_images=2)


def _weights(out):
    from safetensors.torch import load_file

    from prefalign.adapt.adapter import LORA_WEIGHTS_FILE

    return load_file(out / LORA_WEIGHTS_FILE)


def test_grids_are_written_and_do_not_change_training_or_resume(tmp_path, shapes_data, tiny_sd):
    from prefalign.adapt.lora import train_lora

    common = dict(max_steps=3, save_steps=2, validation_inference_steps=2)
    plain = train_lora(lora_config(shapes_data, tiny_sd, tmp_path / "plain", **common))
    sampled = train_lora(
        lora_config(shapes_data, tiny_sd, tmp_path / "sampled", validation_steps=2, **common, **VALIDATION)
    )
    grids = sorted(p.name for p in (sampled / "validation").iterdir())
    assert grids == ["step-0000002.png", "step-0000003.png"]  # every 2 steps, and after the last
    grid = Image.open(sampled / "validation" / "step-0000003.png")
    assert grid.size == (2 * 32, 2 * 32)  # 2 seeds across, 2 prompts down, 32 px images
    a, b = _weights(plain), _weights(sampled)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # training undisturbed

    # an interrupted run resumed from its step-2 checkpoint: the same weights, the same final grid
    resumed_dir = tmp_path / "resumed"
    shutil.copytree(sampled / "checkpoints", resumed_dir / "checkpoints")
    resumed = train_lora(
        lora_config(
            shapes_data,
            tiny_sd,
            resumed_dir,
            validation_steps=2,
            resume_from_checkpoint="latest",
            **common,
            **VALIDATION,
        )
    )
    c = _weights(resumed)
    assert all(torch.equal(a[k], c[k]) for k in a)
    assert sorted(p.name for p in (resumed / "validation").iterdir()) == ["step-0000003.png"]
    same = np.asarray(Image.open(resumed / "validation" / "step-0000003.png"))
    assert np.array_equal(same, np.asarray(grid))  # fixed seeds: grids comparable across runs


def test_grid_samples_the_current_adapter(tmp_path, shapes_data, tiny_sd):
    """The grid is drawn with the LoRA being trained: zeroing its up-projections changes the images."""
    from prefalign.adapt.trainer import DiffusionFineTuner, examples_from_dataset
    from prefalign.adapt.validation import sample_validation_images
    from prefalign.data import load_dataset

    config = lora_config(shapes_data, tiny_sd, tmp_path / "x", max_steps=1)
    trainer = DiffusionFineTuner(config, examples_from_dataset(load_dataset(shapes_data)))
    trainer._setup()
    unet = trainer.accelerator.unwrap_model(trainer.unet)
    with torch.no_grad():
        for name, p in unet.named_parameters():
            if "lora_B" in name:
                p.fill_(0.5)
    kwargs = dict(seeds=[0], steps=2, resolution=32)
    before_state = torch.get_rng_state()
    with_lora = np.asarray(sample_validation_images(trainer.sd, unet, ["a red square"], **kwargs)[0][0])
    assert torch.equal(torch.get_rng_state(), before_state)  # global RNG restored
    assert unet.training  # train mode restored
    again = np.asarray(sample_validation_images(trainer.sd, unet, ["a red square"], **kwargs)[0][0])
    assert np.array_equal(with_lora, again)  # seeded: the same images twice
    unet.disable_adapters()
    base = np.asarray(sample_validation_images(trainer.sd, unet, ["a red square"], **kwargs)[0][0])
    assert not np.array_equal(with_lora, base)


def test_prompts_from_a_file_and_bad_settings(tmp_path):
    from prefalign.adapt.config import LoraTrainingConfig
    from prefalign.adapt.validation import read_validation_prompts
    from prefalign.training.config import ConfigError

    f = tmp_path / "prompts.txt"
    f.write_text("a cat\n\n# skipped\na dog\n")
    assert read_validation_prompts([str(f)]) == ["a cat", "a dog"]
    assert read_validation_prompts(str(f)) == ["a cat", "a dog"]  # a YAML recipe's plain string
    assert read_validation_prompts(["a cat", "a dog"]) == ["a cat", "a dog"]
    base = dict(data="d", base="b", output_dir="o")
    with pytest.raises(ConfigError, match="validation_steps needs --validation_prompts"):
        LoraTrainingConfig(**base, validation_steps=5).validate()
    with pytest.raises(ConfigError, match="without --validation_steps"):
        LoraTrainingConfig(**base, validation_prompts=["a cat"]).validate()
    (tmp_path / "empty.txt").write_text("# nothing\n")
    with pytest.raises(ConfigError, match=r"empty\.txt: no validation prompts"):
        LoraTrainingConfig(
            **base, validation_steps=1, validation_prompts=[str(tmp_path / "empty.txt")]
        ).validate()


def test_cli_options_parse_as_diffusers_names(tmp_path):
    from prefalign.adapt.config import LoraTrainingConfig
    from prefalign.cli.main import build_parser
    from prefalign.training.arguments import config_from_args

    args = build_parser().parse_args(
        [
            "adapt",
            "train-lora",
            "--data",
            "d",
            "--base",
            "b",
            "--output_dir",
            "o",
            "--validation_prompts",
            "a cat",
            "a dog",
            "--validation-steps",
            "100",
            "--num_validation_images",
            "2",
        ]
    )
    config = config_from_args(LoraTrainingConfig, args)
    assert config.validation_prompts == ["a cat", "a dog"]
    assert (config.validation_steps, config.num_validation_images) == (100, 2)


def test_grid_goes_to_trackers_that_take_images():
    from prefalign.adapt.validation import log_to_trackers, make_grid

    logged = []
    tensorboard = SimpleNamespace(
        name="tensorboard", log_images=lambda v, step, **kw: logged.append((v, step, kw))
    )
    grid = make_grid([[Image.new("RGB", (4, 4), "red"), Image.new("RGB", (4, 4), "blue")]])
    assert log_to_trackers([tensorboard, object()], grid, 7) == 1
    values, step, kw = logged[0]
    assert step == 7 and values["validation"].shape == (1, 4, 8, 3) and kw == {"dataformats": "NHWC"}
    assert tuple(values["validation"][0, 0, 4]) == (0, 0, 255)  # second column is the second image
