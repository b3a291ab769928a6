"""The OKR catalogue over HTTP: CRUD by key, parents, conflicts, cascades, check-ins, progress."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.settings import Settings
from service.tokens import Role
from service.trackers import match_rules
from sync.matching.rematch import MatchRules
from sync.okrs import catalogue as okrs

Headers = dict[Role, dict[str, str]]


def _post(client: TestClient, headers: Headers, path: str, body: dict[str, Any]) -> Any:
    response = client.post(path, json=body, headers=headers[Role.editor])
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture
def catalogue(client: TestClient, headers: Headers) -> None:
    """A cycle, a strategy, an objective with two KRs, and a bet on both."""
    _post(
        client,
        headers,
        "/api/cycles",
        {"key": "2026-Q4", "start": "2026-10-01", "end": "2026-12-31"},
    )
    _post(client, headers, "/api/strategies", {"key": "S1", "title": "Win the mid-market"})
    objective = {"key": "O1", "title": "Make checkout effortless", "cycle": "2026-Q4"}
    _post(client, headers, "/api/objectives", objective | {"strategy": "S1", "team": "payments"})
    _post(
        client,
        headers,
        "/api/key-results",
        {"key": "KR-1", "objective": "O1", "title": "Conversion", "baseline": 62, "target": 70},
    )
    _post(
        client,
        headers,
        "/api/key-results",
        {
            "key": "KR-2",
            "objective": "O1",
            "title": "Failed payments",
            "baseline": 4,
            "target": 2,
            "direction": "decrease",
        },
    )
    _post(
        client,
        headers,
        "/api/bets",
        {
            "key": "one-click",
            "title": "One-click checkout",
            "key_results": {"KR-1": 0.7, "KR-2": 0.3},
            "refs": ["jira:PAY-100", "linear:project:checkout-v2"],
        },
    )


@pytest.mark.parametrize(
    ("baseline", "target", "current", "direction", "expected"),
    [
        (62, 70, 66, "increase", 0.5),
        (62, 70, 75, "increase", 1.0),
        (62, 70, 60, "increase", 0.0),
        (4, 2, 3, "decrease", 0.5),
        (4, 2, 1, "decrease", 1.0),
        (4, 2, 5, "decrease", 0.0),
        (5, 5, 5, "increase", None),
        (5, 5, 4, "decrease", None),
        (62, 70, None, "increase", None),
        (None, 70, 66, "increase", None),
        (62, 70, 66, "decrease", None),
    ],
)
def test_progress(
    baseline: float | None,
    target: float | None,
    current: float | None,
    direction: str,
    expected: float | None,
) -> None:
    assert okrs.progress(baseline, target, current, direction) == expected


@pytest.mark.usefixtures("catalogue")
def test_objects_are_served_by_key(client: TestClient, headers: Headers) -> None:
    viewer = headers[Role.viewer]
    objective = client.get("/api/objectives/O1", headers=viewer).json()
    assert objective | {"progress": None} == {
        "key": "O1",
        "title": "Make checkout effortless",
        "cycle": "2026-Q4",
        "strategy": "S1",
        "owner": None,
        "team": "payments",
        "status": "active",
        "key_results": ["KR-1", "KR-2"],
        "progress": None,
    }
    bet = client.get("/api/bets/one-click", headers=viewer).json()
    assert bet["key_results"] == {"KR-1": 0.7, "KR-2": 0.3}
    assert bet["refs"] == ["jira:PAY-100", "linear:project:checkout-v2"]
    assert client.get("/api/key-results/KR-2", headers=viewer).json()["direction"] == "decrease"
    assert client.get("/api/cycles/2026-Q4", headers=viewer).json()["end"] == "2026-12-31"
    assert client.get("/api/strategies/S1", headers=viewer).json()["title"] == "Win the mid-market"
    missing = client.get("/api/bets/nope", headers=viewer)
    assert missing.status_code == 404
    assert missing.json()["detail"] == "no bet 'nope'"


@pytest.mark.usefixtures("catalogue")
def test_put_replaces_and_patch_changes_only_what_is_sent(
    client: TestClient, headers: Headers
) -> None:
    editor = headers[Role.editor]
    body = {"key": "O1", "title": "Checkout in one tap", "cycle": "2026-Q4"}
    replaced = client.put("/api/objectives/O1", json=body, headers=editor).json()
    assert (replaced["title"], replaced["strategy"], replaced["team"]) == (
        "Checkout in one tap",
        None,
        None,
    )
    patched = client.patch("/api/bets/one-click", json={"status": "next"}, headers=editor).json()
    assert patched["status"] == "next"
    assert patched["key_results"] == {"KR-1": 0.7, "KR-2": 0.3}
    equal = client.patch("/api/bets/one-click", json={"key_results": ["KR-2"]}, headers=editor)
    assert equal.json()["key_results"] == {"KR-2": None}
    cleared = client.patch("/api/key-results/KR-1", json={"title": None}, headers=editor)
    assert cleared.status_code == 422
    assert cleared.json()["errors"] == [{"path": "title", "message": "required"}]


@pytest.mark.usefixtures("catalogue")
def test_renaming_a_key(client: TestClient, headers: Headers) -> None:
    editor = headers[Role.editor]
    renamed = client.patch("/api/key-results/KR-1", json={"key": "KR-1.1"}, headers=editor)
    assert renamed.status_code == 200
    assert renamed.json()["key"] == "KR-1.1"
    assert client.get("/api/key-results/KR-1", headers=editor).status_code == 404
    bet = client.get("/api/bets/one-click", headers=editor).json()
    assert bet["key_results"] == {"KR-1.1": 0.7, "KR-2": 0.3}
    objective = client.get("/api/objectives/O1", headers=editor).json()
    assert objective["key_results"] == ["KR-1.1", "KR-2"]
    moved = client.patch("/api/cycles/2026-Q4", json={"key": "FY26-Q4"}, headers=editor)
    assert moved.status_code == 200
    assert client.get("/api/objectives/O1", headers=editor).json()["cycle"] == "FY26-Q4"


@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    ("path", "body", "message", "error_path"),
    [
        (
            "/api/objectives",
            {"key": "O2", "title": "t", "cycle": "2027-Q1"},
            "unknown cycle '2027-Q1'",
            "cycle",
        ),
        (
            "/api/objectives",
            {"key": "O2", "title": "t", "cycle": "2026-Q4", "strategy": "S9"},
            "unknown strategy 'S9'",
            "strategy",
        ),
        (
            "/api/key-results",
            {"key": "KR-3", "title": "t", "objective": "O7"},
            "unknown objective 'O7'",
            "objective",
        ),
        (
            "/api/bets",
            {"key": "b", "title": "t", "key_results": ["KR-1", "KR-9"]},
            "unknown key result 'KR-9'",
            "key_results.KR-9",
        ),
    ],
)
def test_an_unknown_parent_is_named(
    client: TestClient,
    headers: Headers,
    path: str,
    body: dict[str, Any],
    message: str,
    error_path: str,
) -> None:
    response = client.post(path, json=body, headers=headers[Role.editor])
    assert response.status_code == 422
    assert response.json() == {
        "detail": message,
        "errors": [{"path": error_path, "message": message}],
    }
    assert client.get(f"{path}/{body['key']}", headers=headers[Role.viewer]).status_code == 404


@pytest.mark.usefixtures("catalogue")
def test_duplicate_keys_conflict(client: TestClient, headers: Headers) -> None:
    editor = headers[Role.editor]
    again = client.post("/api/strategies", json={"key": "S1", "title": "x"}, headers=editor)
    assert again.status_code == 409
    assert again.json()["detail"] == "strategy 'S1' already exists"
    # Tickets name bets in labels matched ignoring case, so keys must differ by more.
    bet = {"key": "One-Click", "title": "t", "key_results": ["KR-1"]}
    clash = client.post("/api/bets", json=bet, headers=editor)
    assert clash.status_code == 409
    assert "ignoring case" in clash.json()["detail"]
    rename = client.patch("/api/key-results/KR-2", json={"key": "KR-1"}, headers=editor)
    assert rename.status_code == 409
    assert client.get("/api/key-results/KR-2", headers=editor).status_code == 200


@pytest.mark.usefixtures("catalogue")
def test_deleting_an_objective_with_key_results_needs_cascade(
    client: TestClient, headers: Headers
) -> None:
    editor = headers[Role.editor]
    _post(client, headers, "/api/key-results/KR-1/check-ins", {"value": 64})
    refused = client.delete("/api/objectives/O1", headers=editor)
    assert refused.status_code == 409
    assert "KR-1, KR-2" in refused.json()["detail"]
    assert client.get("/api/key-results/KR-1", headers=editor).status_code == 200

    assert client.delete("/api/objectives/O1?cascade=true", headers=editor).status_code == 204
    assert client.get("/api/objectives/O1", headers=editor).status_code == 404
    assert client.get("/api/key-results/KR-1", headers=editor).status_code == 404
    assert client.get("/api/key-results/KR-1/check-ins", headers=editor).status_code == 404
    # The bet survives without its links.
    assert client.get("/api/bets/one-click", headers=editor).json()["key_results"] == {}


@pytest.mark.usefixtures("catalogue")
def test_deleting_a_key_result_that_bets_point_at_needs_cascade(
    client: TestClient, headers: Headers
) -> None:
    editor = headers[Role.editor]
    refused = client.delete("/api/key-results/KR-2", headers=editor)
    assert refused.status_code == 409
    assert "one-click" in refused.json()["detail"]
    assert client.delete("/api/key-results/KR-2?cascade=true", headers=editor).status_code == 204
    assert client.get("/api/bets/one-click", headers=editor).json()["key_results"] == {"KR-1": 0.7}
    assert client.get("/api/objectives/O1", headers=editor).json()["key_results"] == ["KR-1"]
    # A bet can go at any time, and then its last KR is free to go without cascade.
    assert client.delete("/api/bets/one-click", headers=editor).status_code == 204
    assert client.delete("/api/key-results/KR-1", headers=editor).status_code == 204


@pytest.mark.usefixtures("catalogue")
def test_cycles_and_strategies_in_use_cannot_be_deleted(
    client: TestClient, headers: Headers
) -> None:
    editor = headers[Role.editor]
    for path in ("/api/cycles/2026-Q4", "/api/strategies/S1"):
        response = client.delete(path, headers=editor)
        assert response.status_code == 409
        assert "used by objectives O1" in response.json()["detail"]


@pytest.mark.usefixtures("catalogue")
def test_check_ins_move_current_confidence_and_progress(
    client: TestClient, headers: Headers
) -> None:
    editor = headers[Role.editor]
    assert client.get("/api/key-results/KR-1", headers=editor).json()["progress"] is None
    first = _post(
        client,
        headers,
        "/api/key-results/KR-1/check-ins",
        {"value": 66, "confidence": 0.8, "note": "wallets live", "author": "dana@example.com"},
    )
    assert (first["key_result"], first["value"], first["note"]) == ("KR-1", 66, "wallets live")
    kr = client.get("/api/key-results/KR-1", headers=editor).json()
    assert (kr["current"], kr["confidence"], kr["progress"]) == (66, 0.8, 0.5)

    _post(client, headers, "/api/key-results/KR-1/check-ins", {"value": 71})
    kr = client.get("/api/key-results/KR-1", headers=editor).json()
    assert (kr["current"], kr["confidence"], kr["progress"]) == (71, 0.8, 1.0)

    _post(client, headers, "/api/key-results/KR-2/check-ins", {"value": 3.5})
    assert client.get("/api/key-results/KR-2", headers=editor).json()["progress"] == 0.25
    assert client.get("/api/objectives/O1", headers=editor).json()["progress"] == 0.625

    history = client.get("/api/key-results/KR-1/check-ins", headers=headers[Role.viewer]).json()
    assert [c["value"] for c in history["items"]] == [66, 71]
    assert history["next_cursor"] is None

    for bad in ({"value": "lots"}, {"value": 70, "confidence": 1.5}, {}):
        response = client.post("/api/key-results/KR-1/check-ins", json=bad, headers=editor)
        assert response.status_code == 422
    missing = client.post("/api/key-results/KR-9/check-ins", json={"value": 1}, headers=editor)
    assert missing.status_code == 404


def test_lists_are_paginated(client: TestClient, headers: Headers) -> None:
    for i in range(5):
        _post(client, headers, "/api/strategies", {"key": f"S{i}", "title": f"Strategy {i}"})
    seen, cursor, pages = [], None, 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/api/strategies", params=params, headers=headers[Role.viewer]).json()
        seen += [item["key"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert (seen, pages) == ([f"S{i}" for i in range(5)], 3)
    viewer = headers[Role.viewer]
    assert client.get("/api/strategies?cursor=%%%", headers=viewer).status_code == 422
    assert client.get("/api/strategies?limit=0", headers=viewer).status_code == 422


@pytest.mark.usefixtures("catalogue")
@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"refs": ["jira:pay-1"]}, "refs"),
        ({"refs": ["PAY-1"]}, "refs"),
        ({"refs": ["linear:team:ENG"]}, "refs"),
        ({"refs": ["jira:PAY-1", "jira:PAY-1"]}, "refs"),
        ({"key_results": []}, "key_results"),
        ({"key_results": {"KR-1": 0}}, "key_results"),
        ({"key_results": {"KR-1": 1, "KR-2": None}}, "key_results"),
        ({"status": "someday"}, "status"),
        ({"key": "has space"}, "key"),
    ],
)
def test_invalid_bets_are_refused(
    client: TestClient, headers: Headers, body: dict[str, Any], field: str
) -> None:
    bet = {"key": "b", "title": "t", "key_results": ["KR-1"]} | body
    response = client.post("/api/bets", json=bet, headers=headers[Role.editor])
    assert response.status_code == 422
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}
    assert client.get("/api/bets/b", headers=headers[Role.viewer]).status_code == 404


@pytest.mark.usefixtures("catalogue")
def test_key_result_targets_must_agree_with_direction(client: TestClient, headers: Headers) -> None:
    body = {"key": "KR-3", "objective": "O1", "title": "t", "baseline": 10, "target": 5}
    response = client.post("/api/key-results", json=body, headers=headers[Role.editor])
    assert response.status_code == 422
    assert "below baseline 10, but direction is increase" in response.text


def test_the_north_star(client: TestClient, headers: Headers) -> None:
    editor = headers[Role.editor]
    assert client.get("/api/north-star", headers=editor).status_code == 404
    star = {"name": "Weekly active teams", "metric": "weekly_active_teams"}
    assert client.put("/api/north-star", json=star, headers=editor).json() == star
    renamed = client.put("/api/north-star", json={"name": "Paying teams"}, headers=editor)
    assert renamed.json() == {"name": "Paying teams", "metric": None}
    assert client.get("/api/north-star", headers=headers[Role.viewer]).json()["name"] == (
        "Paying teams"
    )
    assert client.delete("/api/north-star", headers=editor).status_code == 204
    assert client.get("/api/north-star", headers=editor).status_code == 404


@pytest.mark.usefixtures("catalogue")
def test_changes_that_affect_matching_rematch_once(
    client: TestClient, headers: Headers, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[set[str], set[str]]] = []

    def rematch(_session: Any, bets: set[str], krs: set[str], rules: MatchRules) -> None:
        assert rules == match_rules(settings)
        calls.append((bets, krs))

    monkeypatch.setattr(okrs, "rematch_for_okr_change", rematch)
    editor = headers[Role.editor]

    def change(method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        calls.clear()
        response = client.request(method, path, json=body, headers=editor)
        assert response.status_code < 300, response.text
        return list(calls)

    new_bet = {"key": "wallets", "title": "Wallets", "key_results": ["KR-1"]}
    assert change("POST", "/api/bets", new_bet) == [({"wallets"}, set())]
    assert change("PATCH", "/api/bets/wallets", {"title": "Apple Pay"}) == []
    assert change("PATCH", "/api/bets/wallets", {"refs": ["jira:PAY-7"]}) == [({"wallets"}, set())]
    assert change("PATCH", "/api/bets/wallets", {"key": "pay"}) == [({"wallets", "pay"}, set())]
    assert change("PATCH", "/api/key-results/KR-2", {"key": "KR-2b"}) == [
        (set(), {"KR-2", "KR-2b"})
    ]
    assert change("PATCH", "/api/key-results/KR-1", {"target": 75}) == []
    assert change("DELETE", "/api/bets/pay") == [({"pay"}, set())]
    assert change("DELETE", "/api/objectives/O1?cascade=true") == [(set(), {"KR-1", "KR-2b"})]
