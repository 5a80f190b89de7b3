"""What people said of a record, as one rank vector (lower is better), whatever the record kind.

A single choice becomes ``[1, .., 0 (chosen), .., 1]`` (the others tie for second), a ranking is
kept as is, per-image ratings become ``-rating`` (higher rating, better rank). Label ties are
equal ranks: metrics skip those pairs rather than guess.
"""

from __future__ import annotations

import hashlib

import numpy as np

from prefalign.data.dataset import Record

# Records of these splits tune the tie threshold; they are not evaluated.
VALIDATION_SPLITS = frozenset({"validation", "val", "valid", "dev"})


def human_ranks(record: Record) -> np.ndarray | None:
    """The record's label as ranks (lower is better), or None when it has no label.

    ``ranks`` take precedence over ``chosen``, which take precedence over ``ratings``.
    """
    n = len(record.images)
    if record.ranks is not None:
        if len(record.ranks) != n:
            return None
        return np.asarray(record.ranks, dtype=np.float64)
    if record.chosen is not None:
        if not 0 <= record.chosen < n:
            return None
        ranks = np.ones(n)
        ranks[record.chosen] = 0.0
        return ranks
    if record.ratings is not None:
        if len(record.ratings) != n:
            return None
        return -np.asarray(record.ratings, dtype=np.float64)
    return None


def is_ranking(record: Record) -> bool:
    """Whether the label orders every image (``ranks`` or ``ratings``), not just picks one."""
    return record.ranks is not None or record.ratings is not None


def stable_key(text: str) -> int:
    """A 62-bit key of a string that is the same in every process and run (unlike ``hash``)."""
    digest = hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2
