"""The items, orphans and reports API over HTTP: shapes, filters, auth and bad input."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from okr_builders import Org
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from service.tokens import Role
from service.trackers import match_rules
from sync.matching.rematch import rematch_items
from sync.reports.snapshots import take_snapshot
from sync.store.db import transaction
from sync.store.models import Snapshot

ITEM_FIELDS = {
    "source",
    "external_id",
    "key",
    "url",
    "type",
    "title",
    "status",
    "status_category",
    "labels",
    "parent_key",
    "estimate",
    "time_spent_seconds",
    "created_at",
    "updated_at",
    "resolved_at",
    "deleted",
}
TODAY = datetime.now(UTC).date()


@pytest.fixture
def org(sessions: sessionmaker[Session], settings: Settings) -> None:
    """A current cycle, two objectives, three bets and a dozen items, matched."""
    with transaction(sessions) as session:
        org = Org(session)
        org.north_star()
        org.cycle("now", TODAY - timedelta(days=30), TODAY + timedelta(days=30))
        org.objective("O1", "now", strategy=org.strategy("S1"))
        org.objective("O2", "now")
        org.kr("KR-1", "O1")
        org.kr("KR-2", "O2")
        org.bet("checkout", ["KR-1"], refs=["jira:PAY-1"])
        org.bet("search", ["KR-2"])
        org.bet("spare", ["KR-2"])
        done = datetime.combine(TODAY, datetime.min.time(), UTC)
        org.item("PAY-1", type="epic", status="in_progress")
        org.item("PAY-2", parent="PAY-1", estimate=3, assignee="ana")
        org.item("PAY-3", type="subtask", parent="PAY-2", status="done", resolved=done, estimate=2)
        org.item("PAY-4", labels=["bet:search"], estimate=5, title="Search the catalogue")
        org.item("PAY-5", estimate=8, assignee="ana")  # orphan
        org.item("PAY-6", type="subtask", parent="PAY-5", estimate=1)  # orphan
        org.item("PAY-7", labels=["ktlo"], estimate=1)
        org.item("PAY-8", status="done", resolved=done, estimate=2)  # orphan done now
        org.item("ENG-1", source="linear", estimate=3, project="ENG")  # orphan
        org.item("ENG-2", source="linear", labels=["kr:KR-1"], estimate=2, project="ENG")
        org.item("ENG-3", source="linear", deleted=True, project="ENG")
        rematch_items(session, None, match_rules(settings))


def get(client: TestClient, headers: dict[Role, dict[str, str]], url: str, **params: object):
    response = client.get(url, params=params, headers=headers[Role.viewer])
    assert response.status_code == 200, response.text
    return response.json()


def keys(page: dict) -> list[str]:
    return [item["key"] for item in page["items"]]


def test_items_carry_the_contract_fields_and_their_matches(
    org: None, client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    page = get(client, headers, "/api/items", q="PAY-3")
    (item,) = page["items"]
    assert set(item) >= ITEM_FIELDS
    assert item["parent_key"] == "PAY-2"
    assert item["state"] == "matched" and item["orphan"] is False
    assert item["matches"] == [
        {
            "kind": "bet",
            "key": "checkout",
            "title": "Bet checkout",
            "weight": 1.0,
            "origin": "inherited",
            "detail": "inherited from PAY-1, which has its key PAY-1, listed in bet checkout's"
            " refs as jira:PAY-1",
        }
    ]


def test_item_filters_and_pages(
    org: None, client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    assert keys(get(client, headers, "/api/items", source="linear")) == ["ENG-1", "ENG-2", "ENG-3"]
    assert keys(get(client, headers, "/api/items", orphan="true")) == [
        "PAY-5",
        "PAY-6",
        "PAY-8",
        "ENG-1",
    ]
    assert "ENG-3" in keys(get(client, headers, "/api/items", orphan="false"))
    assert keys(get(client, headers, "/api/items", bet="checkout")) == ["PAY-1", "PAY-2", "PAY-3"]
    assert keys(get(client, headers, "/api/items", kr="KR-1")) == [
        "PAY-1",
        "PAY-2",
        "PAY-3",
        "ENG-2",
    ]
    assert keys(get(client, headers, "/api/items", objective="O2")) == ["PAY-4"]
    assert keys(get(client, headers, "/api/items", q="catalogue")) == ["PAY-4"]
    first = get(client, headers, "/api/items", limit=5)
    rest = get(client, headers, "/api/items", limit=5, cursor=first["next_cursor"])
    last = get(client, headers, "/api/items", limit=5, cursor=rest["next_cursor"])
    assert len(keys(first) + keys(rest) + keys(last)) == 11 and last["next_cursor"] is None


@pytest.mark.parametrize(
    ("url", "params", "status", "message"),
    [
        ("/api/items", {"bet": "nope"}, 404, "no bet with key 'nope'"),
        ("/api/items", {"objective": "O9"}, 404, "no objective with key 'O9'"),
        ("/api/items", {"source": "github"}, 422, None),
        ("/api/items", {"cursor": "%%%"}, 422, "invalid cursor"),
        ("/api/items/jira/PAY-99/trace", {}, 404, "no jira item with key 'PAY-99'"),
        ("/api/items/gitlab/PAY-1/trace", {}, 422, None),
        ("/api/orphans", {"cycle": "1999-Q1"}, 404, "no cycle with key '1999-Q1'"),
        ("/api/orphans", {"cursor": "WzFd"}, 422, "invalid cursor"),
        ("/api/orphans", {"measure": "hours"}, 422, None),
        ("/api/reports/effort", {"by": "planet"}, 422, None),
        ("/api/reports/effort", {"format": "xml"}, 422, None),
        ("/api/reports/trend", {"cycle": "1999-Q1"}, 404, "no cycle"),
    ],
)
def test_bad_requests_get_clear_errors(
    org: None,
    client: TestClient,
    headers: dict[Role, dict[str, str]],
    url: str,
    params: dict[str, str],
    status: int,
    message: str | None,
) -> None:
    response = client.get(url, params=params, headers=headers[Role.viewer])
    assert response.status_code == status, response.text
    if message:
        assert message in response.json()["detail"]


def test_reading_needs_a_token(org: None, client: TestClient) -> None:
    for url in ("/api/items", "/api/orphans", "/api/reports/effort", "/api/reports/trend"):
        assert client.get(url).status_code == 401


def test_trace_over_http(
    org: None, client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    trace = get(client, headers, "/api/items/jira/PAY-3/trace")
    assert trace["item"]["key"] == "PAY-3"
    (ladder,) = trace["ladders"]
    assert ladder["weight"] == 1.0
    assert [(s["level"], s["key"], s["origin"]) for s in ladder["steps"]] == [
        ("item", "PAY-3", "inherited"),
        ("item", "PAY-2", "parent"),
        ("item", "PAY-1", "ref"),
        ("bet", "checkout", "key_result"),
        ("key_result", "KR-1", "objective"),
        ("objective", "O1", "strategy"),
        ("strategy", "S1", "north_star"),
        ("north_star", None, "north_star"),
    ]
    assert ladder["steps"][0]["url"] == "https://jira.example/PAY-3"
    orphan = get(client, headers, "/api/items/jira/PAY-6/trace")
    assert orphan["ladders"] == []
    assert "Its parent PAY-5 is an orphan too" in orphan["explanation"]


def test_manual_links_and_unlinks(
    org: None, client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    url = "/api/items/jira/PAY-5/links"
    link = {"bet": "search", "weight": 2, "author": "dana@example.com"}
    assert client.post(url, json=link, headers=headers[Role.viewer]).status_code == 403
    response = client.post(url, json=link, headers=headers[Role.editor])
    assert response.status_code == 200, response.text
    item = response.json()
    assert item["state"] == "matched"
    assert [(m["key"], m["origin"], m["detail"]) for m in item["matches"]] == [
        ("search", "manual", "a manual link by dana@example.com")
    ]
    # The sub-task inherits the manual link.
    child = get(client, headers, "/api/items/jira/PAY-6/trace")
    assert [s["key"] for s in child["ladders"][0]["steps"][:3]] == ["PAY-6", "PAY-5", "search"]
    both = client.post(url, json={"kr": "KR-1", "weight": 2}, headers=headers[Role.editor]).json()
    assert sorted((m["key"], m["weight"]) for m in both["matches"]) == [
        ("KR-1", 0.5),
        ("search", 0.5),
    ]
    # Unlinking overrides the label match of PAY-4 and survives a re-match.
    response = client.request(
        "DELETE",
        "/api/items/jira/PAY-4/links",
        json={"bet": "search"},
        headers=headers[Role.editor],
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "orphan"
    assert response.json()["matches"] == []


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"bet": "search", "kr": "KR-1"}, 422, "exactly one of 'bet' and 'kr'"),
        ({}, 422, "exactly one of 'bet' and 'kr'"),
        ({"bet": "search", "weight": 0}, 422, None),
        ({"bet": "nope"}, 404, "no bet with key 'nope'"),
        ({"kr": "KR-9"}, 404, "no key result with key 'KR-9'"),
    ],
)
def test_bad_links_are_refused(
    org: None,
    client: TestClient,
    headers: dict[Role, dict[str, str]],
    body: dict[str, object],
    status: int,
    message: str | None,
) -> None:
    response = client.post("/api/items/jira/PAY-5/links", json=body, headers=headers[Role.editor])
    assert response.status_code == status, response.text
    if message:
        assert message in response.text
    assert get(client, headers, "/api/items", q="PAY-5")["items"][0]["matches"] == []


def test_orphans_over_http(
    org: None, client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    page = get(client, headers, "/api/orphans")
    # PAY-5's own estimate gives way to its sub-task's; PAY-8 is done, so not open.
    assert [(o["key"], o["effort"]) for o in page["items"]] == [
        ("ENG-1", 3.0),
        ("PAY-6", 1.0),
        ("PAY-5", 0.0),
    ]
    with_cycle = get(client, headers, "/api/orphans", cycle="now", roots_only="true")
    assert [(o["key"], o["effort"]) for o in with_cycle["items"]] == [
        ("ENG-1", 3.0),
        ("PAY-8", 2.0),
        ("PAY-5", 1.0),
    ]
    assert keys(get(client, headers, "/api/orphans", assignee="ana")) == ["PAY-5"]
    assert keys(get(client, headers, "/api/orphans", project="ENG")) == ["ENG-1"]
    assert keys(get(client, headers, "/api/orphans", source="jira", limit=1))[0] == "PAY-6"


def test_effort_report_json_and_csv(
    org: None, client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    report = get(client, headers, "/api/reports/effort", measure="points")
    assert report["cycle"] == "now" and report["by"] == "objective"
    assert [(r["key"], r["done"], r["todo"], r["total"]) for r in report["rows"]] == [
        ("O1", 2.0, 2.0, 4.0),  # PAY-3 done (PAY-2's own estimate gives way), ENG-2
        ("O2", 0.0, 5.0, 5.0),
    ]
    assert report["orphan"]["total"] == 3 + 1 + 2 + 0  # ENG-1, PAY-6, PAY-8, PAY-5
    assert report["non_okr"]["total"] == 1
    assert report["alignment"] == round(9 / 16, 6)
    response = client.get(
        "/api/reports/effort",
        params={"cycle": "now", "measure": "count", "by": "team", "format": "csv"},
        headers=headers[Role.viewer],
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="effort-now-count-by-team.csv"' in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["kind"], r["key"], r["total"]) for r in rows[:2]] == [
        ("team", "PAY", "2.0"),
        ("team", "ENG", "1.0"),
    ]
    assert rows[-1]["kind"] == "alignment"


def test_no_current_cycle_is_a_clear_error(
    sessions: sessionmaker[Session], client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    with transaction(sessions) as session:
        Org(session).cycle("old", date(2001, 1, 1), date(2001, 3, 31))
    response = client.get("/api/reports/effort", headers=headers[Role.viewer])
    assert response.status_code == 422
    assert "name one with cycle=" in response.json()["detail"]


def test_orphan_rates_over_http(
    org: None, client: TestClient, headers: dict[Role, dict[str, str]]
) -> None:
    rates = get(client, headers, "/api/reports/orphans", measure="count")
    assert [(t["team"], t["effort"], t["orphan_effort"], t["rate"]) for t in rates["teams"]] == [
        ("ENG", 2.0, 1.0, 0.5),
        ("PAY", 5.0, 2.0, 0.4),
    ]


def test_snapshots_make_a_daily_trend(
    org: None,
    sessions: sessionmaker[Session],
    client: TestClient,
    headers: dict[Role, dict[str, str]],
) -> None:
    noon = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=12)
    with transaction(sessions) as session:
        assert take_snapshot(session, now=noon - timedelta(days=1)) == 3
        assert take_snapshot(session, now=noon - timedelta(hours=2)) == 3
        assert take_snapshot(session, now=noon) == 3  # the same day: replaces the earlier one
        assert take_snapshot(session, now=noon + timedelta(days=400)) == 0  # no cycle then
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Snapshot)) == 6
    trend = get(client, headers, "/api/reports/trend", cycle="now", measure="points")
    assert trend["objectives"] == [
        {"key": "O1", "title": "Objective O1"},
        {"key": "O2", "title": "Objective O2"},
    ]
    assert [point["day"] for point in trend["points"]] == [
        (TODAY - timedelta(days=1)).isoformat(),
        TODAY.isoformat(),
    ]
    latest = trend["points"][-1]
    assert latest["taken_at"].startswith(noon.isoformat()[:19])
    assert latest["alignment"] == pytest.approx(9 / 16)
    assert latest["objectives"] == {"O1": 4.0, "O2": 5.0}
    assert (latest["aligned"], latest["orphan"], latest["non_okr"]) == (9.0, 6.0, 1.0)
