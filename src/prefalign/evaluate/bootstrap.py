"""Percentile bootstrap confidence intervals over resampled units (records, prompts, ...).

Every statistic here is a ratio of sums over units, ``sum(num) / sum(den)``: a mean when
``den`` is all ones, pooled accuracy when ``num`` are correct pairs and ``den`` the pairs of
each record. Resampling whole records keeps pairs of one record together, as they are not
independent.
"""

from __future__ import annotations

import numpy as np

# Resample matrices are cut into blocks of about this many entries to bound memory.
_BLOCK_ENTRIES = 4_000_000


def bootstrap_ci(
    num: np.ndarray,
    den: np.ndarray | None = None,
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``sum(num) / sum(den)`` resampling units with replacement.

    Args:
        num: one numerator per unit.
        den: one denominator per unit (default: ones, i.e. the mean of ``num``).
        n_resamples: bootstrap replicates (1000 gives stable 95% bounds to about ±0.5 point).
        level: coverage of the interval, e.g. 0.95.
        seed: seed of the resampling, so reports are reproducible.

    Returns:
        ``(low, high)``; ``(nan, nan)`` when there are no units or every denominator is 0.
    """
    num = np.asarray(num, dtype=np.float64)
    den = np.ones_like(num) if den is None else np.asarray(den, dtype=np.float64)
    n = len(num)
    if n == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    stats = np.empty(n_resamples)
    block = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, n_resamples, block):
        stop = min(n_resamples, start + block)
        idx = rng.integers(0, n, size=(stop - start, n))
        d = den[idx].sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            stats[start:stop] = num[idx].sum(axis=1) / d
    stats = stats[~np.isnan(stats)]  # a replicate that drew only empty units has no value
    if not stats.size:  # every denominator is 0: no replicate has a value
        return (float("nan"), float("nan"))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(stats, [alpha, 1.0 - alpha])
    return (float(low), float(high))
