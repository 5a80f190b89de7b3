"""When two scores count as equal: one tolerance, used by every comparison of scores.

fp32 arithmetic makes the same image's score depend on the batch it was computed in (matrix
kernels block differently for different batch sizes): the last one or two digits move, about
1e-7 relative. Comparisons of scores (top-1, pairwise and tie-aware accuracy, agreement with a
vote, A/B wins) therefore call two scores equal when they differ by less than this tolerance,
so that no reported number depends on ``--batch-size``. The tolerance (ours) is a hundred times
the fp32 noise and far below any difference a scorer means: 1e-5 of an HPS of 25 is 0.00025.
fp16/bf16 noise is larger (1e-3 relative); their results can still move with the batch size.
"""

from __future__ import annotations

import numpy as np

SCORE_RTOL = 1e-5  # relative to the larger magnitude of the two scores
SCORE_ATOL = 1e-6  # for scores near 0 (a CLIP cosine can be)


def score_order(a, b) -> np.ndarray:
    """``+1`` where ``a`` is the higher score, ``-1`` where ``b`` is, ``0`` where they tie.

    Args:
        a, b: scores (arrays broadcast together; float64 is used).

    Returns:
        A float64 array of -1.0, 0.0, +1.0 (NaN where either score is NaN).
    """
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    diff = a - b
    tol = SCORE_ATOL + SCORE_RTOL * np.maximum(np.abs(a), np.abs(b))
    return np.where(np.abs(diff) <= tol, 0.0, np.sign(diff))


def scores_tie(a, b) -> np.ndarray:
    """Where two scores count as equal (``score_order(a, b) == 0``)."""
    return score_order(a, b) == 0
