"""The dashboard: served at `/` without a build step, and calling only real endpoints."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi.testclient import TestClient
from okr_builders import Org
from sqlalchemy.orm import Session, sessionmaker

import service.dashboard
from service.settings import Settings
from service.tokens import Role
from service.trackers import match_rules
from sync.matching.rematch import rematch_items
from sync.store.db import transaction

SCRIPT = Path(service.dashboard.__file__).with_name("app.js").read_text()
API_PATHS = sorted(set(re.findall(r"""["'`](/api/[^"'`?]*)["'`]""", SCRIPT)))


def test_the_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assets = re.findall(r'(?:src|href)="(/[^"]+)"', page.text)
    assert sorted(assets) == ["/dashboard/app.js", "/dashboard/style.css"]
    for asset, kind in zip(assets, ("text/css", "text/javascript"), strict=True):
        response = client.get(asset)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith(kind)
    assert client.get("/dashboard/secrets.py").status_code == 404
    assert client.get("/dashboard/__init__.py").status_code == 404


def test_the_script_calls_only_endpoints_that_exist(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert API_PATHS == [
        "/api/cycles",
        "/api/items/{source}/{key}/trace",
        "/api/orphans",
        "/api/reports/effort",
        "/api/reports/orphans",
        "/api/reports/trend",
    ]
    for path in API_PATHS:
        assert "get" in paths[path], path


def test_the_calls_the_script_makes_answer_for_a_viewer(
    client: TestClient,
    sessions: sessionmaker[Session],
    settings: Settings,
    headers: dict[Role, dict[str, str]],
) -> None:
    today = datetime.now(UTC).date()
    with transaction(sessions) as session:
        org = Org(session)
        org.cycle("now", today - timedelta(days=7), today + timedelta(days=7))
        org.objective("O1", "now")
        org.kr("KR-1", "O1")
        org.bet("b", ["KR-1"])
        org.item("PAY-1", labels=["bet:b"], estimate=2)
        org.item("PAY-2", estimate=1)
        rematch_items(session, None, match_rules(settings))
    viewer = headers[Role.viewer]
    selection = {"cycle": "now", "measure": "time"}
    calls = [
        ("/api/cycles", {"limit": 1000}),
        ("/api/reports/effort", {**selection, "by": "objective"}),
        ("/api/reports/trend", selection),
        ("/api/orphans", {**selection, "roots_only": "true", "limit": 50}),
        ("/api/reports/orphans", selection),
        ("/api/items/jira/PAY-1/trace", {}),
    ]
    for path, params in calls:
        response = client.get(path, params=params, headers=viewer)
        assert response.status_code == 200, (path, response.text)
    assert [o["key"] for o in client.get("/api/orphans", headers=viewer).json()["items"]] == [
        "PAY-2"
    ]
