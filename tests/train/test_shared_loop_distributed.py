"""Two training processes (accelerate on CPU, gloo) equal one for the reward trainer, with gradient
accumulation, and a metric that differs per process is logged as its mean over processes."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from prefalign.testing.distributed import free_port, worker_environment
from prefalign.train import PreferenceTrainer

from .conftest import tiny_preference_config, trainer_case


class ProcessProbe(PreferenceTrainer):
    """Logs the process index as a metric: averaged over 2 processes it is 0.5."""

    def compute_loss(self, model, batch):
        loss, metrics = super().compute_loss(model, batch)
        index = torch.tensor(float(self.accelerator.process_index))
        return loss, {**metrics, "process_index": index, "process_index_max": index}


def worker(rank: int, world: int, port: int, clip: str, scorer: str, choices: str, ratings: str, root: str):
    from pathlib import Path

    worker_environment(rank, world, port)
    # 2 processes x 4 records x 2 accumulated batches = the 16 records of one process's step
    trainer, _ = trainer_case(
        "reward",
        ratings,
        scorer,
        Path(root) / "reward",
        per_device_train_batch_size=4,
        gradient_accumulation_steps=2,
        max_steps=2,
        cpu=True,  # accelerate forms a CPU process group only when told to use the CPU
    )
    trainer.train()
    assert trainer.accelerator.num_processes == world
    ProcessProbe(tiny_preference_config(choices, clip, Path(root) / "probe", max_steps=1, cpu=True)).train()


@pytest.mark.slow
def test_two_processes_with_accumulation_equal_one_and_metrics_are_averaged(
    tiny_clip32, tiny_scorer32, small_choice_data, small_rating_data, tmp_path
):
    two = tmp_path / "two"
    paths = [str(p) for p in (tiny_clip32, tiny_scorer32, small_choice_data, small_rating_data, two)]
    mp.spawn(worker, args=(2, free_port(), *paths), nprocs=2, join=True)

    one, _ = trainer_case(
        "reward",
        small_rating_data,
        tiny_scorer32,
        tmp_path / "one",
        per_device_train_batch_size=16,
        max_steps=2,
    )
    result = one.train()
    import json

    rows = [json.loads(line) for line in (two / "reward" / "training_log.jsonl").read_text().splitlines()]
    two_losses = [r["loss"] for r in rows if r["type"] == "train"]
    assert two_losses == pytest.approx([r["loss"] for r in result.state.train_log], rel=1e-5)
    a, b = load_file(two / "reward" / "head.safetensors"), load_file(tmp_path / "one" / "head.safetensors")
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)

    probe = [json.loads(line) for line in (two / "probe" / "training_log.jsonl").read_text().splitlines()]
    (row,) = [r for r in probe if r["type"] == "train"]
    assert row["process_index"] == 0.5 and row["process_index_max"] == 1.0
