"""Which share of the work this process does when several run under ``accelerate launch``.

Shards are contiguous ranges, so gathering them in rank order restores the 1-process order.
Metric classes sync their states through ``torch.distributed`` (torchmetrics does the gather).
"""

from __future__ import annotations

from prefalign.scoring.distributed import process_group

__all__ = ["gather_lists", "metric_device", "process_group", "shard_range"]


def shard_range(n: int, rank: int, world_size: int) -> range:
    """The contiguous slice of ``range(n)`` that process ``rank`` of ``world_size`` handles."""
    per = -(-n // world_size)  # ceil
    return range(min(n, rank * per), min(n, (rank + 1) * per))


def metric_device() -> str:
    """Where metric states must live for the gather: the GPU under NCCL, else the CPU."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl":
        import torch

        return f"cuda:{torch.cuda.current_device()}"
    return "cpu"


def gather_lists(items: list) -> list:
    """Concatenate every process's list in rank order (the list itself in a 1-process run)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return list(items)
    parts: list = [None] * dist.get_world_size()
    dist.all_gather_object(parts, list(items))
    return [x for part in parts for x in part]
