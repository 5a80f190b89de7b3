"""The error every evaluation reports to a user: one line naming the input and what is missing."""

from prefalign.errors import PrefalignError


class EvaluationError(PrefalignError, ValueError):
    """Input an evaluation cannot use: missing labels, mismatched sets, too few images."""


class NothingEvaluated(EvaluationError):
    """An evaluation left with 0 records (a split or filter that matches nothing, every record
    skipped): the command says why and exits 1, never an empty report with exit 0."""

    exit_code = 1
