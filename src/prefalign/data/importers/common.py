"""What every importer shares: where images go, and how they get there."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from prefalign.data.dataset import DatasetError
from prefalign.files import write_atomic

IMAGE_MODES = ("link", "copy", "symlink", "reference")


@dataclass
class ImportReport:
    """What an import read and wrote."""

    records: int = 0
    images: int = 0
    missing_images: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1


class ImagePlacer:
    """Puts source images into a dataset directory and returns the path records should hold.

    Modes: ``link`` (hard link, or a copy across file systems: no extra disk, a self-contained
    dataset), ``copy``, ``symlink``, or ``reference`` (records hold the absolute source path;
    nothing is written).
    """

    def __init__(self, out: Path, mode: str, report: ImportReport):
        if mode not in IMAGE_MODES:
            raise DatasetError(f"unknown image mode {mode!r}; expected one of {IMAGE_MODES}")
        self.out = out
        self.mode = mode
        self.report = report

    def place(self, source: Path, rel: str) -> str:
        """Bring ``source`` to ``out/rel`` (as the mode says); returns the record's image entry."""
        self.report.images += 1
        if not source.is_file():
            self.report.missing_images.append(str(source))
            return str(source.resolve()) if self.mode == "reference" else rel
        if self.mode == "reference":
            return str(source.resolve())
        target = self.out / rel
        if target.exists():
            return rel
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        tmp.unlink(missing_ok=True)
        if self.mode == "symlink":
            tmp.symlink_to(source.resolve())
        elif self.mode == "link":
            try:
                os.link(source, tmp)
            except OSError:  # another file system, or links not allowed: copy instead
                shutil.copyfile(source, tmp)
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
        return rel

    def write_bytes(self, data: bytes, rel: str) -> str:
        """Write image bytes (formats that embed images) to ``out/rel``, atomically."""
        self.report.images += 1
        target = self.out / rel
        if not target.exists():
            write_atomic(target, data, suffix=".part")
        return rel


def first_existing(candidates: list[Path]) -> Path:
    """The first candidate that is a file, else the first candidate (reported missing later)."""
    for c in candidates:
        if c.is_file():
            return c
    return candidates[0]


def split_from_name(path: Path) -> str | None:
    """train / validation / test from a file name such as ``preference_test.json``."""
    name = path.stem.lower()
    for split, words in (
        ("train", ("train",)),
        ("validation", ("validation", "valid", "val")),
        ("test", ("test",)),
    ):
        if any(w in name.replace("-", "_").split("_") or name.startswith(w) for w in words):
            return split
    return None


def read_json(path: Path):
    """A JSON file, with a clear error naming it if it is not one."""
    import json

    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise DatasetError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None


def expect_list_of_dicts(data, path: Path, keys: tuple[str, ...], fmt: str) -> list[dict]:
    """Check the top level of an importer's JSON, naming the file and what is wrong."""
    if not isinstance(data, list):
        raise DatasetError(f"{path}: expected a JSON list of {fmt} items, found {type(data).__name__}")
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise DatasetError(f"{path}: item {i} is {type(item).__name__}, not an object")
        missing = [k for k in keys if k not in item]
        if missing:
            raise DatasetError(f"{path}: item {i} lacks {missing}: not the {fmt} format")
    return data
