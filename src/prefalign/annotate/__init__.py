"""The annotation web app: collect human choices, A/B preferences and good/bad ratings.

The door of this room (``prefalign annotate`` is a thin shell over it):

    >>> from prefalign.annotate import Store, StudyConfig, create_study, add_annotator
    >>> store = Store.open("my-study/annotations.db")                          # doctest: +SKIP
    >>> study = create_study(store, "my-study", StudyConfig("hps-user-study", "pair", 20))  # doctest: +SKIP
    >>> token = add_annotator(store, study, "alice")                           # doctest: +SKIP
    >>> app = create_app(store, "my-study")   # an ASGI app; serve with uvicorn  # doctest: +SKIP
    >>> export_study(store, study, "my-study", "votes/")                       # doctest: +SKIP

FastAPI and SQLAlchemy load only when a name that needs them is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefalign._lazy import lazy_attributes

# name -> module that defines it
_LAZY = {
    "create_app": "prefalign.annotate.app",
    "Store": "prefalign.annotate.storage",
    "database_url": "prefalign.annotate.storage",
    "StudyConfig": "prefalign.annotate.study",
    "create_study": "prefalign.annotate.study",
    "copy_dataset": "prefalign.annotate.study",
    "check_records": "prefalign.annotate.study",
    "find_study": "prefalign.annotate.study",
    "locate_study": "prefalign.annotate.study",
    "read_study_config": "prefalign.annotate.study",
    "default_db": "prefalign.annotate.study",
    "task_count": "prefalign.annotate.study",
    "add_annotator": "prefalign.annotate.tokens",
    "rotate_token": "prefalign.annotate.tokens",
    "revoke_annotator": "prefalign.annotate.tokens",
    "export_study": "prefalign.annotate.export",
    "study_progress": "prefalign.annotate.progress",
    "AnnotateError": "prefalign.annotate.errors",
    "StudyError": "prefalign.annotate.errors",
}

# Type checkers see the real names (and `__getattr__` is hidden from them, so a misspelt name
# is an error); at run time each name imports its module on first use.
if TYPE_CHECKING:
    from prefalign.annotate.app import create_app
    from prefalign.annotate.errors import AnnotateError, StudyError
    from prefalign.annotate.export import export_study
    from prefalign.annotate.progress import study_progress
    from prefalign.annotate.storage import Store, database_url
    from prefalign.annotate.study import (
        StudyConfig,
        check_records,
        copy_dataset,
        create_study,
        default_db,
        find_study,
        locate_study,
        read_study_config,
        task_count,
    )
    from prefalign.annotate.tokens import add_annotator, revoke_annotator, rotate_token

__all__ = [
    "AnnotateError",
    "Store",
    "StudyConfig",
    "StudyError",
    "add_annotator",
    "check_records",
    "copy_dataset",
    "create_app",
    "create_study",
    "database_url",
    "default_db",
    "export_study",
    "find_study",
    "locate_study",
    "read_study_config",
    "revoke_annotator",
    "rotate_token",
    "study_progress",
    "task_count",
]

if not TYPE_CHECKING:
    __getattr__, __dir__ = lazy_attributes(__name__, _LAZY)
