"""Checkpoints, Ctrl-C and exact resumption: the loss curve matches an uninterrupted run."""

from __future__ import annotations

import signal

import pytest
import torch
from safetensors.torch import load_file

from prefalign.train import PreferenceTrainer, RewardTrainer, TrainingInterrupted
from prefalign.train.config import TrainConfigError
from prefalign.train.loop import list_checkpoints

from .conftest import tiny_preference_config, tiny_reward_config


def interrupt_at(step: int):
    """A callback that presses Ctrl-C (a real SIGINT) after ``step``."""

    def callback(trainer, state):
        if state.step == step:
            signal.raise_signal(signal.SIGINT)

    return callback


def losses(result):
    return [(r["step"], r["loss"], r["lr"]) for r in result.state.train_log]


def test_ctrl_c_leaves_a_checkpoint_and_resume_matches_an_uninterrupted_run(
    tiny_clip32, small_choice_data, tmp_path
):
    # 30 training records in batches of 4: 8 steps per epoch, so 12 steps cross an epoch boundary.
    def config(out, **kw):
        return tiny_preference_config(
            small_choice_data, tiny_clip32, out, per_device_train_batch_size=4, max_steps=12, **kw
        )

    reference = PreferenceTrainer(config(tmp_path / "a")).train()

    with pytest.raises(TrainingInterrupted) as stopped:
        PreferenceTrainer(config(tmp_path / "b"), callbacks=[interrupt_at(5)]).train()
    assert stopped.value.checkpoint.name == "step-0000005"
    assert not (tmp_path / "b").exists()  # no half-trained model directory
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored

    resumed = PreferenceTrainer(config(tmp_path / "b", resume_from_checkpoint="latest")).train()
    assert losses(resumed) == losses(reference)
    assert resumed.eval_after == reference.eval_after
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_from_a_periodic_checkpoint_of_the_reward_model(
    trained_preference, small_rating_data, shape_family, tmp_path
):
    _, preference = trained_preference

    def config(out, **kw):
        return tiny_reward_config(
            small_rating_data, preference.model_dir, out, per_device_train_batch_size=16, max_steps=14, **kw
        )

    reference = RewardTrainer(config(tmp_path / "a"), family=shape_family).train()
    with pytest.raises(TrainingInterrupted):
        RewardTrainer(
            config(tmp_path / "b", save_steps=4, save_total_limit=2),
            family=shape_family,
            callbacks=[interrupt_at(9)],
        ).train()
    found = list_checkpoints(tmp_path / "b.checkpoints")
    assert [p.name for p in found] == ["step-0000008", "step-0000009"]  # step 4 pruned by the limit

    resumed = RewardTrainer(
        config(tmp_path / "b", save_steps=4, save_total_limit=2, resume_from_checkpoint=str(found[0])),
        family=shape_family,
    ).train()
    assert losses(resumed) == losses(reference)
    a, b = load_file(tmp_path / "a" / "head.safetensors"), load_file(tmp_path / "b" / "head.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_other_settings_or_a_missing_checkpoint(tiny_clip32, small_choice_data, tmp_path):
    config = tiny_preference_config(small_choice_data, tiny_clip32, tmp_path / "m", max_steps=3, save_steps=2)
    PreferenceTrainer(config).train()
    changed = tiny_preference_config(
        small_choice_data,
        tiny_clip32,
        tmp_path / "m2",
        max_steps=3,
        learning_rate=5e-4,
        resume_from_checkpoint=str(tmp_path / "m.checkpoints" / "step-0000002"),
    )
    with pytest.raises(TrainConfigError, match="learning_rate"):
        PreferenceTrainer(changed).train()
    with pytest.raises(TrainConfigError, match="no checkpoint"):
        PreferenceTrainer(
            tiny_preference_config(
                small_choice_data, tiny_clip32, tmp_path / "new", resume_from_checkpoint="latest"
            )
        ).train()
