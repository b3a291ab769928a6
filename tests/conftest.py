"""Shared fixtures: every store test runs against SQLite and against PostgreSQL.

PostgreSQL is the server at 127.0.0.1:5432 (override with LADDER_TEST_POSTGRES_URL). Each
pytest worker gets a database of its own, migrated once and emptied between tests. When the
server is unreachable the PostgreSQL half is skipped, except under CI=true, where that is a
failure: a green run must have exercised both stores.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker
from support.reference import MISSING, present, under_ci

from service.app import create_app
from service.settings import Settings
from service.tokens import Role, create_token
from sync.store.db import make_engine, migrate, session_factory, transaction
from sync.store.models import Base

POSTGRES_SERVER = os.environ.get(
    "LADDER_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Under CI=true the reference corpus must be there: its conformance tests always run."""
    if under_ci() and not present():
        pytest.exit(f"CI=true but {MISSING}", returncode=1)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """One line per reason for skipped tests; the conformance ones say how to run them."""
    reasons: Counter[str] = Counter()
    for report in terminalreporter.stats.get("skipped", []):
        if "tests/conformance/" in report.nodeid:
            reasons["conformance tests skipped: " + MISSING] += 1
        elif isinstance(report.longrepr, tuple):
            reasons["skipped: " + str(report.longrepr[2]).removeprefix("Skipped: ")] += 1
    for reason, count in sorted(reasons.items()):
        terminalreporter.write_line(f"{count} {reason}")


def _server_url(database: str) -> str:
    return POSTGRES_SERVER.rsplit("/", 1)[0] + "/" + database


def _admin_connection() -> psycopg.Connection:
    return psycopg.connect(POSTGRES_SERVER, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this worker, dropped at the end."""
    try:
        admin = _admin_connection()
    except psycopg.OperationalError as exc:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"PostgreSQL at {POSTGRES_SERVER} is unreachable under CI=true: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    name = f"ladder_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = _server_url(name)
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url
    admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies instead of migrating again."""
    path = tmp_path_factory.mktemp("template") / "ladder.db"
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    engine.dispose()
    return path


def _empty_postgres(url: str) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated store: a SQLite file, or the worker's PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "ladder.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("postgres_database")
    _empty_postgres(url)
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def sessions(engine: Engine) -> sessionmaker[Session]:
    return session_factory(engine)


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose work the test commits itself (or leaves uncommitted)."""
    with sessions() as session:
        yield session


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, scheduler=False, _env_file=None)


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def headers(sessions: sessionmaker[Session]) -> dict[Role, dict[str, str]]:
    """Request headers carrying a fresh token of each role: `headers[Role.admin]`."""
    with transaction(sessions) as session:
        return {role: {"Authorization": f"Bearer {create_token(session, role)}"} for role in Role}
