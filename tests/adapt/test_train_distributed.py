"""Two training processes (accelerate on CPU, gloo) learn the adapter one process learns."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp

from prefalign.testing.distributed import free_port, worker_environment

from .conftest import lora_config


def worker(rank: int, world: int, port: int, data: str, base: str, out: str) -> None:

    worker_environment(rank, world, port)
    from accelerate import PartialState

    from prefalign.adapt.trainer import DiffusionFineTuner, examples_from_dataset
    from prefalign.data import load_dataset

    trainer = DiffusionFineTuner(
        lora_config(data, base, out, max_steps=2, per_device_train_batch_size=2, max_grad_norm=0),
        examples_from_dataset(load_dataset(data)),
    )
    trainer.train()
    # really distributed: two processes, two samples each per step
    assert PartialState().num_processes == world and trainer.micro_batch == 2


@pytest.mark.slow
def test_two_processes_train_the_one_process_adapter(tmp_path, shapes_data, tiny_sd):
    from safetensors.torch import load_file

    from prefalign.adapt.adapter import LORA_WEIGHTS_FILE
    from prefalign.adapt.lora import train_lora

    one = train_lora(
        lora_config(
            shapes_data,
            tiny_sd,
            tmp_path / "one",
            max_steps=2,
            per_device_train_batch_size=4,
            max_grad_norm=0,
        )
    )
    two = tmp_path / "two"
    mp.spawn(worker, args=(2, free_port(), str(shapes_data), str(tiny_sd), str(two)), nprocs=2, join=True)
    a, b = load_file(one / LORA_WEIGHTS_FILE), load_file(two / LORA_WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def backprop_worker(rank: int, world: int, port: int, base: str, out: str) -> None:

    worker_environment(rank, world, port)
    from accelerate import PartialState

    from prefalign.adapt.reward_backprop import RewardBackpropFineTuner

    from .test_reward_backprop import HELD_OUT, PROMPTS, Brightness, _config

    trainer = RewardBackpropFineTuner(
        _config(base, out, max_steps=2, per_device_train_batch_size=1, truncation_steps=2, max_grad_norm=0),
        Brightness(),
        PROMPTS,
        HELD_OUT,
    )
    trainer.train()
    assert PartialState().num_processes == world and trainer.micro_batch == 1


@pytest.mark.slow
def test_two_processes_backprop_the_one_process_reward(tmp_path, tiny_sd):
    """DRaFT-K with K = 2 (two UNet calls with gradients, only the last through DDP)."""
    from safetensors.torch import load_file

    from prefalign.adapt.adapter import LORA_WEIGHTS_FILE
    from prefalign.adapt.reward_backprop import RewardBackpropFineTuner

    from .test_reward_backprop import HELD_OUT, PROMPTS, Brightness, _config

    one = RewardBackpropFineTuner(
        _config(
            tiny_sd,
            tmp_path / "one",
            max_steps=2,
            per_device_train_batch_size=2,
            truncation_steps=2,
            max_grad_norm=0,
        ),
        Brightness(),
        PROMPTS,
        HELD_OUT,
    ).train()
    two = tmp_path / "two"
    mp.spawn(backprop_worker, args=(2, free_port(), str(tiny_sd), str(two)), nprocs=2, join=True)
    a, b = load_file(one / LORA_WEIGHTS_FILE), load_file(two / LORA_WEIGHTS_FILE)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)
