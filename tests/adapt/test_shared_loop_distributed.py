"""Two training processes (accelerate on CPU, gloo) equal one for the reward-weighted and DPO
trainers, and a metric that differs per process is logged as its mean over processes."""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp

from prefalign.adapt.trainer import DiffusionFineTuner
from prefalign.testing.distributed import free_port, worker_environment

from .conftest import make_trainer, trained_weights


class ProcessProbe(DiffusionFineTuner):
    """Logs the process index as a metric: averaged over 2 processes it is 0.5."""

    def _micro_loss(self, step, micro, record):
        record["process_index"] = float(self.accelerator.process_index)
        record["process_index_max"] = float(self.accelerator.process_index)
        return super()._micro_loss(step, micro, record)


def worker(rank: int, world: int, port: int, data: str, base: str, root: str) -> None:
    from pathlib import Path

    worker_environment(rank, world, port)
    for kind in ("rwr", "dpo"):
        trainer = make_trainer(kind, Path(data), Path(base), Path(root) / kind, max_steps=2, max_grad_norm=0)
        trainer.train()
        assert trainer.accelerator.num_processes == world and trainer.micro_batch == 2
    make_trainer("lora", Path(data), Path(base), Path(root) / "probe", cls=ProcessProbe, max_steps=1).train()


@pytest.mark.slow
def test_two_processes_equal_one_and_metrics_are_averaged(tmp_path, shapes_data, tiny_sd):
    two = tmp_path / "two"
    mp.spawn(worker, args=(2, free_port(), str(shapes_data), str(tiny_sd), str(two)), nprocs=2, join=True)
    for kind in ("rwr", "dpo"):
        make_trainer(
            kind, shapes_data, tiny_sd, tmp_path / "one" / kind, max_steps=2, max_grad_norm=0,
            per_device_train_batch_size=4,
        ).train()  # fmt: skip
    for kind in ("rwr", "dpo"):
        one = tmp_path / "one" / kind
        a, b = trained_weights(kind, one), trained_weights(kind, two / kind)
        assert a.keys() == b.keys()
        if kind == "rwr":
            # The whole UNet under Adam: its first steps move each weight by about lr x sign(grad),
            # so a near-zero gradient whose sign float noise flips (another summation order over
            # 2 processes) moves that weight the other way: compare the updates as a whole. A run
            # whose processes did not average gradients differs by tens of percent.
            from safetensors.torch import load_file

            base = load_file(tiny_sd / "unet" / "diffusion_pytorch_model.safetensors")
            moved = sum(float((a[k] - base[k]).pow(2).sum()) for k in a) ** 0.5
            apart = sum(float((a[k] - b[k]).pow(2).sum()) for k in a) ** 0.5
            assert moved > 0 and apart / moved < 0.05, f"rwr: updates {apart / moved:.3f} apart (relative)"
        else:
            worst = max(float((a[k] - b[k]).abs().max()) for k in a)
            assert worst <= 1e-5, f"{kind}: weights differ by up to {worst:.3g}"
        losses = [
            [json.loads(line)["loss"] for line in (out / "training_log.jsonl").read_text().splitlines()]
            for out in (one, two / kind)
        ]
        assert losses[0] == pytest.approx(losses[1], rel=1e-4), kind
    (row,) = [json.loads(line) for line in (two / "probe" / "training_log.jsonl").read_text().splitlines()]
    assert row["process_index"] == 0.5 and row["process_index_max"] == 1.0
