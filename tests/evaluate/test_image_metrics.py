"""IS, FID (torchmetrics with a tiny injected extractor), mean scores, and the images run."""

from __future__ import annotations

import math
import sys
import types

import numpy as np
import pytest
import scipy.linalg
import torch

from prefalign.evaluate import (
    EvaluationError,
    MeanScore,
    frechet_distance,
    inception_score,
    load_eval_scorer,
    load_inception,
    mean_score,
    run_images,
)
from prefalign.evaluate.image_metrics import load_images_uint8

from .helpers import FEATURE_SIZE, TinyFeatures, noise_images


def features(paths):
    with torch.no_grad():
        return TinyFeatures()(load_images_uint8(paths, FEATURE_SIZE)).double().numpy()


@pytest.mark.filterwarnings(r"ignore:std\(\). degrees of freedom")  # one split has no spread
def test_inception_score_matches_its_definition(tmp_path):
    paths = noise_images(tmp_path, 12, seed=0)
    mean, std = inception_score(paths, feature=TinyFeatures(), splits=1, image_size=FEATURE_SIZE)
    logits = features(paths)
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    kl = (p * (np.log(p) - np.log(p.mean(0, keepdims=True)))).sum(1).mean()
    assert mean == pytest.approx(math.exp(kl), rel=1e-5)
    assert math.isnan(std)  # one split: no spread


def test_inception_score_of_identical_images_is_one_over_ten_splits(tmp_path):
    paths = noise_images(tmp_path, 1, seed=0) * 20
    mean, std = inception_score(paths, feature=TinyFeatures(), image_size=FEATURE_SIZE)
    assert mean == pytest.approx(1.0, abs=1e-5) and std == pytest.approx(0.0, abs=1e-5)


def test_fid_matches_the_frechet_formula_and_is_zero_for_the_same_set(tmp_path):
    gen = noise_images(tmp_path / "gen", 20, seed=0, low=0, high=128)
    ref = noise_images(tmp_path / "ref", 24, seed=1, low=64, high=256)
    fid = frechet_distance(gen, ref, feature=TinyFeatures(), image_size=FEATURE_SIZE)
    f1, f2 = features(gen), features(ref)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    expected = ((f1.mean(0) - f2.mean(0)) ** 2).sum() + np.trace(
        s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real
    )
    assert fid == pytest.approx(expected, rel=1e-3) and fid > 0.1
    assert frechet_distance(ref, ref, feature=TinyFeatures(), image_size=FEATURE_SIZE) == pytest.approx(
        0.0, abs=1e-3
    )


def test_too_few_images_for_fid_or_is_are_clear_errors(tmp_path):
    paths = noise_images(tmp_path, 5, seed=0)
    with pytest.raises(EvaluationError, match="reference set has 1 image"):
        frechet_distance(paths, paths[:1], feature=TinyFeatures(), image_size=FEATURE_SIZE)
    with pytest.raises(EvaluationError, match="at least 10 images, got 5"):
        inception_score(paths, feature=TinyFeatures(), image_size=FEATURE_SIZE)


def test_missing_inception_weights_are_an_error_not_a_download(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.delenv("PREFALIGN_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setitem(sys.modules, "torch_fidelity", None)  # not installed
    with pytest.raises(EvaluationError, match="need torch-fidelity"):
        load_inception("2048")
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))  # installed
    with pytest.raises(
        EvaluationError, match=r"weights-inception-2015-12-05-6726825d\.pth: Inception v3 weights not found"
    ):
        load_inception("2048")


def test_inception_weights_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_fidelity", types.ModuleType("torch_fidelity"))
    monkeypatch.setenv("PREFALIGN_INCEPTION_WEIGHTS", str(tmp_path / "mine.pth"))
    with pytest.raises(EvaluationError, match=r"mine\.pth: Inception v3 weights not found"):
        load_inception("2048")
    # An explicit file still wins over the variable.
    with pytest.raises(EvaluationError, match=r"given\.pth: Inception v3 weights not found"):
        load_inception("2048", tmp_path / "given.pth")


def test_mean_score_function_and_class():
    s = mean_score(np.array([1.0, 2.0, 3.0, np.nan]))
    assert (s.mean, s.std, s.n) == (2.0, pytest.approx(math.sqrt(2 / 3)), 3)
    metric = MeanScore()
    metric.update(np.array([1.0, np.nan]))
    metric.update(np.array([2.0, 3.0]))
    assert metric.compute() == s
    assert mean_score(np.array([np.nan])) is None


def test_images_run_splits_a_choice_dataset(choice_data, tiny_hps_model, tmp_path):
    ref = noise_images(tmp_path / "ref", 12, seed=5)
    scorers = {
        "clip": load_eval_scorer(f"clip:{tiny_hps_model}", device="cpu"),
        "hps": load_eval_scorer(str(tiny_hps_model), device="cpu"),
    }
    run = run_images(
        choice_data,
        ["is", "fid", "clip", "hps"],
        reference=tmp_path / "ref",
        scorers=scorers,
        is_feature=TinyFeatures(),
        fid_feature=TinyFeatures(),
        image_size=FEATURE_SIZE,
        progress=False,
    )
    assert set(run.groups) == {"all", "preferred", "non-preferred"}
    assert run.groups["preferred"]["hps"]["n"] == 12
    n_all = run.groups["all"]["hps"]["n"]
    assert run.groups["non-preferred"]["hps"]["n"] == n_all - 12
    # HPS is 100 x the CLIP score of the same model.
    assert run.groups["all"]["hps"]["mean"] == pytest.approx(
        100 * run.groups["all"]["clip"]["mean"], rel=1e-4
    )
    assert run.correlation["pearson"] == pytest.approx(1.0)
    assert run.groups["all"]["is"]["splits"] == 10 and run.groups["all"]["fid"]["reference_n"] == len(ref)
    assert not any("feature dimension" in n for n in run.notes)  # 12 reference images > 6 features


def test_images_run_bad_requests(tmp_path, tiny_hps_model):
    folder = tmp_path / "plain"
    noise_images(folder, 3, seed=0)
    hps = load_eval_scorer(str(tiny_hps_model), device="cpu")
    with pytest.raises(EvaluationError, match="no prompts"):
        run_images(folder, ["hps"], scorers={"hps": hps})
    with pytest.raises(EvaluationError, match="needs --reference"):
        run_images(folder, ["fid"], fid_feature=TinyFeatures())
    with pytest.raises(EvaluationError, match="needs a scorer"):
        run_images(folder, ["clip"])
    with pytest.raises(EvaluationError, match="unknown image metric"):
        run_images(folder, ["psnr"])
