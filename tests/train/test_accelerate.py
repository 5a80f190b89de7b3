"""The same command under ``accelerate launch`` with two CPU processes (DDP over gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from prefalign.testing.distributed import free_port
from prefalign.train import PreferenceTrainer

from .conftest import tiny_preference_config

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_global_batch(tiny_clip32, small_choice_data, tmp_path):
    """Two processes with 2 records each take the steps one process takes with 4 records.

    accelerate gives process k the k-th batch of each pair, DDP averages the gradients and the
    logged losses are averaged over processes: the runs agree step by step.
    """
    accelerate = Path(sys.executable).with_name("accelerate")
    if not accelerate.exists():
        pytest.skip("the accelerate launcher is not installed beside this Python")
    out2 = tmp_path / "two"
    common = [
        "--data",
        str(small_choice_data),
        "--base",
        str(tiny_clip32),
        "--max-steps",
        "4",
        "--no-progress",
    ]
    common += [
        "--vision-blocks",
        "1",
        "--text-blocks",
        "1",
        "--learning-rate",
        "1e-3",
        "--eval-fraction",
        "0.25",
    ]
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
    command += [
        "-m",
        "prefalign.cli.main",
        "train",
        "scorer",
        *common,
        "--per_device_train_batch_size",
        "2",
        "--cpu",
        "--output_dir",
        str(out2),
    ]
    env = dict(
        os.environ, PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", OMP_NUM_THREADS="1"
    )
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 process(es)" in done.stderr

    one = PreferenceTrainer(
        tiny_preference_config(
            small_choice_data, tiny_clip32, tmp_path / "one", per_device_train_batch_size=4, max_steps=4
        )
    ).train()
    rows = [json.loads(line) for line in (out2 / "training_log.jsonl").read_text().splitlines()]
    two_losses = [r["loss"] for r in rows if r["type"] == "train"]
    assert two_losses == pytest.approx([r["loss"] for r in one.state.train_log], rel=1e-5)
    two_eval = [r for r in rows if r["type"] == "eval"][-1]
    assert two_eval["eval_records"] == one.eval_after["eval_records"] == 10
    assert two_eval["eval_accuracy"] == pytest.approx(one.eval_after["eval_accuracy"])
    a, b = load_file(out2 / "model.safetensors"), load_file(one.model_dir / "model.safetensors")
    # Adam divides by the gradient's own scale, so entries whose gradient is rounding noise (a key
    # bias has none: softmax ignores it) take full-size steps in directions that depend on the
    # summation order. Everything else agrees to float precision.
    entries = torch.cat([(a[k] - b[k]).abs().flatten() for k in a])
    assert (entries <= 1e-5).float().mean() >= 0.99
    assert entries.max() <= 4 * 1e-3  # no entry further apart than 4 steps of lr 1e-3
