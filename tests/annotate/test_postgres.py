"""The same app on PostgreSQL, when a scratch database is given.

Set PREFALIGN_TEST_POSTGRES_URL=postgresql+psycopg://user:password@127.0.0.1/scratch to run;
the tests drop every table of that database first. Skipped otherwise.
"""

from __future__ import annotations

import os
import threading

import pytest

URL = os.environ.get("PREFALIGN_TEST_POSTGRES_URL")
pytestmark = pytest.mark.skipif(
    not URL, reason="set PREFALIGN_TEST_POSTGRES_URL=postgresql+psycopg://... (a scratch database) to run"
)


@pytest.fixture
def pg_served(tmp_path):
    pytest.importorskip("psycopg")
    from fastapi.testclient import TestClient
    from sqlalchemy import MetaData

    from prefalign.annotate import Store, StudyConfig, add_annotator, create_app, create_study
    from prefalign.annotate.storage import make_engine

    from .conftest import write_dataset

    engine = make_engine(URL)
    scratch = MetaData()
    scratch.reflect(engine)
    scratch.drop_all(engine)
    engine.dispose()
    store = Store.open(URL)
    study_dir = write_dataset(tmp_path / "pg-study", n_records=10, n_images=2)
    study = create_study(store, study_dir, StudyConfig("pg", "pair", annotators_per_task=6))
    tokens = [add_annotator(store, study, f"a{i}") for i in range(6)]
    yield store, study, study_dir, create_app(store, study_dir), tokens, TestClient
    store.close()


def test_postgresql_threads_voting_at_once_lose_nothing_and_export(pg_served, tmp_path):
    from sqlalchemy import func, select

    from prefalign.annotate import export_study
    from prefalign.annotate.models import Task, Vote
    from prefalign.data.dataset import load_dataset

    store, study, study_dir, app, tokens, TestClient = pg_served
    acknowledged = []
    lock = threading.Lock()

    def work(token):
        client = TestClient(app)
        headers = {"Authorization": f"Bearer {token}"}
        while (task := client.get("/api/task", headers=headers).json()["task"]) is not None:
            for _ in range(2):
                response = client.post("/api/vote", json={"task": task["id"], "answer": "0"}, headers=headers)
                assert response.status_code == 200, response.text
                if response.json()["status"] == "recorded":
                    with lock:
                        acknowledged.append((token, task["id"]))

    threads = [threading.Thread(target=work, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(acknowledged) == len(set(acknowledged)) == 60
    with store.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Vote)) == 60
        assert set(session.scalars(select(Task.done_votes))) == {6}
    dataset = load_dataset(export_study(store, study, study_dir, tmp_path / "out")[0])
    assert len(dataset) == 60 and all(r.chosen == r.meta["shown_order"][0] for r in dataset)
