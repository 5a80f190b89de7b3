"""The one dataset format: a directory with ``records.parquet`` and the images it references.

One record is a prompt shown with n >= 1 images and what people said of them: a single choice
(``chosen``), a ranking with ties (``ranks``, lower is better; a pair with a tie is
``ranks=[0, 0]``), or per-image ``ratings`` (binary good/bad or graded). Images are paths
relative to the dataset directory, or URLs not fetched yet. Parquet keeps it readable by
pyarrow, pandas, polars and ``datasets.load_dataset("parquet", ...)``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prefalign.errors import PrefalignError
from prefalign.files import publish_temp_file

RECORDS_FILE = "records.parquet"
CHECK_IMAGES = ("warn", "error", "off")

logger = logging.getLogger(__name__)

SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("prompt", pa.string(), nullable=False),
        pa.field("images", pa.list_(pa.string()), nullable=False),
        pa.field("chosen", pa.int32()),
        pa.field("ranks", pa.list_(pa.int32())),
        pa.field("ratings", pa.list_(pa.float32())),
        pa.field("user", pa.string()),
        pa.field("source", pa.string()),
        pa.field("split", pa.string()),
        pa.field("meta", pa.string()),
    ]
)


class DatasetError(PrefalignError, ValueError):
    """A dataset that cannot be read or written, naming the file and the reason."""


@dataclass
class Record:
    """One prompt, its images, and what people said of them."""

    prompt: str
    images: list[str]
    id: str = ""
    chosen: int | None = None
    ranks: list[int] | None = None
    ratings: list[float] | None = None
    user: str | None = None
    source: str = ""
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prompt": self.prompt,
            "images": list(self.images),
            "chosen": self.chosen,
            "ranks": None if self.ranks is None else list(self.ranks),
            "ratings": None if self.ratings is None else [float(r) for r in self.ratings],
            "user": self.user,
            "source": self.source,
            "split": self.split,
            "meta": json.dumps(self.meta, ensure_ascii=False, sort_keys=True),
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Record:
        meta = row.get("meta")
        return cls(
            id=row.get("id") or "",
            prompt=row["prompt"],
            images=list(row["images"]),
            chosen=row.get("chosen"),
            ranks=None if row.get("ranks") is None else list(row["ranks"]),
            ratings=None if row.get("ratings") is None else list(row["ratings"]),
            user=row.get("user"),
            source=row.get("source") or "",
            split=row.get("split"),
            meta=json.loads(meta) if meta else {},
        )


class Dataset:
    """Records plus the directory their relative image paths resolve against."""

    def __init__(self, root: str | Path, records: list[Record]):
        self.root = Path(root)
        self.records = records

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[Record]:
        return iter(self.records)

    def __getitem__(self, i: int) -> Record:
        return self.records[i]

    def image_path(self, image: str) -> str:
        """Resolve one entry of ``Record.images``: URLs stay URLs, relative paths join ``root``."""
        if "://" in image:
            return image
        p = Path(image)
        return str(p if p.is_absolute() else self.root / p)

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, records={len(self.records)})"


def load_dataset(path: str | Path) -> Dataset:
    """Read a dataset directory (or its ``records.parquet`` file)."""
    path = Path(path)
    file = path if path.suffix == ".parquet" else path / RECORDS_FILE
    if not file.exists():
        raise DatasetError(f"{file}: not a prefalign dataset (no {RECORDS_FILE})")
    try:
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise DatasetError(f"{file}: cannot read records ({exc})") from None
    missing = {"prompt", "images"} - set(table.column_names)
    if missing:
        raise DatasetError(f"{file}: missing required columns {sorted(missing)}")
    return Dataset(file.parent, [Record.from_row(r) for r in table.to_pylist()])


def save_dataset(records: Iterable[Record], path: str | Path, *, check_images: str = "warn") -> Path:
    """Write ``records`` to ``path/records.parquet`` atomically (temporary file, then rename).

    Records without an id get their position as id. An interrupted write leaves the previous
    file, if any, untouched. Image references are checked as :class:`DatasetWriter` says.

    Raises:
        DatasetError: ``check_images="error"`` and some image reference names no file (nothing
            is written).
    """
    with DatasetWriter(path, check_images=check_images) as writer:
        for rec in records:
            writer.write(rec)
    return Path(path)


class DatasetWriter:
    """Stream records into ``path/records.parquet`` in batches; the file appears only on ``close``.

    Memory stays bounded by ``batch_size`` records however many are written, which is what lets
    the Discord miner run in constant memory. Used as a context manager, an exception inside the
    block discards the partial file and leaves any previous dataset untouched; ``close`` commits.

    Image references are checked as they are written (``check_images``): a relative path must
    name a file under ``path`` (the dataset folder), an absolute path is used as it is and must
    exist on this machine (it makes the dataset non-portable); URLs are not checked (``prefalign
    data fetch-images`` downloads them). ``"warn"`` (default) logs one line with the count and an
    example, ``"error"`` raises :class:`DatasetError` at ``close`` and writes nothing, ``"off"``
    skips the check for callers that check themselves (the importers report missing images).
    ``missing_images`` holds the count after writing.

    Example:
        >>> with DatasetWriter("out") as w:                        # doctest: +SKIP
        ...     w.write(Record(prompt="a cat", images=["a.png", "b.png"], chosen=1))
    """

    def __init__(self, path: str | Path, *, batch_size: int = 2048, check_images: str = "warn"):
        if check_images not in CHECK_IMAGES:
            raise DatasetError(f"check_images must be one of {CHECK_IMAGES}, got {check_images!r}")
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.batch_size = batch_size
        self.check_images = check_images
        self.missing_images = 0
        self._missing_example: tuple[str, str] | None = None  # (record id, image)
        self.count = 0
        self._rows: list[dict[str, Any]] = []
        fd, tmp = tempfile.mkstemp(prefix=".records-", suffix=".parquet.tmp", dir=self.path)
        os.close(fd)
        self._tmp = Path(tmp)
        self._writer: pq.ParquetWriter | None = pq.ParquetWriter(self._tmp, SCHEMA)

    def write(self, record: Record) -> None:
        """Add one record; records without an id get their position as id."""
        row = record.to_row()
        row["id"] = row["id"] or str(self.count)
        if self.check_images != "off":
            self._check_images(row["id"], record.images)
        self._rows.append(row)
        self.count += 1
        if len(self._rows) >= self.batch_size:
            self._flush()

    def _check_images(self, record_id: str, images: list[str]) -> None:
        for image in images:
            if "://" in image:
                continue
            p = Path(image)
            if not (p if p.is_absolute() else self.path / p).is_file():
                self.missing_images += 1
                if self._missing_example is None:
                    self._missing_example = (record_id, image)

    def _missing_message(self) -> str:
        rid, image = self._missing_example or ("", "")
        return (
            f"{self.path}: {self.missing_images:,} image reference(s) of {self.count:,} records name no "
            f"file (e.g. record {rid}: {image!r}); relative paths resolve against the dataset folder, "
            "absolute paths are used as they are. Put the images there or fix the paths "
            "(`prefalign data validate` lists them)"
        )

    def _flush(self) -> None:
        if self._rows and self._writer is not None:
            self._writer.write_table(pa.Table.from_pylist(self._rows, schema=SCHEMA))
            self._rows = []

    def close(self) -> Path:
        """Write what is buffered and move the file into place. Returns the dataset directory."""
        if self._writer is None:
            return self.path
        if self.missing_images and self.check_images == "error":
            self.abort()
            raise DatasetError(self._missing_message())
        try:
            self._flush()
            self._writer.close()
            self._writer = None
            publish_temp_file(self._tmp)
            os.replace(self._tmp, self.path / RECORDS_FILE)
        except BaseException:
            self.abort()
            raise
        if self.missing_images:
            logger.warning("%s", self._missing_message())
        return self.path

    def abort(self) -> None:
        """Discard everything written so far; a previous dataset at ``path`` stays as it was."""
        if self._writer is not None:
            with contextlib.suppress(Exception):  # the file is thrown away; its state does not matter
                self._writer.close()
            self._writer = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
