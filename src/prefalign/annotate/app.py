"""The annotation web app: FastAPI routes over the study services, HTML from Jinja2 templates.

Pages (HTML, work without JavaScript; a small script adds keyboard shortcuts):

* ``GET /invite/{token}`` — sets the token cookie and sends annotators to ``/``, admins to
  ``/admin``. Invite links are the only way in.
* ``GET /`` — the annotator's current task, or a thank-you page when none is left.
* ``POST /vote`` — form fields ``task`` and ``answer``; redirects back to ``/``.
* ``GET /image/{task_id}/{position}`` — the image shown at ``position`` of an assigned task.
  URLs name positions, not files, so they reveal neither paths nor which image is which.
* ``GET /admin`` — progress, for admin tokens.

JSON, for scripts and the load benchmark (same rules): ``GET /api/task``, ``POST /api/vote``
(``{"task": id, "answer": "0"}``), ``GET /api/admin``. Besides the cookie, a token is accepted
as ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from fastapi import FastAPI, Form, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from prefalign.annotate.assign import DEFAULT_LEASE, next_assignment, progress
from prefalign.annotate.errors import AnnotateError, NotAuthorized, NotFound
from prefalign.annotate.models import Annotator, Assignment, Study
from prefalign.annotate.paths import resolve_inside
from prefalign.annotate.progress import StudyProgress, study_progress
from prefalign.annotate.storage import Store
from prefalign.annotate.study import find_study, read_study_config
from prefalign.annotate.tokens import authenticate, hash_token
from prefalign.annotate.votes import assignment_for, parse_task_id, record_vote

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

T = TypeVar("T")

_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'",
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


class VoteIn(BaseModel):
    """The body of ``POST /api/vote``."""

    task: int
    answer: str | int


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        return header[7:].strip()
    return request.cookies.get(TOKEN_COOKIE)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "")


def create_app(store: Store, study_dir: str | Path, *, lease: timedelta = DEFAULT_LEASE) -> FastAPI:
    """Build the app serving the study in ``study_dir`` from ``store``.

    Args:
        store: The annotation database (schema already migrated: use ``Store.open``).
        study_dir: The study directory (``study.json``, records, images).
        lease: How long a shown, unanswered task keeps its slot before others may get it.

    Raises:
        StudyError: if the directory is not a study, or the study is not in the database.
    """
    study_dir = Path(study_dir).resolve()
    # A study row never changes after create-study, so it is read once, not per request.
    study = find_study(store, read_study_config(study_dir).name)
    sweep_interval = min(SWEEP_INTERVAL, lease)
    next_sweep = [0.0]
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    app = FastAPI(title="prefalign annotate", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.state.store = store

    def transaction(work: Callable[[Session, Study], T]) -> T:
        for attempt in range(TRANSACTION_ATTEMPTS):
            try:
                with store.transaction() as session:
                    return work(session, study)
            except IntegrityError:
                if attempt == TRANSACTION_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        return templates.TemplateResponse(request, template, context, status_code=status_code)

    @app.exception_handler(AnnotateError)
    async def annotate_error(request: Request, exc: AnnotateError) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": str(exc)}, status_code=exc.status)
        return render(request, "error.html", exc.status, message=str(exc), status=exc.status)

    def sweep_due() -> bool:
        # Expired leases are looked for at most every few seconds, not on every request.
        now = time.monotonic()
        if now < next_sweep[0]:
            return False
        next_sweep[0] = now + sweep_interval.total_seconds()
        return True

    def task_context(session: Session, study: Study, annotator: Annotator) -> dict[str, Any]:
        assignment = next_assignment(session, study, annotator, lease, release_expired=sweep_due())
        done = progress(session, study, annotator, has_open_task=assignment is not None)
        context: dict[str, Any] = {"study": study, "annotator": annotator.name, "progress": done}
        if assignment is not None:
            task = assignment.task
            context["task"] = {
                "id": task.id,
                "prompt": task.prompt,
                "images": [f"/image/{task.id}/{p}" for p in range(len(assignment.shown_order))],
            }
        return context

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/invite/{token}")
    def invite(token: str) -> RedirectResponse:
        def check(session: Session, study: Study) -> Annotator:
            holder = session.scalar(select(Annotator).where(Annotator.token_hash == hash_token(token)))
            if holder is None or holder.study_id != study.id:
                raise NotAuthorized("this invite link is not valid for this study")
            return holder

        holder = transaction(check)
        response = RedirectResponse("/admin" if holder.role == "admin" else "/", status_code=303)
        # HttpOnly: scripts cannot read it; SameSite=Lax: other sites cannot post votes with it.
        response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="lax", max_age=90 * 24 * 3600)
        return response

    @app.get("/", response_class=HTMLResponse)
    def task_page(request: Request) -> HTMLResponse:
        def work(session: Session, study: Study) -> dict[str, Any]:
            annotator = authenticate(session, study.id, _token(request), "annotator")
            return task_context(session, study, annotator)

        context = transaction(work)
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

    @app.post("/vote")
    def vote_form(request: Request, task: str = Form(""), answer: str = Form("")) -> RedirectResponse:
        task_id = parse_task_id(task)

        def work(session: Session, study: Study) -> None:
            annotator = authenticate(session, study.id, _token(request), "annotator")
            record_vote(session, study, annotator, task_id, answer)

        transaction(work)
        # Post/Redirect/Get: a reload of the next page never re-posts the vote.
        return RedirectResponse("/", status_code=303)

    @app.get("/api/task")
    def api_task(request: Request) -> dict[str, Any]:
        def work(session: Session, study: Study) -> dict[str, Any]:
            annotator = authenticate(session, study.id, _token(request), "annotator")
            context = task_context(session, study, annotator)
            done = context["progress"]
            return {
                "kind": study.kind,
                "question": study.question,
                "progress": {"done": done.done, "total": done.total},
                "task": context.get("task"),
            }

        return transaction(work)

    @app.post("/api/vote")
    def api_vote(request: Request, body: VoteIn) -> dict[str, Any]:
        def work(session: Session, study: Study) -> dict[str, Any]:
            annotator = authenticate(session, study.id, _token(request), "annotator")
            result = record_vote(session, study, annotator, body.task, body.answer)
            return {"status": result.status, "vote": result.vote_id}

        return transaction(work)

    @app.get("/image/{task_id}/{position}")
    def image(request: Request, task_id: int, position: int) -> FileResponse:
        def work(session: Session, study: Study) -> str:
            annotator = authenticate(session, study.id, _token(request), "annotator")
            assignment: Assignment = assignment_for(session, study, annotator, task_id)
            if not 0 <= position < len(assignment.shown_order):
                raise NotFound(f"task {task_id} has no image at position {position}")
            return assignment.task.images[assignment.shown_order[position]]

        relative = transaction(work)
        try:
            path = resolve_inside(study_dir, relative)
        except NotFound as exc:
            # The reason names a path; it goes to the server log, not to the annotator.
            log.warning("refused to serve an image of task %s: %s", task_id, exc)
            raise NotFound("this image is not available") from None
        # Private: the image belongs to this annotator's assignment, no shared cache may keep it.
        return FileResponse(path, headers={"cache-control": "private, max-age=3600"})

    def admin_progress(request: Request) -> StudyProgress:
        def work(session: Session, study: Study) -> StudyProgress:
            authenticate(session, study.id, _token(request), "admin")
            return study_progress(session, study)

        return transaction(work)

    @app.get("/admin", response_class=HTMLResponse)
    def admin_page(request: Request) -> HTMLResponse:
        return render(request, "admin.html", progress=admin_progress(request))

    @app.get("/api/admin")
    def api_admin(request: Request) -> dict[str, Any]:
        return admin_progress(request).to_dict()

    return app
