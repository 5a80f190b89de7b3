"""Importers of the public preference sets, and exporters back to their layouts.

``import_dataset("hpd-v1", "HPD/", "out")`` reads a set in its original layout and writes a
prefalign dataset; ``export_dataset("hpd-v1", "out", "HPD-again/")`` writes it back.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from prefalign.data.dataset import DatasetError, DatasetWriter, load_dataset
from prefalign.data.importers.common import IMAGE_MODES, ImagePlacer, ImportReport

# format name -> module with read(src, placer) (and write(dataset, out) for exporters)
IMPORT_FORMATS = {
    "hpd-v1": "prefalign.data.importers.hpd_v1",
    "hpd-v2": "prefalign.data.importers.hpd_v2",
    "pickapic": "prefalign.data.importers.pickapic",
    "imagereward": "prefalign.data.importers.imagereward",
    "diffusiondb": "prefalign.data.importers.diffusiondb",
}
EXPORT_FORMATS = {"hpd-v1": "prefalign.data.importers.hpd_v1"}

__all__ = [
    "EXPORT_FORMATS",
    "IMAGE_MODES",
    "IMPORT_FORMATS",
    "ImportReport",
    "export_dataset",
    "import_dataset",
]


def import_dataset(
    fmt: str,
    src: str | Path,
    out: str | Path,
    *,
    images: str = "link",
    keep_unlabeled: bool = False,
    keep_identical: bool = False,
) -> ImportReport:
    """Read a public set in its original layout and write it as a prefalign dataset.

    Args:
        fmt: one of :data:`IMPORT_FORMATS`.
        src: the set's directory (or one of its files).
        out: the dataset directory to write (atomically: an error leaves no half dataset).
        images: how images get into ``out``: ``link`` (hard link, else copy), ``copy``,
            ``symlink``, or ``reference`` (records keep absolute paths to ``src``).
        keep_unlabeled: pickapic only: keep ``has_label = False`` rows as unlabelled records.
        keep_identical: pickapic only: keep ``are_different = False`` rows.

    Raises:
        DatasetError: unknown format, or input not in that format (naming the file and why).
    """
    if fmt not in IMPORT_FORMATS:
        raise DatasetError(f"unknown format {fmt!r}; expected one of {sorted(IMPORT_FORMATS)}")
    src, out = Path(src), Path(out)
    if not src.exists():
        raise DatasetError(f"{src}: no such file or directory")
    options = {"keep_unlabeled": keep_unlabeled, "keep_identical": keep_identical}
    if fmt != "pickapic" and any(options.values()):
        given = ", ".join(k for k, v in options.items() if v)
        raise DatasetError(f"{given}: only the pickapic format has such rows; {fmt} has no such option")
    module = importlib.import_module(IMPORT_FORMATS[fmt])
    report = ImportReport()
    placer = ImagePlacer(out, images, report)
    kwargs = options if fmt == "pickapic" else {}
    with DatasetWriter(out, check_images="off") as writer:  # the placer counts missing images
        for record in module.read(src, placer, **kwargs):
            writer.write(record)
            report.records += 1
    return report


def export_dataset(fmt: str, dataset: str | Path, out: str | Path) -> dict[str, int]:
    """Write a prefalign dataset in a public set's layout; returns counts of what was written."""
    if fmt not in EXPORT_FORMATS:
        raise DatasetError(f"cannot export to {fmt!r}; export formats: {sorted(EXPORT_FORMATS)}")
    module = importlib.import_module(EXPORT_FORMATS[fmt])
    return module.write(load_dataset(dataset), Path(out))
