"""Engine, sessions and migrations of the registry (SQLite by default, PostgreSQL supported)."""

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.orm import Session, sessionmaker

# Not Alembic's default `alembic_version`: the database the old system uses may have its own.
VERSION_TABLE = "qa_sync_alembic_version"


def create_registry_engine(database_url: str) -> Engine:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # Several threads (webhook, poller, reconciler) write: wait for the lock instead of failing.
    engine = create_engine(url, connect_args={"timeout": 30})
    event.listen(engine, "connect", _sqlite_wal)
    return engine


def _sqlite_wal(dbapi_connection: Any, _record: Any) -> None:
    # Readers do not block the writer (and the other way round) in WAL mode.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def session_factory(engine: Engine) -> sessionmaker[Session]:
    # Jobs are read in one session and used after it closes: keep their loaded attributes.
    return sessionmaker(engine, expire_on_commit=False)


def migrate(engine: Engine) -> None:
    """Bring the registry's schema to the newest revision (adopting an existing BATCH_KEY)."""
    config = Config()
    config.set_main_option("script_location", "qa_sync:migrations")
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
