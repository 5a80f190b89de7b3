"""A pool of decode threads that keeps the model fed: batches decoded ahead, returned in order.

PIL releases the GIL while it decodes and resizes, so threads decode in parallel without the
cost of worker processes (no pickling of tensors, no start-up). How many (ours):

* on a CPU the model's matrix products already use every core and a ViT-L/14 image costs far
  more than its decode (162 GFLOP against 3-5 ms of JPEG decode), so one thread is enough, and
  more would only take cores from the model;
* on a GPU the decode is the bottleneck: one thread per core but one (kept for the main thread
  that drives the GPU), at most 8.

``Image.draft`` (JPEG decoded at 1/2, 1/4, 1/8 scale) is not used: it changes the pixels that
reach the bicubic resize, hence the scores, which must match the originals' preprocessing.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prefalign.data.images import ImageLoadError

if TYPE_CHECKING:
    import torch

MAX_GPU_DECODE_WORKERS = 8


def decode_workers(device: Any = "cpu", *, cpu_count: int | None = None) -> int:
    """Decode threads for a model on ``device`` (see the module docstring); at least 1."""
    device_type = getattr(device, "type", str(device).split(":")[0])
    if device_type != "cuda":
        return 1
    cores = cpu_count if cpu_count is not None else (os.cpu_count() or 1)
    return max(1, min(MAX_GPU_DECODE_WORKERS, cores - 1))


@dataclass
class DecodedBatch:
    """One batch after decoding: the pixels of the images that loaded and why the others did not.

    ``ok``: positions (in the batch) of the images in ``pixels``; ``pixels``: ``(len(ok), 3, H, W)``
    float32 or None when none loaded; ``errors``: ``(position, source, reason)`` of the others.
    """

    ok: list[int] = field(default_factory=list)
    pixels: torch.Tensor | None = None
    errors: list[tuple[int, str, str]] = field(default_factory=list)


def decode_batch(
    preprocess: Callable[[Any], torch.Tensor], sources: Sequence[Any], *, pin_memory: bool = False
) -> DecodedBatch:
    """Preprocess each source; an ``ImageLoadError`` is recorded with its source, not raised."""
    import torch

    out = DecodedBatch()
    tensors = []
    for k, src in enumerate(sources):
        try:
            tensors.append(preprocess(src))
            out.ok.append(k)
        except ImageLoadError as exc:
            out.errors.append((k, exc.source, exc.reason))
    if tensors:
        out.pixels = torch.stack(tensors)
        if pin_memory:  # page-locked, so the copy to the GPU can run asynchronously
            out.pixels = out.pixels.pin_memory()
    return out


def decode_ahead(
    preprocess: Callable[[Any], torch.Tensor],
    batches: Iterable[Sequence[Any]],
    *,
    workers: int = 1,
    ahead: int = 2,
    pin_memory: bool = False,
) -> Generator[DecodedBatch, None, None]:
    """Decode ``batches`` of sources in ``workers`` threads, up to ``ahead`` batches (at least
    ``workers``) in flight, and yield them in the order given, whatever order they finish in."""
    batches = iter(batches)
    ahead = max(ahead, workers, 1)
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="prefalign-decode") as pool:
        pending: deque = deque()

        def submit_next() -> None:
            batch = next(batches, None)
            if batch is not None:
                pending.append(pool.submit(decode_batch, preprocess, batch, pin_memory=pin_memory))

        for _ in range(ahead):
            submit_next()
        while pending:
            decoded = pending.popleft().result()
            submit_next()
            yield decoded
