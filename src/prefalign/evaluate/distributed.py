"""Which share of the work this process does when several run under ``accelerate launch``.

Shards are contiguous ranges, so gathering them in rank order restores the 1-process order.
Metric classes sync their states through ``torch.distributed`` (torchmetrics does the gather).
"""

from __future__ import annotations

import os


def process_group() -> tuple[int, int]:
    """``(rank, world_size)`` of this process: ``(0, 1)`` unless a process group is running.

    Under ``accelerate launch`` or ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) the
    process group is started, through accelerate's ``PartialState`` when it is installed, if
    nobody started it yet.
    """
    import torch.distributed as dist

    if not dist.is_available():
        return 0, 1
    if not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        try:
            from accelerate import PartialState

            PartialState()  # also picks the device of this process
        except ImportError:  # torchrun without accelerate: the environment has what is needed
            import torch

            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


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
