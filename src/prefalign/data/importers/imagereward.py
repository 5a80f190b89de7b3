"""ImageReward (Xu et al.) rankings: JSON lists of ``{"id", "prompt", "generations": [...],
"ranking": [...]}``; ``ranking`` is lower-is-better with ties allowed, and ``generations`` are image
paths relative to the JSON file (or to ``images/`` beside it).
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

FORMAT = "imagereward"


def read(src: Path, placer: ImagePlacer) -> Iterator[Record]:
    """Records of an ImageReward JSON file, or of every JSON file in a directory."""
    paths = sorted(src.glob("*.json")) if src.is_dir() else [src]
    if not paths:
        raise DatasetError(f"{src}: no JSON files: not an ImageReward directory")
    for path in paths:
        items = expect_list_of_dicts(read_json(path), path, ("prompt", "generations", "ranking"), FORMAT)
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
