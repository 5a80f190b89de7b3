"""The leaderboard's statistics on hand-made scores."""

from __future__ import annotations

import numpy as np
import pytest

from prefalign.benchmark.leaderboard import ScoreGrid, compute_leaderboard
from prefalign.benchmark.prompts import BenchmarkPrompt, PromptSet
from prefalign.evaluate.bootstrap import bootstrap_ci


def _set(n: int) -> PromptSet:
    return PromptSet("t", [BenchmarkPrompt(i, f"p{i}", "even" if i % 2 == 0 else "odd") for i in range(n)], n)


def test_intervals_resample_prompts_keeping_seeds_together_and_nan_is_left_out():
    ps = _set(5)
    keys = [(p, s) for p in range(5) for s in (0, 1, 2)]
    rng = np.random.default_rng(0)
    a = rng.normal(size=len(keys))
    b = a + 1.0
    b[4] = np.nan  # one image failed to score
    grid = ScoreGrid(keys, {"a": a, "b": b})
    board = compute_leaderboard(ps, [0, 1, 2], [{"name": "a"}, {"name": "b"}], [{"name": "s"}], {"s": grid})
    # Interval of a ratio of per-prompt sums (seeds of a prompt stay together), not of 15 images.
    num = a.reshape(5, 3).sum(1)
    assert (board.results["a"]["s"]["ci_low"], board.results["a"]["s"]["ci_high"]) == bootstrap_ci(
        num, np.full(5, 3.0)
    )
    assert board.results["a"]["s"]["ci_high"] != bootstrap_ci(a)[1]
    assert board.results["b"]["s"]["n_images"] == 14
    assert board.results["b"]["s"]["mean"] == pytest.approx(np.nanmean(b))
    assert any("b: 1 of 15 images not scored by s" in n for n in board.notes)
    assert board.ranking == ["b", "a"]
    w = board.win_rates["s"]["b"]["a"]
    assert (w["wins"], w["losses"], w["n"]) == (14, 0, 14)  # the NaN pair is left out
    even = [v for (p, _), v in zip(keys, a) if p % 2 == 0]
    assert board.categories["s"]["a"]["even"]["mean"] == pytest.approx(np.mean(even))


def test_ties_count_half_and_the_sign_test_leaves_them_out():
    ps = _set(4)
    keys = [(p, 0) for p in range(4)]
    grid = ScoreGrid(keys, {"a": np.array([1.0, 1.0, 2.0, 0.0]), "b": np.array([1.0, 1.0, 1.0, 1.0])})
    board = compute_leaderboard(ps, [0], [{"name": "a"}, {"name": "b"}], [{"name": "s"}], {"s": grid})
    w = board.win_rates["s"]["a"]["b"]
    assert (w["wins"], w["losses"], w["ties"]) == (1, 1, 2)
    assert w["win_rate"] == 0.5 and w["sign_test_p"] == 1.0


def test_win_rate_matrix_keeps_a_zero_win_rate():
    from prefalign.benchmark.report import win_rate_matrix

    keys = [(p, 0) for p in range(3)]
    grid = ScoreGrid(keys, {"a": np.zeros(3), "b": np.ones(3)})
    board = compute_leaderboard(_set(3), [0], [{"name": "a"}, {"name": "b"}], [{"name": "s"}], {"s": grid})
    m = win_rate_matrix(board, "s")  # ranking order: b, a
    assert m[0, 1] == 1.0 and m[1, 0] == 0.0 and np.isnan(m[0, 0])
