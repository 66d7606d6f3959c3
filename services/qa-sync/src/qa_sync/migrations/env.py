"""Alembic environment: runs on the connection `qa_sync.registry.database.migrate` hands over,
or, from the `alembic` command line, on `sqlalchemy.url` / `DATABASE_URL`."""

import os

from alembic import context
from sqlalchemy import Connection, create_engine

from qa_sync.registry.database import VERSION_TABLE
from qa_sync.registry.models import Base

config = context.config


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or os.environ["DATABASE_URL"]


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        version_table=VERSION_TABLE,
        # SQLite cannot ALTER most things; batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=Base.metadata, version_table=VERSION_TABLE)
    with context.begin_transaction():
        context.run_migrations()
elif (given := config.attributes.get("connection")) is not None:
    _run(given)
else:
    with create_engine(_url()).connect() as connection:
        _run(connection)
