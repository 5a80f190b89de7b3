"""Which ``pip install 'prefalign[EXTRA]'`` brings a missing optional library (pyproject's extras).

A command that needs an optional library reports its absence as one line naming the extra,
never a ``ModuleNotFoundError`` traceback (``prefalign.cli.main`` calls :func:`missing_extra`).
"""

from __future__ import annotations

# top-level module -> the extra of pyproject.toml that installs it
MODULE_EXTRAS: dict[str, str] = {
    "accelerate": "train",
    "yaml": "train",
    "torchmetrics": "metrics",
    "matplotlib": "metrics",
    "scipy": "metrics",
    "diffusers": "diffusion",
    "peft": "diffusion",
    "fastapi": "annotate",
    "uvicorn": "annotate",
    "sqlalchemy": "annotate",
    "alembic": "annotate",
    "jinja2": "annotate",
    "multipart": "annotate",
    "python_multipart": "annotate",
    "psycopg": "annotate",
    "httpx": "dev",
}
# pip names where they differ from the module name
_PIP_NAMES = {"yaml": "pyyaml", "multipart": "python-multipart", "python_multipart": "python-multipart"}


def missing_extra(exc: BaseException) -> str | None:
    """One line saying which extra to install for a missing optional module, else ``None``."""
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    top = exc.name.split(".")[0]
    extra = MODULE_EXTRAS.get(top)
    if extra is None:
        return None
    return (
        f"this command needs {_PIP_NAMES.get(top, top)}, which is not installed: "
        f"pip install 'prefalign[{extra}]' (or 'prefalign[all]')"
    )
