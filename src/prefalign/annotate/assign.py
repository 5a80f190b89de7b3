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

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.orm import Session

from prefalign.annotate.models import Annotator, Assignment, Study, Task, Vote, utcnow

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


def _load():
    # A task's slots in use: counted votes plus live, unanswered assignments.
    return Task.done_votes + Task.open_claims


def _not_assigned_to(annotator_id: int):
    return ~exists().where(and_(Assignment.task_id == Task.id, Assignment.annotator_id == annotator_id))


def release_expired_claims(session: Session, study: Study, lease: timedelta) -> int:
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
        session.execute(update(Task).where(Task.id == task_id).values(open_claims=Task.open_claims - 1))
    return len(stale)


def open_assignment(session: Session, annotator: Annotator) -> Assignment | None:
    """The annotator's oldest task shown but not answered yet, if any."""
    return session.scalar(
        select(Assignment)
        .where(Assignment.annotator_id == annotator.id, Assignment.answered_at.is_(None))
        .order_by(Assignment.id)
        .limit(1)
    )


def next_assignment(
    session: Session, study: Study, annotator: Annotator, lease: timedelta = DEFAULT_LEASE
) -> Assignment | None:
    """The task on this annotator's screen: the open one, or a newly assigned one.

    A new task is one with the fewest slots in use (ties broken at random) that this annotator
    has never been shown. Its images get a random order, stored with the assignment so that a
    reload shows the same order and the vote can be mapped back.

    Returns:
        The assignment, or None when nothing is left for this annotator.
    """
    current = open_assignment(session, annotator)
    if current is not None:
        return current
    release_expired_claims(session, study, lease)
    limit = study.annotators_per_task
    # A concurrent writer (PostgreSQL) may take the last slot between the SELECT and the
    # UPDATE; the conditional UPDATE then matches no row and the next candidate is tried.
    for _ in range(10):
        task = session.scalar(
            select(Task)
            .where(Task.study_id == study.id, _load() < limit, _not_assigned_to(annotator.id))
            .order_by(_load(), func.random())
            .limit(1)
        )
        if task is None:
            return None
        claimed = session.execute(
            update(Task)
            .where(Task.id == task.id, _load() < limit)
            .values(open_claims=Task.open_claims + 1)
            .execution_options(synchronize_session=False)
        )
        if claimed.rowcount == 1:
            order = list(range(len(task.images)))
            _shuffler.shuffle(order)
            assignment = Assignment(
                task_id=task.id, annotator_id=annotator.id, shown_order=order, claim_held=True
            )
            session.add(assignment)
            session.flush()
            return assignment
    return None


def progress(session: Session, study: Study, annotator: Annotator) -> Progress:
    """How many tasks this annotator answered, and how many they can have in all right now."""
    done = session.scalar(select(func.count()).select_from(Vote).where(Vote.annotator_id == annotator.id))
    available = session.scalar(
        select(func.count())
        .select_from(Task)
        .where(
            Task.study_id == study.id,
            _load() < study.annotators_per_task,
            _not_assigned_to(annotator.id),
        )
    )
    current = 1 if open_assignment(session, annotator) is not None else 0
    return Progress(done=done or 0, total=(done or 0) + current + (available or 0))
