"""Fixtures of the annotation tests: small studies built in code, a store, clients, tokens."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from prefalign.data.dataset import Record, save_dataset

pytest.importorskip("fastapi")
pytest.importorskip("sqlalchemy")


def write_dataset(root: Path, n_records: int, n_images: int, *, prefix: str = "r") -> Path:
    """A dataset of ``n_records`` prompts, each with ``n_images`` distinct small PNGs."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n_records):
        images = []
        for j in range(n_images):
            name = f"images/{prefix}{i}_{j}.png"
            Image.new("RGB", (32, 32), ((40 * i) % 256, (90 * j) % 256, 128)).save(root / name)
            images.append(name)
        records.append(Record(id=f"{prefix}{i}", prompt=f"prompt number {i}", images=images, split="test"))
    save_dataset(records, root)
    return root


@pytest.fixture
def make_study(tmp_path) -> Callable:
    """Build a study directory and register it; returns ``(store, study, study_dir)``."""
    from prefalign.annotate import Store, StudyConfig, create_study

    stores = []

    def build(kind="pair", n_records=4, n_images=2, per_task=1, name=None, db=None):
        study_dir = write_dataset(tmp_path / (name or f"study-{kind}"), n_records, n_images)
        store = Store.open(db or tmp_path / "annotations.db")
        stores.append(store)
        study = create_study(store, study_dir, StudyConfig(name or f"study-{kind}", kind, per_task))
        return store, study, study_dir

    yield build
    for store in stores:
        store.close()


@pytest.fixture
def served(make_study):
    """A study with a test client; ``served(kind=..., ...)`` returns an object with helpers."""
    from fastapi.testclient import TestClient

    from prefalign.annotate import add_annotator, create_app

    class Served:
        def __init__(self, store, study, study_dir, **app_options):
            self.store, self.study, self.study_dir = store, study, study_dir
            self.app = create_app(store, study_dir, **app_options)
            self.client = TestClient(self.app)

        def token(self, name: str, role: str = "annotator") -> str:
            return add_annotator(self.store, self.study, name, role=role)

        def headers(self, token: str) -> dict[str, str]:
            return {"Authorization": f"Bearer {token}"}

        def next_task(self, token: str) -> dict:
            response = self.client.get("/api/task", headers=self.headers(token))
            assert response.status_code == 200, response.text
            return response.json()

        def vote(self, token: str, task: object, answer: object):
            body = {"task": task, "answer": answer}
            return self.client.post("/api/vote", json=body, headers=self.headers(token))

    def build(kind="pair", n_records=4, n_images=2, per_task=1, **app_options):
        store, study, study_dir = make_study(kind, n_records, n_images, per_task)
        return Served(store, study, study_dir, **app_options)

    return build
