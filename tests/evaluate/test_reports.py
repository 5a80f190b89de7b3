"""Every evaluation's report renders: JSON without NaN, Markdown, HTML with embedded PNGs that decode."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from prefalign.data import Record, load_dataset, save_dataset
from prefalign.evaluate import (
    RandomScorer,
    load_eval_scorer,
    run_agreement,
    run_compare,
    run_images,
    run_preference,
    write_agreement_report,
    write_compare_report,
    write_images_report,
    write_preference_report,
)

from .helpers import TinyFeatures, generated_set, votes_dataset


def check_report(paths, plots):
    for name in plots:
        with Image.open(paths[name]) as img:
            img.verify()
        with Image.open(paths[name]) as img:
            assert img.format == "PNG" and img.size[0] > 300
    data = json.loads(paths["json"].read_text())  # strict JSON: no NaN
    html = paths["html"].read_text()
    assert html.count("data:image/png;base64,") == len(plots)
    md = paths["markdown"].read_text()
    assert all(f"plots/{name}.png" in md for name in plots)
    return data, md


@pytest.fixture(scope="module")
def scorers(tiny_hps_model):
    return [
        RandomScorer(),
        load_eval_scorer(f"clip:{tiny_hps_model}", device="cpu"),
        load_eval_scorer(str(tiny_hps_model), device="cpu"),
    ]


def test_preference_report(choice_data, scorers, tmp_path):
    run = run_preference(load_dataset(choice_data), scorers, n_bootstrap=100, progress=False)
    paths = write_preference_report(run, tmp_path / "report")
    hist = [k for k in paths if k.startswith("scores_")]
    assert len(hist) == 2  # the random scorer gets none
    data, md = check_report(paths, ["accuracy", "hps_vs_clip", *hist])
    assert set(data["results"]) == {"random", f"clip:{scorers[2].name}", scorers[2].name}
    assert data["hps_clip_correlation"]["pearson"] == pytest.approx(1.0)
    assert "| top-1 |" in md and "Random baseline of top-1" in md


def test_agreement_report(scorers, tmp_path):
    from .test_agreement import VOTES

    votes = votes_dataset(tmp_path / "votes", VOTES)
    run = run_agreement(load_dataset(votes), scorers[:1])
    data, md = check_report(write_agreement_report(run, tmp_path / "report"), ["agreement"])
    assert data["human"]["mean"] == pytest.approx(1 / 3)
    assert "human (each vs the others)" in md and "| u1 |" in md


def test_images_report(choice_data, scorers, tmp_path):
    run = run_images(
        choice_data,
        ["is", "clip", "hps"],
        scorers={"clip": scorers[1], "hps": scorers[2]},
        is_feature=TinyFeatures(),
        image_size=16,
        progress=False,
    )
    data, md = check_report(
        write_images_report(run, tmp_path / "report"), ["hps_vs_clip", "scores_clip", "scores_hps"]
    )
    assert set(data["groups"]) == {"all", "preferred", "non-preferred"}
    assert "| preferred |" in md and "IS (mean ± std)" in md


def test_compare_report(tmp_path):
    prompts, seeds = ["a cat", "a dog", "a red circle"], [0, 0, 0]
    a = load_dataset(generated_set(tmp_path / "a", prompts, seeds, seed=0))
    b = load_dataset(generated_set(tmp_path / "b", prompts, seeds, seed=1))
    votes = votes_dataset(
        tmp_path / "votes", [("u", "p0", ("../a/images/img000.png", "../b/images/img000.png"), 1)]
    )
    run = run_compare(a, b, [RandomScorer(), RandomScorer(1)], votes=load_dataset(votes), n_bootstrap=50)
    data, md = check_report(write_compare_report(run, tmp_path / "report"), ["win_rate", "votes"])
    assert data["votes"]["share_b"] == 1.0 and set(data["results"]) == {"random", "random:1"}
    assert "sign test" in md


def test_report_json_turns_nan_into_null(tmp_path):
    save_dataset([Record("a cat", ["x.png", "y.png"], chosen=0)], tmp_path / "d")
    run = run_preference(load_dataset(tmp_path / "d"), [RandomScorer()], n_bootstrap=10)
    run.results["random"].top1.low = float("nan")
    data = json.loads(write_preference_report(run, tmp_path / "r")["json"].read_text())
    assert data["results"]["random"]["top1"]["low"] is None
    assert np.isfinite(data["results"]["random"]["top1"]["value"])
