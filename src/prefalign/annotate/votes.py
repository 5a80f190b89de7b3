"""Checking and recording one vote.

A vote names a task and an answer: for ``choice`` and ``pair`` tasks the shown position of the
clicked image (``"0"`` is the first/left one), for ``rating`` tasks ``good``, ``bad`` or
``skip``. It is accepted only from an annotator the task is assigned to, and only once: a
repeat of the same answer (a double click, a retried request) is acknowledged without a second
row; a different answer to an answered task is refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from prefalign.annotate.errors import InvalidVote, NotAuthorized, NotFound, VoteConflict
from prefalign.annotate.models import Assignment, Study, Task, Vote, answer_of, utcnow

RATING_ANSWERS = {"good": 1.0, "bad": 0.0}
SKIP = "skip"


@dataclass(frozen=True)
class VoteResult:
    """``status`` is ``recorded`` for a new vote, ``duplicate`` for a repeat of the same one."""

    status: str
    vote_id: int


# Task ids are INTEGER columns: 32-bit signed on PostgreSQL, so larger ids exist nowhere.
MAX_TASK_ID = 2**31 - 1


def _ascii_integer(raw: object) -> int | None:
    """``raw`` as a non-negative integer if it is a JSON integer (not a boolean) or a string of
    ASCII digits; None otherwise (``True``, ``"1.0"``, ``"0_0"``, ``"\u0661"``, ``" 1"``...)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str) and raw.isascii() and raw.isdigit() and len(raw) <= 20:
        return int(raw)
    return None


def parse_task_id(raw: object) -> int:
    """A task id from a form field, URL or JSON value.

    Raises:
        InvalidVote: for anything but an integer (a JSON integer or ASCII digits).
        NotFound: for an integer outside the range task ids can have (1 to 2**31 - 1).
    """
    value = _ascii_integer(raw)
    if value is None and isinstance(raw, str) and raw.isascii() and raw.isdigit():
        value = MAX_TASK_ID + 1  # a long run of digits: an id no task has
    if value is None:
        raise InvalidVote(f"task must be a task id (an integer), not {str(raw)[:40]!r}")
    if not 1 <= value <= MAX_TASK_ID:
        raise NotFound(f"no task {str(value)[:40]} in this study")
    return value


def _parse_answer(kind: str, raw: object, n_images: int) -> dict:
    """The answer as the columns of :class:`Vote` (choice as shown position for now).

    Positions are strict: a JSON integer or a string of ASCII digits, in range.
    """
    shown = repr(raw)[:40]
    if kind != "rating":
        position = _ascii_integer(raw)
        if position is None:
            raise InvalidVote(
                f"the answer must be the position of an image (0 to {n_images - 1}), not {shown}"
            )
        if not 0 <= position < n_images:
            raise InvalidVote(f"image position {position} is out of range: this task has {n_images} images")
        return {"shown_position": position, "rating": None, "skipped": False}
    text = raw.strip().lower() if isinstance(raw, str) else ""
    if text == SKIP:
        return {"shown_position": None, "rating": None, "skipped": True}
    if text not in RATING_ANSWERS:
        raise InvalidVote(f"a rating is 'good', 'bad' or 'skip', not {shown}")
    return {"shown_position": 0, "rating": RATING_ANSWERS[text], "skipped": False}


# Plain Core statements: they run on an ORM session and on a bare connection (the server's).
Executor: TypeAlias = Session | Connection


def assignment_for(session: Executor, study: Study, annotator_id: int, task_id: int) -> Row:
    """This annotator's assignment of ``task_id`` in ``study`` (one query when it exists).

    Returns:
        A row with ``id``, ``shown_order`` and ``answered_at`` of the assignment.

    Raises:
        NotFound: if the study has no such task.
        NotAuthorized: if the task was never assigned to this annotator.
    """
    found = session.execute(
        select(Assignment.id, Assignment.shown_order, Assignment.answered_at, Task.study_id)
        .join(Task, Task.id == Assignment.task_id)
        .where(Assignment.task_id == task_id, Assignment.annotator_id == annotator_id)
    ).first()
    if found is not None and found.study_id == study.id:
        return found
    task_study = session.scalar(select(Task.study_id).where(Task.id == task_id))
    if task_study is None or task_study != study.id:
        raise NotFound(f"no task {task_id} in this study")
    raise NotAuthorized(f"task {task_id} is not assigned to you")


@dataclass(frozen=True)
class VotePlan:
    """A checked new vote, ready to be written: what :func:`plan_vote` found, in plain values."""

    assignment_id: int
    task_id: int
    annotator_id: int
    shown_order: list[int]
    columns: dict


def plan_vote(
    session: Executor, study: Study, annotator_id: int, task_id: int, answer: object
) -> VotePlan | VoteResult:
    """Check a vote without writing anything (a read-only session is enough).

    Returns:
        A :class:`VoteResult` ``duplicate`` when this answer was given already, else the plan
        for :func:`write_vote`.

    Raises:
        NotFound, NotAuthorized: for a task of another study or not assigned to this annotator.
        InvalidVote: for an answer that does not fit the task.
        VoteConflict: for a different answer to a task already answered.
    """
    assignment = assignment_for(session, study, annotator_id, task_id)
    parsed = _parse_answer(study.kind, answer, len(assignment.shown_order))
    position = parsed.pop("shown_position")
    columns = {
        **parsed,
        "shown_position": position,
        "choice": None if study.kind == "rating" or position is None else assignment.shown_order[position],
    }
    # answered_at is set in the transaction that writes the vote: None means no vote yet.
    existing = None
    if assignment.answered_at is not None:
        existing = session.execute(
            select(Vote.id, Vote.choice, Vote.rating, Vote.skipped).where(Vote.assignment_id == assignment.id)
        ).first()
    if existing is not None:
        wanted = {"choice": columns["choice"], "rating": columns["rating"], "skipped": columns["skipped"]}
        if answer_of(existing) == wanted:
            return VoteResult("duplicate", existing.id)
        raise VoteConflict(f"you already answered task {task_id}; an answer cannot be changed")
    return VotePlan(assignment.id, task_id, annotator_id, list(assignment.shown_order), columns)


def write_vote(session: Executor, plan: VotePlan) -> VoteResult:
    """Write a planned vote in the caller's write transaction (a few Core statements).

    The unique ``votes.assignment_id`` refuses a second row for one assignment: a concurrent
    identical vote raises ``IntegrityError`` here, and the caller's retry then finds it in
    :func:`plan_vote` and answers ``duplicate``.
    """
    now = utcnow()
    # Answer the assignment; whether it still held its slot (not given back by an expired
    # lease) is told by the conditional update's row count, in this same transaction.
    claim_held = (
        session.execute(
            update(Assignment)
            .where(Assignment.id == plan.assignment_id, Assignment.claim_held.is_(True))
            .values(answered_at=now, claim_held=False)
            .execution_options(synchronize_session=False)
        ).rowcount
        == 1
    )
    if not claim_held:
        session.execute(
            update(Assignment)
            .where(Assignment.id == plan.assignment_id)
            .values(answered_at=now)
            .execution_options(synchronize_session=False)
        )
    vote_id = session.execute(
        insert(Vote).values(
            assignment_id=plan.assignment_id,
            task_id=plan.task_id,
            annotator_id=plan.annotator_id,
            shown_order=plan.shown_order,
            created_at=now,
            **plan.columns,
        )
    ).inserted_primary_key[0]
    # A held slot turns into a counted vote, or is given back by a skip; a vote whose lease
    # had run out takes a slot of its own (see assign.py).
    counters = {}
    if not plan.columns["skipped"]:
        counters["done_votes"] = Task.done_votes + 1
        if not claim_held:
            counters["slots_used"] = Task.slots_used + 1
    elif claim_held:
        counters["slots_used"] = Task.slots_used - 1
    if counters:
        session.execute(
            update(Task)
            .where(Task.id == plan.task_id)
            .values(**counters)
            .execution_options(synchronize_session=False)
        )
    return VoteResult("recorded", vote_id)


def record_vote(
    session: Executor, study: Study, annotator_id: int, task_id: int, answer: object
) -> VoteResult:
    """Validate and store one vote in the caller's (write) transaction.

    Args:
        session: A session inside a transaction (committed by the caller).
        study: The study served.
        annotator_id: The authenticated annotator's id.
        task_id: The task voted on.
        answer: The shown position of the chosen image, or ``good``/``bad``/``skip``.

    Returns:
        Whether the vote was new or a repeat, and its id.

    Raises:
        NotFound, NotAuthorized: for a task of another study or not assigned to this annotator.
        InvalidVote: for an answer that does not fit the task.
        VoteConflict: for a different answer to a task already answered.
    """
    plan = plan_vote(session, study, annotator_id, task_id, answer)
    return plan if isinstance(plan, VoteResult) else write_vote(session, plan)
