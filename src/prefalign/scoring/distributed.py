"""Scoring sharded across processes: the same command under ``torchrun`` or ``accelerate launch``.

Each process scores every ``world``-th record and the results are gathered in the original
order, so a multi-process run returns exactly what one process would.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import torch

from prefalign.data.images import ImageInput
from prefalign.scoring.protocol import ScorerLike
from prefalign.scoring.scorer import ScoreFailure, ScoreResult

logger = logging.getLogger(__name__)


def process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` unless launched with others.

    Under ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the
    process group is started on first use, through accelerate's ``PartialState`` when it is
    installed (it also picks this process's device), else with plain ``torch.distributed``.
    """
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        try:
            from accelerate import PartialState

            PartialState()
        except ImportError:
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_rank() -> int:
    """This process's rank (0 when running alone)."""
    return process_group()[0]


def score_records_sharded(
    scorer: ScorerLike, records: Sequence[tuple[str, Sequence[ImageInput]]], **kwargs
) -> ScoreResult:
    """``scorer.score_records`` across all launched processes; every process gets the full result."""
    rank, world = process_group()
    if world <= 1:
        return scorer.score_records(records, **kwargs)
    import torch.distributed as dist

    mine = list(range(rank, len(records), world))
    logger.info("process %d of %d scores %d of %d records", rank, world, len(mine), len(records))
    if rank != 0:
        kwargs["progress"] = False
    local = scorer.score_records([records[i] for i in mine], **kwargs)
    gathered: list = [None] * world
    dist.all_gather_object(gathered, (mine, local.scores, local.failures))
    scores: list = [None] * len(records)
    failures: list[ScoreFailure] = []
    for indices, part_scores, part_failures in gathered:
        for i, s in zip(indices, part_scores):
            scores[i] = s
        for f in part_failures:
            failures.append(ScoreFailure(indices[f.record], f.image, f.source, f.reason))
    failures.sort(key=lambda f: (f.record, -1 if f.image is None else f.image))
    return ScoreResult(scores, failures)
