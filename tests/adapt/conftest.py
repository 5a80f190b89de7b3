"""Tiny Stable Diffusion bases, adapters and scorers built in code for the adaptation tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """The tiny UNet's kernels are so small that two threads on a shared 2-core machine spend
    their time waiting for each other (about 50x slower than one); restore afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sd(tmp_path_factory) -> Path:
    """A saved tiny Stable Diffusion directory (32 px images, 16 px latents)."""
    from prefalign.testing.diffusion import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("tiny-sd") / "sd")


@pytest.fixture(scope="session")
def tiny_sdxl(tmp_path_factory) -> Path:
    """A saved tiny Stable Diffusion XL directory (two text encoders, text_time conditioning, 32 px)."""
    from prefalign.testing.diffusion import save_tiny_sdxl

    return save_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl") / "sdxl")


@pytest.fixture(scope="session")
def other_sd(tmp_path_factory) -> Path:
    """A tiny base of another architecture (other cross-attention width)."""
    from prefalign.testing.diffusion import save_tiny_sd

    return save_tiny_sd(tmp_path_factory.mktemp("other-sd") / "sd", cross_attention_dim=16)


@pytest.fixture(scope="session")
def tiny_hps(tmp_path_factory) -> Path:
    """A tiny random CLIP in the prefalign model format, kind hps (100·cos)."""
    from prefalign.scoring import convert_checkpoint
    from prefalign.testing import save_tiny_clip

    root = tmp_path_factory.mktemp("tiny-hps")
    hf = save_tiny_clip(root / "hf", image_size=32, patch_size=8)
    return convert_checkpoint("hf-clip", hf, root / "hps", kind="hps")


@pytest.fixture(scope="session")
def shapes_data(tmp_path_factory) -> Path:
    """Eight prompts with two or three 32 px images each."""
    from prefalign.testing import make_choice_dataset

    return make_choice_dataset(
        tmp_path_factory.mktemp("shapes") / "data", 8, n_images=(2, 3), size=32, seed=0
    )


def tiny_run_settings(data: Path, base: Path, out: Path, **overrides) -> dict:
    """The settings every tiny diffusion run of these tests shares (32 px, rank 4, batch 2, 3 steps,
    a log row per step, no checkpoints, CPU); ``overrides`` win."""
    return (
        dict(
            data=str(data),
            base=str(base),
            output_dir=str(out),
            max_steps=3,
            per_device_train_batch_size=2,
            resolution=32,
            rank=4,
            save_steps=0,
            logging_steps=1,
            cpu=True,
        )
        | overrides
    )


def lora_config(data: Path, base: Path, out: Path, **overrides):
    """A LoRA run small enough for a CPU test: rank 4, 32 px, batch 2, a learning rate that shows."""
    from prefalign.adapt.config import LoraTrainingConfig

    return LoraTrainingConfig(**tiny_run_settings(data, base, out, **({"learning_rate": 1e-2} | overrides)))


@pytest.fixture(scope="session")
def trained_lora(tmp_path_factory, shapes_data, tiny_sd) -> Path:
    """A LoRA adapter trained 3 steps with the identifier recorded."""
    from prefalign.adapt.lora import train_lora

    out = tmp_path_factory.mktemp("lora") / "adapter"
    return train_lora(lora_config(shapes_data, tiny_sd, out, identifier="Weird image. "))


def copy_without(src: Path, dst: Path, missing: str) -> Path:
    shutil.copytree(src, dst)
    shutil.rmtree(dst / missing)
    return dst


def rwr_config(data: Path, base: Path, out: Path, **overrides):
    """A reward-weighted run small enough for a CPU test (the whole UNet trains by default)."""
    from prefalign.adapt.config import RewardWeightedConfig

    settings = {"learning_rate": 1e-3, "beta": 0.5} | overrides
    return RewardWeightedConfig(**tiny_run_settings(data, base, out, **settings))


def dpo_config(data: Path, base: Path, out: Path, **overrides):
    """A Diffusion-DPO LoRA run small enough for a CPU test."""
    from prefalign.adapt.dpo import DPOConfig

    settings = {"learning_rate": 1e-3, "gradient_accumulation_steps": 1} | overrides
    return DPOConfig(**tiny_run_settings(data, base, out, **settings))


def make_trainer(kind: str, data: Path, base: Path, out: Path, cls=None, **overrides):
    """A tiny trainer of ``kind`` (lora, rwr or dpo) on ``data`` (choice records) from ``base``.

    rwr trains the whole UNet (Lee et al.) with weight 0.5 on every pair and the data as its own
    pre-training set; dpo trains a LoRA on the records' preference pairs. ``cls``: a subclass
    of the kind's trainer to build instead.
    """
    from prefalign.adapt.trainer import DiffusionFineTuner, examples_from_dataset
    from prefalign.data import load_dataset

    examples = examples_from_dataset(load_dataset(data))
    if kind == "lora":
        return (cls or DiffusionFineTuner)(lora_config(data, base, out, **overrides), examples)
    if kind == "rwr":
        for e in examples:
            e.weight = 0.5
        config = rwr_config(data, base, out, prior_data=str(data), **overrides)
        return (cls or DiffusionFineTuner)(config, examples, prior=examples, beta=config.beta, train="unet")
    from prefalign.adapt.dpo import DPOFineTuner, preference_pairs

    config = dpo_config(data, base, out, **overrides)
    return (cls or DPOFineTuner)(config, preference_pairs(load_dataset(data)))


def trained_weights(kind: str, out: Path) -> dict[str, torch.Tensor]:
    """The weights a run saved: the LoRA adapter, or the whole UNet of a full run."""
    from safetensors.torch import load_file

    if kind == "rwr":
        return load_file(out / "unet" / "diffusion_pytorch_model.safetensors")
    from prefalign.adapt.adapter import LORA_WEIGHTS_FILE

    return load_file(out / LORA_WEIGHTS_FILE)
