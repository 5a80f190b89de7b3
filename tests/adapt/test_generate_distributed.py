"""Two processes (gloo, as under ``accelerate launch`` on CPU) write exactly the 1-process dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch.multiprocessing as mp
from PIL import Image

from prefalign.adapt.generate import GenerationSettings, generate
from prefalign.data import load_dataset

PROMPTS = ["a red circle", "a blue square", "a green triangle"]
SEEDS = [0, 1]


def worker(rank: int, world: int, init_file: str, base: str, out: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        report = generate(base, PROMPTS, SEEDS, out, settings=GenerationSettings(steps=2))
        assert report.images == len(PROMPTS) * len(SEEDS)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_write_the_one_process_dataset(tmp_path, tiny_sd):
    generate(tiny_sd, PROMPTS, SEEDS, tmp_path / "one", settings=GenerationSettings(steps=2))
    mp.spawn(
        worker, args=(2, str(tmp_path / "init"), str(tiny_sd), str(tmp_path / "two")), nprocs=2, join=True
    )
    one, two = load_dataset(tmp_path / "one"), load_dataset(tmp_path / "two")
    assert [(r.prompt, r.meta["seed"], r.images) for r in one] == [
        (r.prompt, r.meta["seed"], r.images) for r in two
    ]
    for a, b in zip(one, two):
        pa = np.asarray(Image.open(one.image_path(a.images[0])), dtype=np.int16)
        pb = np.asarray(Image.open(two.image_path(b.images[0])), dtype=np.int16)
        assert np.abs(pa - pb).max() <= 1
