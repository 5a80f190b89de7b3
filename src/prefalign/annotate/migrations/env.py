"""Alembic environment of the annotation database.

Run from :func:`prefalign.annotate.storage.migrate`, which passes an open connection in
``config.attributes["connection"]``; there is no alembic.ini. To write a new revision after
changing ``models.py``, from the repository root::

    python -c "from alembic.config import Config; from alembic import command; \
c = Config(); c.set_main_option('script_location', 'src/prefalign/annotate/migrations'); \
c.set_main_option('sqlalchemy.url', 'sqlite:///scratch.db'); command.upgrade(c, 'head'); \
command.revision(c, autogenerate=True, message='what changed')"
"""

from alembic import context
from sqlalchemy import engine_from_config, pool

from prefalign.annotate.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations(connection) -> None:
    # render_as_batch: SQLite cannot ALTER most things in place; batch mode copies the table.
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}), poolclass=pool.NullPool)
    with engine.connect() as conn:
        run_migrations(conn)
