"""Identical images score once per run: a plan that folds repeated images and spreads the scores.

A dataset can show the same image twice (in one record, or a copy under another name). Scored
twice, in different batches, its two scores differ in the last digits (``scoring.ties``), and a
"preference" between an image and itself would be measured. ``SharedImages`` keys every image
by its content (a hash of a file's bytes, or of an array's pixels), scores each distinct
(content, prompt) once, and gives every copy that score.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def content_key(image) -> str | None:
    """A key equal for images of equal content: a file's bytes, a PIL image's or an array's pixels.

    Returns None when the content cannot be read (an unreadable file: the loader reports it).
    """
    h = hashlib.blake2b(digest_size=16)
    if isinstance(image, (str, os.PathLike)):
        try:
            with open(image, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
        except OSError:
            return None
        return "file:" + h.hexdigest()
    if isinstance(image, (bytes, bytearray)):
        h.update(image)
        return "bytes:" + h.hexdigest()
    if hasattr(image, "tobytes") and hasattr(image, "mode") and hasattr(image, "size"):  # PIL
        h.update(f"{image.mode}{image.size}".encode())
        h.update(image.tobytes())
        return "pil:" + h.hexdigest()
    if hasattr(image, "detach"):  # a torch tensor
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        h.update(f"{image.dtype}{image.shape}".encode())
        h.update(np.ascontiguousarray(image).tobytes())
        return "array:" + h.hexdigest()
    return None


@dataclass
class SharedImages:
    """Records with repeated images removed, and where each original image's score comes from.

    ``records[r]`` keeps record r's prompt and the images first seen there; ``source[r][i]`` is
    the (record, image) of ``records`` that scores original image i of record r.
    """

    records: list[tuple[str, list]]
    source: list[list[tuple[int, int]]]

    @classmethod
    def plan(cls, records: Sequence[tuple[str, Sequence]], *, by_prompt: bool) -> SharedImages:
        """Fold images of equal content (and equal prompt, when the score reads the prompt)."""
        first: dict[tuple, tuple[int, int]] = {}
        kept: list[tuple[str, list]] = []
        source: list[list[tuple[int, int]]] = []
        for r, (prompt, images) in enumerate(records):
            mine: list = []
            row: list[tuple[int, int]] = []
            for image in images:
                key = content_key(image)
                full = (key, prompt if by_prompt else None)
                if key is not None and full in first:
                    row.append(first[full])
                    continue
                row.append((r, len(mine)))
                if key is not None:
                    first[full] = (r, len(mine))
                mine.append(image)
            kept.append((prompt, mine))
            source.append(row)
        return cls(kept, source)

    @property
    def n_shared(self) -> int:
        """How many images were folded into an earlier copy."""
        return sum(len(row) for row in self.source) - sum(len(images) for _, images in self.records)

    def expand(self, result):
        """A ``ScoreResult`` over the folded records -> one over the original records."""
        from prefalign.scoring.scorer import ScoreFailure, ScoreResult

        scores = [np.array([result.scores[r][i] for r, i in row], dtype=np.float64) for row in self.source]
        copies: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for r, row in enumerate(self.source):
            for i, src in enumerate(row):
                copies.setdefault(src, []).append((r, i))
        failures = []
        for f in result.failures:
            if f.image is None:  # a record-level failure (an empty prompt) stays with its record
                failures.append(f)
            else:
                failures += [
                    ScoreFailure(r, i, f.source, f.reason) for r, i in copies.get((f.record, f.image), [])
                ]
        failures.sort(key=lambda f: (f.record, -1 if f.image is None else f.image))
        return ScoreResult(scores, failures)
