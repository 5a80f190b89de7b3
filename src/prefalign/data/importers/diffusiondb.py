"""DiffusionDB (Wang et al.): unlabelled generations, grouped into one record per prompt.

The metadata Parquet (``metadata.parquet`` or ``metadata-large.parquet``) has one row per image:
``image_name, prompt, part_id, seed, step, cfg, sampler, width, height, user_name, timestamp,
image_nsfw, prompt_nsfw``. Images are looked for in ``part-NNNNNN/`` (or ``images/part-NNNNNN/``)
beside it. Records carry no choice: they are the input of the adaptation step, which scores and
selects them. Per-image settings stay in meta as lists aligned with the images.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prefalign.data.dataset import DatasetError, Record
from prefalign.data.importers.common import ImagePlacer, first_existing

FORMAT = "diffusiondb"
PER_IMAGE = ("seed", "step", "cfg", "sampler", "width", "height", "timestamp", "image_nsfw")


def _metadata(src: Path) -> Path:
    if src.is_file():
        return src
    for name in ("metadata.parquet", "metadata-large.parquet"):
        if (src / name).is_file():
            return src / name
    raise DatasetError(f"{src}: no metadata.parquet or metadata-large.parquet: not a DiffusionDB directory")


def read(src: Path, placer: ImagePlacer) -> Iterator[Record]:
    """One record per distinct prompt, images in metadata order."""
    path = _metadata(src)
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{path}: not a Parquet file ({exc})") from None
    missing = [c for c in ("image_name", "prompt", "part_id") if c not in table.column_names]
    if missing:
        raise DatasetError(f"{path}: lacks columns {missing}: not the DiffusionDB metadata format")
    groups: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        groups.setdefault(row["prompt"], []).append(row)
    root = path.parent
    for i, (prompt, rows) in enumerate(groups.items()):
        images = []
        for r in rows:
            part = f"part-{int(r['part_id']):06d}"
            source = first_existing([root / part / r["image_name"], root / "images" / part / r["image_name"]])
            images.append(placer.place(source, f"images/{FORMAT}/{part}/{r['image_name']}"))
        users = {r.get("user_name") for r in rows}
        meta = {k: [_plain(r.get(k)) for r in rows] for k in PER_IMAGE if k in table.column_names}
        meta["image_name"] = [r["image_name"] for r in rows]
        if "prompt_nsfw" in table.column_names:
            meta["prompt_nsfw"] = rows[0].get("prompt_nsfw")
        yield Record(
            id=f"{FORMAT}:{i}",
            prompt=prompt,
            images=images,
            user=users.pop() if len(users) == 1 else None,
            source=FORMAT,
            meta=meta,
        )


def _plain(value):
    """Timestamps and other Arrow scalars as JSON-friendly values."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
