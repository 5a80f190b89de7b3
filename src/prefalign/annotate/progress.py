"""The admin page's figures: how far a study is, per task and per annotator."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from prefalign.annotate.models import Annotator, Assignment, Study, Task, Vote, as_utc


@dataclass
class AnnotatorProgress:
    """One token holder's work so far."""

    name: str
    role: str
    votes: int
    skips: int
    open_tasks: int
    last_vote_at: datetime | None


@dataclass
class StudyProgress:
    """A study's state, as shown on the admin page and returned by ``/api/admin``.

    ``coverage[k]`` is the number of tasks with ``k`` counted votes (the last entry also counts
    tasks with more). ``answer_counts`` counts, for choice and pair studies, how often the image
    at each dataset index was chosen (for a base-vs-adapted pair study: the vote split), and for
    rating studies the ``good``/``bad`` ratings.
    """

    name: str
    kind: str
    question: str
    annotators_per_task: int
    tasks: int
    tasks_complete: int
    votes: int
    skips: int
    open_assignments: int
    coverage: list[int]
    answer_counts: dict[str, int]
    annotators: list[AnnotatorProgress] = field(default_factory=list)

    @property
    def percent_complete(self) -> float:
        """Counted votes as a percentage of the votes the study needs."""
        needed = self.tasks * self.annotators_per_task
        return 100.0 * min(self.votes - self.skips, needed) / needed if needed else 100.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO 8601 strings)."""
        data = asdict(self)
        data["percent_complete"] = round(self.percent_complete, 2)
        for row in data["annotators"]:
            row["last_vote_at"] = row["last_vote_at"].isoformat() if row["last_vote_at"] else None
        return data


def study_progress(session: Session, study: Study) -> StudyProgress:
    """Gather the admin page's figures for ``study`` in a few grouped queries."""
    n = study.annotators_per_task
    coverage = [0] * (n + 1)
    for done, count in session.execute(
        select(Task.done_votes, func.count()).where(Task.study_id == study.id).group_by(Task.done_votes)
    ):
        coverage[min(done, n)] += count
    study_votes = select(Vote).join(Task, Task.id == Vote.task_id).where(Task.study_id == study.id).subquery()
    votes, skips = session.execute(
        select(func.count(), func.coalesce(func.sum(case((study_votes.c.skipped, 1), else_=0)), 0))
    ).one()
    if study.kind == "rating":
        column = case((study_votes.c.rating >= 0.5, "good"), else_="bad")
        answers = select(column, func.count()).where(study_votes.c.skipped.is_(False)).group_by(column)
    else:
        answers = select(study_votes.c.choice, func.count()).group_by(study_votes.c.choice)
    answer_counts = {str(key): count for key, count in session.execute(answers)}
    open_assignments = session.scalar(
        select(func.count())
        .select_from(Assignment)
        .join(Task, Task.id == Assignment.task_id)
        .where(Task.study_id == study.id, Assignment.answered_at.is_(None))
    )
    per_annotator = {
        annotator_id: (count, skipped, last)
        for annotator_id, count, skipped, last in session.execute(
            select(
                Vote.annotator_id,
                func.count(),
                func.sum(case((Vote.skipped, 1), else_=0)),
                func.max(Vote.created_at),
            ).group_by(Vote.annotator_id)
        )
    }
    open_per_annotator = dict(
        session.execute(
            select(Assignment.annotator_id, func.count())
            .where(Assignment.answered_at.is_(None))
            .group_by(Assignment.annotator_id)
        ).all()
    )
    annotators = []
    holders = select(Annotator).where(Annotator.study_id == study.id)
    holders = holders.order_by(Annotator.role.desc(), Annotator.name)
    for annotator in session.scalars(holders):
        count, skipped, last = per_annotator.get(annotator.id, (0, 0, None))
        annotators.append(
            AnnotatorProgress(
                name=annotator.name,
                role=annotator.role,
                votes=count,
                skips=skipped or 0,
                open_tasks=open_per_annotator.get(annotator.id, 0),
                last_vote_at=as_utc(last) if last else None,
            )
        )
    return StudyProgress(
        name=study.name,
        kind=study.kind,
        question=study.question,
        annotators_per_task=n,
        tasks=sum(coverage),
        tasks_complete=coverage[n],
        votes=votes,
        skips=skips,
        open_assignments=open_assignments or 0,
        coverage=coverage,
        answer_counts=answer_counts,
        annotators=annotators,
    )
