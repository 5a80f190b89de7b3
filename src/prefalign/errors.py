"""The base of every error prefalign reports to a user (one clear line, no traceback)."""


class PrefalignError(Exception):
    """An error whose message names the file or input and the reason."""
