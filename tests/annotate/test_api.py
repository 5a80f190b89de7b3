"""The web app through FastAPI's test client: access, path safety, votes, assignment rules."""

from __future__ import annotations

import os
import threading
from collections import Counter
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from prefalign.annotate.models import Assignment, Task, Vote


def count_votes(store) -> int:
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(Vote))


# --- access ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/"),
        ("get", "/api/task"),
        ("get", "/image/1/0"),
        ("get", "/admin"),
        ("get", "/api/admin"),
        ("post", "/api/vote"),
        ("post", "/vote"),
    ],
)
def test_every_page_refuses_requests_without_a_valid_token(served, method, path):
    s = served()
    s.token("alice")
    kwargs = {"json": {"task": 1, "answer": "0"}} if path == "/api/vote" else {}
    if path == "/vote":
        kwargs = {"data": {"task": "1", "answer": "0"}}
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        response = getattr(s.client, method)(path, headers=headers, **kwargs)
        assert response.status_code == 403, (path, headers, response.text)
    assert count_votes(s.store) == 0


def test_roles_and_studies_do_not_mix(served, make_study):
    s = served()
    annotator, admin = s.token("alice"), s.token("boss", role="admin")
    # An annotator cannot see the admin page; an admin cannot vote.
    assert s.client.get("/api/admin", headers=s.headers(annotator)).status_code == 403
    assert s.client.get("/api/task", headers=s.headers(admin)).status_code == 403
    assert s.client.get("/api/admin", headers=s.headers(admin)).status_code == 200
    # A token of another study in the same database is refused here.
    from prefalign.annotate import add_annotator

    _, other_study, _ = make_study(kind="pair", name="other-study")
    stranger = add_annotator(s.store, other_study, "mallory")
    assert s.client.get("/api/task", headers=s.headers(stranger)).status_code == 403
    assert s.client.get(f"/invite/{stranger}", follow_redirects=False).status_code == 403


def test_invite_link_sets_a_cookie_that_opens_the_task_page(served):
    s = served(kind="pair", n_records=1)
    token = s.token("alice")
    response = s.client.get(f"/invite/{token}", follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    page = s.client.get("/")  # the client keeps the cookie
    assert page.status_code == 200
    assert "prompt number 0" in page.text
    assert "Task 1 of 1" in page.text
    admin = s.token("boss", role="admin")
    fresh = TestClient(s.app)
    assert fresh.get(f"/invite/{admin}", follow_redirects=False).headers["location"] == "/admin"


# --- images: only the study's own files ------------------------------------------------------


def test_images_are_served_by_position_without_revealing_file_names(served):
    s = served(kind="pair", n_records=1)
    token = s.token("alice")
    s.client.get(f"/invite/{token}")
    page = s.client.get("/").text
    assert "images/" not in page and ".png" not in page  # the pairing stays hidden
    task = s.next_task(token)["task"]
    bodies = [s.client.get(url).content for url in task["images"]]
    files = {(s.study_dir / f"images/r0_{j}.png").read_bytes() for j in range(2)}
    assert set(bodies) == files  # both positions served, one file each
    assert s.client.get(f"/image/{task['id']}/2").status_code == 404  # no third image
    assert s.client.get(f"/image/{task['id']}/-1").status_code == 404


@pytest.mark.parametrize(
    "path",
    [
        "/image/1/..%2F..%2Fstudy.json",
        "/image/..%2F..%2Fetc%2Fpasswd/0",
        "/static/..%2Fstudy.py",
        "/static/../app.py",
        "/static/%2e%2e/%2e%2e/study.json",
        "/images/r0_0.png",
        "/records.parquet",
        "/annotations.db",
    ],
)
def test_path_traversal_is_refused(served, path):
    s = served()
    token = s.token("alice")
    s.next_task(token)
    response = s.client.get(path, headers=s.headers(token))
    assert response.status_code in (404, 422), (path, response.status_code)
    assert b"import " not in response.content and b"PRAGMA" not in response.content


@pytest.mark.parametrize("bad_path", ["../secret.png", "/etc/secret.png", "images/link.png", "study.json"])
def test_a_tampered_database_still_cannot_serve_files_outside_the_study(served, bad_path, tmp_path):
    s = served(kind="rating", n_records=1, n_images=1)
    secret = s.study_dir.parent / "secret.png"
    secret.write_bytes(b"\x89PNG secret")
    os.symlink(secret, s.study_dir / "images" / "link.png")
    token = s.token("alice")
    task = s.next_task(token)["task"]
    with s.store.transaction() as session:
        session.execute(update(Task).where(Task.id == task["id"]).values(images=[bad_path]))
    response = s.client.get(task["images"][0], headers=s.headers(token))
    assert response.status_code == 404
    assert b"PNG secret" not in response.content and bad_path.encode() not in response.content


def test_images_of_tasks_not_assigned_are_refused(served):
    s = served(kind="pair", n_records=3)
    token = s.token("alice")
    mine = s.next_task(token)["task"]["id"]
    other = next(i for i in range(1, 4) if i != mine)
    assert s.client.get(f"/image/{other}/0", headers=s.headers(token)).status_code == 403


# --- votes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "status"),
    [("2", 422), ("-1", 422), ("abc", 422), ("good", 422), ("skip", 422), ("", 422), ("1.5", 422)],
)
def test_invalid_answers_to_a_pair_are_refused(served, answer, status):
    s = served(kind="pair")
    token = s.token("alice")
    task = s.next_task(token)["task"]["id"]
    response = s.vote(token, task, answer)
    assert response.status_code == status, response.text
    assert "error" in response.json()
    assert count_votes(s.store) == 0
    assert s.vote(token, task, "1").status_code == 200  # the task is still open


@pytest.mark.parametrize("answer", ["0", "1", "maybe", "GOODISH"])
def test_invalid_answers_to_a_rating_are_refused(served, answer):
    s = served(kind="rating", n_records=1, n_images=1)
    token = s.token("alice")
    task = s.next_task(token)["task"]["id"]
    assert s.vote(token, task, answer).status_code == 422
    assert count_votes(s.store) == 0


def test_votes_on_tasks_not_assigned_or_not_existing_are_refused(served):
    s = served(kind="pair", n_records=3)
    token = s.token("alice")
    mine = s.next_task(token)["task"]["id"]
    other = next(i for i in range(1, 4) if i != mine)
    assert s.vote(token, other, "0").status_code == 403
    assert s.vote(token, 999, "0").status_code == 404
    response = s.client.post("/vote", data={"task": "x", "answer": "0"}, headers=s.headers(token))
    assert response.status_code == 422
    assert count_votes(s.store) == 0


def test_a_repeated_vote_is_recorded_once_and_a_changed_one_is_refused(served):
    s = served(kind="pair", n_records=2)
    token = s.token("alice")
    task = s.next_task(token)["task"]["id"]
    first = s.vote(token, task, "1")
    again = s.vote(token, task, "1")
    assert first.json()["status"] == "recorded" and again.json()["status"] == "duplicate"
    assert first.json()["vote"] == again.json()["vote"]
    # Through the HTML form too (a double click posts twice).
    for _ in range(2):
        response = s.client.post("/vote", data={"task": str(task), "answer": "1"}, headers=s.headers(token))
        assert response.status_code == 200  # redirected to the next task
    changed = s.vote(token, task, "0")
    assert changed.status_code == 409
    assert count_votes(s.store) == 1
    with s.store.transaction() as session:
        assert session.scalar(select(Task.done_votes).where(Task.id == task)) == 1


def test_a_vote_stores_annotator_time_order_shown_and_the_dataset_index(served):
    s = served(kind="choice", n_records=1, n_images=4)
    token = s.token("alice")
    task = s.next_task(token)["task"]
    served_third = s.client.get(task["images"][2], headers=s.headers(token)).content
    assert s.vote(token, task["id"], "2").status_code == 200
    with s.store.transaction() as session:
        vote = session.scalar(select(Vote))
        assignment = session.scalar(select(Assignment))
        assert vote.annotator_id == assignment.annotator_id
        assert vote.created_at is not None
        assert sorted(vote.shown_order) == [0, 1, 2, 3]
        assert vote.shown_order == assignment.shown_order
        assert vote.shown_position == 2
        assert vote.choice == vote.shown_order[2]
    # The stored choice names the very image that was shown at the clicked position.
    assert (s.study_dir / f"images/r0_{vote.choice}.png").read_bytes() == served_third


# --- assignment rules ------------------------------------------------------------------------


def test_one_task_at_a_time_until_answered(served):
    s = served(kind="pair", n_records=3)
    token = s.token("alice")
    first = s.next_task(token)
    assert s.next_task(token)["task"] == first["task"]  # same task, same image order
    assert first["progress"] == {"done": 0, "total": 3}
    s.vote(token, first["task"]["id"], "0")
    second = s.next_task(token)
    assert second["task"]["id"] != first["task"]["id"]
    assert second["progress"] == {"done": 1, "total": 3}


def test_no_task_twice_and_each_task_goes_to_the_configured_number_of_annotators(served):
    s = served(kind="pair", n_records=5, per_task=2)
    tokens = [s.token(name) for name in ("a", "b", "c")]
    seen: dict[str, list[int]] = {t: [] for t in tokens}
    active = list(tokens)
    while active:  # round robin, as if three people worked at once
        for token in list(active):
            task = s.next_task(token)["task"]
            if task is None:
                active.remove(token)
                continue
            seen[token].append(task["id"])
            assert s.vote(token, task["id"], "0").status_code == 200
    for ids in seen.values():
        assert len(ids) == len(set(ids))  # never the same task twice
    per_task = Counter(i for ids in seen.values() for i in ids)
    assert sorted(per_task) == [1, 2, 3, 4, 5] and set(per_task.values()) == {2}
    assert count_votes(s.store) == 10
    done = s.client.get("/", headers=s.headers(tokens[0]))
    assert "All done" in done.text


def test_image_order_is_randomised_per_assignment(served):
    s = served(kind="pair", n_records=40)
    token = s.token("alice")
    orders = set()
    for _ in range(40):
        task = s.next_task(token)["task"]
        s.vote(token, task["id"], "0")
    with s.store.transaction() as session:
        orders = {tuple(order) for order in session.scalars(select(Assignment.shown_order))}
    # Both left/right orders occur (the chance that 40 fair coin flips agree is 2**-39).
    assert orders == {(0, 1), (1, 0)}


def test_skipped_ratings_do_not_fill_a_task(served):
    s = served(kind="rating", n_records=1, n_images=1, per_task=1)
    alice, bob = s.token("alice"), s.token("bob")
    task = s.next_task(alice)["task"]["id"]
    assert s.vote(alice, task, "skip").json()["status"] == "recorded"
    assert s.next_task(alice)["task"] is None  # alice never sees it again
    assert s.next_task(bob)["task"]["id"] == task  # but it still needs a rating
    assert s.vote(bob, task, "good").status_code == 200
    with s.store.transaction() as session:
        assert session.scalar(select(Task.done_votes)) == 1


def test_an_abandoned_task_is_offered_again_and_the_late_vote_still_counts(served):
    s = served(kind="pair", n_records=1, per_task=1, lease=timedelta(0))
    alice, bob = s.token("alice"), s.token("bob")
    task = s.next_task(alice)["task"]["id"]
    assert s.next_task(bob)["task"]["id"] == task  # alice's lease ran out
    assert s.vote(alice, task, "0").status_code == 200
    assert s.vote(bob, task, "1").status_code == 200
    assert count_votes(s.store) == 2  # nothing an annotator did is thrown away


def test_without_lease_expiry_a_full_task_is_not_offered(served):
    s = served(kind="pair", n_records=1, per_task=1)
    alice, bob = s.token("alice"), s.token("bob")
    assert s.next_task(alice)["task"] is not None
    assert s.next_task(bob)["task"] is None


# --- many voters at once ---------------------------------------------------------------------


def test_many_threads_voting_at_once_lose_nothing(served):
    from fastapi.testclient import TestClient

    n_threads, n_tasks = 8, 15
    s = served(kind="pair", n_records=n_tasks, per_task=n_threads)
    tokens = [s.token(f"annotator-{i}") for i in range(n_threads)]
    acknowledged: list[tuple[str, int]] = []
    failures: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(n_threads)

    def work(token: str) -> None:
        client = TestClient(s.app)
        headers = {"Authorization": f"Bearer {token}"}
        start.wait()
        while True:
            task = client.get("/api/task", headers=headers).json()["task"]
            if task is None:
                return
            for _ in range(2):  # every vote sent twice, as a double click would
                response = client.post("/api/vote", json={"task": task["id"], "answer": "1"}, headers=headers)
                if response.status_code != 200:
                    with lock:
                        failures.append(response.text)
                elif response.json()["status"] == "recorded":
                    with lock:
                        acknowledged.append((token, task["id"]))

    threads = [threading.Thread(target=work, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(acknowledged) == len(set(acknowledged)) == n_threads * n_tasks
    assert count_votes(s.store) == n_threads * n_tasks
    with s.store.transaction() as session:
        stored = set(session.execute(select(Vote.annotator_id, Vote.task_id)).all())
        assert len(stored) == n_threads * n_tasks
        assert set(session.scalars(select(Task.done_votes))) == {n_threads}
        assert set(session.scalars(select(Task.slots_used))) == {n_threads}


# --- admin -----------------------------------------------------------------------------------


def test_admin_page_shows_progress(served):
    s = served(kind="pair", n_records=3, per_task=2)
    alice, admin = s.token("alice"), s.token("boss", role="admin")
    for _ in range(2):
        task = s.next_task(alice)["task"]
        s.vote(token=alice, task=task["id"], answer="0")
    s.next_task(alice)  # one on screen
    data = s.client.get("/api/admin", headers=s.headers(admin)).json()
    assert data["tasks"] == 3 and data["votes"] == 2 and data["open_assignments"] == 1
    assert data["coverage"] == [1, 2, 0] and data["tasks_complete"] == 0
    assert data["percent_complete"] == pytest.approx(100 * 2 / 6, abs=0.01)
    assert sum(data["answer_counts"].values()) == 2
    alice_row = next(a for a in data["annotators"] if a["name"] == "alice")
    assert alice_row["votes"] == 2 and alice_row["open_tasks"] == 1 and alice_row["last_vote_at"]
    page = s.client.get("/admin", headers=s.headers(admin))
    assert page.status_code == 200 and "alice" in page.text and "33.3% complete" in page.text


def test_responses_carry_security_headers(served):
    s = served()
    response = s.client.get("/healthz")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("kind", "n_images", "expected_keys"),
    [
        ("pair", 2, {"0": "1 ArrowLeft", "1": "2 ArrowRight"}),
        ("choice", 3, {"0": "1", "1": "2", "2": "3"}),
        ("rating", 1, {"good": "1 ArrowRight", "bad": "2 ArrowLeft", "skip": "0 ArrowDown"}),
    ],
)
def test_each_kind_renders_its_answers_with_their_keyboard_shortcuts(served, kind, n_images, expected_keys):
    import re

    s = served(kind=kind, n_records=1, n_images=n_images)
    page = s.client.get("/", headers=s.headers(s.token("alice")))
    assert page.status_code == 200
    buttons = dict(re.findall(r'name="answer" value="([^"]+)"[^>]*?data-keys="([^"]+)"', page.text, re.S))
    assert buttons == expected_keys
    assert page.text.count("<img ") == n_images
    assert 'src="/static/annotate.js"' in page.text
