"""Opening the annotation database: URL handling, SQLite settings, and migrations at start.

SQLite (the default, a file) is set up for many concurrent voters on one machine:

* WAL journal, so readers never block the writer and the writer never blocks readers;
* ``synchronous=FULL``, so a vote acknowledged to the annotator survives a power cut;
* every transaction starts with ``BEGIN IMMEDIATE``: SQLite then serialises writers at the
  start of a transaction and waits (``busy_timeout``) for the lock. With the default deferred
  transactions, a transaction that reads then writes can fail at once with "database is
  locked" when another writer committed in between, which the busy timeout does not cover.

PostgreSQL works by URL (``postgresql+psycopg://user@host/db``); the schema is created or
upgraded with Alembic whenever a store is opened.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from prefalign.annotate.errors import StudyError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
DEFAULT_DB_FILE = "annotations.db"
# Seconds a writer waits for SQLite's lock before failing; generous, since a vote must not fail
# just because fifty others are being written.
SQLITE_BUSY_TIMEOUT_S = 60.0

log = logging.getLogger(__name__)


def database_url(db: str | Path) -> str:
    """Turn what a user typed for ``--db`` into an SQLAlchemy URL.

    Args:
        db: A URL (``sqlite:///file.db``, ``postgresql+psycopg://...``) or a plain file path,
            which means a SQLite file.

    Returns:
        The URL as a string.

    Raises:
        StudyError: if ``db`` is neither a valid URL nor a path.
    """
    text = str(db)
    if "://" not in text:
        return f"sqlite:///{Path(text).expanduser().resolve()}"
    try:
        make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise StudyError(f"{text}: not a database URL ({exc})") from None
    return text


def _configure_sqlite(engine: Engine) -> None:
    # Take over transaction control from the sqlite3 module (which would issue a deferred BEGIN
    # itself), per SQLAlchemy's documented recipe, so that every transaction is IMMEDIATE.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(db: str | Path) -> Engine:
    """Create an engine for ``db`` (a URL or a SQLite file path) with the settings above."""
    url = make_url(database_url(db))
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise StudyError("an in-memory SQLite database cannot be shared by the server; use a file")
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            # Enough pooled connections for the server's worker threads.
            pool_size=20,
            max_overflow=40,
        )
        _configure_sqlite(engine)
        return engine
    try:
        return create_engine(url, pool_size=20, max_overflow=40, pool_pre_ping=True)
    except ModuleNotFoundError as exc:
        raise StudyError(
            f"{url.render_as_string(hide_password=True)}: the database driver {exc.name!r} is not "
            "installed (PostgreSQL: pip install 'psycopg[binary]', part of prefalign[annotate])"
        ) from None


def migrate(engine: Engine) -> None:
    """Create the schema, or upgrade it to the newest revision, with Alembic."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """The annotation database: an engine whose schema is current, and sessions on it.

    Example:
        >>> store = Store.open("study/annotations.db")            # doctest: +SKIP
        >>> with store.transaction() as session:                  # doctest: +SKIP
        ...     session.scalars(select(Study)).all()
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # SQLite admits one writer at a time, and every transaction here takes the write lock.
        # Threads of this process queue on a Python lock, which wakes the next one as soon as
        # the lock is free; left to SQLite's busy handler they would poll with growing sleeps,
        # which under fifty concurrent voters turns into multi-second latency tails. Other
        # processes (a CLI command while the server runs) still wait via busy_timeout.
        self._writer = threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()

    @classmethod
    def open(cls, db: str | Path) -> Store:
        """Connect to ``db`` (URL or SQLite path) and bring its schema to the newest revision."""
        engine = make_engine(db)
        migrate(engine)
        return cls(engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on error."""
        with self._writer, self._sessions() as session, session.begin():
            yield session

    def close(self) -> None:
        """Release every pooled connection."""
        self.engine.dispose()
