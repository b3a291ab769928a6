"""Database engines, sessions and migrations for SQLite and PostgreSQL.

Transactions belong at the boundary (a request, a job, a CLI command): callers open one with
`transaction(factory)`, and the store helpers they call never commit on their own.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
DEADLOCK = "40P01"  # PostgreSQL's SQLSTATE for "deadlock detected"
DEADLOCK_ATTEMPTS = 3

T = TypeVar("T")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine tuned for Ladder's use of the backend.

    SQLite gets WAL (readers never block the writer), a busy timeout instead of instant
    "database is locked" errors, and enforced foreign keys.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(url, connect_args={"timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if parsed.drivername == "postgresql":
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    # No JIT: it compiles for longer than Ladder's queries run, and recursive queries over
    # the item trees look big enough to the planner to trigger it (200 ms of compiling).
    connect_args = {"options": "-c jit=off", **kwargs.pop("connect_args", {})}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with factory() as session, session.begin():
        yield session


def retry_deadlocks(work: Callable[[], T], attempts: int = DEADLOCK_ATTEMPTS) -> T:
    """Run `work`, a whole transaction, again when PostgreSQL broke a deadlock by aborting it.

    Writers lock rows in one order wherever they can, but a re-match also locks the trees of
    what it wrote, which another writer may hold: PostgreSQL then rolls one back, and running
    it again once the other has committed is the cure.
    """
    attempt = 1
    while True:
        try:
            return work()
        except OperationalError as exc:
            if getattr(exc.orig, "sqlstate", None) != DEADLOCK or attempt >= attempts:
                raise
        time.sleep(random.uniform(0, 0.05 * attempt))  # let the other writer finish
        attempt += 1


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    """The newest migration this code knows."""
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at, or None for an empty database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(engine: Engine, revision: str = "head") -> None:
    """Bring the schema up to `revision` (the newest by default)."""
    config = _alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


class SchemaOutdated(Exception):
    """The database is behind (or ahead of) this code's migrations."""


def check_schema(engine: Engine) -> None:
    """Refuse to run against a schema this code was not written for."""
    current, head = current_revision(engine), head_revision()
    if current != head:
        where = "empty" if current is None else f"at revision {current}"
        raise SchemaOutdated(
            f"the database is {where}, this version of Ladder needs {head}: run `ladder migrate`"
        )
