"""Atomic file writes: a temporary sibling, then a rename, so a reader (or an interrupted run)
never sees half a file.

``tempfile.mkstemp`` creates its file owner-only (0600); a finished output instead gets the mode
``open()`` would give it (``0o666 & ~umask``), so that a server running as another user (A1111,
ComfyUI, a web server) can read exported weights, CSVs and datasets. Files meant to stay private
(the annotation database) are created by their own code with 0600.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask.

    Read from ``/proc/self/status`` where Linux offers it (no side effect); elsewhere by setting
    and restoring it under a lock (``os.umask`` has no read-only form).
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def default_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666 & ~umask``."""
    return 0o666 & ~current_umask()


def default_dir_mode() -> int:
    """The mode ``os.mkdir`` gives a new directory: ``0o777 & ~umask``."""
    return 0o777 & ~current_umask()


def publish_temp_dir(tmp: str | Path) -> None:
    """Give a ``mkdtemp`` directory (created 0700) the usual mode before it is renamed into place,
    and its owner-only files too (``share_written``)."""
    os.chmod(tmp, default_dir_mode())
    share_written(tmp)


def share_written(path: str | Path) -> None:
    """Give files just written owner-only (0600) the usual mode ``0o666 & ~umask``.

    ``safetensors.torch.save_file`` (0.8, so every ``save_pretrained`` and diffusers'
    ``save_lora_weights``) creates its file 0600, like ``mkstemp``; called on the outputs of such
    writers, so that a UI or server running as another user can read the weights. ``path`` is a
    file or a directory (walked); only files whose mode is exactly 0600 change.
    """
    path = Path(path)
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file() and not p.is_symlink()]
    mode = default_file_mode()
    for file in files:
        if (file.stat().st_mode & 0o777) == 0o600 and mode != 0o600:
            os.chmod(file, mode)


def publish_temp_file(tmp: str | Path, *, mode: int | None = None) -> None:
    """Give a ``mkstemp`` file (created 0600) the usual mode before it is renamed into place.

    Args:
        tmp: the temporary file.
        mode: the permission bits; ``None`` means ``0o666 & ~umask`` (as ``open()`` would).
    """
    os.chmod(tmp, default_file_mode() if mode is None else mode)


def write_atomic(
    path: str | Path,
    data: bytes | str | Callable[[BinaryIO], None],
    *,
    suffix: str = ".tmp",
    mode: int | None = None,
) -> None:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: the file to write; its directory is created if needed.
        data: bytes, text (written as UTF-8), or a function that writes into a binary file.
        suffix: suffix of the temporary file (visible only while writing).
        mode: permission bits of the written file; ``None`` (default) gives ``0o666 & ~umask``
            as ``open()`` would, not ``mkstemp``'s owner-only 0600. Pass ``0o600`` for a file
            that must stay private.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            if isinstance(data, str):
                fh.write(data.encode("utf-8"))
            elif isinstance(data, bytes):
                fh.write(data)
            else:
                data(fh)
        publish_temp_file(tmp, mode=mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = None) -> None:
    """Write ``data`` as UTF-8 JSON atomically (with a final newline when indented)."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    write_atomic(path, text + "\n" if indent is not None else text)
