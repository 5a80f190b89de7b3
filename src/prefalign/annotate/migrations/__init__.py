"""Alembic migrations of the annotation database (run by prefalign.annotate.storage.migrate)."""
