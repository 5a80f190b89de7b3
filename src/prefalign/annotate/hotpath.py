"""The server's hot path in plain SQL on the driver's cursor: task fetch, vote, image lookup.

Measured (issue 17): per fetch+vote cycle the app spent about 3x the server CPU of a minimal
FastAPI + ``sqlite3`` app, most of it building SQLAlchemy statements and running them through
the engine's execution machinery. Here each statement is a fixed SQL string, written once,
executed on the DBAPI cursor of a connection that SQLAlchemy checked out (so the store's
transactions, write lock and pool still apply), and statements were merged so that a cycle
runs as few as the reference: the open-task check, slot claim and least-filled search are one
``UPDATE ... RETURNING`` (SQLite >= 3.35 and PostgreSQL), the vote's counter update one
``UPDATE`` whose ``CASE`` reads the claim in the same statement.

The SQL is portable between SQLite and PostgreSQL; only the parameter style (``:name`` for
``sqlite3``, ``%(name)s`` for ``psycopg``) and how JSON, booleans and times are passed
differ, which :class:`HotPath` handles. Rare cases (a ring that wraps, a fill level with no
task left for this annotator, the periodic lease sweep, errors) take the SQLAlchemy Core path
in ``assign.py`` and ``votes.py``, which stays the reference implementation of the rules.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from prefalign.annotate.assign import Progress, Shown, _shuffler
from prefalign.annotate.errors import VoteConflict
from prefalign.annotate.models import SHUFFLE_RANGE, Study, utcnow
from prefalign.annotate.votes import VotePlan, VoteResult, _parse_answer, assignment_for

OPEN_TASK = """
SELECT a.id, a.task_id, t.prompt, t.images, a.shown_order
FROM assignments a JOIN tasks t ON t.id = a.task_id
WHERE a.annotator_id = :annotator AND a.answered_at IS NULL
ORDER BY a.id LIMIT 1
"""

# One statement: no open task for this annotator (re-checked under the write lock), the lowest
# fill level with a free slot, the first task of that level after a random point of the
# shuffle ring that this annotator was never shown; its slot is taken in the same statement.
# Every part walks an index (ix_assignments_open, ix_tasks_next, the assignments' unique
# (task_id, annotator_id)). No row: the caller falls back to the full search of assign.py.
CLAIM_TASK = """
UPDATE tasks SET slots_used = slots_used + 1
WHERE id = (
    SELECT t.id FROM tasks t
    WHERE t.study_id = :study
      AND t.slots_used = (
          SELECT min(m.slots_used) FROM tasks m WHERE m.study_id = :study AND m.slots_used < :limit)
      AND t.shuffle_key >= :start
      AND NOT EXISTS (
          SELECT 1 FROM assignments s WHERE s.task_id = t.id AND s.annotator_id = :annotator)
    ORDER BY t.shuffle_key LIMIT 1)
  AND slots_used < :limit
  AND NOT EXISTS (
      SELECT 1 FROM assignments o WHERE o.annotator_id = :annotator AND o.answered_at IS NULL)
RETURNING id, prompt, images
"""

INSERT_ASSIGNMENT = """
INSERT INTO assignments (task_id, annotator_id, shown_order, created_at, answered_at, claim_held)
VALUES (:task, :annotator, :shown_order, :now, NULL, :true)
RETURNING id
"""

# Done, tasks with a free slot, and this annotator's assignments among those (see app.py).
PROGRESS = """
SELECT
    (SELECT count(*) FROM votes v WHERE v.annotator_id = :annotator),
    (SELECT count(*) FROM tasks t WHERE t.study_id = :study AND t.slots_used < :limit),
    (SELECT count(*) FROM assignments a JOIN tasks t ON t.id = a.task_id
     WHERE a.annotator_id = :annotator AND t.slots_used < :limit)
"""

# The assignment, its task's study and the vote already given, if any: one read.
VOTE_CHECK = """
SELECT a.id, a.shown_order, t.study_id, v.id, v.choice, v.rating, v.skipped, a.claim_held
FROM assignments a
JOIN tasks t ON t.id = a.task_id
LEFT JOIN votes v ON v.assignment_id = a.id
WHERE a.task_id = :task AND a.annotator_id = :annotator
"""

# The assignment first (the order every writer takes: assignment, then task), only if it is
# still unanswered and still holds, or does not hold, its slot as the check saw it; no row: the
# caller checks again.
VOTE_ANSWERED = """
UPDATE assignments SET answered_at = :now, claim_held = :false
WHERE id = :assignment AND answered_at IS NULL AND claim_held = :held
"""

VOTE_COUNTERS = """
UPDATE tasks SET done_votes = done_votes + :counted, slots_used = slots_used + :slots
WHERE id = :task
"""

INSERT_VOTE = """
INSERT INTO votes (assignment_id, task_id, annotator_id, choice, rating, skipped, shown_position,
                   shown_order, created_at)
VALUES (:assignment, :task, :annotator, :choice, :rating, :skipped, :shown_position,
        :shown_order, :now)
RETURNING id
"""

IMAGES_OF = """
SELECT t.study_id, t.images, a.shown_order
FROM tasks t LEFT JOIN assignments a ON a.task_id = t.id AND a.annotator_id = :annotator
WHERE t.id = :task
"""

_STATEMENTS = {
    "OPEN_TASK": OPEN_TASK,
    "CLAIM_TASK": CLAIM_TASK,
    "INSERT_ASSIGNMENT": INSERT_ASSIGNMENT,
    "PROGRESS": PROGRESS,
    "VOTE_CHECK": VOTE_CHECK,
    "VOTE_COUNTERS": VOTE_COUNTERS,
    "VOTE_ANSWERED": VOTE_ANSWERED,
    "INSERT_VOTE": INSERT_VOTE,
    "IMAGES_OF": IMAGES_OF,
}
_NAMED = re.compile(r"(?<!:):([a-z_]+)\b")


@dataclass(frozen=True)
class CheckedVote(VotePlan):
    """A checked vote, and whether its assignment held a slot when it was checked."""

    claim_held: bool


class AnsweredMeanwhile(Exception):
    """The assignment was answered between the vote's check and its write: check again."""


class HotPath:
    """The statements above for one study on one database, and how to run them.

    Args:
        study: The study served (its id, kind and ``annotators_per_task`` are read once).
        dialect: ``"sqlite"`` or ``"postgresql"`` (SQLAlchemy's dialect name).
    """

    def __init__(self, study: Study, dialect: str):
        self.study = study
        self.sqlite = dialect == "sqlite"
        # Each statement converted once; the drivers cache their prepared form by its text.
        self._statements = {name: self.sql(text) for name, text in _STATEMENTS.items()}

    def sql(self, text: str) -> str:
        """``text`` in the driver's parameter style (``sqlite3``: as written; psycopg: pyformat)."""
        return text if self.sqlite else _NAMED.sub(r"%(\1)s", text)

    def _one(self, connection: Connection, name: str, params: dict[str, Any]) -> Any:
        """The first row of statement ``name``, or None; every row is fetched, so the statement
        is finished (a SQLite reader holds no snapshot, a RETURNING statement is complete)."""
        cursor = connection.connection.cursor()
        try:
            cursor.execute(self._statements[name], params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return rows[0] if rows else None

    def _count(self, connection: Connection, name: str, params: dict[str, Any]) -> int:
        """The number of rows statement ``name`` (an UPDATE) changed."""
        cursor = connection.connection.cursor()
        try:
            cursor.execute(self._statements[name], params)
            return cursor.rowcount
        finally:
            cursor.close()

    # Values the drivers take differently: SQLAlchemy stores JSON as text and times as naive
    # "YYYY-MM-DD HH:MM:SS.ffffff" strings on SQLite; psycopg takes Python values.
    def _json_out(self, value: list[int]) -> Any:
        if self.sqlite:
            return json.dumps(value)
        from psycopg.types.json import Json

        return Json(value)

    @staticmethod
    def _json_in(value: Any) -> Any:
        return json.loads(value) if isinstance(value, str) else value

    def _time(self, value: datetime) -> Any:
        return value.strftime("%Y-%m-%d %H:%M:%S.%f") if self.sqlite else value

    # --- task fetch ---------------------------------------------------------------------

    def open_task(self, connection: Connection, annotator_id: int) -> Shown | None:
        """The annotator's task shown and not answered yet, or None (one indexed read)."""
        row = self._one(connection, "OPEN_TASK", {"annotator": annotator_id})
        if row is None:
            return None
        return Shown(row[0], row[1], row[2], list(self._json_in(row[3])), list(self._json_in(row[4])))

    def claim(self, connection: Connection, annotator_id: int) -> Shown | None:
        """In the caller's write transaction: claim a slot of the least-filled task this
        annotator was never shown, from a random point of the shuffle ring, and assign it with
        a random image order.

        Returns:
            The task shown, or None when this statement (run again from the ring's start when
            it found nothing after the random point) found nothing: an open task, or a fill
            level with nothing left for this annotator. The caller then runs the full search
            of ``assign.next_assignment``.
        """
        params = {
            "study": self.study.id,
            "limit": self.study.annotators_per_task,
            "start": _shuffler.randrange(SHUFFLE_RANGE),
            "annotator": annotator_id,
        }
        row = self._one(connection, "CLAIM_TASK", params)
        if row is None:  # past the ring's last task at that level: wrap around once
            row = self._one(connection, "CLAIM_TASK", {**params, "start": 0})
        if row is None:
            return None
        task_id, prompt, images = row[0], row[1], list(self._json_in(row[2]))
        order = list(range(len(images)))
        _shuffler.shuffle(order)
        assignment_id = self._one(
            connection,
            "INSERT_ASSIGNMENT",
            {
                "task": task_id,
                "annotator": annotator_id,
                "shown_order": self._json_out(order),
                "now": self._time(utcnow()),
                "true": True,
            },
        )[0]
        return Shown(assignment_id, task_id, prompt, images, order)

    def progress(self, connection: Connection, annotator_id: int, has_open_task: bool) -> Progress:
        """Done so far, and done + current + still available to this annotator (one read)."""
        params = {"annotator": annotator_id, "study": self.study.id, "limit": self.study.annotators_per_task}
        done, with_free_slot, seen_with_free_slot = self._one(connection, "PROGRESS", params)
        available = max(0, (with_free_slot or 0) - (seen_with_free_slot or 0))
        return Progress(done=done or 0, total=(done or 0) + int(has_open_task) + available)

    # --- vote ---------------------------------------------------------------------------

    def plan_vote(
        self, connection: Connection, annotator_id: int, task_id: int, answer: object
    ) -> CheckedVote | VoteResult:
        """:func:`prefalign.annotate.votes.plan_vote` in one read (same results and errors)."""
        row = self._one(connection, "VOTE_CHECK", {"task": task_id, "annotator": annotator_id})
        if row is None or row[2] != self.study.id:
            assignment_for(connection, self.study, annotator_id, task_id)  # raises the right error
            raise AssertionError("unreachable: the assignment exists after all")
        assignment_id, shown_order = row[0], list(self._json_in(row[1]))
        parsed = _parse_answer(self.study.kind, answer, len(shown_order))
        position = parsed.pop("shown_position")
        columns = {
            **parsed,
            "shown_position": position,
            "choice": None if self.study.kind == "rating" or position is None else shown_order[position],
        }
        if row[3] is not None:
            existing = {"choice": row[4], "rating": row[5], "skipped": bool(row[6])}
            wanted = {"choice": columns["choice"], "rating": columns["rating"], "skipped": columns["skipped"]}
            if existing == wanted:
                return VoteResult("duplicate", row[3])
            raise VoteConflict(f"you already answered task {task_id}; an answer cannot be changed")
        return CheckedVote(assignment_id, task_id, annotator_id, shown_order, columns, bool(row[7]))

    def write_vote(self, connection: Connection, plan: CheckedVote) -> VoteResult:
        """:func:`prefalign.annotate.votes.write_vote` in three statements, in the caller's write
        transaction.

        Raises:
            AnsweredMeanwhile: if the assignment was answered, or its lease given back, since
                the check (nothing was written: the caller checks again).
            The driver's IntegrityError: for a concurrent identical vote (unique assignment_id).
        """
        now = self._time(utcnow())
        params = {"now": now, "false": False, "assignment": plan.assignment_id, "held": plan.claim_held}
        if self._count(connection, "VOTE_ANSWERED", params) != 1:
            raise AnsweredMeanwhile(f"assignment {plan.assignment_id} changed since the vote was checked")
        # A held slot turns into a counted vote, or is given back by a skip; a vote whose lease
        # had run out takes a slot of its own (see assign.py and votes.write_vote).
        skipped = bool(plan.columns["skipped"])
        if skipped:
            counters = {"counted": 0, "slots": -1 if plan.claim_held else 0}
        else:
            counters = {"counted": 1, "slots": 0 if plan.claim_held else 1}
        if counters != {"counted": 0, "slots": 0}:
            self._count(connection, "VOTE_COUNTERS", {**counters, "task": plan.task_id})
        vote_id = self._one(
            connection,
            "INSERT_VOTE",
            {
                "assignment": plan.assignment_id,
                "task": plan.task_id,
                "annotator": plan.annotator_id,
                "choice": plan.columns["choice"],
                "rating": plan.columns["rating"],
                "skipped": skipped,
                "shown_position": plan.columns["shown_position"],
                "shown_order": self._json_out(plan.shown_order),
                "now": now,
            },
        )[0]
        return VoteResult("recorded", vote_id)

    # --- images -------------------------------------------------------------------------

    def images_of(
        self, connection: Connection, annotator_id: int, task_id: int
    ) -> tuple[list[str], list[int] | None] | None:
        """``(images, shown order)`` of a task of this study, the order None when the task is
        not assigned to this annotator; None when the study has no such task (one read)."""
        row = self._one(connection, "IMAGES_OF", {"task": task_id, "annotator": annotator_id})
        if row is None or row[0] != self.study.id:
            return None
        return list(self._json_in(row[1])), None if row[2] is None else list(self._json_in(row[2]))
