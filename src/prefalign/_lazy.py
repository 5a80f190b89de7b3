"""Lazy package attributes: names resolve to their defining module on first use.

Keeps ``import prefalign`` and the command line fast: torch, transformers and diffusers load
only when something that needs them is touched.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable
from typing import Any


def lazy_attributes(
    package: str, names: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose ``names`` map to defining modules.

    Usage in a package's ``__init__``::

        __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)

    A name that is also the name of its defining submodule (``prefalign.adapt.generate`` the
    function in ``prefalign/adapt/generate.py``) stays the function: importing a submodule binds
    it on its package, which would otherwise shadow the name with the module once anything
    imported ``prefalign.adapt.generate`` directly.
    """
    clashes = frozenset(n for n, m in names.items() if m == f"{package}.{n}")
    if clashes and package in sys.modules:
        sys.modules[package].__class__ = _door_class(clashes)

    def __getattr__(name: str) -> Any:
        if name in names:
            return getattr(importlib.import_module(names[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__


def _door_class(clashes: frozenset[str]) -> type[types.ModuleType]:
    """A module class that binds ``clashes`` names to the object, not the same-named submodule."""

    class LazyDoor(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if (
                name in clashes
                and isinstance(value, types.ModuleType)
                and value.__name__ == f"{self.__name__}.{name}"
            ):
                value = getattr(value, name)
            super().__setattr__(name, value)

    return LazyDoor
