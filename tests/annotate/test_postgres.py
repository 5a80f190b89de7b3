"""The same voting suite on SQLite and on PostgreSQL: votes, idempotence, concurrency, export.

PostgreSQL runs when PREFALIGN_TEST_POSTGRES_URL names a scratch database
(postgresql+psycopg://user@/dbname?host=/socket/dir or ...@127.0.0.1/dbname); every table of
that database is dropped first. Without it those cases skip, unless PREFALIGN_REQUIRE_POSTGRES=1
(set by .ci/run, which starts a scratch cluster), where a skip is a failure.
"""

from __future__ import annotations

import os
import threading

import pytest

URL = os.environ.get("PREFALIGN_TEST_POSTGRES_URL")
REQUIRED = os.environ.get("PREFALIGN_REQUIRE_POSTGRES") == "1"


def _skip_or_fail(reason: str) -> None:
    if REQUIRED:
        pytest.fail(f"PREFALIGN_REQUIRE_POSTGRES=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_served(request, tmp_path):
    """A pair study of 10 tasks for 6 annotators on either database; yields a small harness."""
    from fastapi.testclient import TestClient

    from prefalign.annotate import Store, StudyConfig, add_annotator, create_app, create_study

    from .conftest import write_dataset

    if request.param == "postgresql":
        if not URL:
            _skip_or_fail("PREFALIGN_TEST_POSTGRES_URL is not set (a scratch PostgreSQL database)")
        try:
            import psycopg  # noqa: F401
        except ImportError:
            _skip_or_fail("psycopg is not installed (pip install 'psycopg[binary]')")
        from sqlalchemy import MetaData

        from prefalign.annotate.storage import make_engine

        engine = make_engine(URL)
        scratch = MetaData()
        scratch.reflect(engine)
        scratch.drop_all(engine)
        engine.dispose()
        db = URL
    else:
        db = tmp_path / "annotations.db"
    store = Store.open(db)
    assert store.engine.dialect.name == request.param
    study_dir = write_dataset(tmp_path / "study", n_records=10, n_images=2)
    study = create_study(store, study_dir, StudyConfig("suite", "pair", annotators_per_task=6))
    tokens = [add_annotator(store, study, f"a{i}") for i in range(6)]
    app = create_app(store, study_dir)
    yield store, study, study_dir, app, tokens, TestClient
    store.close()


def _count(store, column=None):
    from sqlalchemy import func, select

    from prefalign.annotate.models import Vote

    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(Vote))


def test_votes_are_stored_with_the_dataset_index_and_repeats_are_idempotent(db_served):
    store, _study, _study_dir, app, tokens, TestClient = db_served
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    task = client.get("/api/task", headers=headers).json()["task"]
    first = client.post("/api/vote", json={"task": task["id"], "answer": "1"}, headers=headers)
    assert first.status_code == 200 and first.json()["status"] == "recorded"
    again = client.post("/api/vote", json={"task": task["id"], "answer": 1}, headers=headers)
    assert again.json() == {"status": "duplicate", "vote": first.json()["vote"]}
    changed = client.post("/api/vote", json={"task": task["id"], "answer": "0"}, headers=headers)
    assert changed.status_code == 409
    assert client.post("/api/vote", json={"task": 2**31, "answer": "0"}, headers=headers).status_code == 404
    assert _count(store) == 1
    from sqlalchemy import select

    from prefalign.annotate.models import Vote

    with store.transaction() as session:
        vote = session.scalar(select(Vote))
        assert vote.choice == vote.shown_order[1] and vote.shown_position == 1


def test_twenty_identical_votes_at_once_make_one_row(db_served):
    store, _study, _study_dir, app, tokens, TestClient = db_served
    headers = {"Authorization": f"Bearer {tokens[0]}"}
    task = TestClient(app).get("/api/task", headers=headers).json()["task"]["id"]
    barrier = threading.Barrier(20)
    answers = []

    def vote():
        client = TestClient(app)
        barrier.wait()
        response = client.post("/api/vote", json={"task": task, "answer": "0"}, headers=headers)
        answers.append((response.status_code, response.json().get("status")))

    threads = [threading.Thread(target=vote) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers).count((200, "recorded")) == 1
    assert sorted(answers).count((200, "duplicate")) == 19
    assert _count(store) == 1


def test_threads_voting_at_once_lose_nothing_and_export(db_served, tmp_path):
    from sqlalchemy import func, select

    from prefalign.annotate import export_study
    from prefalign.annotate.models import Task, Vote
    from prefalign.data.dataset import load_dataset

    store, study, study_dir, app, tokens, TestClient = db_served
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
    assert {r.user for r in dataset} == {f"a{i}" for i in range(6)}
