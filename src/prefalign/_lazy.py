"""Lazy package attributes: names resolve to their defining module on first use.

Keeps ``import prefalign`` and the command line fast: torch, transformers and diffusers load
only when something that needs them is touched.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose ``names`` map to defining modules.

    Usage in a package's ``__init__``::

        __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
    """

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
