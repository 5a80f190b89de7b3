"""Preference accuracy: how often a scorer ranks images the way people did.

One implementation, two doors: ``preference_accuracy(scores, records)`` for a whole dataset in
memory, and the ``PreferenceAccuracy`` metric class (update / compute / reset) whose states
gather across processes. Both turn each record into one row of per-record quantities
(``_record_units``) and summarise the rows (``_summarise``).

What is measured (all in [0, 1]):

* ``top1``: the scorer's highest-scoring image is the one people chose (the HPS paper's Table 2
  metric). The random baseline is the mean of 1/n. Ties at the top score share the credit
  (1/k for k tied images), which is what a random tie-break would earn on average.
* ``pairwise_pooled``: over every image pair whose labels differ, the fraction the scorer
  orders the same way (ImageReward, PickScore style). Label ties are skipped; equal scores
  earn 0.5 (equal within ``scoring.ties``' one tolerance, everywhere here, so that no number
  depends on the batch size the scores were computed in).
* ``pairwise_per_prompt``: the same, averaged within each prompt first, then over prompts
  (HPS v2 style), so prompts with many images do not dominate.
* ``inversion``: HPS v2's score for rankings, ``1 - discordant pairs / all n(n-1)/2 pairs``
  per record, averaged over records. Ties (in labels or scores) are not discordant.
* ``tie_aware``: for pairs labelled with ties allowed (PickScore's protocol), the scorer
  predicts a tie when ``|s_a - s_b| <= threshold``; 1 point when it matches the label, 0.5
  when exactly one of prediction and label is a tie, 0 when it picks the other image. The
  threshold is tuned on the records of the validation split (see ``labels.VALIDATION_SPLITS``).

Records whose scores contain NaN (an image failed) or that carry no label are skipped and
counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from prefalign.data.dataset import Record
from prefalign.evaluate.bootstrap import bootstrap_ci
from prefalign.evaluate.labels import VALIDATION_SPLITS, human_ranks, is_ranking, stable_key
from prefalign.scoring.ties import score_order, scores_tie

# Columns of the per-record rows; one name per column so the row layout is defined once.
UNIT_COLUMNS = (
    "scored",  # 1 when every image has a finite score
    "labelled",  # 1 when the record has a usable label
    "validation",  # 1 when the record belongs to the tie-threshold tuning split
    "top1_valid",
    "top1",
    "baseline",
    "pair_correct",
    "pair_count",
    "inversion_valid",
    "inversion",
    "tie_valid",
    "tie_diff",
    "tie_label",  # +1 the first image wins, -1 the second, 0 a tie
)
COL = {name: i for i, name in enumerate(UNIT_COLUMNS)}


@dataclass
class Estimate:
    """A measured value with its bootstrap confidence interval and the number of units behind it."""

    value: float
    low: float
    high: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class PreferenceResult:
    """Every preference metric of one scorer on one dataset (None where the data has no such label)."""

    top1: Estimate | None
    random_baseline: float | None
    pairwise_pooled: Estimate | None
    pairwise_per_prompt: Estimate | None
    inversion: Estimate | None
    tie_aware: Estimate | None
    tie_threshold: float | None
    n_records: int
    n_pairs: int
    n_skipped: int
    notes: list[str]

    def to_dict(self) -> dict:
        out = {}
        for name, value in self.__dict__.items():
            out[name] = value.to_dict() if isinstance(value, Estimate) else value
        return out


# ---------------------------------------------------------------------------- per-record rows
def _signs(values: np.ndarray, *, scores: bool = False) -> np.ndarray:
    """``sign(v_i - v_j)`` for every pair i < j, flattened in ``triu`` order; for ``scores``,
    equal within the one score tolerance (``scoring.ties``) counts as 0."""
    i, j = np.triu_indices(len(values), k=1)
    return score_order(values[i], values[j]) if scores else np.sign(values[i] - values[j])


def _record_units(
    scores: Sequence[np.ndarray], records: Sequence[Record], tuning: Sequence[bool] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One row of ``UNIT_COLUMNS`` per record, and its prompt key.

    ``tuning`` marks the records that tune the tie threshold (default: those of a validation split).
    """
    if len(scores) != len(records):
        raise ValueError(f"{len(scores)} score arrays for {len(records)} records")
    rows = np.zeros((len(records), len(UNIT_COLUMNS)))
    prompts: np.ndarray = np.zeros(len(records), dtype=np.int64)
    for r, (s, record) in enumerate(zip(scores, records)):
        s = np.asarray(s, dtype=np.float64)
        row = rows[r]
        prompts[r] = stable_key(record.prompt)
        row[COL["validation"]] = float(record.split in VALIDATION_SPLITS if tuning is None else tuning[r])
        ranks = human_ranks(record)
        row[COL["labelled"]] = float(ranks is not None and len(ranks) >= 2)
        row[COL["scored"]] = float(len(s) == len(record.images) and bool(np.all(np.isfinite(s))))
        if ranks is None or not (row[COL["labelled"]] and row[COL["scored"]]):
            continue
        n = len(ranks)
        best = np.flatnonzero(ranks == ranks.min())
        if len(best) == 1:  # top-1 needs one best image
            top = np.flatnonzero(scores_tie(s, s.max()))  # every image tied with the best
            row[COL["top1_valid"]] = 1.0
            row[COL["top1"]] = float(best[0] in top) / len(top)
            row[COL["baseline"]] = 1.0 / n
        # Lower rank is better and a higher score is better: agreement is opposite signs.
        human, model = _signs(ranks), _signs(s, scores=True)
        decided = human != 0
        agree = np.where(model == 0, 0.5, (human == -model).astype(np.float64))
        row[COL["pair_correct"]] = agree[decided].sum()
        row[COL["pair_count"]] = decided.sum()
        if is_ranking(record):
            discordant: float = np.sum((human != 0) & (human == model))
            row[COL["inversion_valid"]] = 1.0
            row[COL["inversion"]] = 1.0 - discordant / (n * (n - 1) / 2)
        if n == 2:
            row[COL["tie_valid"]] = 1.0
            row[COL["tie_diff"]] = 0.0 if scores_tie(s[0], s[1]) else s[0] - s[1]
            row[COL["tie_label"]] = -np.sign(ranks[0] - ranks[1])
    return rows, prompts


# ---------------------------------------------------------------------------- tie-aware accuracy
def tie_aware_points(diff: np.ndarray, label: np.ndarray, threshold: float) -> np.ndarray:
    """Points per pair: 1 prediction = label, 0.5 exactly one of them a tie, 0 the other image.

    Args:
        diff: score of the first image minus score of the second.
        label: +1 the first image preferred, -1 the second, 0 a tie.
        threshold: the scorer predicts a tie when ``|diff| <= threshold``.
    """
    pred = np.where(np.abs(diff) <= threshold, 0.0, np.sign(diff))
    one_tie = (pred == 0) != (label == 0)
    return np.where(pred == label, 1.0, np.where(one_tie, 0.5, 0.0))


def tune_tie_threshold(diff: np.ndarray, label: np.ndarray) -> float:
    """The tie threshold that maximises mean tie-aware points (the smallest such one).

    Candidates are 0 and every observed ``|diff|``; the total for each comes from cumulative
    sums over pairs sorted by ``|diff|``, so tuning is O(n log n).
    """
    gap = np.abs(np.asarray(diff, dtype=np.float64))
    label = np.asarray(label, dtype=np.float64)
    if len(gap) == 0:
        return 0.0
    order = np.argsort(gap, kind="stable")
    gap, label, sign = gap[order], label[order], np.sign(np.asarray(diff)[order])
    if_tie = np.where(label == 0, 1.0, 0.5)  # points when the scorer predicts a tie
    if_not = np.where(label == 0, 0.5, (sign == label).astype(np.float64))
    candidates = np.unique(np.concatenate([[0.0], gap]))
    k = np.searchsorted(gap, candidates, side="right")  # pairs predicted as ties
    cum_tie = np.concatenate([[0.0], np.cumsum(if_tie)])
    cum_not = np.concatenate([[0.0], np.cumsum(if_not)])
    totals = cum_tie[k] + (cum_not[-1] - cum_not[k])
    return float(candidates[int(np.argmax(totals))])


# ---------------------------------------------------------------------------- summary
def _estimate(num: np.ndarray, den: np.ndarray | None, *, n_bootstrap: int, level: float, seed: int):
    if len(num) == 0:
        return None
    den_ = np.ones_like(num) if den is None else den
    if den_.sum() == 0:
        return None
    low, high = bootstrap_ci(num, den_, n_resamples=n_bootstrap, level=level, seed=seed)
    return Estimate(float(num.sum() / den_.sum()), low, high, len(num))


def _summarise(
    rows: np.ndarray,
    prompts: np.ndarray,
    *,
    tie_threshold: float | None,
    n_bootstrap: int,
    level: float,
    seed: int,
) -> PreferenceResult:
    """Every metric from the per-record rows (in a fixed record order, so results are exact)."""
    c = {name: rows[:, i] for name, i in COL.items()}
    usable = (c["scored"] == 1) & (c["labelled"] == 1)
    evaluated = usable & (c["validation"] == 0)
    notes: list[str] = []
    ci: dict[str, Any] = dict(n_bootstrap=n_bootstrap, level=level, seed=seed)

    top = evaluated & (c["top1_valid"] == 1)
    top1 = _estimate(c["top1"][top], None, **ci)
    baseline = float(c["baseline"][top].mean()) if top.any() else None

    paired = evaluated & (c["pair_count"] > 0)
    pooled = _estimate(c["pair_correct"][paired], c["pair_count"][paired], **ci)
    per_prompt = None
    if paired.any():
        _, group = np.unique(prompts[paired], return_inverse=True)
        correct = np.bincount(group, c["pair_correct"][paired])
        count = np.bincount(group, c["pair_count"][paired])
        per_prompt = _estimate(correct / count, None, **ci)

    inv = evaluated & (c["inversion_valid"] == 1)
    inversion = _estimate(c["inversion"][inv], None, **ci)

    tie_aware, threshold = None, tie_threshold
    pairs = evaluated & (c["tie_valid"] == 1)
    tuning = usable & (c["validation"] == 1) & (c["tie_valid"] == 1)
    has_label_ties = bool(np.any(c["tie_label"][pairs | tuning] == 0))
    if pairs.any() and (has_label_ties or tie_threshold is not None):
        if threshold is None and tuning.any():
            threshold = tune_tie_threshold(c["tie_diff"][tuning], c["tie_label"][tuning])
        if threshold is None:
            notes.append(
                "tie-aware accuracy needs a validation split to tune its tie threshold "
                f"(records with split in {sorted(VALIDATION_SPLITS)}) or a given threshold"
            )
        else:
            points = tie_aware_points(c["tie_diff"][pairs], c["tie_label"][pairs], threshold)
            tie_aware = _estimate(points, None, **ci)
    return PreferenceResult(
        top1=top1,
        random_baseline=baseline,
        pairwise_pooled=pooled,
        pairwise_per_prompt=per_prompt,
        inversion=inversion,
        tie_aware=tie_aware,
        tie_threshold=threshold if tie_aware is not None else None,
        n_records=int(evaluated.sum()),
        n_pairs=int(c["pair_count"][paired].sum()),
        n_skipped=int((~usable).sum()),
        notes=notes,
    )


def _cat(state: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """A ``cat`` state as one CPU tensor (an empty list when nothing was added)."""
    if isinstance(state, list) and not state:
        return torch.zeros(0)
    return dim_zero_cat(state).cpu()


# ---------------------------------------------------------------------------- the two doors
def preference_accuracy(
    scores: Sequence[np.ndarray],
    records: Sequence[Record],
    *,
    tie_threshold: float | None = None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> PreferenceResult:
    """Preference accuracy of one scorer's scores against the records' labels.

    Args:
        scores: one array per record, a score per image (higher is better; NaN where failed).
        records: the labelled records (``chosen``, ``ranks`` or ``ratings``), aligned with ``scores``.
        tie_threshold: the score difference under which the scorer predicts a tie; default:
            tuned on the records of the validation split.
        n_bootstrap: bootstrap replicates of the confidence intervals.
        level: coverage of the confidence intervals.
        seed: seed of the bootstrap.

    Returns:
        A ``PreferenceResult``; a metric the labels do not support is None.

    Example:
        >>> recs = [Record("a cat", ["a.png", "b.png"], chosen=0)]
        >>> preference_accuracy([np.array([2.0, 1.0])], recs).top1.value
        1.0
    """
    rows, prompts = _record_units(scores, records)
    return _summarise(
        rows, prompts, tie_threshold=tie_threshold, n_bootstrap=n_bootstrap, level=level, seed=seed
    )


class PreferenceAccuracy(Metric):
    """``preference_accuracy`` as a torchmetrics metric: update per batch, gather across processes.

    States are the per-record rows (``dist_reduce_fx="cat"``) with each record's global index, so
    ``compute`` sorts them back into dataset order and a sharded run gives exactly the
    1-process result, bootstrap intervals included.

    Args:
        tie_threshold, n_bootstrap, level, seed: as in ``preference_accuracy``.

    Example:
        >>> metric = PreferenceAccuracy()
        >>> metric.update([np.array([2.0, 1.0])], [Record("a cat", ["a.png", "b.png"], chosen=1)])
        >>> metric.compute().top1.value
        0.0
    """

    full_state_update = False
    is_differentiable = False

    def __init__(
        self,
        *,
        tie_threshold: float | None = None,
        n_bootstrap: int = 1000,
        level: float = 0.95,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.options: dict[str, Any] = dict(
            tie_threshold=tie_threshold, n_bootstrap=n_bootstrap, level=level, seed=seed
        )
        self.add_state("rows", default=[], dist_reduce_fx="cat")
        self.add_state("keys", default=[], dist_reduce_fx="cat")  # (global index, prompt key)
        self._seen = 0

    def update(
        self,
        scores: Sequence[np.ndarray],
        records: Sequence[Record],
        indices: Sequence[int] | None = None,
        tuning: Sequence[bool] | None = None,
    ) -> None:
        """Add records and their scores.

        Args:
            scores: one score array per record.
            records: the records.
            indices: each record's index in the whole dataset (needed when processes share the
                work, so that results do not depend on the order of arrival).
            tuning: which records tune the tie threshold instead of being evaluated (default:
                those of a validation split).
        """
        rows, prompts = _record_units(scores, records, tuning)
        if indices is None:
            indices = range(self._seen, self._seen + len(records))
        self._seen += len(records)
        index = torch.as_tensor(list(indices), dtype=torch.int64).reshape(-1)
        self.rows.append(torch.as_tensor(rows, dtype=torch.float64, device=self.device))
        self.keys.append(torch.stack([index, torch.as_tensor(prompts)], dim=1).to(self.device))

    def reset(self) -> None:
        super().reset()
        self._seen = 0

    def compute(self) -> PreferenceResult:
        rows = _cat(self.rows).numpy().reshape(-1, len(UNIT_COLUMNS))
        keys = _cat(self.keys).numpy().reshape(-1, 2)
        order = np.argsort(keys[:, 0], kind="stable")
        return _summarise(rows[order], keys[order, 1], **self.options)
