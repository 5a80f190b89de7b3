"""``run_preference``: preference accuracy of scorers on a dataset (``prefalign eval preference``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prefalign.data.dataset import Dataset, Record
from prefalign.evaluate.distributed import gather_lists, metric_device, process_group
from prefalign.evaluate.errors import EvaluationError, NothingEvaluated
from prefalign.evaluate.labels import human_ranks
from prefalign.evaluate.preference import PreferenceAccuracy, PreferenceResult
from prefalign.evaluate.runs.common import _local_shard, score_records, scorer_runtime, unique_names
from prefalign.evaluate.splits import select_split
from prefalign.scoring.protocol import ScorerLike

logger = logging.getLogger(__name__)


@dataclass
class PreferenceRun:
    """Preference accuracy of several scorers on one dataset, with the scores behind it."""

    dataset: str
    scorers: list[str]
    kinds: list[str]
    results: dict[str, PreferenceResult]
    records: list[Record] = field(repr=False)
    scores: dict[str, list[np.ndarray]] = field(repr=False)
    selection: dict = field(default_factory=dict)  # which split was evaluated, and why (splits.Selection)
    runtime: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "command": "preference",
            "dataset": self.dataset,
            "selection": self.selection,
            "scorers": [{"name": n, "kind": k} for n, k in zip(self.scorers, self.kinds)],
            "results": {name: r.to_dict() for name, r in self.results.items()},
            "runtime": self.runtime,
        }


def run_preference(
    dataset: Dataset,
    scorers: Sequence[ScorerLike],
    *,
    split: str | None = None,
    tie_threshold: float | None = None,
    n_bootstrap: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    batch_size: int = 4,
    progress: bool | None = None,
) -> PreferenceRun:
    """Preference accuracy of each scorer on a labelled dataset (Table 2 of the HPS paper).

    Args:
        dataset: records with ``chosen``, ``ranks`` or ``ratings``.
        scorers: loaded scorers (``load_eval_scorer``).
        split: the split to evaluate: None for the default (the test split, or the data's only
            split), ``"all"`` for every split together, or a name (see ``evaluate.splits``);
            validation records that are not evaluated tune the tie threshold.
        tie_threshold: a fixed tie threshold for tie-aware accuracy instead of tuning it.
        n_bootstrap, level, seed: the bootstrap confidence intervals.
        batch_size, progress: scoring.

    Raises:
        EvaluationError: no record carries a preference label, or the default split rule cannot
            decide (several splits and no test split).
        NothingEvaluated: 0 records evaluated (an empty split, none labelled, every image failed).
    """

    def labelled(i: int) -> bool:
        return (ranks := human_ranks(dataset[i])) is not None and len(ranks) >= 2

    if not any(labelled(i) for i in range(len(dataset))):
        raise EvaluationError(
            f"{dataset.root}: no record has a preference label (`chosen`, `ranks` or `ratings` "
            "over 2 or more images); eval preference needs them"
        )
    chosen = select_split([r.split for r in dataset], split, where=str(dataset.root))
    if not any(labelled(i) for i in chosen.evaluated):
        raise NothingEvaluated(
            f"{dataset.root}: 0 records evaluated: none of the {len(chosen.evaluated)} records of "
            f"{chosen.what} has a preference label (choose another --split)"
        )
    selected = sorted(chosen.evaluated + chosen.tuning)
    tuning_set = set(chosen.tuning)
    rank, world = process_group()
    shard = _local_shard(selected, rank=rank, world=world)
    names = unique_names(scorers)
    results, scores = {}, {}
    for name, scorer in zip(names, scorers):
        records = [dataset[i] for i in shard]
        local = score_records(
            scorer,
            [(r.prompt, [dataset.image_path(p) for p in r.images]) for r in records],
            batch_size=batch_size,
            progress=progress,
        )
        metric = PreferenceAccuracy(
            tie_threshold=tie_threshold, n_bootstrap=n_bootstrap, level=level, seed=seed
        ).to(metric_device())
        metric.update(local, records, indices=shard, tuning=[i in tuning_set for i in shard])
        results[name] = metric.compute()
        scores[name] = gather_lists(local)
        if results[name].n_records == 0:
            raise NothingEvaluated(
                f"{dataset.root}: 0 records evaluated by {name}: all {results[name].n_skipped} records of "
                f"{chosen.what} were skipped (no label, or an image that could not be scored: "
                "see the warnings above)"
            )
    return PreferenceRun(
        dataset=str(dataset.root),
        scorers=names,
        kinds=[s.kind for s in scorers],
        results=results,
        records=[dataset[i] for i in selected],
        scores=scores,
        selection=chosen.to_dict(),
        runtime=scorer_runtime(scorers),
    )


# ---------------------------------------------------------------------------- agreement
