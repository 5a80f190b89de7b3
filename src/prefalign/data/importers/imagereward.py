"""ImageReward (Xu et al.): the ImageRewardDB dataset as published, and the repo's ranking files.

Two layouts, told apart by their content (not by their names):

* **ImageRewardDB** (THUDM/ImageRewardDB on the Hugging Face Hub): one row per *image* with
  ``image_path`` (``images/<split>/<split>_<k>/<uuid>.webp``, relative to the dataset's root),
  ``prompt_id``, ``prompt``, ``classification``, ``image_amount_in_total``, ``rank`` (1 = best,
  ties share a rank), ``overall_rating``, ``image_text_alignment_rating`` and
  ``fidelity_rating``. The rows come as ``metadata-<split>.parquet`` at the root and, inside each
  ``images/<split>/<split>_<k>.zip`` (extracted), as a JSON list ``<split>_<k>.json``. Rows are
  grouped by ``prompt_id`` (within a split, across shards) into one record: the images in row
  order, ``ranks`` = the ranks as published (ties kept), ``ratings`` = ``overall_rating``, and
  the other two ratings, ``classification`` and ``image_amount_in_total`` in meta. A directory
  holding both the Parquet files and the JSON shards is read from the Parquet files only (they
  hold the same rows).
* **The ImageReward repo's ranking files** (``data/test.json``): JSON lists of ``{"id", "prompt",
  "generations": [...], "ranking": [...]}``; ``ranking`` is lower-is-better with ties allowed,
  and ``generations`` are image paths relative to the JSON file (or to ``images/`` beside it).

The split comes from the file name (``metadata-validation.parquet``, ``train_3.json``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefalign.data.dataset import DatasetError, Record
from prefalign.data.importers.common import (
    ImagePlacer,
    expect_list_of_dicts,
    first_existing,
    read_json,
    split_from_name,
)

FORMAT = "imagereward"
_SHARD = re.compile(r"(train|validation|test)_\d+")
logger = logging.getLogger(__name__)

# ImageRewardDB's per-image columns (its dataset card and loader script).
DB_COLUMNS = (
    "image_path",
    "prompt_id",
    "prompt",
    "classification",
    "image_amount_in_total",
    "rank",
    "overall_rating",
    "image_text_alignment_rating",
    "fidelity_rating",
)
DB_REQUIRED = ("image_path", "prompt_id", "prompt", "rank")
REPO_REQUIRED = ("prompt", "generations", "ranking")
EXPECTED = (
    "expected ImageRewardDB's metadata-<split>.parquet or <split>_<k>.json (one row per image: "
    f"{', '.join(DB_REQUIRED)}, ...) or the ImageReward repo's JSON list of "
    f"{{{', '.join(REPO_REQUIRED)}}}"
)


def read(src: Path, placer: ImagePlacer) -> Iterator[Record]:
    """Records of an ImageRewardDB directory or file, or of the repo's ranking JSON files.

    Raises:
        DatasetError: a file in neither layout (naming what it is and what was expected), rows
            of one ``prompt_id`` with different prompts, or ranks that do not fit the images.
    """
    if src.is_file():
        files = [src]
    else:
        parquet = sorted(src.glob("metadata-*.parquet"))
        if parquet:
            files = parquet
            if any(_shards(src)):
                logger.info(
                    "%s: reading metadata-*.parquet; the per-shard JSON files hold the same rows", src
                )
        else:
            files = sorted(src.glob("*.json")) + sorted(p for p in _shards(src) if p.parent != src)
        if not files:
            raise DatasetError(
                f"{src}: no metadata-*.parquet and no JSON files: not an ImageReward directory"
            )
    db_rows: dict[str | None, list[tuple[Path, int, dict[str, Any]]]] = {}
    for path in files:
        kind, rows = _load(path)
        if kind == "repo":
            yield from _repo_records(path, rows, placer)
        else:
            db_rows.setdefault(split_from_name(path), []).extend((path, i, row) for i, row in enumerate(rows))
    for split, rows in db_rows.items():
        yield from _db_records(rows, split, placer)


def _shards(src: Path) -> Iterator[Path]:
    """ImageRewardDB's extracted per-shard JSON files (``<split>_<k>.json``) anywhere under ``src``."""
    return (p for p in src.rglob("*.json") if _SHARD.fullmatch(p.stem))


def _load(path: Path) -> tuple[str, list[dict[str, Any]]]:
    """("db" | "repo", rows) of one file, or a clear error saying what the file is."""
    with open(path, "rb") as fh:
        head = fh.read(4)
    if head == b"PAR1":
        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(f"{path}: a damaged Parquet file ({exc})") from None
        missing = [c for c in DB_REQUIRED if c not in table.column_names]
        if missing:
            raise DatasetError(
                f"{path}: a Parquet file with columns {table.column_names[:8]}, lacking {missing}; {EXPECTED}"
            )
        return "db", table.select([c for c in DB_COLUMNS if c in table.column_names]).to_pylist()
    if head[:2] == b"PK":
        raise DatasetError(
            f"{path}: a zip archive; extract it (the JSON inside is the shard's rows); {EXPECTED}"
        )
    try:
        data = read_json(path)
    except DatasetError as exc:
        raise DatasetError(f"{exc}; {EXPECTED}") from None
    first = data[0] if isinstance(data, list) and data and isinstance(data[0], dict) else {}
    if all(k in first for k in DB_REQUIRED):
        return "db", expect_list_of_dicts(data, path, DB_REQUIRED, "ImageRewardDB")
    if all(k in first for k in REPO_REQUIRED) or not isinstance(data, list):
        return "repo", expect_list_of_dicts(data, path, REPO_REQUIRED, FORMAT)
    raise DatasetError(f"{path}: a JSON list whose first item has keys {sorted(first)[:8]}; {EXPECTED}")


def _db_records(
    rows: Iterable[tuple[Path, int, dict[str, Any]]], split: str | None, placer: ImagePlacer
) -> Iterator[Record]:
    groups: dict[str, list[tuple[Path, int, dict[str, Any]]]] = {}
    for path, i, row in rows:
        groups.setdefault(str(row["prompt_id"]), []).append((path, i, row))
    for prompt_id, group in groups.items():
        path, i, first = group[0]
        for p, j, row in group:
            if row["prompt"] != first["prompt"]:
                raise DatasetError(
                    f"{p}: row {j}: prompt_id {prompt_id} has two prompts (see row {i} of {path})"
                )
        images = [
            placer.place(_db_image(p, str(row["image_path"])), f"images/{FORMAT}/{row['image_path']}")
            for p, _, row in group
        ]
        meta: dict[str, Any] = {
            "prompt_id": prompt_id,
            "classification": first.get("classification"),
            "image_amount_in_total": first.get("image_amount_in_total"),
            "image_text_alignment_rating": [
                _number(r.get("image_text_alignment_rating")) for _, _, r in group
            ],
            "fidelity_rating": [_number(r.get("fidelity_rating")) for _, _, r in group],
        }
        overall = [_number(r.get("overall_rating")) for _, _, r in group]
        yield Record(
            id=f"{FORMAT}:{prompt_id}",
            prompt=first["prompt"],
            images=images,
            ranks=[int(r["rank"]) for _, _, r in group],
            ratings=None if any(o is None for o in overall) else overall,
            source=FORMAT,
            split=split,
            meta=meta,
        )


def _db_image(path: Path, image_path: str) -> Path:
    """The file an ``image_path`` names: relative to the dataset root, which is the Parquet file's
    folder or, for a JSON shard at ``images/<split>/<shard>/<shard>.json``, a folder above it."""
    candidates = [parent / image_path for parent in path.parents]
    candidates.insert(0, path.parent / image_path)
    candidates.append(path.parent / Path(image_path).name)  # a shard extracted on its own
    return first_existing(candidates)


def _repo_records(path: Path, items: list[dict[str, Any]], placer: ImagePlacer) -> Iterator[Record]:
    split = split_from_name(path)
    for i, item in enumerate(items):
        gens, ranking = item["generations"], [int(r) for r in item["ranking"]]
        if len(gens) != len(ranking):
            raise DatasetError(f"{path}: item {i}: {len(ranking)} ranks for {len(gens)} generations")
        images = [
            placer.place(
                first_existing([path.parent / g, path.parent / "images" / g]), f"images/{FORMAT}/{g}"
            )
            for g in gens
        ]
        meta = {k: v for k, v in item.items() if k not in ("prompt", "generations", "ranking")}
        yield Record(
            id=f"{FORMAT}:{item.get('id', f'{path.stem}-{i}')}",
            prompt=item["prompt"],
            images=images,
            ranks=ranking,
            source=FORMAT,
            split=split,
            meta=meta,
        )


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
