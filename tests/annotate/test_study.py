"""Study directories: what create-study accepts and refuses, and copying a dataset in."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import func, select

from prefalign.annotate import Store, StudyConfig, copy_dataset, create_study, read_study_config
from prefalign.annotate.errors import StudyError
from prefalign.annotate.models import Study, Task
from prefalign.data.dataset import Record, load_dataset, save_dataset

from .conftest import write_dataset


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "annotations.db")
    yield store
    store.close()


def n_studies(store) -> int:
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(Study))


def test_rating_study_has_one_task_per_image(tmp_path, store):
    study_dir = write_dataset(tmp_path / "s", n_records=2, n_images=3)
    study = create_study(store, study_dir, StudyConfig("s", "rating", 2))
    with store.transaction() as session:
        tasks = session.scalars(select(Task).where(Task.study_id == study.id).order_by(Task.id)).all()
        assert [t.key for t in tasks] == ["r0#0", "r0#1", "r0#2", "r1#0", "r1#1", "r1#2"]
        assert tasks[4].images == ["images/r1_1.png"] and tasks[4].image_index == 1
    config = read_study_config(study_dir)
    assert (config.name, config.kind, config.annotators_per_task) == ("s", "rating", 2)
    assert "good" in config.question


@pytest.mark.parametrize(
    ("kind", "n_images", "message"),
    [("pair", 3, "exactly 2 images"), ("choice", 10, "2 to 9 images"), ("choice", 1, "2 to 9 images")],
)
def test_records_that_do_not_fit_the_kind_are_refused(tmp_path, store, kind, n_images, message):
    study_dir = write_dataset(tmp_path / "s", n_records=2, n_images=n_images)
    with pytest.raises(StudyError, match=message):
        create_study(store, study_dir, StudyConfig("s", kind))
    assert n_studies(store) == 0 and not (study_dir / "study.json").exists()


@pytest.mark.parametrize(
    ("image", "message"),
    [
        ("../outside.png", "not a relative path"),
        ("/etc/outside.png", "not a relative path"),
        ("images/link.png", "leads outside"),
        ("images/missing.png", "no such image"),
        ("https://example.com/a.png", "not a relative path"),
        ("records.parquet", "not an image file"),
    ],
)
def test_images_outside_the_study_or_missing_are_refused(tmp_path, store, image, message):
    study_dir = write_dataset(tmp_path / "s", n_records=1, n_images=2)
    (tmp_path / "outside.png").write_bytes(b"x")
    os.symlink(tmp_path / "outside.png", study_dir / "images" / "link.png")
    save_dataset([Record(id="bad", prompt="p", images=["images/r0_0.png", image])], study_dir)
    with pytest.raises(StudyError, match=message):
        create_study(store, study_dir, StudyConfig("s", "pair"))
    assert n_studies(store) == 0


def test_a_taken_name_or_directory_is_refused_and_nothing_is_lost(tmp_path, store):
    first = write_dataset(tmp_path / "a", 2, 2)
    create_study(store, first, StudyConfig("same", "pair"))
    second = write_dataset(tmp_path / "b", 2, 2)
    with pytest.raises(StudyError, match="already exists"):
        create_study(store, second, StudyConfig("same", "pair"))
    assert not (second / "study.json").exists()
    with pytest.raises(StudyError, match="already the directory of study 'same'"):
        create_study(store, first, StudyConfig("other", "pair"))
    assert n_studies(store) == 1


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "ranking"}, "unknown task kind"),
        ({"annotators_per_task": 0}, "positive"),
        ({"name": " "}, "name"),
    ],
)
def test_bad_study_settings_are_refused(fields, message):
    settings = {"name": "s", "kind": "pair", "annotators_per_task": 1, **fields}
    with pytest.raises(StudyError, match=message):
        StudyConfig(**settings)


def test_duplicate_record_ids_and_empty_datasets_are_refused(tmp_path, store):
    study_dir = tmp_path / "dup"
    write_dataset(study_dir, 1, 2)
    record = Record(id="same", prompt="p", images=["images/r0_0.png", "images/r0_1.png"])
    save_dataset([record, record], study_dir)
    with pytest.raises(StudyError, match="duplicate record id"):
        create_study(store, study_dir, StudyConfig("dup", "pair"))
    save_dataset([], study_dir)
    with pytest.raises(StudyError, match="no records"):
        create_study(store, study_dir, StudyConfig("dup", "pair"))
    with pytest.raises(StudyError, match="not a prefalign dataset"):
        create_study(store, tmp_path / "nothing", StudyConfig("x", "pair"))


def test_copy_dataset_brings_records_and_only_their_images(tmp_path):
    source = write_dataset(tmp_path / "generated", 2, 2)
    (source / "images" / "unused.png").write_bytes(b"x")
    study_dir = copy_dataset(source, tmp_path / "study")
    copied = load_dataset(study_dir)
    assert [r.id for r in copied] == ["r0", "r1"]
    assert sorted(p.name for p in (study_dir / "images").iterdir()) == [
        "r0_0.png",
        "r0_1.png",
        "r1_0.png",
        "r1_1.png",
    ]
    with pytest.raises(StudyError, match="already holds a dataset"):
        copy_dataset(source, study_dir)
