"""The sync API: the runs (viewer), starting a sync (admin), and its refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from integrations.sandbox.jira.app import JiraSandbox
from integrations.sandbox.server import serve_in_thread
from service.app import create_app
from service.settings import Settings
from sync.db import transaction
from sync.leases import exclusive
from sync.models import SyncRun
from sync.tokens import Role


@pytest.fixture
def sandbox() -> Iterator[tuple[JiraSandbox, str]]:
    sandbox = JiraSandbox("cloud", issues=300)
    with serve_in_thread(sandbox.app) as url:
        yield sandbox, url


@pytest.fixture
def jira_client(database_url: str, sandbox: tuple[JiraSandbox, str]) -> Iterator[TestClient]:
    site, url = sandbox
    settings = Settings(
        database_url=database_url,
        scheduler=False,
        jira_url=url,
        jira_email=site.email,
        jira_api_token=site.api_token,
        _env_file=None,
    )
    with TestClient(create_app(settings)) as client:
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
