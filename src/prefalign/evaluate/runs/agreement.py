"""``run_agreement``: scorers and participants against participants (``prefalign eval agreement``)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from prefalign.data.dataset import Dataset
from prefalign.evaluate.agreement import Agreement, AgreementResult, Vote, vote_credit, votes_from_dataset
from prefalign.evaluate.distributed import gather_lists, metric_device, process_group
from prefalign.evaluate.runs.common import _local_shard, score_records, scorer_runtime, unique_names

logger = logging.getLogger(__name__)


@dataclass
class AgreementRun:
    """Table 3: scorers and participants against the participants of a votes dataset."""

    votes: str
    result: AgreementResult
    runtime: dict[str, dict] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"command": "agreement", "votes": self.votes, **self.result.to_dict(), "runtime": self.runtime}


def _pair_scores(scorer, votes: Sequence[Vote], *, batch_size: int, progress) -> list[np.ndarray]:
    """Each vote's two scores in the vote's order, scoring each distinct (prompt, pair) once."""
    distinct: dict[tuple, int] = {}
    for v in votes:
        distinct.setdefault((v.prompt, *sorted(v.images)), len(distinct))
    keys = list(distinct)
    scored = score_records(
        scorer, [(k[0], [k[1], k[2]]) for k in keys], batch_size=batch_size, progress=progress
    )
    by_image = [dict(zip(k[1:], s)) for k, s in zip(keys, scored)]
    return [
        np.array([by_image[distinct[tuple([v.prompt, *sorted(v.images)])]][img] for img in v.images])
        for v in votes
    ]


def run_agreement(
    votes_dataset: Dataset, scorers: Sequence, *, batch_size: int = 4, progress=None
) -> AgreementRun:
    """Agreement of each scorer with each participant, and of participants with each other.

    Args:
        votes_dataset: one participant's vote on one pair per record (see ``agreement``).
        scorers: loaded scorers.
        batch_size, progress: scoring.
    """
    votes = votes_from_dataset(votes_dataset)
    rank, world = process_group()
    shard = _local_shard(votes, rank=rank, world=world)
    names = unique_names(scorers)
    credits = {
        name: vote_credit(shard, _pair_scores(s, shard, batch_size=batch_size, progress=progress))
        for name, s in zip(names, scorers)
    }
    metric = Agreement(names).to(metric_device())
    metric.update(shard, credits)
    # Participant names of the other processes' shards, so per-participant rows are named.
    metric._names.update(dict(gather_lists(list(metric._names.items()))))
    return AgreementRun(str(votes_dataset.root), metric.compute(), scorer_runtime(scorers))


# ---------------------------------------------------------------------------- image sets
