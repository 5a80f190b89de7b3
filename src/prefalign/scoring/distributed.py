"""Scoring sharded across processes: the same command under ``torchrun`` or ``accelerate launch``.

Each process scores every ``world``-th record and the results are gathered in the original
order, so a multi-process run returns exactly what one process would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from prefalign.data.images import ImageInput
from prefalign.scoring.scorer import ScoreFailure, Scorer, ScoreResult


def world_size() -> int:
    """Processes launched together (``WORLD_SIZE`` as set by torchrun / accelerate launch)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_rank() -> int:
    """This process's rank, initialising the process group on first use when launched with others."""
    if world_size() <= 1:
        return 0
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank()


def score_records_sharded(
    scorer: Scorer, records: Sequence[tuple[str, Sequence[ImageInput]]], **kwargs
) -> ScoreResult:
    """``scorer.score_records`` across all launched processes; every process gets the full result."""
    world = world_size()
    if world <= 1:
        return scorer.score_records(records, **kwargs)
    import torch.distributed as dist

    rank = process_rank()
    mine = list(range(rank, len(records), world))
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
