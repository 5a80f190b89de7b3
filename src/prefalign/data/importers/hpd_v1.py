"""HPD v1, the dataset of the HPS paper (Wu et al.), in both directions.

Layout: ``preference_train.json`` and ``preference_test.json``, each a list of::

    {"human_preference": 2, "prompt": "...", "id": "...", "file_path": ["a.webp", ...],
     "user_hash": "...", "contain_name": false}

with the images under ``preference_images/`` (``file_path`` entries are relative to it, or to the
dataset root). ``human_preference`` is the index of the chosen image. Every field, unknown ones
included, is kept in the record's meta, so that export writes back exactly what was read.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prefalign.data.dataset import Dataset, DatasetError, Record
from prefalign.data.importers.common import (
    ImagePlacer,
    expect_list_of_dicts,
    first_existing,
    read_json,
    split_from_name,
)
from prefalign.files import write_json_atomic

FORMAT = "hpd-v1"
FILES = {"train": "preference_train.json", "test": "preference_test.json"}
IMAGES_DIR = "preference_images"
REQUIRED = ("human_preference", "prompt", "file_path")
# Fields the record holds in its own columns; everything else goes to meta as is.
_IN_COLUMNS = ("human_preference", "prompt", "user_hash")


def _sources(src: Path) -> list[tuple[Path, str | None]]:
    if src.is_file():
        return [(src, split_from_name(src))]
    found = [(src / name, split) for split, name in FILES.items() if (src / name).is_file()]
    if not found:
        raise DatasetError(f"{src}: no {' or '.join(FILES.values())}: not an HPD v1 directory")
    return found


def read(src: Path, placer: ImagePlacer) -> Iterator[Record]:
    """Records of an HPD v1 directory (or one of its JSON files)."""
    for path, split in _sources(src):
        items = expect_list_of_dicts(read_json(path), path, REQUIRED, FORMAT)
        root = path.parent
        for i, item in enumerate(items):
            files = item["file_path"]
            if not isinstance(files, list) or not files:
                raise DatasetError(f"{path}: item {i}: file_path must be a non-empty list")
            images, images_dir = [], IMAGES_DIR
            for entry in files:
                source = first_existing([root / IMAGES_DIR / entry, root / entry])
                if source == root / entry and source.is_file():
                    images_dir = ""
                images.append(placer.place(source, f"images/{FORMAT}/{entry}"))
            original = {k: v for k, v in item.items() if k not in _IN_COLUMNS}
            yield Record(
                id=f"{FORMAT}:{split or path.stem}:{item.get('id', i)}",
                prompt=item["prompt"],
                images=images,
                chosen=item["human_preference"],
                user=item.get("user_hash"),
                source=FORMAT,
                split=split,
                meta={
                    FORMAT: {
                        "fields": original,
                        "keys": list(item),
                        "has_user_hash": "user_hash" in item,
                        "images_dir": images_dir,
                    }
                },
            )


def _item(rec: Record, index: int) -> tuple[dict[str, Any], list[str], str]:
    """The HPD v1 item of a record, its file_path entries, and the folder they are relative to."""
    saved = rec.meta.get(FORMAT)
    if saved:
        fields = dict(saved["fields"])
        fields["human_preference"] = rec.chosen
        fields["prompt"] = rec.prompt
        if saved.get("has_user_hash", True):
            fields["user_hash"] = rec.user
        keys = [k for k in saved["keys"] if k in fields] + [k for k in fields if k not in saved["keys"]]
        return {k: fields[k] for k in keys}, list(fields["file_path"]), saved.get("images_dir", IMAGES_DIR)
    # A record from elsewhere: name its images after the record.
    files = [
        f"{rec.id or index}_{k}{Path(p.partition('#')[0]).suffix or '.png'}" for k, p in enumerate(rec.images)
    ]
    item = {
        "human_preference": rec.chosen,
        "prompt": rec.prompt,
        "id": rec.id or str(index),
        "file_path": files,
        "user_hash": rec.user,
        "contain_name": False,
    }
    return item, files, IMAGES_DIR


def write(dataset: Dataset, out: Path) -> dict[str, int]:
    """Write ``dataset`` in the HPD v1 layout under ``out``; returns items written per file.

    Records without a single choice cannot be HPD v1 items and are skipped (counted under
    ``"skipped"``). Records without a split go to the train file.
    """
    out.mkdir(parents=True, exist_ok=True)
    items: dict[str, list[dict[str, Any]]] = {name: [] for name in FILES.values()}
    counts = {"skipped": 0}
    for index, rec in enumerate(dataset):
        if rec.chosen is None:
            counts["skipped"] += 1
            continue
        item, files, images_dir = _item(rec, index)
        if len(files) != len(rec.images):
            raise DatasetError(
                f"record {rec.id}: {len(rec.images)} images but {len(files)} file_path entries"
            )
        for entry, image in zip(files, rec.images, strict=True):
            source = Path(dataset.image_path(image))
            if "://" in image or not source.is_file():
                raise DatasetError(
                    f"record {rec.id}: image {image} is not a local file (run fetch-images first)"
                )
            target = out / images_dir / entry
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, target)
        name = FILES["test"] if rec.split == "test" else FILES["train"]
        items[name].append(item)
    for name, rows in items.items():
        if rows or name == FILES["train"]:
            write_json_atomic(out / name, rows)
            counts[name] = len(rows)
    return counts
