"""The error every evaluation reports to a user: one line naming the input and what is missing."""

from prefalign.errors import PrefalignError


class EvaluationError(PrefalignError, ValueError):
    """Input an evaluation cannot use: missing labels, mismatched sets, too few images."""
