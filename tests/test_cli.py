"""The `ladder` command line: migrate, serve's schema check, tokens, OKRs as code, the demo."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from service import demo
from service.app import create_app
from service.cli import app
from service.settings import Settings
from sync.okrs.document import import_okrs
from sync.store.db import check_schema, make_engine, transaction
from sync.store.models import Objective

DEMO = demo.DEMO_OKRS.read_text(encoding="utf-8")


def ladder(database_url: str, *args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"LADDER_DATABASE_URL": database_url})


def _objectives(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(Objective)) or 0


def test_migrate_and_serve_refusing_an_unmigrated_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    refused = ladder(url, "serve", "--port", "1")
    assert refused.exit_code == 1
    assert "refusing to start: the database is empty" in refused.stderr
    assert "run `ladder migrate`" in refused.stderr
    for command in ("okrs export", "token create --role viewer"):
        result = ladder(url, *command.split())
        assert result.exit_code == 1, command
        assert "run `ladder migrate`" in result.stderr

    migrated = ladder(url, "migrate")
    assert (migrated.exit_code, migrated.stdout) == (0, "database is up to date\n")
    check_schema(make_engine(url))
    assert ladder(url, "migrate").exit_code == 0


def test_token_create_prints_a_working_token(database_url: str, settings: Settings) -> None:
    created = ladder(database_url, "token", "create", "--role", "editor", "--name", "ci")
    assert created.exit_code == 0, created.output
    token = created.stdout.strip()
    assert token.startswith("ldr_")
    with TestClient(create_app(settings)) as client:
        bearer = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/objectives", headers=bearer).status_code == 200
        body = {"key": "S1", "title": "Win the mid-market"}
        assert client.post("/api/strategies", json=body, headers=bearer).status_code == 201
        assert client.get("/api/tokens", headers=bearer).status_code == 403
    assert ladder(database_url, "token", "create", "--role", "owner").exit_code == 2


def test_okrs_import_and_export(
    database_url: str, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    path = tmp_path / "okrs.yaml"
    path.write_text(DEMO, encoding="utf-8")

    dry = ladder(database_url, "okrs", "import", str(path), "--dry-run")
    assert dry.exit_code == 0, dry.output
    assert "one-click-checkout" in dry.stdout
    assert "30 to create, 0 to update, 0 to delete (dry run: nothing written)" in dry.stdout
    assert _objectives(sessions) == 0

    done = ladder(database_url, "okrs", "import", str(path))
    assert "30 to create, 0 to update, 0 to delete (done)" in done.stdout
    assert _objectives(sessions) == 4
    again = ladder(database_url, "okrs", "import", str(path))
    assert "nothing to change" in again.stdout

    exported = ladder(database_url, "okrs", "export")
    assert exported.exit_code == 0
    assert exported.stdout == DEMO

    path.write_text(DEMO.replace("    title: Make checkout effortless\n", "    title: Pay fast\n"))
    update = ladder(database_url, "okrs", "import", str(path), "--dry-run")
    assert "update" in update.stdout and "title" in update.stdout
    assert "0 to create, 1 to update, 0 to delete" in update.stdout


def test_okrs_import_refuses_an_invalid_file(
    database_url: str, engine: Engine, sessions: sessionmaker[Session], tmp_path: Path
) -> None:
    with transaction(sessions) as session:
        import_okrs(session, DEMO)
    before = ladder(database_url, "okrs", "export").stdout
    path = tmp_path / "okrs.yaml"
    path.write_text(
        DEMO.replace("target: 70", "target: seventy").replace("cycle: 2026-Q4", "cycle: Q5", 1)
    )
    refused = ladder(database_url, "okrs", "import", str(path))
    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert "the OKR file has 2 errors" in refused.stderr
    assert "objectives[0].key_results[0].target: not a number" in refused.stderr
    assert "objectives[0].cycle: unknown cycle 'Q5'" in refused.stderr
    assert "nothing was written" in refused.stderr
    assert ladder(database_url, "okrs", "export").stdout == before

    missing = ladder(database_url, "okrs", "import", str(tmp_path / "missing.yaml"))
    assert missing.exit_code == 1
    assert "cannot read" in missing.stderr


def test_the_demo_setup_serves_the_demo_okrs(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'ladder.db'}", scheduler=False, _env_file=None
    )
    with demo.prepare(settings, tracker_issues=5) as prepared:
        welcome = demo.welcome(prepared)
    assert f"http://127.0.0.1:8000/#token={prepared.token}" in welcome
    assert f"export LADDER_TOKEN={prepared.token}" in welcome

    with TestClient(create_app(settings)) as client:
        bearer = {"Authorization": f"Bearer {prepared.token}"}
        counts = {
            path: len(client.get(f"/api/{path}", headers=bearer).json()["items"])
            for path in ("strategies", "cycles", "objectives", "key-results", "bets")
        }
        assert counts == {
            "strategies": 2,
            "cycles": 1,
            "objectives": 4,
            "key-results": 10,
            "bets": 12,
        }
        assert client.get("/api/north-star", headers=bearer).json()["name"] == (
            "Weekly active teams"
        )
        assert client.get("/api/tokens", headers=bearer).status_code == 200
        teams = {o["team"] for o in client.get("/api/objectives", headers=bearer).json()["items"]}
        assert teams == {"payments", "search", "growth", "platform"}

    # Running the demo again reuses the store.
    with demo.prepare(settings, tracker_issues=5) as again:
        assert again.token != prepared.token


def test_the_demo_refuses_to_replace_other_okrs(tmp_path: Path) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'ladder.db'}", scheduler=False, _env_file=None
    )
    demo.migrate_store(demo.Demo(settings))
    engine = make_engine(settings.database_url)
    with engine.begin() as connection, Session(connection) as session:
        import_okrs(session, "cycles:\n  - {key: FY27, start: 2027-01-01, end: 2027-12-31}\n")
        session.flush()
    with pytest.raises(demo.DemoRefused, match="cycle FY27"):
        demo.prepare(settings)


README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table = README.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [name for name in Settings.model_fields if f"`LADDER_{name.upper()}`" not in table]
    assert missing == []


def test_the_readme_okr_example_imports(sessions: sessionmaker[Session]) -> None:
    example = README.split("## OKRs as code", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    with transaction(sessions) as session:
        plan = import_okrs(session, example)
    assert plan.counts == {"create": 6, "update": 0, "delete": 0}
