"""Which task an annotator sees next, in which image order, and how far along they are.

Rules (issue 7): one task at a time; never the same task twice for one annotator; each task
goes to at most ``annotators_per_task`` distinct annotators. A task shown but not answered
holds one of its slots for a lease (30 minutes by default); after that the slot is offered to
someone else. If the first annotator answers after all, the vote still counts: nothing an
annotator did is thrown away, at the price of an occasional extra vote on that task.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeAlias

from sqlalchemy import Connection, and_, exists, func, insert, select, update
from sqlalchemy.orm import Session

from prefalign.annotate.models import SHUFFLE_RANGE, Assignment, Study, Task, utcnow

# Every function here runs plain Core statements (column selects, no ORM objects), so it works
# on an ORM session and on a bare connection alike; the server passes a connection, which
# costs far less Python per request than a session (issue 17).
Executor: TypeAlias = Session | Connection

DEFAULT_LEASE = timedelta(minutes=30)
# The shown order must not be predictable from the task, so use the OS's randomness.
_shuffler = random.SystemRandom()


@dataclass(frozen=True)
class Progress:
    """``done`` answered so far and ``total`` = done + current + still available to this annotator.

    ``total`` can shrink while others work, since tasks fill up.
    """

    done: int
    total: int

    @property
    def current(self) -> int:
        """The 1-based number of the task on screen ("task k of N")."""
        return min(self.done + 1, self.total)


@dataclass(frozen=True)
class Shown:
    """A task on an annotator's screen: its assignment, prompt, images and their shown order.

    ``images`` are paths relative to the study directory, in the dataset's order;
    ``shown_order[p]`` is the index in ``images`` of the image shown at position ``p``.
    """

    assignment_id: int
    task_id: int
    prompt: str
    images: list[str]
    shown_order: list[int]


def _not_assigned_to(annotator_id: int):
    return ~exists().where(and_(Assignment.task_id == Task.id, Assignment.annotator_id == annotator_id))


def release_expired_claims(session: Executor, study: Study, lease: timedelta) -> int:
    """Give back the slots of assignments unanswered for longer than ``lease``; returns how many."""
    cutoff = utcnow() - lease
    stale = session.execute(
        select(Assignment.id, Assignment.task_id)
        .join(Task, Task.id == Assignment.task_id)
        .where(
            Assignment.claim_held.is_(True),
            Assignment.created_at < cutoff,
            Task.study_id == study.id,
        )
    ).all()
    for assignment_id, task_id in stale:
        session.execute(update(Assignment).where(Assignment.id == assignment_id).values(claim_held=False))
        session.execute(update(Task).where(Task.id == task_id).values(slots_used=Task.slots_used - 1))
    return len(stale)


_OPEN = (
    select(Assignment.id, Assignment.task_id, Task.prompt, Task.images, Assignment.shown_order)
    .join(Task, Task.id == Assignment.task_id)
    .order_by(Assignment.id)
    .limit(1)
)


def open_assignment(session: Executor, annotator_id: int) -> Shown | None:
    """The annotator's oldest task shown but not answered yet, if any (one indexed query)."""
    row = session.execute(
        _OPEN.where(Assignment.annotator_id == annotator_id, Assignment.answered_at.is_(None))
    ).first()
    return None if row is None else Shown(*row)


def next_assignment(
    session: Executor,
    study: Study,
    annotator_id: int,
    lease: timedelta = DEFAULT_LEASE,
    *,
    release_expired: bool = True,
) -> Shown | None:
    """The task on this annotator's screen: the open one, or a newly assigned one.

    A new task is one with the fewest slots in use (ties broken at random) that this annotator
    has never been shown. Its images get a random order, stored with the assignment so that a
    reload shows the same order and the vote can be mapped back.

    Args:
        session: A session inside a transaction.
        study: The study served.
        annotator_id: The authenticated annotator's id.
        lease: How long an unanswered assignment holds its slot.
        release_expired: Give back expired slots first (the server does it every few seconds).

    Returns:
        The task shown, or None when nothing is left for this annotator.
    """
    current = open_assignment(session, annotator_id)
    if current is not None:
        return current
    if release_expired:
        release_expired_claims(session, study, lease)
    task = _find_open_task(session, study, annotator_id)
    if task is None:
        return None
    task_id, _, prompt, images = task
    order = list(range(len(images)))
    _shuffler.shuffle(order)
    assignment_id = session.execute(
        insert(Assignment).values(
            task_id=task_id,
            annotator_id=annotator_id,
            shown_order=order,
            claim_held=True,
            created_at=utcnow(),
        )
    ).inserted_primary_key[0]
    return Shown(assignment_id, task_id, prompt, list(images), order)


def _find_open_task(session: Executor, study: Study, annotator_id: int):
    """Claim a slot of a task this annotator has not seen, least-filled first.

    Walks the index (study, slots_used, shuffle_key): for each fill level from the lowest, the
    first unseen task after a random point of the shuffle ring (wrapping around). Each query
    stops at its first hit, so the cost does not grow with the size of the study.

    Returns:
        ``(id, shuffle_key, prompt, images)`` of the claimed task, or None.
    """
    limit = study.annotators_per_task
    level = -1
    while True:
        level = session.scalar(
            select(func.min(Task.slots_used)).where(
                Task.study_id == study.id, Task.slots_used > level, Task.slots_used < limit
            )
        )
        if level is None:
            return None
        start = _shuffler.randrange(SHUFFLE_RANGE)
        for after_start in (True, False):
            ring = Task.shuffle_key >= start if after_start else Task.shuffle_key < start
            candidates = (
                select(Task.id, Task.shuffle_key, Task.prompt, Task.images)
                .where(
                    Task.study_id == study.id, Task.slots_used == level, ring, _not_assigned_to(annotator_id)
                )
                .order_by(Task.shuffle_key)
                .limit(1)
            )
            # A concurrent writer (PostgreSQL) may fill the task between the SELECT and the
            # UPDATE; the conditional UPDATE then matches no row and the search goes on.
            while (task := session.execute(candidates).first()) is not None:
                claimed = session.execute(
                    update(Task)
                    .where(Task.id == task.id, Task.slots_used < limit)
                    .values(slots_used=Task.slots_used + 1)
                    .execution_options(synchronize_session=False)
                )
                if claimed.rowcount == 1:
                    return task
                candidates = candidates.where(Task.shuffle_key > task.shuffle_key)
