"""OKRs as code: round trips, idempotent imports, plans, and invalid files that change nothing."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select, text
from sqlalchemy.orm import Session, sessionmaker

from service.demo import DEMO_OKRS
from service.tokens import Role
from sync.errors import Invalid
from sync.okrs import catalogue as okrs
from sync.okrs.document import export_okrs, import_okrs
from sync.okrs.specs import CheckInSpec
from sync.store.db import transaction
from sync.store.models import Base, CheckIn

DEMO = DEMO_OKRS.read_text(encoding="utf-8")

# The example of DESIGN.md's "OKRs as code" section, as written there.
DESIGN_EXAMPLE = """
north_star: {name: Weekly active teams, metric: weekly_active_teams}
strategies:
  - {key: S1, title: Win the mid-market}
cycles:
  - {key: 2026-Q4, start: 2026-10-01, end: 2026-12-31}
objectives:
  - key: O1
    title: Make checkout effortless
    cycle: 2026-Q4
    strategy: S1
    owner: dana@example.com
    team: payments
    key_results:
      - {key: KR-1.1, title: Checkout conversion 62% → 70%, metric: checkout_conversion,
         unit: "%", baseline: 62, target: 70, current: 64, direction: increase}
bets:
  - key: one-click-checkout
    title: One-click checkout for returning buyers
    hypothesis: Returning buyers abandon at the payment step; saving cards removes it.
    status: now            # now | next | later | done | dropped
    key_results: {KR-1.1: 1.0}   # KR key → weight; a plain list means equal weights
    refs: [jira:PAY-100, linear:project:checkout-v2, linear:initiative:faster-checkout]
"""


def _import(sessions: sessionmaker[Session], content: str, **options: Any) -> Any:
    with transaction(sessions) as session:
        return import_okrs(session, content, **options)


def _export(sessions: sessionmaker[Session]) -> str:
    with transaction(sessions) as session:
        return export_okrs(session)


def _store(engine: Engine) -> dict[str, list[Any]]:
    """Every row of every table, to prove that nothing at all changed."""
    with engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in connection.execute(text(f'SELECT * FROM "{table.name}" ORDER BY 1'))
            ]
            for table in Base.metadata.sorted_tables
        }


def _edited(source: str, edit: Any) -> str:
    document = yaml.safe_load(source)
    edit(document)
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True)


def test_the_demo_file_round_trips_to_the_letter(sessions: sessionmaker[Session]) -> None:
    plan = _import(sessions, DEMO)
    assert plan.counts == {"create": 30, "update": 0, "delete": 0}
    assert _export(sessions) == DEMO


def test_the_design_example_round_trips(sessions: sessionmaker[Session]) -> None:
    _import(sessions, DESIGN_EXAMPLE)
    assert yaml.safe_load(_export(sessions)) == yaml.safe_load(DESIGN_EXAMPLE)


def test_importing_the_same_file_twice_changes_nothing(
    sessions: sessionmaker[Session], engine: Engine
) -> None:
    _import(sessions, DEMO)
    before = _store(engine)
    plan = _import(sessions, DEMO)
    assert plan.changes == []
    assert _store(engine) == before


def test_a_dry_run_writes_nothing(sessions: sessionmaker[Session], engine: Engine) -> None:
    before = _store(engine)
    plan = _import(sessions, DEMO, dry_run=True)
    assert plan.dry_run and plan.counts["create"] == 30
    assert _store(engine) == before


def test_the_file_is_the_source_of_truth(sessions: sessionmaker[Session]) -> None:
    _import(sessions, DEMO)
    with transaction(sessions) as session:
        okrs.add_check_in(session, "KR-1.1", CheckInSpec(value=65))

    def edit(document: dict[str, Any]) -> None:
        o1, o2 = document["objectives"][:2]
        o1["key_results"][0]["target"] = 72  # KR-1.1 changes
        o2["key_results"].append(o1["key_results"].pop(2))  # KR-1.3 moves to O2
        document["objectives"].pop(3)  # O4 and its KRs go
        document["bets"] = [b for b in document["bets"] if b["team"] != "platform"]
        document["bets"][0]["refs"].append("https://wiki.example.com/checkout")
        document["strategies"].pop(1)  # S2 is used by O4 only
        del document["objectives"][2]["owner"]

    edited = _edited(DEMO, edit)
    plan = _import(sessions, edited)
    summary = {(c.action, c.kind, c.key): c.fields for c in plan.changes}
    assert summary == {
        ("update", "objective", "O3"): ("owner",),
        ("update", "key_result", "KR-1.1"): ("target", "current"),
        ("update", "key_result", "KR-1.3"): ("objective",),
        ("update", "bet", "one-click-checkout"): ("refs",),
        ("delete", "bet", "edge-caching"): (),
        ("delete", "bet", "multi-region-failover"): (),
        ("delete", "key_result", "KR-4.1"): (),
        ("delete", "key_result", "KR-4.2"): (),
        ("delete", "objective", "O4"): (),
        ("delete", "strategy", "S2"): (),
    }
    assert yaml.safe_load(_export(sessions)) == yaml.safe_load(edited)
    assert _import(sessions, edited).changes == []
    with sessions() as session:
        # The check-in history of a KR that stays is kept.
        assert len(session.scalars(select(CheckIn)).all()) == 1


INVALID_FILES = {
    "bad YAML": (
        "objectives:\n  - key: O1\n   title: x\n",
        [("line 3, column 4", "not valid YAML")],
    ),
    "a key given twice in one mapping": (
        "cycles:\n  - {key: 2026-Q4, start: 2026-10-01, start: 2026-10-02, end: 2026-12-31}\n",
        [("line 2, column 39", "duplicate key 'start'")],
    ),
    "an empty file": ("# nothing yet\n", [("", "the file is empty")]),
    "not a mapping": ("- O1\n- O2\n", [("", "must be a mapping")]),
    "an unknown section": ("objective: []\n", [("objective", "unknown field")]),
    "an unknown reference": (
        DEMO.replace("key_results: [KR-4.1]", "key_results: [KR-4.9]"),
        [("bets[10].key_results[0]", "unknown key result 'KR-4.9'")],
    ),
    "an unknown cycle": (
        DEMO.replace("cycle: 2026-Q4", "cycle: 2026-Q3", 1),
        [("objectives[0].cycle", "unknown cycle '2026-Q3'")],
    ),
    "a duplicate key": (
        DEMO.replace("key: O2", "key: O1"),
        [("objectives[1].key", "duplicate objective key 'O1' (first at objectives[0])")],
    ),
    "a duplicate bet key differing in case": (
        DEMO.replace("key: typo-tolerance", "key: Semantic-Search"),
        [("bets[5].key", "duplicate bet key 'Semantic-Search' (first at bets[4])")],
    ),
    "a wrong type": (
        DEMO.replace("target: 70", "target: seventy"),
        [("objectives[0].key_results[0].target", "not a number")],
    ),
    "a missing field": (
        DEMO.replace("    title: Make checkout effortless\n", ""),
        [("objectives[0].title", "required")],
    ),
    "an unknown field": (
        DEMO.replace(
            "    team: payments\n    key_results:", "    teem: payments\n    key_results:", 1
        ),
        [("objectives[0].teem", "unknown field")],
    ),
    "a bad ref": (
        DEMO.replace("jira:PAY-2", "jira PAY-2"),
        [("bets[1].refs[0]", "is not a ref")],
    ),
    "a cycle ending before it starts": (
        DEMO.replace("end: 2026-12-31", "end: 2026-09-30"),
        [("cycles[0]", "end 2026-09-30 is before start 2026-10-01")],
    ),
    "several mistakes at once": (
        DEMO.replace("target: 70", "target: seventy")
        .replace("status: next", "status: soon", 1)
        .replace("key_results: [KR-1.2]", "key_results: [KR-1.2, KR-7]"),
        [
            ("objectives[0].key_results[0].target", "not a number"),
            ("bets[2].status", "should be 'now', 'next', 'later', 'done' or 'dropped'"),
            ("bets[1].key_results[1]", "unknown key result 'KR-7'"),
        ],
    ),
}


@pytest.mark.parametrize("case", INVALID_FILES, ids=list(INVALID_FILES))
def test_an_invalid_file_is_refused_whole_and_changes_nothing(
    sessions: sessionmaker[Session], engine: Engine, case: str
) -> None:
    content, expected = INVALID_FILES[case]
    _import(sessions, DEMO)
    _import(sessions, DESIGN_EXAMPLE)  # the store differs from DEMO: a write would show
    before, exported = _store(engine), _export(sessions)
    with pytest.raises(Invalid) as refused:
        _import(sessions, content)
    errors = refused.value.errors
    assert len(errors) == len(expected), errors
    for (path, message), error in zip(expected, errors, strict=True):
        assert error["path"] == path
        assert message in error["message"]
        line = f"{path}: {error['message']}" if path else error["message"]
        assert line in refused.value.message
    assert _store(engine) == before
    assert _export(sessions) == exported


def test_import_and_export_over_http(
    client: TestClient, headers: dict[Role, dict[str, str]], engine: Engine
) -> None:
    editor = headers[Role.editor] | {"Content-Type": "application/yaml"}
    dry = client.post("/api/okrs/import?dry_run=true", content=DEMO, headers=editor)
    assert dry.status_code == 200
    assert (dry.json()["dry_run"], dry.json()["counts"]["create"]) == (True, 30)
    assert client.get("/api/objectives", headers=editor).json()["items"] == []

    done = client.post("/api/okrs/import", content=DEMO.encode(), headers=editor).json()
    assert done["changed"] and done["changes"][0] == {
        "action": "create",
        "kind": "north_star",
        "key": "Weekly active teams",
        "fields": [],
    }
    again = client.post(
        "/api/okrs/import", content=DEMO, headers=editor | {"Content-Type": "text/plain"}
    )
    assert again.json()["changed"] is False

    exported = client.get("/api/okrs/export", headers=headers[Role.viewer])
    assert exported.headers["content-type"].startswith("application/yaml")
    assert exported.text == DEMO

    before = _store(engine)
    content, _ = INVALID_FILES["several mistakes at once"]
    refused = client.post("/api/okrs/import", content=content, headers=editor)
    assert refused.status_code == 422
    assert [error["path"] for error in refused.json()["errors"]] == [
        "objectives[0].key_results[0].target",
        "bets[2].status",
        "bets[1].key_results[1]",
    ]
    as_json = editor | {"Content-Type": "application/json"}
    assert client.post("/api/okrs/import", content="{}", headers=as_json).status_code == 415
    assert _store(engine) == before


def test_an_import_rematches_once_with_the_keys_it_touched(
    sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[set[str], set[str]]] = []
    monkeypatch.setattr(
        okrs, "rematch_for_okr_change", lambda _s, bets, krs, _r: calls.append((bets, krs))
    )
    _import(sessions, DEMO, dry_run=True)
    assert calls == []
    _import(sessions, DEMO)
    ((bets, krs),) = calls
    assert (len(bets), len(krs)) == (12, 10)

    calls.clear()
    _import(sessions, DEMO)
    assert calls == []

    def edit(document: dict[str, Any]) -> None:
        document["bets"][0]["refs"] = ["jira:PAY-9"]
        document["bets"][1]["title"] = "Retries"  # not a matching concern
        document["bets"][2]["key"] = "wallets"
        document["objectives"][3]["key_results"].pop()
        document["bets"][11]["key_results"] = ["KR-4.1"]

    _import(sessions, _edited(DEMO, edit))
    assert calls == [({"one-click-checkout", "wallet-payments", "wallets"}, {"KR-4.2"})]
