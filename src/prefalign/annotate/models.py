"""The database schema of the annotation app (SQLAlchemy 2 declarative models).

A change here needs a new Alembic revision in ``migrations/versions``; a test checks that the
migrations and these models agree.

Counters on ``tasks`` (``done_votes``, ``slots_used``) are kept in the same transaction as the
rows they count, so choosing the next task walks an index instead of counting votes, and a
conditional ``UPDATE`` on ``slots_used`` enforces "at most N distinct annotators per task" on
SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# Named constraints so that Alembic migrations (and SQLite batch mode) can refer to them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KINDS = ("choice", "pair", "rating")
ROLES = ("annotator", "admin")
SHUFFLE_RANGE = 2**31  # Task.shuffle_key values: fit a 32-bit signed INTEGER in every database


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Study(Base):
    """One study: a kind of task, how many distinct annotators each task needs, the question."""

    __tablename__ = "studies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))
    annotators_per_task: Mapped[int] = mapped_column(Integer)
    question: Mapped[str] = mapped_column(Text)
    # Where the study directory was when the study was created; export copies images from here
    # when it is given the study's name rather than its directory.
    root: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    tasks: Mapped[list[Task]] = relationship(back_populates="study")


class Task(Base):
    """One thing to judge: a prompt and its images (paths relative to the study directory).

    For ``rating`` studies a task is one image of a record (``image_index`` says which).
    """

    __tablename__ = "tasks"
    __table_args__ = (
        UniqueConstraint("study_id", "key"),
        # Next-task search: lowest slots_used first, then a fixed random ring of shuffle_key.
        Index("ix_tasks_next", "study_id", "slots_used", "shuffle_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    # Stable, human-readable id within the study: the record id, plus "#i" for rating tasks.
    key: Mapped[str] = mapped_column(String(300))
    record_id: Mapped[str] = mapped_column(String(300))
    prompt: Mapped[str] = mapped_column(Text)
    images: Mapped[list[str]] = mapped_column(JSON)
    image_index: Mapped[int | None] = mapped_column(Integer, nullable=True)
    split: Mapped[str | None] = mapped_column(String(50), nullable=True)
    # Votes that count toward annotators_per_task (skips do not).
    done_votes: Mapped[int] = mapped_column(Integer, default=0)
    # done_votes plus assignments shown, unanswered and within their lease: never above
    # annotators_per_task when a slot is handed out.
    slots_used: Mapped[int] = mapped_column(Integer, default=0)
    # A random number fixed at creation; tasks of equal slots_used are offered along this ring
    # from a random starting point, so that annotators see tasks in different orders.
    shuffle_key: Mapped[int] = mapped_column(Integer)

    study: Mapped[Study] = relationship(back_populates="tasks")


class Annotator(Base):
    """A token holder of one study: an annotator who votes, or an admin who watches progress.

    Only a SHA-256 hash of the token is stored, so a copy of the database gives no access.
    """

    __tablename__ = "annotators"
    __table_args__ = (UniqueConstraint("study_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    study_id: Mapped[int] = mapped_column(ForeignKey("studies.id"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """A task shown to one annotator, with the order its images were shown in.

    ``shown_order[p]`` is the index (in the task's ``images``) of the image shown at position
    ``p``. The unique constraint is what makes "no task twice for one annotator" hold.
    """

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("task_id", "annotator_id"),
        Index("ix_assignments_open", "annotator_id", "answered_at"),
        Index("ix_assignments_claims", "claim_held", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    shown_order: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    answered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # True while this unanswered assignment holds one of tasks.slots_used (until answered or expired).
    claim_held: Mapped[bool] = mapped_column(Boolean, default=True)

    task: Mapped[Task] = relationship()


class Vote(Base):
    """An annotator's answer to one assignment: who, when, what, and in which order it was shown.

    ``choice`` is the index into the task's ``images`` (not the shown position, which is kept
    in ``shown_position``); ``rating`` is 1.0 (good) or 0.0 (bad); a skip has neither.
    """

    __tablename__ = "votes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"), index=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"), index=True)
    choice: Mapped[int | None] = mapped_column(Integer, nullable=True)
    rating: Mapped[float | None] = mapped_column(Float, nullable=True)
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    shown_position: Mapped[int | None] = mapped_column(Integer, nullable=True)
    shown_order: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored here is UTC."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def answer_of(vote: Vote) -> dict[str, Any]:
    """The stored answer as a small dict, used to compare a repeated vote with the first one."""
    return {"choice": vote.choice, "rating": vote.rating, "skipped": vote.skipped}
