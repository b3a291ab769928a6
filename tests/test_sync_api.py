"""The sync API: the runs (viewer), starting a sync (admin), and its refusals."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psutil
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from integrations.base import TrackerAdapter
from integrations.sandbox.jira.app import JiraSandbox
from integrations.sandbox.server import serve_in_thread
from service.api import sync as sync_api
from service.app import create_app
from service.settings import Settings
from service.tokens import Role
from sync.store.db import transaction
from sync.store.leases import exclusive
from sync.store.models import SyncRun


@pytest.fixture
def sandbox() -> Iterator[tuple[JiraSandbox, str]]:
    sandbox = JiraSandbox("cloud", issues=300)
    with serve_in_thread(sandbox.app) as url:
        yield sandbox, url


def jira_settings(database_url: str, sandbox: tuple[JiraSandbox, str], **extra: Any) -> Settings:
    """Settings for the sandbox Jira, without the scheduler."""
    site, url = sandbox
    return Settings(
        database_url=database_url,
        scheduler=False,
        jira_url=url,
        jira_email=site.email,
        jira_api_token=site.api_token,
        _env_file=None,
        **extra,
    )


@pytest.fixture
def jira_client(database_url: str, sandbox: tuple[JiraSandbox, str]) -> Iterator[TestClient]:
    with TestClient(create_app(jira_settings(database_url, sandbox))) as client:
        yield client


def _wait_for(client: TestClient, run_id: int, headers: dict[str, str]) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        run = client.get(f"/api/sync/runs/{run_id}", headers=headers).json()
        if run["status"] != "running" or time.monotonic() > deadline:
            return run
        time.sleep(0.05)


def test_an_admin_starts_a_sync_and_a_viewer_follows_it(
    jira_client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    answer = jira_client.post("/api/sync", json={"source": "jira"}, headers=headers[Role.admin])
    assert answer.status_code == 202
    started = answer.json()
    # Nothing was synced yet, so the incremental request runs as a full sync.
    assert started | {"run_id": 0} == {
        "run_id": 0,
        "source": "jira",
        "mode": "full",
        "status": "running",
    }
    run = _wait_for(jira_client, started["run_id"], headers[Role.viewer])
    assert run["status"] == "success", run["error"]
    assert (run["items_seen"], run["items_upserted"], run["items_deleted"]) == (300, 300, 0)
    assert run["requests"] >= 3

    again = jira_client.post(
        "/api/sync", json={"source": "jira", "mode": "incremental"}, headers=headers[Role.admin]
    ).json()
    assert again["mode"] == "incremental"
    assert _wait_for(jira_client, again["run_id"], headers[Role.viewer])["status"] == "success"

    runs = jira_client.get("/api/sync/runs", headers=headers[Role.viewer]).json()
    assert [r["id"] for r in runs["items"]] == [again["run_id"], started["run_id"]]
    assert runs["next_cursor"] is None


def test_a_source_already_syncing_answers_409(
    jira_client: TestClient, engine: Engine, headers: dict[Role, dict[str, str]]
) -> None:
    with exclusive(engine, "sync:jira") as taken:
        assert taken
        answer = jira_client.post(
            "/api/sync", json={"source": "jira", "mode": "full"}, headers=headers[Role.admin]
        )
    assert answer.status_code == 409
    assert answer.json() == {"detail": "a sync of jira is already running"}
    assert jira_client.get("/api/sync/runs", headers=headers[Role.viewer]).json()["items"] == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"source": "linear"}, "source 'linear' is not configured (configured: jira)"),
        ({"source": "jira", "mode": "everything"}, "full"),
        ({}, "source"),
    ],
)
def test_a_bad_request_is_refused_with_the_reason(
    jira_client: TestClient,
    headers: dict[Role, dict[str, str]],
    body: dict[str, str],
    message: str,
) -> None:
    answer = jira_client.post("/api/sync", json=body, headers=headers[Role.admin])
    assert answer.status_code == 422
    assert message in str(answer.json())


def _closes_counted(monkeypatch: pytest.MonkeyPatch) -> list[Counter[str]]:
    """How often each adapter the sync API builds gets closed: one counter per request."""
    closes: list[Counter[str]] = []
    build = sync_api.build_adapters

    def counted(settings: Settings) -> dict[str, TrackerAdapter]:
        adapters = build(settings)
        closed: Counter[str] = Counter()
        for name, adapter in adapters.items():
            close = adapter.close  # type: ignore[attr-defined]

            def counting(name: str = name, close: Any = close) -> None:
                closed[name] += 1
                close()

            monkeypatch.setattr(adapter, "close", counting)
        closes.append(closed)
        return adapters

    monkeypatch.setattr(sync_api, "build_adapters", counted)
    return closes


def _sockets_to(url: str) -> int:
    """The sockets to `url`'s port this process still holds (open or closed by the server)."""
    port = urlsplit(url).port
    return sum(
        1 for c in psutil.Process().net_connections("tcp") if c.raddr and c.raddr.port == port
    )


def test_a_sync_closes_the_adapters_it_built_and_a_refused_one_at_once(
    database_url: str,
    engine: Engine,
    sandbox: tuple[JiraSandbox, str],
    headers: dict[Role, dict[str, str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, url = sandbox
    # Linear is built alongside, never used: closed all the same.
    settings = jira_settings(database_url, sandbox, linear_api_key="lin_api_unused")
    closes = _closes_counted(monkeypatch)
    admin, viewer = headers[Role.admin], headers[Role.viewer]
    with TestClient(create_app(settings)) as client:
        started = client.post("/api/sync", json={"source": "jira", "mode": "full"}, headers=admin)
        assert started.status_code == 202
        assert _wait_for(client, started.json()["run_id"], viewer)["status"] == "success"
        deadline = time.monotonic() + 10
        while closes[0]["jira"] == 0 and time.monotonic() < deadline:
            time.sleep(0.02)  # the run's thread closes its adapter just after recording the end
        assert closes[0] == {"jira": 1, "linear": 1}
        assert _sockets_to(url) == 0  # the HTTP sessions of every fetch thread went too

        # Refused, as another sync holds the source, or as the source is not configured.
        with exclusive(engine, "sync:jira"):
            busy = client.post("/api/sync", json={"source": "jira"}, headers=admin)
        unknown = client.post("/api/sync", json={"source": "github"}, headers=admin)
    assert (busy.status_code, unknown.status_code) == (409, 422)
    assert closes[1:] == [{"jira": 1, "linear": 1}, {"jira": 1, "linear": 1}]


def test_only_admins_start_syncs_and_only_token_holders_read_runs(
    jira_client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    body = {"source": "jira"}
    assert jira_client.post("/api/sync", json=body).status_code == 401
    for role in (Role.viewer, Role.editor):
        assert jira_client.post("/api/sync", json=body, headers=headers[role]).status_code == 403
    assert jira_client.get("/api/sync/runs").status_code == 401
    assert jira_client.get("/api/sync/runs/1", headers=headers[Role.viewer]).status_code == 404


def test_runs_are_listed_newest_first_page_by_page(
    client: TestClient, sessions: sessionmaker[Session], headers: dict[Role, dict[str, str]]
) -> None:
    with transaction(sessions) as session:
        for n in range(5):
            source = "jira" if n % 2 else "linear"
            session.add(SyncRun(source=source, mode="full", status="success", requests=n))
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/sync/runs", params=params, headers=headers[Role.viewer]).json()
        seen.extend(run["requests"] for run in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [4, 3, 2, 1, 0]
    jira = client.get("/api/sync/runs?source=jira", headers=headers[Role.viewer]).json()
    assert [run["requests"] for run in jira["items"]] == [3, 1]
