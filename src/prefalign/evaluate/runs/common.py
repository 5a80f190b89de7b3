"""What every evaluation run shares: metric names, scorer names, scoring with logged failures, shards."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from prefalign.evaluate.distributed import shard_range
from prefalign.scoring.protocol import ScorerLike

logger = logging.getLogger(__name__)


IMAGE_METRICS = ("is", "fid", "clip", "aesthetic", "hps")
SCORE_METRICS = ("clip", "aesthetic", "hps")  # image metrics that are a scorer's mean score
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


# ---------------------------------------------------------------------------- helpers
def unique_names(scorers: Sequence) -> list[str]:
    """Scorer names for tables, with ``#2``, ``#3``... when the same name is given twice."""
    names: list[str] = []
    for s in scorers:
        name, k = s.name, 2
        while name in names:
            name, k = f"{s.name}#{k}", k + 1
        names.append(name)
    return names


def scorer_runtime(scorers: Sequence | dict) -> dict[str, dict]:
    """How each scorer computed (device, precision and why, attention), for the report's metadata;
    scorers without ``runtime_metadata`` (the random baseline) are left out."""
    pairs = scorers.items() if isinstance(scorers, dict) else zip(unique_names(scorers), scorers)
    return {name: s.runtime_metadata() for name, s in pairs if hasattr(s, "runtime_metadata")}


def score_records(
    scorer: ScorerLike, records: Sequence[tuple[str, Sequence[str]]], *, batch_size: int, progress
) -> list[np.ndarray]:
    """Scores of ``(prompt, image paths)`` records; failures are logged and left as NaN."""
    result = scorer.score_records(records, batch_size=batch_size, progress=progress)
    for failure in result.failures:
        logger.warning("%s: could not score %s", scorer.name, failure)
    return result.scores


def _no_progress(progress: bool | None) -> bool:
    """Progress bars by default only on a terminal, as the scorer does."""
    import sys

    return (not sys.stderr.isatty()) if progress is None else not progress


def collapse_list_states(metric) -> None:
    """Concatenate each list state of a torchmetrics metric into one tensor.

    torchmetrics gathers list states element by element, which interleaves the batches of the
    processes; with one tensor per process the gathered order is the 1-process order, so IS's
    seeded split shuffle sees the same features in the same places.
    """
    from torchmetrics.utilities.data import dim_zero_cat

    for name in metric._defaults:
        value = getattr(metric, name)
        if isinstance(value, list) and len(value) > 1:
            setattr(metric, name, [dim_zero_cat(value)])


def _local_shard(items: Sequence, *, rank: int, world: int) -> list:
    return [items[k] for k in shard_range(len(items), rank, world)]


# ---------------------------------------------------------------------------- preference
