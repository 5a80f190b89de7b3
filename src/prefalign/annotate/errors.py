"""Errors of the annotation app, each mapped to the HTTP status the server answers with."""

from __future__ import annotations

from prefalign.errors import PrefalignError


class AnnotateError(PrefalignError):
    """An annotation error a user or an annotator can act on; ``status`` is its HTTP status."""

    status: int = 400


class StudyError(AnnotateError, ValueError):
    """A study directory or study definition that cannot be used (names the file and reason)."""


class NotAuthorized(AnnotateError):
    """A request without a valid token for this study, or with a token of the wrong role."""

    status = 403


class NotFound(AnnotateError):
    """A task, image or study that does not exist, or that this token may not see."""

    status = 404


class InvalidVote(AnnotateError, ValueError):
    """A vote that does not fit its task (answer out of range, wrong kind of answer)."""

    status = 422


class VoteConflict(AnnotateError):
    """A second, different answer to a task this annotator already answered."""

    status = 409
