"""Hardening of the annotation server against abuse (issue 17): body size, cross-site posts,
identity switching, tokens in logs and cookies, revocation, strict input."""

from __future__ import annotations

import asyncio
import logging
import logging.config
import tracemalloc

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from prefalign.annotate.guard import MAX_BODY_BYTES, RedactTokens, origin_of, redact
from prefalign.annotate.models import Vote


def count_votes(store) -> int:
    with store.transaction() as session:
        return session.scalar(select(func.count()).select_from(Vote))


def call_asgi(app, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks):
    """Send one request straight to the ASGI app; returns (status, chunks the app read)."""
    read = [0]
    body_iter = iter(chunks)
    statuses = []

    async def receive():
        chunk = next(body_iter, None)
        if chunk is None:
            return {"type": "http.disconnect"}
        read[0] += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return statuses[0], read[0]


# --- body size -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/vote", "/vote", "/invite/x", "/api/task"])
def test_a_huge_chunked_body_is_refused_without_holding_it_in_memory(served, path):
    s = served()
    chunk = b"x" * (1 << 20)
    total_mb = 64
    tracemalloc.start()
    try:
        status, read = call_asgi(s.app, "POST", path, [], (chunk for _ in range(total_mb)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == 413
    # At most the limit plus one chunk was read, and the peak stayed far below the body's size
    # (before the limit, the whole 64 MB body was joined in memory: a peak over 64 MB).
    assert read <= MAX_BODY_BYTES // len(chunk) + 1
    assert peak < 8 * (1 << 20), f"peak {peak / 2**20:.1f} MiB"


def test_a_declared_huge_body_is_refused_before_a_byte_is_read(served):
    s = served()
    chunk = b"x" * (1 << 20)
    headers = [(b"content-length", str(200 << 20).encode()), (b"content-type", b"application/json")]
    status, read = call_asgi(s.app, "POST", "/api/vote", headers, (chunk for _ in range(200)))
    assert (status, read) == (413, 0)
    response = s.client.post("/api/vote", content=b"{" + b" " * MAX_BODY_BYTES + b"}")
    assert response.status_code == 413 and "bytes" in response.json()["error"]
    assert s.client.get("/healthz").status_code == 200


def test_the_token_is_checked_before_the_body_is_parsed(served):
    s = served()
    token = s.token("alice")
    # Malformed JSON without a token: 403 (the body was not looked at), with one: 422.
    assert s.client.post("/api/vote", content=b"{not json").status_code == 403
    response = s.client.post("/api/vote", content=b"{not json", headers=s.headers(token))
    assert response.status_code == 422 and "JSON" in response.json()["error"]


# --- cross-site posts ------------------------------------------------------------------------


def form_vote(s, token, extra_headers):
    task = s.next_task(token)["task"]["id"]
    client = TestClient(s.app, cookies={"prefalign_token": token})
    return client.post("/vote", data={"task": str(task), "answer": "0"}, headers=extra_headers)


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Origin": "http://testserver:8001"},  # another port of the same host
        {"Origin": "http://sub.testserver"},  # a sibling subdomain
        {"Origin": "null"},  # a sandboxed frame
        {"Referer": "https://evil.example/page"},
    ],
)
def test_cross_site_form_votes_are_refused(served, headers):
    s = served()
    response = form_vote(s, s.token("alice"), headers)
    assert response.status_code == 403 and "cross-site" in response.text
    assert count_votes(s.store) == 0


@pytest.mark.parametrize("headers", [{"Origin": "http://testserver"}, {"Referer": "http://testserver/"}, {}])
def test_same_origin_form_votes_and_scripts_are_accepted(served, headers):
    s = served()
    response = form_vote(s, s.token("alice"), headers)
    assert response.status_code == 200 and count_votes(s.store) == 1


def test_with_a_base_url_only_its_origin_may_post_and_the_cookie_is_secure(served):
    s = served(base_url="https://annotate.example.org/")
    token = s.token("alice")
    assert form_vote(s, token, {"Origin": "http://testserver"}).status_code == 403
    assert form_vote(s, token, {"Origin": "https://annotate.example.org"}).status_code == 200
    cookie = s.client.get(f"/invite/{token}", follow_redirects=False).headers["set-cookie"]
    assert "Secure" in cookie
    plain = served(kind="choice", base_url="http://127.0.0.1:8000")
    cookie = plain.client.get(f"/invite/{plain.token('bob')}", follow_redirects=False).headers["set-cookie"]
    assert "Secure" not in cookie


def test_origin_of_normalises_addresses():
    assert origin_of("HTTPS://Annotate.Example.org:443/x?y") == "https://annotate.example.org"
    assert origin_of("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert origin_of("javascript:alert(1)") is None and origin_of("http://[::1") is None


# --- identity switching ----------------------------------------------------------------------


def test_opening_another_annotators_link_asks_before_switching(served):
    s = served(n_records=2)
    alice, bob = s.token("alice"), s.token("bob")
    client = TestClient(s.app)
    client.get(f"/invite/{alice}")
    page = client.get(f"/invite/{bob}", follow_redirects=False)
    assert page.status_code == 200 and "set-cookie" not in page.headers
    assert 'id="current">alice<' in page.text and 'id="other">bob<' in page.text
    # Still alice: a vote now is hers.
    task = client.get("/api/task").json()["task"]["id"]
    assert client.post("/api/vote", json={"task": task, "answer": 0}).status_code == 200
    with s.store.transaction() as session:
        voter = session.scalar(select(Vote.annotator_id))
    assert voter == s_id(s, "alice")
    # Another site cannot confirm the switch; the page's own form can.
    evil = client.post(f"/invite/{bob}", headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert evil.status_code == 403
    confirm = client.post(f"/invite/{bob}", headers={"Origin": "http://testserver"}, follow_redirects=False)
    assert confirm.status_code == 303 and bob in confirm.headers["set-cookie"]
    assert client.get("/api/task").json()["progress"]["done"] == 0  # bob has voted nothing


def s_id(s, name: str) -> int:
    from prefalign.annotate.models import Annotator

    with s.store.transaction() as session:
        return session.scalar(select(Annotator.id).where(Annotator.name == name))


def test_reopening_ones_own_link_or_a_dead_cookie_does_not_ask(served):
    s = served()
    alice = s.token("alice")
    client = TestClient(s.app, cookies={"prefalign_token": "revoked-or-forged"})
    assert client.get(f"/invite/{alice}", follow_redirects=False).status_code == 303
    client.cookies.set("prefalign_token", alice)
    assert client.get(f"/invite/{alice}", follow_redirects=False).status_code == 303


# --- tokens ----------------------------------------------------------------------------------


def test_access_log_lines_hide_invite_tokens(capsys):
    from prefalign.cli.annotate import access_log_config

    token = "Xk3secretTOKENvalue_-abc"
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/invite/{token}", "1.1", 303), None,
    )  # fmt: skip
    assert RedactTokens().filter(record) and token not in record.getMessage()
    assert "/invite/[redacted]" in record.getMessage()
    assert redact(f"GET /invite/{token}?a=1 ") == "GET /invite/[redacted]?a=1 "
    # The config `serve` hands to uvicorn applies the filter to the access log's output.
    logging.config.dictConfig(access_log_config())
    try:
        logging.getLogger("uvicorn.access").info(
            '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", f"/invite/{token}", "1.1", 303
        )
        logged = capsys.readouterr()
        assert "/invite/[redacted]" in logged.out + logged.err
        assert token not in logged.out + logged.err
    finally:
        for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
            logging.getLogger(name).handlers.clear()


def test_revoked_and_rotated_tokens_stop_working_on_a_running_server(served, monkeypatch):
    from prefalign.annotate import app as app_module
    from prefalign.annotate import revoke_annotator, rotate_token

    monkeypatch.setattr(app_module, "TOKEN_CACHE_S", 0.0)
    s = served(n_records=3)
    alice, admin = s.token("alice"), s.token("boss", role="admin")
    task = s.next_task(alice)["task"]["id"]
    assert s.vote(alice, task, "0").status_code == 200
    revoke_annotator(s.store, s.study, "alice")
    assert s.client.get("/api/task", headers=s.headers(alice)).status_code == 403
    fresh = rotate_token(s.store, s.study, "alice")
    assert s.next_task(fresh)["progress"]["done"] == 1  # her vote stayed hers
    new_admin = rotate_token(s.store, s.study, "boss")
    assert s.client.get("/api/admin", headers=s.headers(admin)).status_code == 403
    assert s.client.get("/api/admin", headers=s.headers(new_admin)).status_code == 200
    from prefalign.annotate.errors import StudyError

    with pytest.raises(StudyError, match="nobody named 'carol'"):
        revoke_annotator(s.store, s.study, "carol")


# --- strict input ----------------------------------------------------------------------------


@pytest.mark.parametrize("answer", [True, False, "\u0661", "0_0", " 0", "+0", 0.0, "0.0", None, [0], "١"])
def test_answers_are_strict_integers(served, answer):
    s = served(kind="pair")
    token = s.token("alice")
    task = s.next_task(token)["task"]["id"]
    response = s.vote(token, task, answer)
    assert response.status_code == 422, response.text
    assert count_votes(s.store) == 0
    assert s.vote(token, task, 1).status_code == 200  # a JSON integer is fine


@pytest.mark.parametrize("task", [10**30, 2**31, 2**63, -1, 0, "9" * 40])
def test_task_ids_out_of_range_are_not_found(served, task):
    s = served()
    token = s.token("alice")
    s.next_task(token)
    assert s.vote(token, task, "0").status_code == 404
    assert s.client.get(f"/image/{task}/0", headers=s.headers(token)).status_code == 404


@pytest.mark.parametrize("task", [True, "1.0", "\u0661", "1_0", None])
def test_task_ids_that_are_not_integers_are_refused(served, task):
    s = served()
    token = s.token("alice")
    s.next_task(token)
    assert s.vote(token, task, "0").status_code == 422
    client = TestClient(s.app, cookies={"prefalign_token": token})
    assert client.post("/vote", data={"task": "1_0", "answer": "0"}).status_code == 422


def test_images_are_served_right_after_their_cache_entry_was_dropped(served, monkeypatch):
    from prefalign.annotate import app as app_module

    monkeypatch.setattr(app_module, "IMAGE_CACHE_ENTRIES", 1)
    s = served(n_records=3)
    token = s.token("alice")
    seen = []
    for _ in range(3):
        task = s.next_task(token)["task"]
        left = s.client.get(task["images"][0], headers=s.headers(token))
        assert left.status_code == 200
        seen.append((task["images"][0], left.content))
        assert s.vote(token, task["id"], "0").status_code == 200
    # The first task's entry was dropped long ago; its image is looked up again, the same one.
    for url, content in seen:
        again = s.client.get(url, headers=s.headers(token))
        assert again.status_code == 200 and again.content == content
