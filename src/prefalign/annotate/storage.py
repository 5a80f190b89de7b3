"""Opening the annotation database: URL handling, SQLite settings, and migrations at start.

SQLite (the default, a file) is set up for many concurrent voters on one machine:

* WAL journal, so readers never block the writer and the writer never blocks readers;
* ``synchronous=FULL``, so a vote acknowledged to the annotator survives a power cut;
* every write transaction starts with ``BEGIN IMMEDIATE``: SQLite then serialises writers at
  the start of a transaction and waits (``busy_timeout``) for the lock. With the default
  deferred transactions, a transaction that reads then writes can fail at once with "database
  is locked" when another writer committed in between, which the busy timeout does not cover.
  Read-only work (:meth:`Store.read`) uses a second engine with deferred transactions and no
  lock: in WAL mode readers run beside the writer, each on one consistent snapshot.
* the server's writes are group-committed (:meth:`Store.write_grouped`): one writer thread
  commits the writes that queued while it was busy together, one fsync for many votes, each
  acknowledged only after its commit;
* the file is created readable by its owner only (0600; SQLite gives its ``-wal`` and ``-shm``
  files the same mode), and ``PRAGMA quick_check`` runs when a store opens, so a damaged file
  is refused at start with one line, not found at export.

PostgreSQL works by URL (``postgresql+psycopg://user@host/db``); the schema is created or
upgraded with Alembic whenever a store is opened.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from prefalign.annotate.errors import StudyError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
DEFAULT_DB_FILE = "annotations.db"
# Seconds a writer waits for SQLite's lock before failing; generous, since a vote must not fail
# just because fifty others are being written.
SQLITE_BUSY_TIMEOUT_S = 60.0

log = logging.getLogger(__name__)
T = TypeVar("T")


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


def _configure_sqlite(engine: Engine, *, immediate: bool = True) -> None:
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
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _create_private(path: Path) -> None:
    """Create an empty database file readable by its owner only, unless it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def sqlite_path(db: str | Path) -> Path | None:
    """The file of a SQLite ``db`` (URL or path), or None for another database."""
    url = make_url(database_url(db))
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database)


def make_engine(db: str | Path, *, immediate: bool = True) -> Engine:
    """Create an engine for ``db`` (a URL or a SQLite file path) with the settings above.

    ``immediate=False`` (SQLite only) makes transactions deferred: for read-only work.
    """
    url = make_url(database_url(db))
    if url.get_backend_name() == "sqlite":
        if url.database in (None, "", ":memory:"):
            raise StudyError("an in-memory SQLite database cannot be shared by the server; use a file")
        _create_private(Path(url.database))
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S, "check_same_thread": False},
            # Enough pooled connections for the server's worker threads.
            pool_size=20,
            max_overflow=40,
        )
        _configure_sqlite(engine, immediate=immediate)
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

    def __init__(self, engine: Engine, reader: Engine | None = None):
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Read-only sessions: a deferred-transaction engine on SQLite, the same engine elsewhere.
        self.reader = reader or engine
        self._read_sessions = sessionmaker(self.reader, expire_on_commit=False)
        # SQLite admits one writer at a time, and every transaction here takes the write lock.
        # Threads of this process queue on a Python lock, which wakes the next one as soon as
        # the lock is free; left to SQLite's busy handler they would poll with growing sleeps,
        # which under fifty concurrent voters turns into multi-second latency tails. Other
        # processes (a CLI command while the server runs) still wait via busy_timeout.
        self._writer = threading.Lock() if engine.dialect.name == "sqlite" else contextlib.nullcontext()
        self._group: GroupCommit | None = None
        self._group_lock = threading.Lock()

    @classmethod
    def open(cls, db: str | Path) -> Store:
        """Connect to ``db`` (URL or SQLite path) and bring its schema to the newest revision.

        Raises:
            StudyError: for a SQLite file that is not a database or fails SQLite's quick
                integrity check (naming the file and the reason), or a missing driver.
        """
        engine = make_engine(db)
        path = sqlite_path(db)
        try:
            if path is not None:
                check_sqlite(engine, path)
            migrate(engine)
        except DatabaseError as exc:
            engine.dispose()
            if path is None:
                raise
            raise StudyError(_damaged(path, str(exc.orig or exc))) from None
        except BaseException:
            engine.dispose()
            raise
        reader = make_engine(db, immediate=False) if path is not None else None
        return cls(engine, reader)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed when the block ends, rolled back on error."""
        with self._writer, self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading only, in one transaction (one consistent snapshot).

        On SQLite it takes neither the write lock nor the process's writer queue, so reads run
        while a vote is written. Anything written in it is rolled back.
        """
        with self._read_sessions() as session:
            yield session  # closing the session rolls its transaction back

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A Core connection in one write transaction (the server's hot path: no ORM session).

        Same rules as :meth:`transaction`: committed when the block ends, rolled back on error,
        serialised with the other writers of this process on SQLite.
        """
        with self._writer, self.engine.begin() as connection:
            yield connection

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """A Core connection for reading only, in one transaction (one consistent snapshot).

        Like :meth:`read` without an ORM session; the transaction starts with the first
        statement and is rolled back when the block ends.
        """
        with self.reader.connect() as connection:
            yield connection

    def write_grouped(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` in a write transaction and return its result once that is committed.

        On SQLite, concurrent calls share transactions (group commit): one writer thread runs
        the works waiting in the queue one after another, each in a savepoint (an exception
        rolls back that work alone and is raised in its caller), then commits them with one
        ``COMMIT``: one fsync for many votes instead of one each. Nothing is acknowledged
        before its commit, so ``synchronous=FULL`` still means an acknowledged vote survives a
        crash. Elsewhere (PostgreSQL, which runs writers side by side) it is :meth:`write`.
        """
        if self.engine.dialect.name != "sqlite":
            with self.write() as connection:
                return work(connection)
        with self._group_lock:
            if self._group is None:
                self._group = GroupCommit(self)
            group = self._group
        return group.submit(work)

    def close(self) -> None:
        """Stop the group-commit writer and release every pooled connection."""
        with self._group_lock:
            group, self._group = self._group, None
        if group is not None:
            group.stop()
        self.engine.dispose()
        if self.reader is not self.engine:
            self.reader.dispose()


# Works one shared transaction takes at most (ours): bounds what one failed COMMIT undoes.
GROUP_COMMIT_MAX = 64


class GroupCommit:
    """The writer thread of :meth:`Store.write_grouped` (SQLite).

    Waiting works are taken from the queue as a batch (no added delay: those that arrived
    while the last batch committed), run in one ``BEGIN IMMEDIATE`` transaction under the
    store's writer lock, each in its own savepoint when the batch has more than one, and
    committed together. Each caller then gets its result or its exception; a failed
    ``COMMIT`` is raised in every caller of the batch.
    """

    def __init__(self, store: Store):
        self.store = store
        self.queue: queue.SimpleQueue[tuple[Callable[[Connection], Any], Future] | None] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._run, name="prefalign-group-commit", daemon=True)
        self.thread.start()

    def submit(self, work: Callable[[Connection], T]) -> T:
        """Queue ``work``, wait for the commit that holds it; its result or exception.

        Raises:
            StudyError: if the writer thread is no longer running (nothing was written).
        """
        if not self.thread.is_alive():
            raise StudyError("the database writer thread has stopped; restart the server")
        future: Future = Future()
        self.queue.put((work, future))
        return future.result()

    def stop(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self.queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < GROUP_COMMIT_MAX:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    self.queue.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._commit(batch)

    def _commit(self, batch: list[tuple[Callable[[Connection], Any], Future]]) -> None:
        outcomes: list[tuple[bool, Any]] = []
        try:
            with self.store.write() as connection:
                cursor = connection.connection.cursor()
                for work, _ in batch:
                    if len(batch) == 1:
                        outcomes.append((True, work(connection)))  # an error rolls it all back
                        continue
                    cursor.execute("SAVEPOINT work")
                    try:
                        outcomes.append((True, work(connection)))
                    except Exception as exc:
                        cursor.execute("ROLLBACK TO work")
                        outcomes.append((False, exc))
                    cursor.execute("RELEASE work")
        except BaseException as exc:  # the transaction is rolled back: nothing of it stands
            for _, future in batch:
                future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), (ok, value) in zip(batch, outcomes):
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _damaged(path: Path, reason: str) -> str:
    return (
        f"{path}: damaged or not an annotation database ({reason.splitlines()[0] if reason else 'unknown'}); "
        "restore it from a backup, or move it away to start an empty one"
    )


def check_sqlite(engine: Engine, path: Path) -> None:
    """Run ``PRAGMA quick_check`` (SQLite's O(N) integrity check without index cross-checks).

    Raises:
        StudyError: naming the file and SQLite's first complaint.
    """
    with engine.connect() as connection:
        rows = [row[0] for row in connection.exec_driver_sql("PRAGMA quick_check").fetchall()]
    if rows != ["ok"]:
        raise StudyError(_damaged(path, f"quick_check: {rows[0] if rows else 'no answer'}"))
