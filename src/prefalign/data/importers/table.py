"""Your own choices in a table (CSV, TSV, JSONL or Parquet) as a prefalign dataset.

One row is one record: a prompt, its images, and what people said. The two most common layouts
need no flags:

- ``prompt,image_a,image_b,winner``: a pair (or more: ``image_c``, ... or ``image_0``, ``image_1``,
  ...) and the chosen one, written as its letter (``a``/``b``), its 0-based index (``0``/``1``),
  its column name (``image_a``), the image path itself, or ``tie`` (every image ranked equal).
- ``prompt,image,rating``: one image and its rating (binary good/bad or graded).

Other layouts name their columns (``prompt_col``, ``image_cols`` or ``images_col`` holding a
list, ``chosen_col``, ``ranks_col``, ``rating_col``, ``user_col``, ``split_col``). Image paths
are relative to the table's folder, or absolute, or URLs (kept for ``prefalign data
fetch-images``). Every bad row is named by its line number (CSV/TSV/JSONL: the line in the file;
Parquet: the 1-based row) and the import writes nothing unless ``skip_bad_rows`` is set, in which
case the good rows are written and the bad ones counted in the report.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefalign.data.dataset import DatasetError, DatasetWriter, Record
from prefalign.data.importers.common import ImagePlacer, ImportReport

TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
# Column names read without a flag (first match wins); ours, chosen to fit the common layouts.
DEFAULT_PROMPT = ("prompt", "caption", "text")
DEFAULT_CHOSEN = ("winner", "chosen", "choice", "label", "preferred")
DEFAULT_RATING = ("rating", "ratings", "score", "label_rating")
DEFAULT_RANKS = ("ranks", "ranking")
DEFAULT_USER = ("user", "user_id", "annotator")
DEFAULT_SPLIT = ("split",)
_IMAGE_COLUMN = re.compile(r"^(?:image|img)_?([a-z]|\d+)$", re.IGNORECASE)
_SPLITS = {
    "train": "train",
    "test": "test",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
}
TIE_WORDS = ("tie", "equal", "both", "same")
MAX_LISTED = 20


@dataclass(frozen=True)
class Columns:
    """Which column holds what (``None``: the table has no such column)."""

    prompt: str
    images: tuple[str, ...] = ()
    images_list: str | None = None
    chosen: str | None = None
    ranks: str | None = None
    rating: str | None = None
    user: str | None = None
    split: str | None = None


class BadRow(Exception):
    """One row that cannot be a record; the message says why."""


def _rows(path: Path) -> tuple[list[str], Iterator[tuple[int, dict[str, Any]]]]:
    """Column names and (line number, row) pairs of a table file."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise DatasetError(
            f"{path}: unknown table type {suffix or '(none)'}; expected one of {TABLE_SUFFIXES}"
        )
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(path)
        except (pa.ArrowInvalid, OSError) as exc:
            raise DatasetError(f"{path}: cannot read Parquet ({exc})") from None
        return list(table.column_names), ((i + 1, row) for i, row in enumerate(table.to_pylist()))
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if suffix == ".jsonl":
        rows: list[tuple[int, dict[str, Any]]] = []
        names: dict[str, None] = {}
        # split on \n only: str.splitlines would also cut at U+2028 and friends, legal inside JSON strings
        for lineno, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(
                    f"{path}: line {lineno}: malformed JSON ({exc.msg}); fix or remove it"
                ) from None
            if not isinstance(row, dict):
                raise DatasetError(
                    f"{path}: line {lineno}: a JSON object per line expected, got {type(row).__name__}"
                )
            names.update(dict.fromkeys(row))
            rows.append((lineno, row))
        return list(names), iter(rows)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t" if suffix == ".tsv" else ",")
    try:
        header = next(reader)
    except StopIteration:
        raise DatasetError(f"{path}: empty file: a header line naming the columns is expected") from None
    header = [h.strip() for h in header]

    def gen() -> Iterator[tuple[int, dict[str, Any]]]:
        start = reader.line_num + 1  # a quoted field may span lines: name the row by its first
        for cells in reader:
            lineno, start = start, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                yield lineno, {"__bad__": f"{len(cells)} cells, the header names {len(header)}"}
                continue
            yield lineno, dict(zip(header, cells, strict=True))

    return header, gen()


def _pick(
    names: list[str], given: str | None, defaults: tuple[str, ...], what: str, path: Path
) -> str | None:
    if given is not None:
        if given not in names:
            raise DatasetError(f"{path}: no column {given!r} ({what}); the columns are {names}")
        return given
    lower = {n.lower(): n for n in names}
    return next((lower[d] for d in defaults if d in lower), None)


def resolve_columns(
    names: list[str],
    path: Path,
    *,
    prompt_col: str | None = None,
    image_cols: list[str] | None = None,
    images_col: str | None = None,
    chosen_col: str | None = None,
    ranks_col: str | None = None,
    rating_col: str | None = None,
    user_col: str | None = None,
    split_col: str | None = None,
) -> Columns:
    """Which column holds what: the flags given, else the common names (see the module doc).

    Raises:
        DatasetError: a named column is absent, or no prompt or image column is found.
    """
    prompt = _pick(names, prompt_col, DEFAULT_PROMPT, "--prompt-col", path)
    if prompt is None:
        raise DatasetError(
            f"{path}: no prompt column (looked for {DEFAULT_PROMPT}); name it with --prompt-col"
        )
    if image_cols and images_col:
        raise DatasetError("give --image-cols (one column per image) or --images-col (a list), not both")
    images: tuple[str, ...] = ()
    images_list = None
    if image_cols:
        missing = [c for c in image_cols if c not in names]
        if missing:
            raise DatasetError(f"{path}: no column(s) {missing} (--image-cols); the columns are {names}")
        images = tuple(image_cols)
    elif images_col:
        images_list = _pick(names, images_col, (), "--images-col", path)
    else:
        images = tuple(n for n in names if _IMAGE_COLUMN.match(n))
        if not images:
            lower = {n.lower(): n for n in names}
            if "image" in lower:
                images = (lower["image"],)
            elif "images" in lower:
                images_list = lower["images"]
            else:
                raise DatasetError(
                    f"{path}: no image columns (looked for image_a, image_b, ... / image_0, ... / image / "
                    f"images); the columns are {names}. Name them with --image-cols A,B or --images-col"
                )
    columns = Columns(
        prompt=prompt,
        images=images,
        images_list=images_list,
        chosen=_pick(names, chosen_col, DEFAULT_CHOSEN, "--chosen-col", path),
        ranks=_pick(names, ranks_col, DEFAULT_RANKS, "--ranks-col", path),
        rating=_pick(names, rating_col, DEFAULT_RATING, "--rating-col", path),
        user=_pick(names, user_col, DEFAULT_USER, "--user-col", path),
        split=_pick(names, split_col, DEFAULT_SPLIT, "--split-col", path),
    )
    used = [c for c in (columns.images_list, *columns.images) if c]
    for other in ("chosen", "ranks", "rating", "user", "split"):
        if getattr(columns, other) in used:
            raise DatasetError(
                f"{path}: column {getattr(columns, other)!r} cannot hold both images and {other}"
            )
    return columns


def _blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip()) or value != value  # NaN


def _as_list(value: Any, what: str) -> list[Any]:
    """A list cell: a real list (JSONL, Parquet) or text: a JSON list, or items split by | or ;."""
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                parsed = json.loads(text)
            except json.JSONDecodeError:
                raise BadRow(f"{what} {text[:60]!r} is not a JSON list") from None
            if isinstance(parsed, list):
                return parsed
        for sep in ("|", ";", ","):
            if sep in text:
                return [part.strip() for part in text.split(sep)]
        return [text] if text else []
    raise BadRow(f"{what} {value!r} is not a list")


def _chosen_index(value: Any, images: list[str], columns: Columns) -> int | None:
    """The chosen image's index, or ``None`` for a tie. See the module doc for what is accepted."""
    n = len(images)
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    low = text.lower()
    if low in TIE_WORDS:
        return None
    # The column name, or its suffix (image_a -> a, image_2 -> 2): checked before indices, so that
    # columns numbered from 1 (image_1, image_2) read winner 1 as image_1, not as the second image.
    for i, col in enumerate(columns.images):
        match = _IMAGE_COLUMN.match(col)
        if low == col.lower() or (match and low == match.group(1).lower()):
            if i >= n:
                raise BadRow(f"winner {text!r} names {col}, which is empty in this row")
            return i
    numbered = [c for c in columns.images if (m := _IMAGE_COLUMN.match(c)) and m.group(1).isdigit()]
    if numbered and re.fullmatch(r"-?\d+", text):  # numbered columns: a number must be one of theirs
        raise BadRow(f"winner {text!r} matches none of the numbered columns {', '.join(numbered)}")
    if re.fullmatch(r"-?\d+", text):
        index = int(text)
        if 0 <= index < n:
            return index
        raise BadRow(f"winner {text!r} is not an image index 0..{n - 1}")
    if len(low) == 1 and "a" <= low <= "z" and ord(low) - ord("a") < n:
        return ord(low) - ord("a")
    matches = [i for i, img in enumerate(images) if text == img]
    if not matches:
        matches = [i for i, img in enumerate(images) if Path(text).name == Path(img).name]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise BadRow(f"winner {text!r} names {len(matches)} of the row's images")
    raise BadRow(
        f"winner {text!r} is none of: a letter (a, b, ...), an index 0..{n - 1}, an image column, one of "
        "the row's images, or 'tie'"
    )


class _Images:
    """Brings a row's image files into the dataset (copy or link) under ``images/``.

    A row's images are only checked while the row is read (``place`` returns where each will
    go); they are copied once the whole table has been read and its row kept (``commit_row``,
    then ``copy_kept``), so a failed import copies nothing and a skipping one copies only the
    kept rows' images.
    """

    def __init__(self, root: Path, placer: ImagePlacer):
        self.root = root
        self.placer = placer
        self.created: list[Path] = []  # removed again if the import fails
        self._row: list[tuple[Path, str]] = []  # (source, target) of the row being read
        self._kept: dict[str, Path] = {}  # target -> source, of the rows kept

    def place(self, entry: Any) -> str:
        """Check one image cell; returns the record's entry (``images/...`` or a URL)."""
        if _blank(entry):
            raise BadRow("an image cell is empty")
        text = str(entry).strip()
        if "://" in text:
            return text  # a URL: `prefalign data fetch-images` downloads it
        source = Path(text).expanduser()
        if not source.is_absolute():
            source = self.root / source
        if not source.is_file():
            raise BadRow(f"image {text!r} not found (looked at {source})")
        rel = Path(text)
        if rel.is_absolute() or ".." in rel.parts:  # keep names apart without re-creating outside trees
            digest = hashlib.sha256(str(source.resolve().parent).encode()).hexdigest()[:10]
            rel = Path("external") / digest / source.name
        target = (Path("images") / rel).as_posix()
        self._row.append((source, target))
        return target

    def start_row(self) -> None:
        """Forget the images of a row that was not kept."""
        self._row = []

    def commit_row(self) -> None:
        """Keep the images of the row just read (copied by ``copy_kept``)."""
        for source, target in self._row:
            self._kept.setdefault(target, source)
        self._row = []

    def copy_kept(self) -> None:
        """Copy (or link) the kept rows' images into the dataset."""
        for target, source in self._kept.items():
            if not (self.placer.out / target).exists():
                self.created.append(self.placer.out / target)
            self.placer.place(source, target)

    def remove_created(self) -> None:
        """Remove the images this import copied, and the folders left empty under ``images/``."""
        for file in self.created:
            file.unlink(missing_ok=True)
        images = self.placer.out / "images"
        for parent in sorted(
            {p for f in self.created for p in f.parents if images in (p, *p.parents)}, reverse=True
        ):
            with contextlib.suppress(OSError):  # not empty: another import's images are there
                parent.rmdir()


def _record(row: dict[str, Any], columns: Columns, images_of: _Images, source: str, row_id: str) -> Record:
    if "__bad__" in row:
        raise BadRow(row["__bad__"])
    prompt = row.get(columns.prompt)
    if _blank(prompt):
        raise BadRow(f"empty prompt ({columns.prompt})")
    if columns.images_list:
        entries = _as_list(row.get(columns.images_list), columns.images_list)
    else:
        entries = [row.get(c) for c in columns.images]
        # Rows with fewer images than columns (a table of pairs and triples) leave the rest blank.
        while entries and _blank(entries[-1]) and len(entries) > 1:
            entries.pop()
    if not entries:
        raise BadRow("no images")
    images = [images_of.place(e) for e in entries]
    rec = Record(prompt=str(prompt).strip(), images=images, id=row_id, source=source)
    said = False
    if columns.chosen and not _blank(row.get(columns.chosen)):
        if len(images) < 2:
            raise BadRow(f"a winner ({columns.chosen}) needs two or more images, the row has {len(images)}")
        index = _chosen_index(row[columns.chosen], [str(e).strip() for e in entries], columns)
        if index is None:
            rec.ranks = [0] * len(images)
        else:
            rec.chosen = index
        said = True
    if columns.ranks and not _blank(row.get(columns.ranks)):
        try:
            ranks = [int(r) for r in _as_list(row[columns.ranks], columns.ranks)]
        except (TypeError, ValueError):
            raise BadRow(f"ranks {row[columns.ranks]!r} are not whole numbers") from None
        if len(ranks) != len(images):
            raise BadRow(f"{len(ranks)} ranks for {len(images)} images")
        if rec.ranks is not None or rec.chosen is not None:
            raise BadRow(f"both a winner ({columns.chosen}) and ranks ({columns.ranks}) given")
        rec.ranks = ranks
        said = True
    if columns.rating and not _blank(row.get(columns.rating)):
        raw = row[columns.rating]
        values = _as_list(raw, columns.rating) if len(images) > 1 else [raw]
        try:
            ratings = [float(v) for v in values]
        except (TypeError, ValueError):
            raise BadRow(f"rating {raw!r} is not a number") from None
        if len(ratings) != len(images):
            raise BadRow(f"{len(ratings)} ratings for {len(images)} images")
        rec.ratings = ratings
        said = True
    if not said:
        wanted = [c for c in (columns.chosen, columns.ranks, columns.rating) if c]
        raise BadRow(f"no label: {' / '.join(wanted)} empty" if wanted else "no label")
    if columns.user and not _blank(row.get(columns.user)):
        rec.user = str(row[columns.user]).strip()
    if columns.split and not _blank(row.get(columns.split)):
        value = str(row[columns.split]).strip().lower()
        if value not in _SPLITS:
            raise BadRow(f"split {row[columns.split]!r} is not train, validation or test")
        rec.split = _SPLITS[value]
    return rec


def import_table(
    path: str | Path,
    out: str | Path,
    *,
    link: bool = False,
    skip_bad_rows: bool = False,
    overwrite: bool = False,
    **column_flags: Any,
) -> tuple[ImportReport, list[str]]:
    """Read a CSV/TSV/JSONL/Parquet table of choices or ratings and write a prefalign dataset.

    Args:
        path: the table; image paths in it are relative to its folder, absolute, or URLs.
        out: the dataset directory to write (records.parquet and ``images/``).
        link: hard-link the images (a copy where links are impossible) instead of copying them.
        skip_bad_rows: write the good rows and report the bad ones, instead of writing nothing.
        overwrite: replace a dataset already in ``out`` (refused otherwise).
        **column_flags: ``prompt_col``, ``image_cols``, ``images_col``, ``chosen_col``, ``ranks_col``,
            ``rating_col``, ``user_col``, ``split_col`` (see :func:`resolve_columns`).

    Returns:
        The report (records, images, skipped rows by reason) and one line per bad row,
        ``"line N: reason"``.

    Raises:
        DatasetError: the table cannot be read, a named column is absent, or some rows are bad
            and ``skip_bad_rows`` is false (every bad row is named; nothing is written), or ``out``
            already holds a dataset and ``overwrite`` is false.
    """
    from prefalign.data.dataset import RECORDS_FILE

    path, out = Path(path), Path(out)
    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    if (out / RECORDS_FILE).exists() and not overwrite:
        raise DatasetError(f"{out}: already holds a dataset; pass --overwrite to replace it")
    names, rows = _rows(path)
    columns = resolve_columns(names, path, **column_flags)
    report = ImportReport()
    placer = ImagePlacer(out, "link" if link else "copy", report)
    images_of = _Images(path.parent, placer)
    bad: list[str] = []
    out_existed = out.exists()
    try:
        _write(rows, columns, images_of, out, path, report, bad, skip_bad_rows)
    except BaseException:
        images_of.remove_created()
        if not out_existed:  # nothing is left of a failed import, not even its folder
            with contextlib.suppress(OSError):
                out.rmdir()
        raise
    return report, bad


def _write(
    rows: Iterator[tuple[int, dict[str, Any]]],
    columns: Columns,
    images_of: _Images,
    out: Path,
    path: Path,
    report: ImportReport,
    bad: list[str],
    skip_bad_rows: bool,
) -> None:
    where = "row" if path.suffix.lower() == ".parquet" else "line"
    with DatasetWriter(out, check_images="off") as writer:  # every image was checked above
        for lineno, row in rows:
            images_of.start_row()
            try:
                rec = _record(row, columns, images_of, f"table:{path.name}", f"{path.stem}:{lineno}")
            except BadRow as exc:
                bad.append(f"{where} {lineno}: {exc}")
                report.skip("bad row")
                continue
            images_of.commit_row()
            writer.write(rec)
            report.records += 1
        if bad and not skip_bad_rows:
            listed = "\n".join(f"  {path}: {b}" for b in bad[:MAX_LISTED])
            more = f"\n  ... and {len(bad) - MAX_LISTED:,} more" if len(bad) > MAX_LISTED else ""
            raise DatasetError(
                f"{path}: {len(bad):,} bad row(s) of {len(bad) + report.records:,}; nothing written. Fix them, "
                f"or pass --skip-bad-rows to import the other rows:\n{listed}{more}"
            )
        if report.records == 0:
            raise DatasetError(f"{path}: no rows to import")
        images_of.copy_kept()  # only now: every row was read, and only kept rows' images are copied
