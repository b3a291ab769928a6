"""The demo's trackers: sandboxes shaped after the demo OKRs, synced through the real adapters."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from service import demo
from service.app import create_app
from service.demo.trackers import JIRA_PROJECTS, LINEAR_TEAMS, plan_workspace
from service.settings import Settings
from service.trackers import match_rules
from sync.okrs.document import parse

DOCUMENT = parse(demo.DEMO_OKRS.read_text(encoding="utf-8"))
RULES = match_rules(Settings(_env_file=None))
ISSUES = 60  # per tracker: enough for every kind of item, fast to generate and sync


def _all(client: TestClient, path: str, token: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 200} | ({"cursor": cursor} if cursor else {})
        page = client.get(path, params=query, headers={"Authorization": f"Bearer {token}"})
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        cursor = page.json()["next_cursor"]
        if not cursor:
            return items


def test_the_workspace_is_derived_from_the_okrs() -> None:
    workspace = plan_workspace(DOCUMENT, RULES)

    bets = {bet.key: bet for bet in DOCUMENT.bets}
    for team, project in JIRA_PROJECTS.items():
        labels = workspace.jira_labels[project]
        assert {f"bet:{b.key}" for b in DOCUMENT.bets if b.team == team} <= set(labels)
        assert "ktlo" in labels
    krs_of = {o.team: {f"kr:{kr.key}" for kr in o.key_results} for o in DOCUMENT.objectives}
    for team, (key, _) in LINEAR_TEAMS.items():
        assert krs_of[team] <= set(workspace.linear_labels[key])
        assert not {f"bet:{b.key}" for b in DOCUMENT.bets if b.team != team} & set(
            workspace.linear_labels[key]
        )
    # jira:PAY-3 is the third PAY issue: an epic named after its bet.
    pay = [summary for project, summary in workspace.jira_epics if project == "PAY"]
    assert pay[2] == bets["wallet-payments"].title
    assert ("Guided onboarding", "GRO", ["Activation"]) in workspace.linear_projects
    failover = bets["multi-region-failover"]
    assert (failover.title, "PLT", ["Platform reliability"]) in workspace.linear_projects


def test_a_linear_ref_needs_a_team_in_linear() -> None:
    bet = DOCUMENT.bets[0].model_copy(update={"team": "legal"})
    bet = bet.model_copy(update={"refs": ["linear:project:contracts"]})
    with pytest.raises(ValueError, match=f"bet {bet.key} names Linear refs"):
        plan_workspace(DOCUMENT.model_copy(update={"bets": [bet]}), RULES)


@pytest.fixture
def demo_settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, scheduler=False, _env_file=None)


@pytest.fixture
def prepared(demo_settings: Settings, capsys: pytest.CaptureFixture[str]) -> Iterator[demo.Demo]:
    """The prepared demo; what it printed is left in `capsys`."""
    with demo.prepare(demo_settings, tracker_issues=ISSUES) as prepared:
        yield prepared


def test_the_demo_syncs_both_sandbox_trackers(
    prepared: demo.Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    assert prepared.sandboxes is not None
    printed = capsys.readouterr().out
    assert "jira synced: " in printed and "linear synced: " in printed
    welcome = demo.welcome(prepared)
    assert f"Sandbox Jira    {prepared.sandboxes.jira_url}" in welcome
    assert f"Sandbox Linear  {prepared.sandboxes.linear_url}" in welcome
    assert f"/api/items/jira/{prepared.trace_key}/trace" in welcome
    assert prepared.settings.jira_webhook_secret is None
    assert prepared.settings.linear_webhook_secret is None

    token = prepared.token
    with TestClient(create_app(prepared.settings)) as client:
        items = _all(client, "/api/items", token)
        sources = {item["source"] for item in items}
        assert sources == {"jira", "linear"}
        assert len(items) >= 2 * ISSUES
        # Every bet's refs resolve, so each bet has items even with few issues.
        for bet in DOCUMENT.bets:
            matched = _all(client, "/api/items", token, bet=bet.key)
            assert matched, bet.key
        orphans = _all(client, "/api/orphans", token)
        assert {o["source"] for o in orphans} == {"jira", "linear"}
        assert 0.05 < len(orphans) / len(items) < 0.4

        auth = {"Authorization": f"Bearer {token}"}
        trace = client.get(f"/api/items/jira/{prepared.trace_key}/trace", headers=auth).json()
        levels = [step["level"] for step in trace["ladders"][0]["steps"]]
        assert levels[-4:] == ["key_result", "objective", "strategy", "north_star"]
        report = client.get(
            "/api/reports/effort",
            params={"cycle": "2026-Q4", "measure": "points", "by": "objective"},
            headers=auth,
        ).json()
        aligned = sum(row["total"] for row in report["rows"])
        assert aligned > 0 and report["orphan"]["total"] > 0
        assert 0 < report["alignment"] < 1


def test_the_sandboxes_stop_with_the_demo(demo_settings: Settings) -> None:
    with demo.prepare(demo_settings, tracker_issues=5) as prepared:
        assert prepared.sandboxes is not None
        url = prepared.sandboxes.jira_url
        assert httpx.get(f"{url}/rest/api/3/serverInfo").status_code < 500
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/rest/api/3/serverInfo")


def test_without_the_reference_corpus_the_demo_still_serves_both_trackers(
    demo_settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The sandbox Linear's schema ships with the package: a clone without the corpus has it."""
    monkeypatch.setenv("LADDER_REFERENCE_DIR", str(tmp_path / "no-reference"))
    with demo.prepare(demo_settings, tracker_issues=10) as prepared:
        printed = capsys.readouterr().out
        assert "jira synced: " in printed and "linear synced: " in printed
        sandboxes = prepared.sandboxes
        assert sandboxes is not None
        assert prepared.settings.linear_api_key == sandboxes.linear.api_key
        assert f"Sandbox Linear  {sandboxes.linear_url}" in demo.welcome(prepared)
        with TestClient(create_app(prepared.settings)) as client:
            items = _all(client, "/api/items", prepared.token)
        assert {item["source"] for item in items} == {"jira", "linear"}
