"""A 2-process run (torch.distributed, gloo, as under ``accelerate launch`` on CPU) gathers exactly
the 1-process result."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch.multiprocessing as mp

from .helpers import FEATURE_SIZE, TinyFeatures, generated_set, votes_dataset


def evaluate_everything(data: str, model: str, votes: str, set_a: str, set_b: str) -> dict:
    """Every evaluation, as the JSON of its report."""
    from prefalign.data import load_dataset
    from prefalign.evaluate import (
        RandomScorer,
        load_eval_scorer,
        run_agreement,
        run_compare,
        run_images,
        run_preference,
    )

    scorers = [RandomScorer(), load_eval_scorer(model, device="cpu")]
    dataset = load_dataset(data)
    return {
        "preference": run_preference(
            dataset, scorers, n_bootstrap=200, batch_size=8, progress=False
        ).to_dict(),
        "agreement": run_agreement(load_dataset(votes), scorers, batch_size=8).to_dict(),
        "images": run_images(
            data,
            ["is", "fid"],
            reference=data,
            is_feature=TinyFeatures(),
            fid_feature=TinyFeatures(),
            image_size=FEATURE_SIZE,
            batch_size=8,
            feature_batch_size=5,
            progress=False,
        ).to_dict(),
        "compare": run_compare(
            load_dataset(set_a), load_dataset(set_b), scorers[:1], n_bootstrap=100
        ).to_dict(),
    }


def worker(rank: int, world: int, init_file: str, out: str, args: tuple) -> None:
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # two processes on shared cores
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = evaluate_everything(*args)
        Path(out, f"rank{rank}.json").write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def inputs(choice_data, tiny_hps_model, tmp_path_factory):
    from prefalign.data import load_dataset

    root = tmp_path_factory.mktemp("dist")
    ds = load_dataset(choice_data)
    votes = []
    for k, rec in enumerate(ds.records[:6]):
        pair = (str(choice_data / rec.images[0]), str(choice_data / rec.images[1]))
        for u, user in enumerate(("u1", "u2", "u3")):
            votes.append((user, f"item{k}", pair, (k + u) % 3 if (k + u) % 3 < 2 else None))
    votes_dir = votes_dataset(root / "votes", votes)
    prompts = [f"a {c} circle" for c in ("red", "blue", "green", "white", "black")]
    a = generated_set(root / "a", prompts, [0] * 5, seed=0)
    b = generated_set(root / "b", prompts, [0] * 5, seed=1)
    return tuple(str(p) for p in (choice_data, tiny_hps_model, votes_dir, a, b))


@pytest.mark.slow
def test_two_processes_gather_the_one_process_result(inputs, tmp_path):
    single = json.loads(json.dumps(evaluate_everything(*inputs)))
    mp.spawn(worker, args=(2, str(tmp_path / "init"), str(tmp_path), inputs), nprocs=2, join=True)
    for rank in (0, 1):
        sharded = json.loads((tmp_path / f"rank{rank}.json").read_text())
        # Accuracies, CIs and agreement are computed from gathered per-record rows in dataset order.
        assert sharded["preference"] == single["preference"]
        assert sharded["agreement"] == single["agreement"]
        # IS, FID and paired means are sums of floats: equal up to the order of additions.
        assert_close(sharded["images"], single["images"], rel=1e-6)
        assert_close(sharded["compare"], single["compare"], rel=1e-9)


def assert_close(got, expected, *, rel: float, where: str = "") -> None:
    """Equal structure and strings; numbers within ``rel``."""
    if isinstance(expected, dict):
        assert set(got) == set(expected), where
        for k in expected:
            assert_close(got[k], expected[k], rel=rel, where=f"{where}.{k}")
    elif isinstance(expected, list):
        assert len(got) == len(expected), where
        for i, (g, e) in enumerate(zip(got, expected)):
            assert_close(g, e, rel=rel, where=f"{where}[{i}]")
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=rel, abs=1e-9), where
    else:
        assert got == expected, where
