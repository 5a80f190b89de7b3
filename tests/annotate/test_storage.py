"""The database layer: migrations agree with the models, SQLite settings, URLs."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from prefalign.annotate.errors import StudyError
from prefalign.annotate.models import Base
from prefalign.annotate.storage import Store, database_url, make_engine


def test_migrations_create_exactly_the_schema_of_the_models(tmp_path):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    store = Store.open(tmp_path / "a.db")
    with store.engine.connect() as connection:
        diffs = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    store.close()
    assert diffs == []


def test_opening_again_migrates_nothing_and_keeps_the_data(tmp_path, make_study):
    store, _, _ = make_study(kind="pair", db=tmp_path / "kept.db")
    store.close()
    again = Store.open(tmp_path / "kept.db")
    with again.engine.connect() as connection:
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
        assert connection.execute(text("SELECT count(*) FROM tasks")).scalar() == 4
    again.close()


def test_sqlite_runs_in_wal_mode_with_durable_commits(tmp_path):
    store = Store.open(tmp_path / "wal.db")
    with store.engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    assert set(inspect(store.engine).get_table_names()) >= {"studies", "tasks", "votes", "alembic_version"}
    store.close()


def test_database_urls(tmp_path):
    assert database_url(tmp_path / "x.db") == f"sqlite:///{(tmp_path / 'x.db').resolve()}"
    assert database_url("postgresql+psycopg://u@h/db") == "postgresql+psycopg://u@h/db"
    with pytest.raises(StudyError, match="not a database URL"):
        database_url("nonsense://::")
    with pytest.raises(StudyError, match="in-memory"):
        make_engine("sqlite://")


def test_a_missing_driver_is_named():
    with pytest.raises(StudyError, match="driver 'MySQLdb' is not installed"):
        make_engine("mysql+mysqldb://user@127.0.0.1:1/db")
