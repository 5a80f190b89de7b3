"""Pick-a-Pic (Kirstain et al.): Parquet shards of pairs with the images embedded as bytes.

Columns used: ``caption``, ``jpg_0``/``jpg_1`` (image bytes, written out as files),
``label_0``/``label_1`` (1/0 for a choice, 0.5/0.5 for a tie), ``has_label`` and
``are_different`` (see :func:`read` for what is skipped), ``user_id``; ``model_0``,
``model_1``, ``ranking_id`` and the other scalar columns are kept in meta. Shards are read a
batch at a time, so memory stays bounded however large they are.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefalign.data.dataset import DatasetError, Record
from prefalign.data.importers.common import ImagePlacer, split_from_name

FORMAT = "pickapic"
REQUIRED = ("caption", "jpg_0", "jpg_1", "label_0", "label_1")


def _extension(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return ".png"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return ".jpg"


LABELLED = ((1.0, 0.0), (0.0, 1.0), (0.5, 0.5))
SKIP_UNLABELLED = "has_label = False: no human judgement"
SKIP_IDENTICAL = "are_different = False: the same image twice"


def read(
    src: Path, placer: ImagePlacer, *, keep_unlabeled: bool = False, keep_identical: bool = False
) -> Iterator[Record]:
    """Records of a Pick-a-Pic Parquet shard, or of every shard in a directory.

    Args:
        keep_unlabeled: keep ``has_label = False`` rows as records without a label (default:
            skip them, counted, as PickScore's trainer does on its evaluation splits: they are
            not human judgements).
        keep_identical: keep ``are_different = False`` rows (the same image shown twice; default:
            skip them, counted: no preference can exist between them).

    Raises:
        DatasetError: not Parquet, missing columns, an empty image, or a labelled row whose labels
            are not (1, 0), (0, 1) or (0.5, 0.5), naming the file and the row.
    """
    paths = sorted(src.rglob("*.parquet")) if src.is_dir() else [src]
    if not paths:
        raise DatasetError(f"{src}: no Parquet files: not a Pick-a-Pic directory")
    for path in paths:
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(f"{path}: not a Parquet file ({exc})") from None
        missing = [c for c in REQUIRED if c not in pf.schema_arrow.names]
        if missing:
            raise DatasetError(f"{path}: lacks columns {missing}: not the Pick-a-Pic format")
        split = split_from_name(path)
        row = 0
        for batch in pf.iter_batches(batch_size=256):
            for item in batch.to_pylist():
                # bool in the published shards, 0/1 in some re-exports; a shard without the
                # column is all labelled (and all different).
                labelled = item.get("has_label") is None or bool(item["has_label"])
                identical = item.get("are_different") is not None and not bool(item["are_different"])
                if not labelled and not keep_unlabeled:
                    placer.report.skip(SKIP_UNLABELLED)
                elif identical and not keep_identical:
                    placer.report.skip(SKIP_IDENTICAL)
                else:
                    yield _record(item, path, row, split, placer, labelled)
                row += 1


def _record(
    item: dict, path: Path, row: int, split: str | None, placer: ImagePlacer, labelled: bool
) -> Record:
    key = str(item.get("ranking_id") or item.get("__key__") or f"{path.stem}-{row}")
    labels = (_label(item["label_0"]), _label(item["label_1"]))
    if labelled and labels not in LABELLED:
        raise DatasetError(
            f"{path}: row {row}: labels (label_0, label_1) = ({item['label_0']}, {item['label_1']}) on a "
            "labelled row; Pick-a-Pic labels are (1, 0), (0, 1) or (0.5, 0.5) for a tie"
        )
    images = []
    for k in (0, 1):
        data = item[f"jpg_{k}"]
        if not data:
            raise DatasetError(f"{path}: row {row}: jpg_{k} is empty")
        uid = item.get(f"image_{k}_uid") or f"{key}_{k}"
        images.append(placer.write_bytes(data, f"images/{FORMAT}/{uid}{_extension(data)}"))
    meta = {
        k: v
        for k, v in item.items()
        if k not in ("caption", "jpg_0", "jpg_1", "label_0", "label_1", "user_id")
        and (v is None or isinstance(v, (str, int, float, bool)))
    }
    rec = Record(
        id=f"{FORMAT}:{key}",
        prompt=item["caption"],
        images=images,
        user=None if item.get("user_id") is None else str(item["user_id"]),
        source=FORMAT,
        split=split,
        meta=meta,
    )
    if not labelled:
        return rec  # kept on request (--keep-unlabeled): no choice, no tie
    if labels == (0.5, 0.5):
        rec.ranks = [0, 0]
    else:
        rec.chosen = labels.index(1.0)
    return rec


def _label(value) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
