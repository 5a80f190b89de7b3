"""Helpers for tests that run two (or more) CPU processes under ``torch.distributed`` (gloo).

The tests spawn workers with ``torch.multiprocessing.spawn``; each worker calls
:func:`worker_environment` before it builds anything, so accelerate's ``PartialState`` sees the
process group the same way ``accelerate launch`` would set it up.
"""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for ``MASTER_PORT`` or a test server)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def worker_environment(rank: int, world: int, port: int) -> None:
    """Set this process up as rank ``rank`` of ``world`` (the variables ``accelerate launch`` sets,
    with the master on 127.0.0.1:``port``) and one compute thread, so processes do not fight for
    cores and sum in a fixed order."""
    import torch

    torch.set_num_threads(1)
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
