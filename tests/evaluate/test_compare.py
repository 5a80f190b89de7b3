"""Paired comparison of two generated sets: counts, sign test, pairing by prompt and seed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from prefalign.data import Record, load_dataset, save_dataset
from prefalign.evaluate import (
    EvaluationError,
    PairedComparison,
    RandomScorer,
    pair_generated_sets,
    paired_comparison,
    run_compare,
)

from .helpers import generated_set, votes_dataset

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a red circle"]
SEEDS = [1, 1, 1, 2]


def test_paired_comparison_matches_hand_computation():
    r = paired_comparison(np.array([1.0, 2.0, 3.0, 4.0, np.nan]), np.array([2.0, 2.0, 4.0, 5.0, 9.0]))
    assert (r.n, r.wins_b, r.wins_a, r.ties) == (4, 3, 0, 1)
    assert r.win_rate_b == pytest.approx(3.5 / 4)
    assert r.mean_a == pytest.approx(2.5) and r.mean_b == pytest.approx(3.25)
    assert r.mean_difference == pytest.approx(0.75)
    assert r.sign_test_p == pytest.approx(0.25)  # 3 of 3 decided pairs: 2 * 0.5**3


def test_all_wins_and_all_losses():
    a = np.arange(10.0)
    assert paired_comparison(a, a + 1).win_rate_b == 1.0
    lose = paired_comparison(a, a - 1)
    assert lose.win_rate_b == 0.0 and lose.sign_test_p == pytest.approx(2 * 0.5**10)


def test_metric_class_equals_function():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=20), rng.normal(size=20)
    metric = PairedComparison()
    metric.update(a[:7], b[:7])
    metric.update(a[7:], b[7:])
    # Counts are exact; the means are running sums, equal up to the order of float additions.
    assert metric.compute().to_dict() == pytest.approx(paired_comparison(a, b).to_dict(), rel=1e-12)


def test_sets_pair_by_prompt_and_seed_not_by_order(tmp_path):
    a = load_dataset(generated_set(tmp_path / "a", PROMPTS, SEEDS, seed=0))
    b = load_dataset(generated_set(tmp_path / "b", PROMPTS, SEEDS, seed=1, order=[3, 2, 1, 0]))
    pairs = pair_generated_sets(a, b)
    assert [(p.prompt, p.seed) for p in pairs] == list(zip(PROMPTS, SEEDS))
    assert all(
        p.a.endswith(f"img{i:03d}.png") and p.b.endswith(f"img{i:03d}.png") for i, p in enumerate(pairs)
    )


def test_mismatched_prompts_or_seeds_are_clear_errors(tmp_path):
    a = load_dataset(generated_set(tmp_path / "a", PROMPTS, SEEDS, seed=0))
    b = load_dataset(generated_set(tmp_path / "b", PROMPTS, [1, 1, 1, 3], seed=1))
    with pytest.raises(
        EvaluationError, match=r"1 \(prompt, seed\) only in A, e.g. \('a red circle', seed 2\); 1 only in B"
    ):
        pair_generated_sets(a, b)
    save_dataset([Record("a cat", ["x.png"])], tmp_path / "noseed")
    with pytest.raises(EvaluationError, match=r"has no meta\['seed'\]"):
        pair_generated_sets(load_dataset(tmp_path / "noseed"), b)
    save_dataset(
        [Record("a cat", ["x.png"], meta={"seed": 1}), Record("a cat", ["y.png"], meta={"seed": 1})],
        tmp_path / "dup",
    )
    with pytest.raises(EvaluationError, match="twice"):
        pair_generated_sets(load_dataset(tmp_path / "dup"), b)


def test_run_compare_with_an_ab_study(tmp_path):
    a_dir = generated_set(tmp_path / "a", PROMPTS, SEEDS, seed=0)
    b_dir = generated_set(tmp_path / "b", PROMPTS, SEEDS, seed=1)
    img = "images/img{:03d}.png"
    votes = votes_dataset(
        tmp_path / "votes",
        [
            ("u1", "p0", (f"../a/{img.format(0)}", f"../b/{img.format(0)}"), 1),  # B
            ("u2", "p0", (f"../b/{img.format(0)}", f"../a/{img.format(0)}"), 0),  # B
            ("u1", "p1", (f"../a/{img.format(1)}", f"../b/{img.format(1)}"), 0),  # A
            ("u2", "p1", (f"../a/{img.format(1)}", f"../b/{img.format(1)}"), 1),  # B
            ("u1", "p2", (f"../a/{img.format(2)}", f"../b/{img.format(2)}"), None),  # tie
            ("u1", "x", (f"../a/{img.format(2)}", f"../a/{img.format(3)}"), 0),  # not an A/B pair
        ],
    )
    run = run_compare(
        load_dataset(a_dir), load_dataset(b_dir), [RandomScorer()], votes=load_dataset(votes), n_bootstrap=100
    )
    assert run.n_pairs == 4 and run.results["random"].n == 4
    # The annotation export copies the images it showed: votes still find their set by content.
    shutil.copytree(a_dir / "images", tmp_path / "votes" / "a-copy")
    copied = votes_dataset(
        tmp_path / "votes2",
        [("u1", "p0", (str(tmp_path / "votes" / "a-copy" / "img000.png"), str(b_dir / img.format(0))), 1)],
    )
    assert (
        run_compare(
            load_dataset(a_dir), load_dataset(b_dir), [RandomScorer()], votes=load_dataset(copied)
        ).votes["votes_b"]
        == 1
    )
    ci = run.votes.pop("share_b_ci")
    assert ci == pytest.approx([0.3006, 0.9544], abs=1e-4)  # Wilson 95% of 3 of 4
    assert run.votes.pop("sign_test_p") == pytest.approx(0.625)  # binomtest(3, 4)
    assert run.votes == {"votes_b": 3, "votes_a": 1, "ties": 1, "unmatched": 1, "share_b": 0.75, "items": 2}
    assert sorted(run.vote_shares_b) == [0.5, 1.0]
    low, high = run.win_rate_ci["random"]
    assert low <= run.results["random"].win_rate_b <= high
