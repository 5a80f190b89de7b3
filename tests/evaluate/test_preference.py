"""Preference accuracy against hand-computed values on small fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from prefalign.data import Record
from prefalign.evaluate import (
    PreferenceAccuracy,
    RandomScorer,
    load_eval_scorer,
    preference_accuracy,
    tie_aware_points,
    tune_tie_threshold,
)

A = np.array


def mixed():
    """n = 2, 3, 4; a tie at the top score; a ranking with a label tie."""
    records = [
        Record("a", ["x", "y"], chosen=0),
        Record("b", ["x", "y", "z"], chosen=2),
        Record("c", ["x", "y", "z", "w"], ranks=[0, 1, 1, 2]),
    ]
    scores = [A([2.0, 1.0]), A([1.0, 1.0, 1.0]), A([4.0, 3.0, 2.0, 1.0])]
    return records, scores


def test_mixed_sizes_with_ties_match_hand_computation():
    records, scores = mixed()
    r = preference_accuracy(scores, records)
    # top-1: 1, then a 3-way tie at the top holding the chosen image (1/3), then 1.
    assert r.top1.value == pytest.approx((1 + 1 / 3 + 1) / 3)
    assert r.random_baseline == pytest.approx((1 / 2 + 1 / 3 + 1 / 4) / 3)
    # pairs: a 1/1; b: chosen vs 2 others, equal scores -> 0.5 each, the label tie 0-1 skipped;
    # c: 5 decided pairs (1-2 is a label tie), all ordered right.
    assert r.n_pairs == 1 + 2 + 5
    assert r.pairwise_pooled.value == pytest.approx((1 + 1 + 5) / 8)
    assert r.pairwise_per_prompt.value == pytest.approx((1 + 0.5 + 1) / 3)
    assert r.inversion.value == pytest.approx(1.0) and r.inversion.n == 1  # rankings only
    assert r.tie_aware is None  # no label ties among pairs


def test_all_correct_and_all_wrong_scorers():
    records, _ = mixed()
    right = [-np.asarray(rk, float) for rk in ([0, 1], [1, 1, 0], [0, 1, 1, 2])]
    wrong = [-s for s in right]
    # Break the scorer's ties of the 'right' scores among non-chosen images, so top-1 is clean.
    r = preference_accuracy(right, records)
    assert (r.top1.value, r.pairwise_pooled.value, r.pairwise_per_prompt.value, r.inversion.value) == (
        1,
        1,
        1,
        1,
    )
    w = preference_accuracy(wrong, records)
    assert w.top1.value == 0 and w.pairwise_pooled.value == 0 and w.pairwise_per_prompt.value == 0
    # All 5 decided pairs of the ranking discordant out of 4*3/2 = 6 pairs.
    assert w.inversion.value == pytest.approx(1 - 5 / 6)


def test_inversion_score_counts_discordant_over_all_pairs():
    rec = Record("p", ["x", "y", "z"], ranks=[0, 1, 2])
    r = preference_accuracy([A([3.0, 1.0, 2.0])], [rec])
    assert r.inversion.value == pytest.approx(1 - 1 / 3)  # only (y, z) is discordant
    ratings = Record("p", ["x", "y", "z"], ratings=[5.0, 1.0, 3.0])  # higher rating = better
    assert preference_accuracy([A([3.0, 1.0, 2.0])], [ratings]).inversion.value == 1.0


def test_per_prompt_average_differs_from_pooled():
    records = [
        Record("p", ["a", "b", "c", "d"], ranks=[0, 1, 2, 3]),
        Record("q", ["a", "b"], chosen=0),
        Record("q", ["c", "d"], chosen=0),  # the same prompt again: pooled within the prompt
    ]
    scores = [A([4.0, 3.0, 2.0, 1.0]), A([0.0, 1.0]), A([1.0, 0.0])]
    r = preference_accuracy(scores, records)
    assert r.pairwise_pooled.value == pytest.approx((6 + 0 + 1) / 8)
    assert r.pairwise_per_prompt.value == pytest.approx((1 + 0.5) / 2)
    assert r.pairwise_per_prompt.n == 2


def test_label_ties_skipped_and_failed_records_counted():
    records = [
        Record("a", ["x", "y"], ranks=[0, 0]),
        Record("b", ["x", "y"], chosen=1),
        Record("c", ["x", "y"], chosen=0),
        Record("d", ["x", "y"]),  # no label
    ]
    scores = [A([1.0, 2.0]), A([1.0, 2.0]), A([np.nan, 1.0]), A([1.0, 2.0])]
    r = preference_accuracy(scores, records, tie_threshold=0.0)
    assert r.n_pairs == 1 and r.pairwise_pooled.value == 1.0
    assert r.n_skipped == 2
    # tie-aware at threshold 0 over the tie pair (predicted 'y' -> 0.5) and the decided pair (1).
    assert r.tie_aware.value == pytest.approx(0.75)


def test_tie_aware_points_and_threshold_tuning():
    diff, label = A([2.0, 0.1, -3.0, 0.05]), A([1, 0, 1, -1])
    # threshold 0.5 predicts [+1, tie, -1, tie]: right, right, wrong winner, one-sided tie.
    np.testing.assert_array_equal(tie_aware_points(diff, label, 0.5), [1.0, 1.0, 0.0, 0.5])
    # Totals by threshold: 0 -> 3, 0.1 -> 3.5, 0.2 -> 4, 1.0 -> 3.5: the best is 0.2.
    assert tune_tie_threshold(A([0.1, 0.2, 1.0, -2.0]), A([0, 0, 1, -1])) == pytest.approx(0.2)
    assert tune_tie_threshold(A([]), A([])) == 0.0


def test_tie_threshold_is_tuned_on_the_validation_split_only():
    val = [
        Record("v", ["x", "y"], ranks=[0, 0], split="validation"),
        Record("v", ["x", "y"], chosen=0, split="validation"),
    ]
    test = [
        Record("t", ["x", "y"], ranks=[0, 0], split="test"),
        Record("t", ["x", "y"], chosen=1, split="test"),
    ]
    scores = [A([1.0, 1.3]), A([2.0, 0.0]), A([0.0, 0.2]), A([0.0, 1.0])]
    r = preference_accuracy(scores, val + test)
    assert r.tie_threshold == pytest.approx(0.3)  # the smallest that calls the first validation pair a tie
    assert r.n_records == 2  # validation records are not evaluated
    assert r.tie_aware.value == pytest.approx((1.0 + 1.0) / 2)
    assert r.pairwise_pooled.n == 1  # the test pair with a decided label
    no_val = preference_accuracy(scores[2:], test)
    assert no_val.tie_aware is None and "validation split" in no_val.notes[0]


def test_metric_class_equals_function_across_batches_and_resets():
    records, scores = mixed()
    metric = PreferenceAccuracy(n_bootstrap=200)
    metric.update(scores[2:], records[2:], indices=[2])
    metric.update(scores[:2], records[:2], indices=[0, 1])  # arrival order does not matter
    assert metric.compute() == preference_accuracy(scores, records, n_bootstrap=200)
    metric.reset()
    metric.update(scores[:1], records[:1])
    assert metric.compute().top1.value == 1.0


def test_confidence_intervals_contain_the_estimates():
    rng = np.random.default_rng(0)
    records = [Record(f"p{i}", ["a", "b", "c"], chosen=int(rng.integers(3))) for i in range(60)]
    scores = [rng.normal(size=3) for _ in records]
    r = preference_accuracy(scores, records)
    for e in (r.top1, r.pairwise_pooled, r.pairwise_per_prompt):
        assert e.low <= e.value <= e.high and e.high - e.low > 0


def test_random_scorer_is_seeded_and_order_free():
    s = RandomScorer(3)
    records = [("a cat", ["x.png", "y.png"]), ("a dog", ["z.png"])]
    first = s.score_records(records).scores
    again = s.score_records(records[::-1]).scores[::-1]
    for u, v in zip(first, again):
        np.testing.assert_array_equal(u, v)
    assert not np.array_equal(RandomScorer(4).score_records(records).scores[0], first[0])
    assert load_eval_scorer("random:3").seed == 3 and load_eval_scorer("random").name == "random"
    assert first[0].min() >= 0 and first[0].max() < 1
