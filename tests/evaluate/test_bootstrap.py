"""Bootstrap intervals: contain the estimate, narrow with more data, reproducible."""

from __future__ import annotations

import math

import numpy as np

from prefalign.evaluate import bootstrap_ci


def test_interval_contains_the_estimate_and_narrows_with_more_data():
    rng = np.random.default_rng(0)
    widths = []
    for n in (40, 400, 4000):
        hits = (rng.random(n) < 0.7).astype(float)
        low, high = bootstrap_ci(hits, n_resamples=500, seed=1)
        assert low <= hits.mean() <= high
        widths.append(high - low)
    assert widths[0] > widths[1] > widths[2]
    # About 1.96 * 2 * sqrt(p(1-p)/n) for a proportion.
    assert abs(widths[2] - 3.92 * math.sqrt(0.21 / 4000)) < 0.01


def test_ratio_of_sums_resamples_whole_units():
    num, den = np.array([2.0, 4.0, 6.0]), np.array([4.0, 8.0, 12.0])  # every unit has ratio 0.5
    assert bootstrap_ci(num, den, n_resamples=200) == (0.5, 0.5)


def test_seeded_and_empty():
    x = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert all(math.isnan(v) for v in bootstrap_ci(np.array([])))


def test_every_denominator_zero_gives_nans_not_an_error():
    # Records whose pairs are all ties (or all skipped) have no pairs to count: no replicate has a
    # value, so the interval is undefined rather than an exception from np.quantile.
    low, high = bootstrap_ci(np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, 0.0]), n_resamples=50)
    assert math.isnan(low) and math.isnan(high)
