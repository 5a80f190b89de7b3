"""The base of every error prefalign reports to a user (one clear line, no traceback)."""


class PrefalignError(Exception):
    """An error whose message names the file or input and the reason."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
