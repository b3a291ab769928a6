"""The service's frame: settings validation, schema checks, health, metrics and auth."""

from __future__ import annotations

import gc

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from service.app import create_app
from service.settings import Settings, SettingsError, load_settings
from service.tokens import Role
from sync.store.db import SchemaOutdated, check_schema, make_engine
from sync.store.models import Base


def test_migrations_create_exactly_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"database_url": "not a url"}, "LADDER_DATABASE_URL: not a database URL"),
        ({"database_url": "mysql://localhost/x"}, "LADDER_DATABASE_URL: unsupported database"),
        ({"sync_cron": "61 * * * *"}, "LADDER_SYNC_CRON: not a cron expression"),
        ({"timezone": "Mars/Olympus"}, "LADDER_TIMEZONE: unknown time zone"),
        ({"jira_url": "https://x.atlassian.net"}, "no credentials"),
        ({"linear_teams": "ENG"}, "LADDER_LINEAR_API_KEY is missing"),
        ({"orphan_comments": "loud"}, "LADDER_ORPHAN_COMMENTS"),
    ],
)
def test_bad_settings_are_refused_with_the_variable_named(
    overrides: dict[str, str], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(_env_file=None, **overrides)


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LADDER_LINEAR_TEAMS", "ENG, OPS")
    monkeypatch.setenv("LADDER_LINEAR_API_KEY", "lin_api_x")
    monkeypatch.setenv("LADDER_SCHEDULER", "off")
    monkeypatch.setenv("LADDER_NON_OKR_LABELS", "ktlo,chore")
    settings = load_settings(_env_file=None)
    assert settings.linear_teams == ["ENG", "OPS"]
    assert settings.non_okr_labels == ["ktlo", "chore"]
    assert settings.scheduler is False


def test_an_empty_database_is_refused_until_migrated(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with pytest.raises(SchemaOutdated, match="run `ladder migrate`"):
        check_schema(make_engine(url))
    app = create_app(Settings(database_url=url, scheduler=False, _env_file=None))
    with pytest.raises(SchemaOutdated), TestClient(app):
        pass


def test_health_and_metrics(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert 'ladder_http_requests_total{method="GET",route="/healthz",status="200"}' in metrics.text
    client.get("/api/objectives/O-1")
    client.get("/no/such/page")
    text = client.get("/metrics").text
    assert 'route="/api/objectives/{key}",status="401"' in text  # a template, not the key
    assert 'route="unmatched",status="404"' in text


def test_start_up_objects_are_kept_out_of_garbage_collection(settings: Settings) -> None:
    # Collecting them again and again would stall every request for a full collection.
    with TestClient(create_app(settings)):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


def test_health_reports_an_unreachable_database(tmp_path, settings: Settings) -> None:
    app = create_app(settings)
    unreachable = {
        "sqlite": f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}",
        "postgresql": "postgresql://postgres@127.0.0.1:1/postgres",
    }
    with TestClient(app) as client:
        app.state.engine = make_engine(unreachable[app.state.engine.dialect.name])
        response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["database"] == "unreachable"


def test_api_tokens_carry_roles(client: TestClient, headers: dict[Role, dict[str, str]]) -> None:
    assert client.get("/api/objectives").status_code == 401
    bad = {"Authorization": "Bearer ldr_nope"}
    assert client.get("/api/objectives", headers=bad).status_code == 401
    assert client.get("/api/objectives", headers=headers[Role.viewer]).status_code == 200
