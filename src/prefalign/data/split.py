"""Deterministic train/test splits with no prompt (or user) on both sides."""

from __future__ import annotations

import hashlib
from pathlib import Path

from prefalign.data.dataset import DatasetError, Record, load_dataset, save_dataset

SPLIT_BY = ("prompt", "user")


def _group(rec: Record, by: str) -> str:
    if by == "prompt":
        return " ".join(rec.prompt.split()).casefold()
    return f"user:{rec.user}"


def assign_splits(
    records: list[Record], test_size: float, *, by: str = "prompt", seed: int = 0, source: str | None = None
) -> None:
    """Set ``split`` to "train" or "test" on each record, in place.

    Groups (records of one prompt, or of one user) are ordered by a seeded SHA-256 of their key,
    which is stable across runs, Python versions and machines, and taken into the test side until
    it holds ``test_size`` records (a count if >= 1, else a fraction of all records).

    Raises:
        DatasetError: bad ``by`` or size, or ``by="user"`` while some records have no user
            (``source`` names the dataset in the message).
    """
    if by not in SPLIT_BY:
        raise DatasetError(f"cannot split by {by!r}; expected one of {SPLIT_BY}")
    if test_size < 0:
        raise DatasetError(f"test size must be positive, got {test_size}")
    if by == "user":
        # A record without a user could be anyone's: splitting it "by user" would be a random split
        # that only claims to keep users apart.
        lacking = sum(1 for rec in records if not rec.user)
        if lacking:
            raise DatasetError(
                f"{source or 'dataset'}: cannot split by user: {lacking:,} of {len(records):,} records have no "
                "user (the format records none for them); split by prompt (--by prompt) instead"
            )
    target = round(test_size * len(records)) if test_size < 1 else int(test_size)
    if target > len(records):
        raise DatasetError(f"test size {target} is larger than the dataset ({len(records)} records)")
    groups: dict[str, list[Record]] = {}
    for rec in records:
        groups.setdefault(_group(rec, by), []).append(rec)
    order = sorted(groups, key=lambda k: hashlib.sha256(f"{seed}\0{k}".encode()).hexdigest())
    taken = 0
    for key in order:
        side = "test" if taken < target else "train"
        if side == "test":
            taken += len(groups[key])
        for rec in groups[key]:
            rec.split = side


def split_dataset(
    path: str | Path, test_size: float, *, by: str = "prompt", seed: int = 0, out: str | Path | None = None
) -> dict[str, int]:
    """Split a dataset (in place, or into ``out``) and return the number of records per side."""
    dataset = load_dataset(path)
    assign_splits(dataset.records, test_size, by=by, seed=seed, source=str(dataset.root))
    target = Path(out) if out is not None else dataset.root
    if out is not None and Path(out).resolve() != dataset.root.resolve():
        # Relative image paths must still resolve from the new directory.
        for rec in dataset.records:
            rec.images = [dataset.image_path(i) if "://" not in i else i for i in rec.images]
            rec.images = [str(Path(i).resolve()) if "://" not in i else i for i in rec.images]
    save_dataset(dataset.records, target)
    counts = {"train": 0, "test": 0}
    for rec in dataset.records:
        counts[rec.split or "train"] += 1
    return counts
