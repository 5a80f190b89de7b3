"""The study directory and creating a study from it.

A study directory is a prefalign dataset directory (``records.parquet`` and the images it
references by relative path, all inside the directory) plus ``study.json``, written by
``create_study``::

    my-study/
      records.parquet          the prompts and images to judge (any labels in it are ignored)
      images/...               every image a record names, inside the directory
      study.json               {"name", "kind", "annotators_per_task", "question", "base_url", "sides"}
      annotations.db           the default SQLite database (another --db may be used)

Task kinds, and what each record must hold:

* ``choice`` — n-way choice: a prompt and 2 to 9 images (keys 1-9), click the preferred one.
* ``pair`` — A/B comparison: exactly 2 images, shown in random left/right order.
* ``rating`` — good/bad rating of single images with an optional skip: one task per image.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from sqlalchemy import func, select

from prefalign.annotate.errors import NotFound, StudyError
from prefalign.annotate.models import KINDS, SHUFFLE_RANGE, Study, Task
from prefalign.annotate.paths import resolve_inside
from prefalign.annotate.storage import DEFAULT_DB_FILE, Store
from prefalign.files import write_json_atomic

STUDY_FILE = "study.json"
_shuffle = random.Random()
# Keys 1-9 pick an image, so a choice shows at most nine.
MAX_CHOICE_IMAGES = 9

DEFAULT_QUESTIONS = {
    "choice": "Read the prompt, then click the image you prefer.",
    "pair": "Read the prompt, then click the image you prefer.",
    "rating": "Read the prompt. Is this a good image for it?",
}


@dataclass(frozen=True)
class StudyConfig:
    """What ``study.json`` holds: the study's name in the database and how it runs."""

    name: str
    kind: str
    annotators_per_task: int = 1
    question: str = ""
    # The address people reach the server at, given once to create-study: the printed invite
    # links and serve's origin check use it unless a command is given another --base-url.
    base_url: str = ""
    # A/B studies made from two sets (create-study --a/--b): {"a": DIR_A, "b": DIR_B,
    # "matched_by": ...}. Server side only: the app never shows it.
    sides: dict | None = None

    def __post_init__(self) -> None:
        if not self.name or not self.name.strip():
            raise StudyError("a study needs a non-empty name")
        if self.kind not in KINDS:
            raise StudyError(f"unknown task kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if not isinstance(self.annotators_per_task, int) or self.annotators_per_task < 1:
            raise StudyError(
                f"annotators per task must be a positive integer, not {self.annotators_per_task!r}"
            )


def default_db(study_dir: str | Path) -> Path:
    """The SQLite file used when no ``--db`` is given: ``annotations.db`` in the study directory."""
    return Path(study_dir) / DEFAULT_DB_FILE


def read_study_config(study_dir: str | Path) -> StudyConfig:
    """Read ``study.json`` of a study directory.

    Raises:
        StudyError: if the file is missing or malformed.
    """
    file = Path(study_dir) / STUDY_FILE
    if not file.is_file():
        raise StudyError(
            f"{file}: not a study directory (no {STUDY_FILE}; run `prefalign annotate create-study`)"
        )
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        return StudyConfig(**data)
    except (json.JSONDecodeError, TypeError) as exc:
        raise StudyError(f"{file}: malformed study file ({exc})") from None


def _write_study_config(study_dir: Path, config: StudyConfig) -> None:
    write_json_atomic(study_dir / STUDY_FILE, asdict(config), indent=2)


def _task_rows(study_dir: Path, kind: str) -> list[dict]:
    """Validate the dataset in ``study_dir`` for ``kind`` and return one dict per task."""
    from prefalign.data.dataset import DatasetError, load_dataset

    try:
        dataset = load_dataset(study_dir)
    except DatasetError as exc:
        raise StudyError(str(exc)) from None
    if len(dataset) == 0:
        raise StudyError(f"{study_dir}: the dataset has no records")
    rows: list[dict] = []
    seen_ids: set[str] = set()
    for position, record in enumerate(dataset):
        record_id = record.id or str(position)
        where = f"{study_dir}: record {record_id!r}"
        if record_id in seen_ids:
            raise StudyError(f"{where}: duplicate record id")
        seen_ids.add(record_id)
        n = len(record.images)
        if kind == "pair" and n != 2:
            raise StudyError(f"{where}: a pair study needs exactly 2 images per record, found {n}")
        if kind == "choice" and not 2 <= n <= MAX_CHOICE_IMAGES:
            raise StudyError(f"{where}: a choice study needs 2 to {MAX_CHOICE_IMAGES} images, found {n}")
        if kind == "rating" and n < 1:
            raise StudyError(f"{where}: no images")
        for image in record.images:
            try:
                resolve_inside(study_dir, image)
            except NotFound as exc:
                raise StudyError(f"{where}: {exc}") from None
        common = {"record_id": record_id, "prompt": record.prompt, "split": record.split}
        if kind == "rating":
            for i, image in enumerate(record.images):
                rows.append({**common, "key": f"{record_id}#{i}", "images": [image], "image_index": i})
        else:
            rows.append({**common, "key": record_id, "images": list(record.images), "image_index": None})
    return rows


def check_records(dataset_dir: str | Path, kind: str) -> int:
    """Check that a dataset directory can make a study of ``kind``; returns the number of tasks.

    Raises:
        StudyError: naming the first record that does not fit, or an image outside the directory.
    """
    return len(_task_rows(Path(dataset_dir), kind))


def copy_dataset(source: str | Path, study_dir: str | Path) -> Path:
    """Copy a dataset (records and the images they reference) into a new study directory.

    Images keep their relative paths; they are hard-linked when the file system allows it.

    Raises:
        StudyError: if ``study_dir`` already holds records, or a source image is not a file
            inside ``source``.
    """
    from prefalign.data.dataset import DatasetError, load_dataset, save_dataset

    source, study_dir = Path(source), Path(study_dir)
    if (study_dir / "records.parquet").exists():
        raise StudyError(f"{study_dir}: already holds a dataset; give --from only for a new directory")
    try:
        dataset = load_dataset(source)
    except DatasetError as exc:
        raise StudyError(str(exc)) from None
    study_dir.mkdir(parents=True, exist_ok=True)
    for record in dataset:
        for image in record.images:
            try:
                src = resolve_inside(dataset.root, image)
            except NotFound as exc:
                raise StudyError(f"{dataset.root}: record {record.id!r}: {exc}") from None
            dst = study_dir / image
            if dst.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
    save_dataset(dataset.records, study_dir)
    return study_dir


def _same_setup(a: StudyConfig, b: StudyConfig) -> bool:
    return (a.name, a.kind, a.annotators_per_task) == (b.name, b.kind, b.annotators_per_task) and (
        not b.question or a.question == b.question
    )


def create_study(store: Store, study_dir: str | Path, config: StudyConfig) -> Study:
    """Register the study in ``study_dir`` in the database, one task per record (or image).

    Everything is validated before anything is written: the records fit the kind, every image
    exists inside the directory, and no study of that name exists yet. Then ``study.json`` is
    written (atomically) and the tasks are inserted in one transaction; if that transaction
    fails, ``study.json`` is removed again.

    A run killed between the two steps leaves ``study.json`` without its tasks; running
    ``create_study`` again with the same name, kind and annotators per task finishes it. (The
    opposite state, tasks without ``study.json``, left by versions that wrote the database
    first, is finished the same way.)

    Args:
        store: The annotation database.
        study_dir: A prefalign dataset directory without ``study.json``.
        config: Name, kind, annotators per task and question.

    Returns:
        The new study row.

    Raises:
        StudyError: on any problem, naming the file or record.
    """
    study_dir = Path(study_dir)
    config_file = study_dir / STUDY_FILE
    with store.transaction() as session:
        registered = session.scalar(select(Study).where(Study.name == config.name))
    resuming = False
    if config_file.exists():
        existing = read_study_config(study_dir)
        if registered is not None or not _same_setup(existing, config):
            raise StudyError(f"{study_dir}: already the directory of study {existing.name!r}")
        # study.json without its tasks: a create-study that was interrupted; finish it.
        config, resuming = existing, True
    rows = _task_rows(study_dir, config.kind)
    question = config.question or DEFAULT_QUESTIONS[config.kind]
    config = replace(config, question=question)
    if registered is not None:
        same_place = Path(registered.root) == study_dir.resolve()
        setup = replace(
            config,
            name=registered.name,
            kind=registered.kind,
            annotators_per_task=registered.annotators_per_task,
            question=registered.question,
        )
        if same_place and _same_setup(setup, config):
            _write_study_config(study_dir, setup)  # tasks without study.json: finish it
            return registered
        raise StudyError(f"a study named {config.name!r} already exists in this database")
    if not resuming:
        _write_study_config(study_dir, config)
    try:
        with store.transaction() as session:
            if session.scalar(select(Study.id).where(Study.name == config.name)) is not None:
                raise StudyError(f"a study named {config.name!r} already exists in this database")
            study = Study(
                name=config.name,
                kind=config.kind,
                annotators_per_task=config.annotators_per_task,
                question=question,
                root=str(study_dir.resolve()),
            )
            session.add(study)
            session.flush()
            session.add_all(
                Task(
                    study_id=study.id,
                    done_votes=0,
                    slots_used=0,
                    shuffle_key=_shuffle.randrange(SHUFFLE_RANGE),
                    **row,
                )
                for row in rows
            )
    except Exception:
        if not resuming:
            config_file.unlink(missing_ok=True)
        raise
    return study


def task_count(store: Store, study: Study) -> int:
    """How many tasks ``study`` has."""
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(Task).where(Task.study_id == study.id)) or 0


def find_study(store: Store, name: str) -> Study:
    """The study called ``name``.

    Raises:
        StudyError: if the database has no such study (listing the ones it has).
    """
    with store.transaction() as session:
        study = session.scalar(select(Study).where(Study.name == name))
        if study is None:
            names = session.scalars(select(Study.name).order_by(Study.name)).all()
            known = ", ".join(repr(n) for n in names) or "none"
            raise StudyError(
                f"no study named {name!r} in this database (studies: {known}); if create-study was "
                "interrupted, run it again with the same options to finish it"
            )
        return study


def locate_study(store: Store, study: str | Path) -> tuple[Study, Path]:
    """A study given by its directory or by its name, and the directory its images are in."""
    path = Path(study)
    if (path / STUDY_FILE).is_file():
        return find_study(store, read_study_config(path).name), path
    row = find_study(store, str(study))
    return row, Path(row.root)
