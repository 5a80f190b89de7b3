"""Two generated sets of the same prompts and seeds (say base vs adapted), image by image.

Images pair up by ``(prompt, seed)``: the seed comes from ``meta["seed"]`` of each record (the
generation command writes it); a record with several images may list one seed per image in
``meta["seeds"]``, else its images pair by position. Per scorer the comparison reports the mean
score of each set, B's paired win rate (ties count half) and a two-sided sign test of B against
A (ties left out), as the function ``paired_comparison`` and the class ``PairedComparison``,
both over ``_counts`` / ``_summary``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torchmetrics import Metric

from prefalign.data.dataset import Dataset
from prefalign.evaluate.errors import EvaluationError
from prefalign.scoring.ties import score_order


@dataclass
class ImagePair:
    """The image of set A and the image of set B generated from one prompt and seed."""

    prompt: str
    seed: object
    a: str
    b: str


def _keyed_images(dataset: Dataset, label: str) -> dict[tuple, tuple[str, object, str]]:
    """``(prompt, seed, position) -> (prompt, seed, image path)``; position is None with ``seeds``."""
    out: dict[tuple, tuple[str, object, str]] = {}
    for rec in dataset:
        seeds = rec.meta.get("seeds")
        if seeds is None:
            if "seed" not in rec.meta:
                raise EvaluationError(
                    f"{label} ({dataset.root}): record {rec.id!r} has no meta['seed']; compare pairs "
                    "images by prompt and seed"
                )
            keyed = [(rec.meta["seed"], i) for i in range(len(rec.images))]
        elif len(seeds) != len(rec.images):
            raise EvaluationError(
                f"{label} ({dataset.root}): record {rec.id!r} lists {len(seeds)} seeds for {len(rec.images)} images"
            )
        else:
            keyed = [(seed, None) for seed in seeds]
        for (seed, position), image in zip(keyed, rec.images):
            key = (rec.prompt, str(seed), position)
            if key in out:
                raise EvaluationError(
                    f"{label} ({dataset.root}): prompt {rec.prompt!r} with seed {seed} twice"
                )
            out[key] = (rec.prompt, seed, dataset.image_path(image))
    return out


def pair_generated_sets(a: Dataset, b: Dataset) -> list[ImagePair]:
    """Pair the images of two generated sets by prompt and seed, in A's order.

    Raises:
        EvaluationError: a record without a seed, a repeated (prompt, seed), or sets whose
            (prompt, seed) keys differ (the message counts them and shows one of each).
    """
    ka, kb = _keyed_images(a, "A"), _keyed_images(b, "B")
    only_a = [v for k, v in ka.items() if k not in kb]
    only_b = [v for k, v in kb.items() if k not in ka]
    if only_a or only_b:
        parts = []
        if only_a:
            parts.append(
                f"{len(only_a)} (prompt, seed) only in A, e.g. ({only_a[0][0][:50]!r}, seed {only_a[0][1]})"
            )
        if only_b:
            parts.append(f"{len(only_b)} only in B, e.g. ({only_b[0][0][:50]!r}, seed {only_b[0][1]})")
        raise EvaluationError("A and B are not the same prompts and seeds: " + "; ".join(parts))
    return [ImagePair(prompt, seed, path, kb[key][2]) for key, (prompt, seed, path) in ka.items()]


# ---------------------------------------------------------------------------- shared implementation
@dataclass
class PairedResult:
    """One scorer's verdict on B against A over ``n`` image pairs."""

    mean_a: float
    mean_b: float
    mean_difference: float
    wins_b: int
    wins_a: int
    ties: int
    win_rate_b: float
    sign_test_p: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


def _counts(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[n, sum a, sum b, wins b, wins a, ties]`` over pairs where both scores are finite."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    order = score_order(b, a)  # equal within the one score tolerance is a tie
    return np.array(
        [len(a), a.sum(), b.sum(), (order > 0).sum(), (order < 0).sum(), (order == 0).sum()], dtype=np.float64
    )


def _summary(counts: np.ndarray) -> PairedResult | None:
    from scipy.stats import binomtest

    n, sum_a, sum_b, wins_b, wins_a, ties = (float(x) for x in counts)
    if n == 0:
        return None
    decided = int(wins_a + wins_b)
    p = binomtest(int(wins_b), decided, 0.5).pvalue if decided else 1.0
    return PairedResult(
        mean_a=sum_a / n,
        mean_b=sum_b / n,
        mean_difference=(sum_b - sum_a) / n,
        wins_b=int(wins_b),
        wins_a=int(wins_a),
        ties=int(ties),
        win_rate_b=(wins_b + 0.5 * ties) / n,
        sign_test_p=float(p),
        n=int(n),
    )


# ---------------------------------------------------------------------------- the two doors
def paired_comparison(scores_a: np.ndarray, scores_b: np.ndarray) -> PairedResult | None:
    """Compare one scorer's scores of paired images (NaN pairs left out).

    Args:
        scores_a: scores of set A's images.
        scores_b: scores of set B's images, aligned with ``scores_a``.

    Returns:
        Means, B's win rate and the sign test p-value; None when no pair has both scores.

    Example:
        >>> paired_comparison(np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 4.0])).win_rate_b
        0.8333333333333334
    """
    if len(scores_a) != len(scores_b):
        raise ValueError(f"{len(scores_a)} scores of A for {len(scores_b)} of B")
    return _summary(_counts(scores_a, scores_b))


class PairedComparison(Metric):
    """``paired_comparison`` as a torchmetrics metric; its counts are sums that gather across processes."""

    full_state_update = False
    is_differentiable = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("counts", default=torch.zeros(6, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, scores_a: np.ndarray, scores_b: np.ndarray) -> None:
        self.counts += torch.as_tensor(_counts(scores_a, scores_b), device=self.device)

    def compute(self) -> PairedResult | None:
        return _summary(self.counts.cpu().numpy())
