"""The server's hot path (task fetch, vote, images) stays lean: Core statements on bare
connections, a bounded number of statements per fetch+vote cycle, no ORM session (issue 17)."""

from __future__ import annotations

from contextlib import contextmanager

import pytest
from sqlalchemy import event

# Statements (BEGINs included) of one fetch+vote cycle of an annotator with a cached token: a
# read of the open task, the claim (BEGIN IMMEDIATE, open-task re-check, lowest fill level,
# candidate, slot update, assignment insert), the progress counts (one statement), the vote's
# check (BEGIN, one select) and its write (BEGIN IMMEDIATE, two updates, one insert): 16.
CYCLE_STATEMENT_BUDGET = 16


@contextmanager
def counting(store):
    statements: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    engines = {store.engine, store.reader}
    for engine in engines:
        event.listen(engine, "before_cursor_execute", count)
    try:
        yield statements
    finally:
        for engine in engines:
            event.remove(engine, "before_cursor_execute", count)


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


def test_a_fetch_and_vote_cycle_runs_a_bounded_number_of_statements(served):
    s = served(kind="pair", n_records=30, per_task=2)
    tokens = [s.token(name) for name in ("alice", "bob")]
    for token in tokens:
        cycle(s, token)  # warm the token cache, as for every annotator after the first request
    with counting(s.store) as statements:
        cycle(s, tokens[0])
    assert len(statements) <= CYCLE_STATEMENT_BUDGET, "\n".join(statements)
    # The progress counts are one statement, not one per count.
    assert sum(text.lower().count("count(") for text in statements) == 3
    assert sum(text.lstrip().upper().startswith("SELECT (SELECT COUNT") for text in statements) == 1


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
