"""Serving files only from a study's own directory.

Every image path a study uses is checked twice: when the study is created (so a bad dataset is
refused with a clear message) and again before each file is sent (so a tampered database
cannot make the server read outside the study directory either).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from prefalign.annotate.errors import NotFound

# What the server agrees to send; anything else in a study directory stays private.
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


def resolve_inside(root: str | Path, relative: str) -> Path:
    """The real path of ``relative`` under ``root``, or an error if it would leave ``root``.

    Args:
        root: The study directory.
        relative: A path relative to ``root`` as stored in a record (forward slashes).

    Returns:
        The resolved (symlink-free) path of an existing image file inside ``root``.

    Raises:
        NotFound: for URLs, absolute paths, ``..`` components, symlinks that lead outside
            ``root``, files that are not images by suffix, or files that do not exist.
    """
    if not relative or "://" in relative or "\\" in relative or "\x00" in relative:
        raise NotFound(f"{relative!r}: not a relative path inside the study directory")
    parts = PurePosixPath(relative)
    if parts.is_absolute() or ".." in parts.parts:
        raise NotFound(f"{relative!r}: not a relative path inside the study directory")
    real_root = Path(root).resolve()
    path = (real_root / parts).resolve()
    if not path.is_relative_to(real_root):
        raise NotFound(f"{relative!r}: leads outside the study directory")
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise NotFound(f"{relative!r}: not an image file ({', '.join(sorted(IMAGE_SUFFIXES))})")
    if not path.is_file():
        raise NotFound(f"{relative!r}: no such image in the study directory")
    return path
