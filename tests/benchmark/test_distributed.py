"""Two processes (gloo, as under ``accelerate launch`` on CPU) write the 1-process leaderboard."""

from __future__ import annotations

import json

import pytest
import torch.multiprocessing as mp

SEEDS = [0, 1]


def _run(out: str, dark: str, bright: str, scorer_dir: str, prompts: str):
    from prefalign.adapt.generate import GenerationSettings
    from prefalign.benchmark import load_prompt_set, parse_model, run_benchmark
    from prefalign.scoring import load_scorer

    return run_benchmark(
        load_prompt_set(prompts),
        [load_scorer(scorer_dir, device="cpu")],
        out,
        models=[parse_model(f"dark={dark}"), parse_model(f"bright={bright}")],
        seeds=SEEDS,
        settings=GenerationSettings(steps=2, batch_size=2),
    )


def worker(rank: int, world: int, init_file: str, *args: str) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = _run(*args)
        assert bool(result.paths) == (rank == 0)  # only the first process writes
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_write_the_one_process_leaderboard(tmp_path, dark_and_bright, tiny_hps):
    from tests.benchmark.conftest import write_prompts

    dark, bright = (str(p) for p in dark_and_bright)
    prompts = str(write_prompts(tmp_path / "p.tsv", 2))
    one = _run(str(tmp_path / "one"), dark, bright, str(tiny_hps), prompts)
    args = (str(tmp_path / "two"), dark, bright, str(tiny_hps), prompts)
    mp.spawn(worker, args=(2, str(tmp_path / "init"), *args), nprocs=2, join=True)
    a = json.loads(one.paths["json"].read_text())
    b = json.loads((tmp_path / "two" / "leaderboard.json").read_text())
    assert a["ranking"] == b["ranking"]
    for model in ("dark", "bright"):
        ra, rb = a["results"][model][str(tiny_hps)], b["results"][model][str(tiny_hps)]
        assert ra["n_images"] == rb["n_images"] == 4
        assert rb["mean"] == pytest.approx(ra["mean"], abs=0.05)  # images equal up to one 8-bit level
    assert sorted(p.name for p in (tmp_path / "two" / "images" / "dark").iterdir()) == sorted(
        p.name for p in (tmp_path / "one" / "images" / "dark").iterdir()
    )
