"""Writing a study's votes as a prefalign dataset.

One record per vote, with ``user`` set to the annotator's name, so that every vote is a
training example as it stands (the HPS and Pick-a-Pic data also hold one row per person's
choice) and ``eval agreement`` finds each participant's votes by ``user`` and each item's
votes by ``meta["item"]``:

* ``choice`` and ``pair`` studies: ``images`` in the dataset's order (not the shown order),
  ``chosen`` = index of the preferred image in ``images``. For a base-vs-adapted pair study,
  ``images[0]`` stays the base image whatever side it was shown on.
* ``rating`` studies: ``images`` = the one rated image, ``ratings`` = ``[1.0]`` (good) or
  ``[0.0]`` (bad). Skips are not exported (they carry no label); the admin page counts them.

``id`` is ``<study>/<item>/<annotator>``; ``source`` is ``annotate:<study>``; ``split`` is the
split of the study's record; ``meta`` holds ``study``, ``kind``, ``item`` (the task key: the
record id, plus ``#i`` for the i-th image of a rating record), ``record`` (the record id),
``shown_order`` (``shown_order[p]`` = index in ``images`` of the image shown at position p,
left to right), ``shown_position`` (the position clicked) and ``voted_at`` (ISO 8601, UTC).
The images are copied (hard-linked where possible) into the output directory under their
relative paths, so the export is a self-contained dataset.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from sqlalchemy import select

from prefalign.annotate.errors import NotFound, StudyError
from prefalign.annotate.models import Annotator, Study, Task, Vote, as_utc
from prefalign.annotate.paths import resolve_inside
from prefalign.annotate.storage import Store

log = logging.getLogger(__name__)
# The temporary files of prefalign.data.dataset.DatasetWriter (then renamed to records.parquet).
STALE_TEMPORARY = ".records-*.parquet.tmp"


def remove_stale_temporary(out: Path) -> int:
    """Remove temporary files an interrupted export left in ``out``; returns how many."""
    stale = [path for path in out.glob(STALE_TEMPORARY) if path.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    if stale:
        log.warning("%s: removed %d temporary file(s) left by an interrupted export", out, len(stale))
    return len(stale)


def export_records(store: Store, study: Study) -> list:
    """The study's votes as :class:`prefalign.data.dataset.Record` objects, oldest vote first."""
    from prefalign.data.dataset import Record

    records = []
    with store.transaction() as session:
        rows = session.execute(
            select(Vote, Task, Annotator.name)
            .join(Task, Task.id == Vote.task_id)
            .join(Annotator, Annotator.id == Vote.annotator_id)
            .where(Task.study_id == study.id, Vote.skipped.is_(False))
            .order_by(Vote.id)
        ).all()
        for vote, task, annotator in rows:
            meta = {
                "study": study.name,
                "kind": study.kind,
                "item": task.key,
                "record": task.record_id,
                "shown_order": list(vote.shown_order),
                "shown_position": vote.shown_position,
                "voted_at": as_utc(vote.created_at).isoformat(),
            }
            records.append(
                Record(
                    id=f"{study.name}/{task.key}/{annotator}",
                    prompt=task.prompt,
                    images=list(task.images),
                    chosen=vote.choice,
                    ratings=None if vote.rating is None else [vote.rating],
                    user=annotator,
                    source=f"annotate:{study.name}",
                    split=task.split,
                    meta=meta,
                )
            )
    return records


def _copy_images(records: list, study_dir: Path, out: Path) -> None:
    for image in sorted({image for record in records for image in record.images}):
        try:
            src = resolve_inside(study_dir, image)
        except NotFound as exc:
            raise StudyError(f"{study_dir}: cannot export image: {exc}") from None
        dst = out / image
        if dst.exists() and dst.stat().st_size == src.stat().st_size:
            continue
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)


def export_study(store: Store, study: Study, study_dir: str | Path, out: str | Path) -> tuple[Path, int]:
    """Write the study's votes to ``out`` as a dataset (records.parquet plus the images).

    Args:
        store: The annotation database.
        study: The study to export.
        study_dir: The study directory the images are copied from.
        out: The output directory (created; an existing records.parquet is replaced atomically;
            temporary files an interrupted export left there are removed, with a warning).

    Returns:
        The output directory and the number of records written.

    Raises:
        StudyError: if ``out`` is the study directory itself (the study's records would be
            replaced by votes).
    """
    from prefalign.data.dataset import save_dataset

    study_dir, out = Path(study_dir), Path(out)
    if out.resolve() == study_dir.resolve():
        raise StudyError(f"{out}: is the study directory; export to another directory")
    records = export_records(store, study)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temporary(out)
    _copy_images(records, study_dir, out)
    save_dataset(records, out)
    return out, len(records)
