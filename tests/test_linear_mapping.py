"""Linear mapping: every sample in the reference material against its golden item.

The golden files under tests/golden/linear/ are the specification, reviewed by hand against
the payloads: a webhook's `data` or a Zapier sample that is an issue or a project maps to
an item, anything else (comments, labels, customers, updates…) to the error it raises.
`LADDER_UPDATE_GOLDEN=1 pytest tests/test_linear_mapping.py` rewrites them after a
deliberate change; without it any difference fails.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from conftest import REFERENCE
from golden import GOLDEN as GOLDEN_ROOT
from golden import UPDATE, as_json, assert_golden

from integrations.linear.mapping import (
    UnmappablePayload,
    is_truncated,
    kind,
    normalise,
    slug,
)

SAMPLES = REFERENCE / "linear" / "samples"
GOLDEN = GOLDEN_ROOT / "linear"


def reference_payloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """(golden name, payload) for every webhook `data` and Zapier sample in the reference."""
    for path in sorted((SAMPLES / "webhooks").glob("*/*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        origin = path.parent.name
        envelopes = {path.stem: body} if "type" in body else body  # one file holds several
        for name, envelope in envelopes.items():
            label = path.stem if name == path.stem else f"{path.stem}__{name}"
            yield f"webhook-{origin}__{label}", envelope.get("data") or {}
    for path in sorted((SAMPLES / "zapier").glob("*.json")):
        yield f"zapier__{path.stem}", json.loads(path.read_text(encoding="utf-8"))


CASES = list(reference_payloads())


def mapped(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return as_json(normalise(payload))
    except UnmappablePayload as exc:
        return {"error": str(exc)}


def test_the_reference_holds_the_expected_payloads() -> None:
    names = [name for name, _ in CASES]
    assert len(names) == len(set(names))
    # 9 Zulip deliveries, the 3 envelopes of linear-solutions' SLA fixture, 9 Zapier samples.
    assert len(names) == 9 + 3 + 9
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(names) or UPDATE
    items = [name for name, payload in CASES if "error" not in mapped(payload)]
    assert sorted(items) == [
        "webhook-zulip__issue_create_complex",
        "webhook-zulip__issue_remove",
        "webhook-zulip__issue_sub_issue_create",
        "webhook-zulip__issue_sub_issue_update",
        "webhook-zulip__issue_update",
        "zapier__issue",
        "zapier__project",
    ]


@pytest.mark.parametrize(("name", "payload"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, payload: dict[str, Any]) -> None:
    actual = mapped(payload)
    assert_golden(GOLDEN, name, actual)


def _payload(name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(CASES)[name])


# A payload in the adapter's own GraphQL shape (connections as `nodes`, relations nested).
QUERIED_ISSUE: dict[str, Any] = {
    "__typename": "Issue",
    "id": "7d1d3a10-0000-4000-8000-000000000001",
    "identifier": "ENG-7",
    "title": "One-click checkout",
    "url": "https://linear.app/acme/issue/ENG-7/one-click-checkout",
    "estimate": 3,
    "createdAt": "2026-10-01T09:00:00.000Z",
    "updatedAt": "2026-10-03T09:00:00.000Z",
    "startedAt": None,
    "completedAt": "2026-10-03T09:00:00.000Z",
    "canceledAt": None,
    "archivedAt": None,
    "trashed": None,
    "state": {"name": "Done", "type": "completed"},
    "team": {"id": "t1", "key": "ENG"},
    "parent": None,
    "project": {"id": "p1", "slugId": "4437c60bc5ec", "name": "Checkout v2"},
    "cycle": {"id": "c1"},
    "assignee": {"name": "Dana"},
    "labels": {"nodes": [{"name": "bet:one-click"}], "pageInfo": {"hasNextPage": False}},
    "attachments": {
        "nodes": [{"url": "https://github.com/acme/web/pull/1"}],
        "pageInfo": {"hasNextPage": False},
    },
}


def test_a_queried_issue_maps_every_field() -> None:
    item = normalise(QUERIED_ISSUE)
    assert as_json(item) == {
        "source": "linear",
        "external_id": "7d1d3a10-0000-4000-8000-000000000001",
        "key": "ENG-7",
        "title": "One-click checkout",
        "type": "story",
        "status": "Done",
        "status_category": "done",
        "updated_at": "2026-10-03T09:00:00+00:00",
        "url": "https://linear.app/acme/issue/ENG-7/one-click-checkout",
        "labels": ["bet:one-click"],
        "parent_ref": "p1",
        "parent_key": "4437c60bc5ec",
        "container_refs": [
            "linear:project:p1",
            "linear:project:4437c60bc5ec",
            "linear:project:checkout-v2",
            "linear:cycle:c1",
            "linear:team:ENG",
        ],
        "linked_urls": ["https://github.com/acme/web/pull/1"],
        "linked_keys": [],
        "project": "ENG",
        "estimate": 3.0,
        "time_spent_seconds": None,
        "assignee": "Dana",
        "created_at": "2026-10-01T09:00:00+00:00",
        "resolved_at": "2026-10-03T09:00:00+00:00",
        "deleted": False,
    }
    assert item.raw == QUERIED_ISSUE


@pytest.mark.parametrize(
    ("state_type", "category"),
    [
        ("triage", "todo"),
        ("backlog", "todo"),
        ("unstarted", "todo"),
        ("started", "in_progress"),
        ("completed", "done"),
        ("canceled", "canceled"),
    ],
)
def test_state_types_map_to_categories(state_type: str, category: str) -> None:
    payload = {**QUERIED_ISSUE, "state": {"name": "X", "type": state_type}}
    assert normalise(payload).status_category == category


def test_only_done_and_canceled_issues_are_resolved() -> None:
    canceled = {**QUERIED_ISSUE, "state": {"name": "Won't do", "type": "canceled"}}
    canceled["canceledAt"] = "2026-10-02T00:00:00.000Z"
    assert normalise(canceled).resolved_at == datetime.fromisoformat("2026-10-02T00:00:00+00:00")
    started = {**QUERIED_ISSUE, "state": {"name": "Doing", "type": "started"}}
    assert normalise(started).resolved_at is None


def test_an_unknown_state_type_is_an_error_not_a_guess() -> None:
    payload = {**QUERIED_ISSUE, "state": {"name": "Parked", "type": "parked"}}
    with pytest.raises(UnmappablePayload, match="unknown workflow state type 'parked'"):
        normalise(payload)


def test_types_sub_issues_then_bugs_then_stories() -> None:
    assert normalise(_payload("webhook-zulip__issue_sub_issue_create")).type == "subtask"
    assert normalise(_payload("webhook-zulip__issue_create_complex")).type == "bug"  # "Bug"
    no_bug = {**QUERIED_ISSUE, "labels": {"nodes": [{"name": "Feature"}]}}
    assert normalise(no_bug).type == "story"
    bug_sub_issue = {
        **QUERIED_ISSUE,
        "labels": {"nodes": [{"name": "bug"}]},
        "parent": {"id": "i0", "identifier": "ENG-1"},
    }
    assert normalise(bug_sub_issue).type == "subtask"


def test_a_sub_issue_points_at_its_parent_issue_before_its_project() -> None:
    sub_issue = {**QUERIED_ISSUE, "parent": {"id": "i0", "identifier": "ENG-1"}}
    item = normalise(sub_issue)
    assert (item.parent_ref, item.parent_key) == ("i0", "ENG-1")
    assert "linear:project:p1" in item.container_refs  # still linked to its project


def test_archiving_counts_as_the_latest_change() -> None:
    removed = normalise(_payload("webhook-zulip__issue_remove"))
    assert removed.deleted
    # updatedAt is 10:16:53.023 in the delivery; archivedAt 10:17:17.810 is newer.
    assert removed.updated_at == datetime.fromisoformat("2023-04-11T10:17:17.810+00:00")
    archived = {**QUERIED_ISSUE, "archivedAt": "2026-10-05T00:00:00.000Z"}
    assert normalise(archived).deleted
    assert normalise({**QUERIED_ISSUE, "trashed": True}).deleted


def test_a_moved_issue_keeps_its_id_with_a_new_key() -> None:
    moved = {**QUERIED_ISSUE, "identifier": "OPS-3", "team": {"id": "t2", "key": "OPS"}}
    before, after = normalise(QUERIED_ISSUE), normalise(moved)
    assert after.external_id == before.external_id
    assert (after.key, after.project) == ("OPS-3", "OPS")
    assert "linear:team:OPS" in after.container_refs


def test_a_webhook_issue_without_identifier_takes_team_key_and_number() -> None:
    payload = _payload("webhook-zulip__issue_update")
    assert "identifier" not in payload
    assert normalise(payload).key == "WEB-44"
    del payload["team"]
    with pytest.raises(UnmappablePayload, match="no identifier"):
        normalise(payload)


def test_projects_are_containers_with_their_initiatives_as_refs() -> None:
    project = normalise(_payload("zapier__project"))
    assert project.type == "project"
    assert project.key == "bb9746674991"  # the slugId ending the project's URL
    assert project.estimate is None
    assert "linear:initiative:6d6cbf03-dd67-47c6-ae21-d1b2519454e3" in project.container_refs
    assert "linear:initiative:Product" in project.container_refs
    queried = {
        "__typename": "Project",
        "id": "p1",
        "slugId": "4437c60bc5ec",
        "name": "Checkout v2",
        "url": "https://linear.app/acme/project/checkout-v2-4437c60bc5ec",
        "createdAt": "2026-09-01T00:00:00.000Z",
        "updatedAt": "2026-10-01T00:00:00.000Z",
        "completedAt": None,
        "canceledAt": None,
        "archivedAt": None,
        "trashed": None,
        "status": {"name": "Paused", "type": "paused"},
        "lead": {"name": "Dana"},
        "labels": {"nodes": [{"name": "bet:one-click"}]},
        "teams": {"nodes": [{"key": "WEB"}, {"key": "ENG"}]},
        "initiatives": {
            "nodes": [
                {
                    "id": "n2",
                    "name": "Faster checkout",
                    "parentInitiative": {"id": "n1", "name": "Revenue"},
                }
            ]
        },
    }
    item = normalise(queried)
    assert (item.status_category, item.project, item.labels) == (
        "in_progress",
        "WEB",
        ("bet:one-click",),
    )
    assert item.container_refs == (
        "linear:project:p1",
        "linear:project:4437c60bc5ec",
        "linear:project:checkout-v2",
        "linear:initiative:n2",
        "linear:initiative:Faster checkout",
        "linear:initiative:faster-checkout",
        "linear:initiative:n1",
        "linear:initiative:Revenue",
        "linear:initiative:revenue",
        "linear:team:WEB",
        "linear:team:ENG",
    )


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"__typename": "Comment", "id": "c"}, "a Linear Comment is not an item"),
        ({"id": "x", "body": "hi"}, "not a Linear issue or project"),
        ({**QUERIED_ISSUE, "id": None}, "no id"),
        ({**QUERIED_ISSUE, "updatedAt": None}, "updatedAt is missing"),
        ({**QUERIED_ISSUE, "updatedAt": "yesterday"}, "updatedAt is not a timestamp"),
        ({**QUERIED_ISSUE, "createdAt": "2026-10-01T09:00:00"}, "createdAt has no time zone"),
        ({**QUERIED_ISSUE, "state": None}, "no workflow state"),
    ],
)
def test_bad_payloads_are_refused_with_a_reason(payload: dict[str, Any], message: str) -> None:
    with pytest.raises(UnmappablePayload, match=message):
        normalise(payload)


def test_kind_reads_typename_first() -> None:
    assert kind(QUERIED_ISSUE) == "Issue"
    assert kind({"slugId": "x", "id": "p"}) == "Project"
    assert kind(_payload("zapier__issue")) == "Issue"


def test_truncated_lists_are_detected() -> None:
    assert not is_truncated(QUERIED_ISSUE)
    more_labels = {**QUERIED_ISSUE, "labels": {"nodes": [], "pageInfo": {"hasNextPage": True}}}
    assert is_truncated(more_labels)
    assert not is_truncated(_payload("webhook-zulip__issue_update"))  # plain lists: complete


def test_slugs_are_how_people_write_names() -> None:
    assert slug("Faster checkout!") == "faster-checkout"
    assert slug("  Ünïcode & more ") == "ünïcode-more"
