"""Errors of the adaptation room, each naming the input and the reason in one line."""

from __future__ import annotations

from prefalign.errors import PrefalignError


class AdaptError(PrefalignError, ValueError):
    """A base model, adapter, data set or prompt file that cannot be used for adaptation."""
