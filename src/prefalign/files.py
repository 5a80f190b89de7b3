"""Atomic file writes: a temporary sibling, then a rename, so a reader (or an interrupted run)
never sees half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def write_atomic(
    path: str | Path, data: bytes | str | Callable[[BinaryIO], None], *, suffix: str = ".tmp"
) -> None:
    """Write ``data`` to ``path`` atomically.

    Args:
        path: the file to write; its directory is created if needed.
        data: bytes, text (written as UTF-8), or a function that writes into a binary file.
        suffix: suffix of the temporary file (visible only while writing).
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = None) -> None:
    """Write ``data`` as UTF-8 JSON atomically (with a final newline when indented)."""
    text = json.dumps(data, ensure_ascii=False, indent=indent)
    write_atomic(path, text + "\n" if indent is not None else text)
