"""HPD v2 (Wu et al., "Human Preference Score v2").

* ``train.json``: a list of pairs ``{"human_preference": [1, 0], "prompt", "file_path": [a, b],
  "user_hash", ...}`` with the images under ``train/``. ``human_preference`` marks the preferred
  image with 1; ``[1, 1]`` or ``[0, 0]`` is a tie, kept as ``ranks=[0, 0]``. ``user_hash`` (the
  annotator) becomes ``Record.user``.
* ``test.json``: a list of ``{"prompt", "image_path": [...], "rank": [...], "raw_annotations":
  [{"rank", "user_hash"}, ...]}`` with the images under ``test/``; ``rank`` (lower is better)
  becomes the record's ranks; the record has no single user, and ``raw_annotations`` (each
  annotator's rank and ``user_hash``) stay in meta as written.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prefalign.data.dataset import DatasetError, Record
from prefalign.data.importers.common import (
    ImagePlacer,
    expect_list_of_dicts,
    first_existing,
    read_json,
    split_from_name,
)

FORMAT = "hpd-v2"


def _sources(src: Path) -> list[tuple[Path, str]]:
    if src.is_file():
        return [(src, split_from_name(src) or "train")]
    found = [
        (src / f"{split}.json", split) for split in ("train", "test") if (src / f"{split}.json").is_file()
    ]
    if not found:
        raise DatasetError(f"{src}: no train.json or test.json: not an HPD v2 directory")
    return found


def read(src: Path, placer: ImagePlacer) -> Iterator[Record]:
    """Records of an HPD v2 directory (or one of its JSON files)."""
    for path, split in _sources(src):
        data = read_json(path)
        ranked = bool(data) and isinstance(data[0], dict) and "rank" in data[0]
        keys = ("prompt", "image_path", "rank") if ranked else ("prompt", "file_path", "human_preference")
        items = expect_list_of_dicts(data, path, keys, f"{FORMAT} {'test' if ranked else 'train'}")
        root = path.parent
        for i, item in enumerate(items):
            files = item["image_path" if ranked else "file_path"]
            images = [
                placer.place(first_existing([root / split / f, root / f]), f"images/{FORMAT}/{split}/{f}")
                for f in files
            ]
            # A train pair is one annotator's choice: user_hash becomes the record's user (as in
            # HPD v1), so splits by user work. A test ranking is several annotators' consensus:
            # no single user; raw_annotations keep each annotator's rank and user_hash in meta.
            dropped = ("prompt", "image_path", "file_path", "rank") + (() if ranked else ("user_hash",))
            meta = {k: v for k, v in item.items() if k not in dropped}
            user = None if ranked or item.get("user_hash") is None else str(item["user_hash"])
            rec = Record(
                id=f"{FORMAT}:{split}:{i}",
                prompt=item["prompt"],
                images=images,
                user=user,
                source=FORMAT,
                split=split,
                meta=meta,
            )
            if ranked:
                rec.ranks = [int(r) for r in item["rank"]]
            else:
                pref = [int(p) for p in item["human_preference"]]
                if len(pref) != len(images):
                    raise DatasetError(f"{path}: item {i}: {len(pref)} preferences for {len(images)} images")
                if pref.count(1) == 1:
                    rec.chosen = pref.index(1)
                else:  # both or neither preferred: a tie
                    rec.ranks = [0] * len(images)
            yield rec
