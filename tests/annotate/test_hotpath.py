"""The server's hot path (task fetch, vote, images) stays lean: Core statements on bare
connections, a bounded number of statements per fetch+vote cycle, no ORM session (issue 17)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

# Statements the driver runs (BEGIN and COMMIT included) in one fetch+vote cycle of an
# annotator with a cached token: the open-task read; BEGIN IMMEDIATE, the claim (one UPDATE ...
# RETURNING), the assignment insert, COMMIT; the progress counts (one statement); the vote's
# check (one read); BEGIN IMMEDIATE, the assignment update, the task counters, the vote insert,
# COMMIT: 12. The benchmark's minimal reference app runs 13 (its token check is not cached).
CYCLE_STATEMENT_BUDGET = 12


@contextmanager
def counting(store):
    """Every statement SQLite runs on the store's connections (its trace callback), as text."""
    statements: list[str] = []

    def trace(dbapi_connection, _record):
        dbapi_connection.set_trace_callback(statements.append)

    engines = {store.engine, store.reader}
    for engine in engines:
        event.listen(engine, "connect", trace)
        engine.dispose()  # new connections, each with the callback
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "connect", trace)
            engine.dispose()


@pytest.fixture
def no_sessions(monkeypatch):
    """Make any ORM session of the store fail: the hot path must not open one."""

    def refuse(self):
        raise AssertionError("the hot path opened an ORM session")

    def install(store):
        monkeypatch.setattr(type(store), "transaction", refuse)
        monkeypatch.setattr(type(store), "read", refuse)

    return install


def cycle(s, token: str) -> dict:
    task = s.next_task(token)["task"]
    response = s.vote(token, task["id"], 0)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "recorded"
    return task


def test_a_fetch_and_vote_cycle_runs_as_few_statements_as_the_reference(served):
    s = served(kind="pair", n_records=30, per_task=2)
    tokens = [s.token(name) for name in ("alice", "bob")]
    for token in tokens:
        cycle(s, token)  # warm the token cache, as for every annotator after the first request
    with counting(s.store) as statements:
        cycle(s, tokens[0])
    # Pragmas run once per new connection (the pools were just emptied), not per request.
    work = [text for text in statements if not text.upper().startswith("PRAGMA")]
    assert len(work) <= CYCLE_STATEMENT_BUDGET, "\n".join(work)
    # Two write transactions (claim, vote), each one BEGIN IMMEDIATE and one COMMIT.
    assert sum(text.strip().upper() == "BEGIN IMMEDIATE" for text in work) == 2, work
    assert sum(text.strip().upper() == "COMMIT" for text in work) == 2, work
    # The progress counts are one statement, not one per count.
    assert sum("count(*)" in text.lower() for text in work) == 1, work


def test_fetch_vote_and_images_open_no_orm_session_and_keep_their_numbers(served, no_sessions):
    s = served(kind="choice", n_records=5, n_images=3, per_task=1)
    alice, bob = s.token("alice"), s.token("bob")
    no_sessions(s.store)
    first = s.next_task(alice)
    assert first["progress"] == {"done": 0, "total": 5}
    for url in first["task"]["images"]:
        image = s.client.get(url, headers=s.headers(alice))
        assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert s.vote(alice, first["task"]["id"], 2).json()["status"] == "recorded"
    assert s.vote(alice, first["task"]["id"], 2).json()["status"] == "duplicate"
    assert s.vote(alice, first["task"]["id"], 1).status_code == 409
    # One slot per task: alice's answered task and bob's are full, so alice has done 1, is on
    # her second and 2 are left: 4 in all.
    s.next_task(bob)
    after = s.next_task(alice)
    assert after["progress"] == {"done": 1, "total": 4}
    assert after["task"]["id"] != first["task"]["id"]
    page = s.client.get("/", headers=s.headers(alice))
    assert page.status_code == 200 and "Task 2 of 4" in page.text


def counters_match_rows(store) -> None:
    """tasks.done_votes and slots_used equal what the rows say (the hot path's SQL keeps them)."""
    from sqlalchemy import text

    with store.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT t.id, t.done_votes, t.slots_used,"
                " (SELECT count(*) FROM votes v WHERE v.task_id = t.id AND NOT v.skipped),"
                " (SELECT count(*) FROM assignments a WHERE a.task_id = t.id AND a.claim_held)"
                " FROM tasks t"
            )
        ).all()
    for task_id, done, slots, counted, held in rows:
        assert (done, slots) == (counted, counted + held), f"task {task_id}"


def test_counters_stay_true_through_skips_expired_leases_and_late_votes(served):
    from datetime import timedelta

    s = served(kind="rating", n_records=6, n_images=1, per_task=2, lease=timedelta(0))
    people = [s.token(name) for name in ("alice", "bob", "carol")]
    answers = ["good", "skip", "bad"]
    for round_ in range(3):
        shown = [s.next_task(token)["task"] for token in people]  # each fetch sweeps leases
        for token, task, answer in zip(people, shown, answers[round_:] + answers[:round_]):
            if task is not None:
                assert s.vote(token, task["id"], answer).status_code == 200
        counters_match_rows(s.store)


def test_a_vote_checked_before_its_lease_was_given_back_is_checked_again(served):
    from prefalign.annotate.assign import release_expired_claims
    from prefalign.annotate.hotpath import AnsweredMeanwhile, HotPath

    s = served(kind="pair", n_records=2, per_task=1)
    alice = s.token("alice")
    task = s.next_task(alice)["task"]["id"]
    hot = HotPath(s.study, s.store.engine.dialect.name)
    holder = s.client.get("/api/task", headers=s.headers(alice))  # warm; alice's id below
    assert holder.status_code == 200
    with s.store.read_connection() as connection:
        annotator = connection.exec_driver_sql("SELECT annotator_id FROM assignments").scalar()
        plan = hot.plan_vote(connection, annotator, task, 0)
    assert plan.claim_held
    with s.store.write() as connection:  # the lease sweep runs between check and write
        from datetime import timedelta

        assert release_expired_claims(connection, s.study, timedelta(0)) == 1
    with pytest.raises(AnsweredMeanwhile), s.store.write() as connection:
        hot.write_vote(connection, plan)
    # Through the app the vote is checked again and counts with a slot of its own.
    assert s.vote(alice, task, 0).json()["status"] == "recorded"
    counters_match_rows(s.store)


def test_concurrent_writes_share_one_commit_and_a_failing_one_is_undone_alone(make_study):
    """Group commit (SQLite): works queued while the writer is busy run in one transaction,
    each in a savepoint; one COMMIT for them, and an exception undoes its own work only."""
    import threading
    import time

    from sqlalchemy import text

    store, _, _ = make_study(kind="pair", n_records=6)
    store.write_grouped(lambda connection: None)  # the writer thread is running

    def bump(task_id: int, fail: bool = False):
        def work(connection):
            connection.execute(
                text("UPDATE tasks SET done_votes = done_votes + 1 WHERE id = :id"), {"id": task_id}
            )
            if fail:
                raise ValueError(f"task {task_id} fails")
            return task_id

        return work

    outcomes: dict[int, object] = {}

    def call(task_id: int) -> None:
        try:
            outcomes[task_id] = store.write_grouped(bump(task_id, fail=task_id == 3))
        except ValueError as exc:
            outcomes[task_id] = exc

    with counting(store) as statements:
        with store._writer:  # the writer is busy: the six works queue up
            threads = [threading.Thread(target=call, args=(i,)) for i in range(1, 7)]
            for thread in threads:
                thread.start()
            deadline = time.monotonic() + 10
            # The writer thread takes the first and waits for the lock; five wait in the queue.
            while store._group.queue.qsize() < 5 and time.monotonic() < deadline:
                time.sleep(0.01)
        for thread in threads:
            thread.join(timeout=30)
    assert {k: v for k, v in outcomes.items() if k != 3} == {1: 1, 2: 2, 4: 4, 5: 5, 6: 6}
    assert isinstance(outcomes[3], ValueError)
    # Two transactions: the first work alone (taken before the others queued), then five.
    assert sum(text.strip().upper() == "COMMIT" for text in statements) <= 2, statements
    assert sum(text.strip().upper() == "SAVEPOINT WORK" for text in statements) >= 5, statements
    with store.read_connection() as connection:
        done = dict(connection.execute(text("SELECT id, done_votes FROM tasks")).all())
    assert done == {1: 1, 2: 1, 3: 0, 4: 1, 5: 1, 6: 1}
