"""The annotation web app: FastAPI routes over the study services, HTML from Jinja2 templates.

Pages (HTML, work without JavaScript; a small script adds keyboard shortcuts):

* ``GET /invite/{token}`` — sets the token cookie and sends annotators to ``/``, admins to
  ``/admin``. Invite links are the only way in. When the browser already holds another
  person's token, a page names both and asks before switching (``POST /invite/{token}``).
* ``GET /`` — the annotator's current task, or a thank-you page when none is left.
* ``POST /vote`` — form fields ``task`` and ``answer``; redirects back to ``/``.
* ``GET /image/{task_id}/{position}`` — the image shown at ``position`` of an assigned task.
  URLs name positions, not files, so they reveal neither paths nor which image is which.
* ``GET /admin`` — progress, for admin tokens.

JSON, for scripts and the load benchmark (same rules): ``GET /api/task``, ``POST /api/vote``
(``{"task": id, "answer": "0"}``), ``GET /api/admin``. Besides the cookie, a token is accepted
as ``Authorization: Bearer <token>``.

Guards (see ``guard.py``): bodies over 64 KiB get 413 unread; POSTs from another origin get
403; the token is checked before a vote's body is parsed.

Concurrency: only writes (a vote, a newly assigned task) go through the store's write
transaction; on SQLite they are group-committed (``Store.write_grouped``: one writer thread,
one COMMIT for the writes that queued meanwhile, each acknowledged after it). Reads (the open
task, images, progress, the admin page) use lock-free read transactions. The task fetch, vote
and image lookup run fixed SQL on the driver's cursor (``hotpath.py``). Token checks are
cached for ``TOKEN_CACHE_S`` seconds and an assignment's images (which never change) for the
life of the process, once the first image of a task was asked for: the next ones cost no
database transaction.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy import Connection, select
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool

from prefalign.annotate.assign import DEFAULT_LEASE, Progress, Shown, next_assignment
from prefalign.annotate.errors import AnnotateError, InvalidVote, NotAuthorized, NotFound
from prefalign.annotate.guard import MAX_BODY_BYTES, BodyLimit, SameOrigin, origin_of
from prefalign.annotate.hotpath import AnsweredMeanwhile, CheckedVote, HotPath
from prefalign.annotate.models import Annotator, Study
from prefalign.annotate.paths import resolve_inside
from prefalign.annotate.progress import StudyProgress, study_progress
from prefalign.annotate.storage import Store
from prefalign.annotate.study import find_study, read_study_config
from prefalign.annotate.tokens import hash_token
from prefalign.annotate.votes import VoteResult, parse_task_id

HERE = Path(__file__).parent
log = logging.getLogger(__name__)
TOKEN_COOKIE = "prefalign_token"
# Keyboard keys per kind; the template shows them and annotate.js binds them.
CHOICE_KEYS = "123456789"
PAIR_KEYS = ("ArrowLeft", "ArrowRight")
RATING_KEYS = {"good": ("1", "ArrowRight"), "bad": ("2", "ArrowLeft"), "skip": ("0", "ArrowDown")}
# Retries of a transaction that lost a race on a unique constraint (PostgreSQL: two requests of
# one annotator at once); the retry then sees the other request's row.
TRANSACTION_ATTEMPTS = 3
# How often, at most, unanswered assignments are checked for an expired lease.
SWEEP_INTERVAL = timedelta(seconds=10)
# Seconds a checked token is trusted without the database (ours): a revoked or rotated token
# stops working within this time on a running server.
TOKEN_CACHE_S = 5.0
# Assignments whose image list is kept in memory (ours): the tasks on screen of many annotators.
IMAGE_CACHE_ENTRIES = 10_000
# The token cookie's lifetime (ours).
COOKIE_MAX_AGE_S = 90 * 24 * 3600

T = TypeVar("T")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    # same-origin (not no-referrer): browsers then send our own Origin on our form posts, which
    # the cross-site check needs, and still send nothing to other sites.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; "
        b"frame-ancestors 'none'; form-action 'self'",
    ),
]


class SecurityHeaders:
    """Pure ASGI middleware adding the headers above to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = list(message.get("headers", [])) + _SECURITY_HEADERS
            await send(message)

        return await self.app(scope, receive, send_with_headers)


@dataclass(frozen=True)
class Holder:
    """A checked token holder, as cached: no database session needed to use it."""

    id: int
    name: str
    role: str


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def parse_vote_body(raw: bytes) -> tuple[object, object]:
    """``(task, answer)`` of a ``POST /api/vote`` body, or :class:`InvalidVote`."""
    usage = 'the body must be a JSON object {"task": <id>, "answer": <position or good/bad/skip>}'
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidVote(f"{usage}; it is not valid JSON") from None
    if not isinstance(data, dict) or "task" not in data or "answer" not in data:
        raise InvalidVote(usage)
    return data["task"], data["answer"]


def create_app(
    store: Store,
    study_dir: str | Path,
    *,
    lease: timedelta = DEFAULT_LEASE,
    base_url: str | None = None,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """Build the app serving the study in ``study_dir`` from ``store``.

    Args:
        store: The annotation database (schema already migrated: use ``Store.open``).
        study_dir: The study directory (``study.json``, records, images).
        lease: How long a shown, unanswered task keeps its slot before others may get it.
        base_url: The address people use (``https://annotate.example.org``): POSTs must come
            from this origin, and an ``https`` address makes the token cookie ``Secure``.
            None: POSTs must come from the origin of the ``Host`` they were sent to.
        max_body_bytes: Larger request bodies get 413 without being read.

    Raises:
        StudyError: if the directory is not a study, or the study is not in the database.
    """
    study_dir = Path(study_dir).resolve()
    # A study row never changes after create-study, so it is read once, not per request.
    study = find_study(store, read_study_config(study_dir).name)
    hot = HotPath(study, store.engine.dialect.name)
    # The driver's own IntegrityError: the hot path runs on its cursors, not through SQLAlchemy.
    dbapi_integrity_error = store.engine.dialect.loaded_dbapi.IntegrityError
    sweep_interval = min(SWEEP_INTERVAL, lease)
    next_sweep = [0.0]
    secure_cookie = bool(base_url) and (origin_of(base_url or "") or "").startswith("https://")
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(title="prefalign annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(SameOrigin, base_url=base_url)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.store = store
    cache_lock = threading.Lock()
    holders: dict[str, tuple[float, int, Holder]] = {}  # token hash -> (expiry, study id, holder)
    # (annotator, task) -> (images, shown order); least recently used entries dropped first.
    shown: OrderedDict[tuple[int, int], tuple[list[str], list[int]]] = OrderedDict()

    # The request path runs Core statements on bare connections (no ORM session, no ORM
    # objects): per request that is most of the Python work saved (issue 17).
    def transaction(work: Callable[[Connection, Study], T]) -> T:
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                return store.write_grouped(lambda connection: work(connection, study))
            except IntegrityError:
                if attempt == TRANSACTION_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def reading(work: Callable[[Connection, Study], T]) -> T:
        with store.read_connection() as connection:
            return work(connection, study)

    def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    @app.exception_handler(AnnotateError)
    async def annotate_error(request: Request, exc: AnnotateError) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return render(request, "error.html", exc.status, message=str(exc), status=exc.status)

    def holder_of(token: str | None) -> Holder | None:
        """The holder of ``token`` in this study (any role), from the cache or the database."""
        if not token:
            return None
        key = hash_token(token)
        now = time.monotonic()
        with cache_lock:
            cached = holders.get(key)
        if cached is None or cached[0] < now:
            with store.read_connection() as connection:
                row = connection.execute(
                    select(Annotator.id, Annotator.name, Annotator.role, Annotator.study_id).where(
                        Annotator.token_hash == key
                    )
                ).first()
            if row is None:
                with cache_lock:
                    holders.pop(key, None)
                return None
            cached = (now + TOKEN_CACHE_S, row.study_id, Holder(row.id, row.name, row.role))
            with cache_lock:
                holders[key] = cached
        return cached[2] if cached[1] == study.id else None

    def cached_holder(request: Request, role: str) -> Holder | None:
        """The holder of the request's token when the cache vouches for it with ``role``, else
        None (the caller then runs :func:`authenticate`). No I/O: safe on the event loop."""
        token = _token(request)
        if not token:
            return None
        with cache_lock:
            cached = holders.get(hash_token(token))
        if cached is None or cached[0] < time.monotonic() or cached[1] != study.id:
            return None
        return cached[2] if cached[2].role == role else None

    def authenticate(request: Request, role: str) -> Holder:
        token = _token(request)
        if not token:
            raise NotAuthorized("this page needs an invite link (a token); ask the study's organiser")
        holder = holder_of(token)
        # A token of another study, or of the wrong role, reads like a wrong token.
        if holder is None or holder.role != role:
            raise NotAuthorized("this invite token is not valid for this page")
        return holder

    def sweep_due() -> bool:
        # Expired leases are looked for at most every few seconds, not on every request.
        now = time.monotonic()
        if now < next_sweep[0]:
            return False
        next_sweep[0] = now + sweep_interval.total_seconds()
        return True

    def progress_of(connection: Connection, holder: Holder, has_open_task: bool) -> Progress:
        """Done so far, and done + current + still available to this annotator (one read)."""
        return hot.progress(connection, holder.id, has_open_task)

    def shown_task(holder: Holder, shown_now: Shown) -> dict[str, Any]:
        task_id = shown_now.task_id
        return {
            "id": task_id,
            "prompt": shown_now.prompt,
            "images": [f"/image/{task_id}/{p}" for p in range(len(shown_now.shown_order))],
        }

    def describe(session: Connection, holder: Holder, task: dict[str, Any] | None) -> dict[str, Any]:
        done = progress_of(session, holder, has_open_task=task is not None)
        context: dict[str, Any] = {"study": study, "annotator": holder.name, "progress": done}
        if task is not None:
            context["task"] = task
        return context

    def task_context(holder: Holder) -> dict[str, Any]:
        # Most requests find the task already on screen: a read. Only a new task is a write.
        def look(connection: Connection, study: Study) -> dict[str, Any] | None:
            current = hot.open_task(connection, holder.id)
            return None if current is None else describe(connection, holder, shown_task(holder, current))

        def assign(connection: Connection, study: Study) -> Shown | None:
            if sweep_due():
                return next_assignment(connection, study, holder.id, lease, release_expired=True)
            # One statement in the common case; the full search when it finds nothing.
            claimed = hot.claim(connection, holder.id)
            if claimed is not None:
                return claimed
            return next_assignment(connection, study, holder.id, lease, release_expired=False)

        def show(connection: Connection, study: Study) -> dict[str, Any]:
            return describe(connection, holder, new)

        found = reading(look)
        if found is not None:
            return found
        # The write transaction holds SQLite's lock: it only claims the task; the page's
        # figures are read after it, without the lock.
        claimed = transaction(assign)
        new = None if claimed is None else shown_task(holder, claimed)
        return reading(show)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    def enter(holder: Holder, token: str) -> RedirectResponse:
        response = RedirectResponse("/admin" if holder.role == "admin" else "/", status_code=303)
        # HttpOnly: scripts cannot read it; SameSite=Lax: other sites cannot post votes with it;
        # Secure behind HTTPS: it never travels in clear text.
        response.set_cookie(
            TOKEN_COOKIE,
            token,
            httponly=True,
            samesite="lax",
            secure=secure_cookie,
            max_age=COOKIE_MAX_AGE_S,
        )
        return response

    def invited(token: str) -> Holder:
        holder = holder_of(token)
        if holder is None:
            raise NotAuthorized("this invite link is not valid for this study")
        return holder

    @app.get("/invite/{token}")
    def invite(request: Request, token: str) -> Response:
        holder = invited(token)
        current = holder_of(request.cookies.get(TOKEN_COOKIE))
        if current is not None and current.id != holder.id:
            # Opening someone else's link must not silently move later votes to them.
            return render(request, "switch.html", study=study, current=current.name, other=holder.name)
        return enter(holder, token)

    @app.post("/invite/{token}")
    def invite_confirmed(token: str) -> RedirectResponse:
        return enter(invited(token), token)

    @app.get("/", response_class=HTMLResponse)
    def task_page(request: Request) -> HTMLResponse:
        context = task_context(authenticate(request, "annotator"))
        if "task" not in context:
            return render(request, "done.html", **context)
        return render(
            request,
            "task.html",
            choice_keys=CHOICE_KEYS,
            pair_keys=PAIR_KEYS,
            rating_keys=RATING_KEYS,
            **context,
        )

    def vote(holder: Holder, task: object, answer: object) -> dict[str, Any]:
        task_id = parse_task_id(task)

        def check(connection: Connection, study: Study) -> CheckedVote | VoteResult:
            return hot.plan_vote(connection, holder.id, task_id, answer)

        # Checked without the write lock; only the inserts and counter updates hold it. A
        # concurrent identical vote makes the insert fail on the unique assignment_id: the
        # next attempt's check then finds that vote and answers "duplicate".
        for attempt in range(TRANSACTION_ATTEMPTS):
            plan = reading(check)
            if isinstance(plan, VoteResult):
                return {"status": plan.status, "vote": plan.vote_id}
            try:
                result = store.write_grouped(partial(hot.write_vote, plan=plan))
                return {"status": result.status, "vote": result.vote_id}
            except (IntegrityError, dbapi_integrity_error, AnsweredMeanwhile):
                if attempt == TRANSACTION_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    @app.post("/vote")
    def vote_form(request: Request, task: str = Form(""), answer: str = Form("")) -> RedirectResponse:
        vote(authenticate(request, "annotator"), task, answer)
        # Post/Redirect/Get: a reload of the next page never re-posts the vote.
        return RedirectResponse("/", status_code=303)

    # response_model=None: the dicts are returned as they are, not validated by a model.
    @app.get("/api/task", response_model=None)
    def api_task(request: Request) -> dict[str, Any]:
        context = task_context(authenticate(request, "annotator"))
        done = context["progress"]
        return {
            "kind": study.kind,
            "question": study.question,
            "progress": {"done": done.done, "total": done.total},
            "task": context.get("task"),
        }

    @app.post("/api/vote", response_model=None)
    async def api_vote(request: Request) -> dict[str, Any]:
        # The token first: nobody without one gets their body parsed. A token the cache
        # vouches for is checked here, on the event loop; only a miss costs a thread hop.
        holder = cached_holder(request, "annotator") or await run_in_threadpool(
            authenticate, request, "annotator"
        )
        task, answer = parse_vote_body(await request.body())
        return await run_in_threadpool(vote, holder, task, answer)

    def image_of(holder: Holder, task_id: int) -> tuple[list[str], list[int]]:
        with cache_lock:
            known = shown.get((holder.id, task_id))
            if known is not None:
                shown.move_to_end((holder.id, task_id))
        if known is not None:
            return known

        def look(connection: Connection, study: Study) -> tuple[list[str], list[int]]:
            found = hot.images_of(connection, holder.id, task_id)
            if found is None:
                raise NotFound(f"no task {task_id} in this study")
            images, order = found
            if order is None:
                raise NotAuthorized(f"task {task_id} is not assigned to you")
            return images, order

        known = reading(look)
        with cache_lock:
            shown[(holder.id, task_id)] = known
            while len(shown) > IMAGE_CACHE_ENTRIES:
                shown.popitem(last=False)
        return known

    @app.get("/image/{task_id}/{position}")
    def image(request: Request, task_id: str, position: str) -> FileResponse:
        holder = authenticate(request, "annotator")
        try:
            number = parse_task_id(task_id)
        except InvalidVote:
            raise NotFound("no such image") from None  # a URL naming nothing
        images, order = image_of(holder, number)
        index = int(position) if position.isascii() and position.isdigit() and len(position) < 4 else -1
        if not 0 <= index < len(order):
            raise NotFound(f"task {number} has no image at position {position[:20]}")
        try:
            path = resolve_inside(study_dir, images[order[index]])
        except NotFound as exc:
            # The reason names a path; it goes to the server log, not to the annotator.
            log.warning("refused to serve an image of task %s: %s", number, exc)
            raise NotFound("this image is not available") from None
        # Private: the image belongs to this annotator's assignment, no shared cache may keep it.
        return FileResponse(path, headers={"cache-control": "private, max-age=3600"})

    def admin_progress(request: Request) -> StudyProgress:
        authenticate(request, "admin")
        with store.read() as session:
            return study_progress(session, study)

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request) -> HTMLResponse:
        return render(request, "admin.html", progress=admin_progress(request))

    @app.get("/api/admin", response_model=None)
    def api_admin(request: Request) -> dict[str, Any]:
        return admin_progress(request).to_dict()

    return app
