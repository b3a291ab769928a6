"""Linear mapping: our own fixtures against their golden items, and the rules one by one.

The fixtures (tests/fixtures/linear/) are ours, written by hand in the shapes Linear answers
in: webhook deliveries, and GraphQL pages in the adapter's own query shapes. Their golden
files, tests/golden/linear/fixture__<name>.json, are the specification, reviewed by hand: a
webhook's `data` or a queried node that is an issue or a project maps to an item, anything
else (comments, labels, project updates…) to the error it raises. The real payloads of the
reference corpus are checked by tests/conformance/test_linear_mapping_reference.py.
`LADDER_UPDATE_GOLDEN=1 pytest tests/test_linear_mapping.py` rewrites the goldens after a
deliberate change; without it any difference fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    OperationDefinitionNode,
    SelectionSetNode,
)
from support.golden import GOLDEN as GOLDEN_ROOT
from support.golden import UPDATE, as_json, assert_golden
from support.reference import FIXTURES

from integrations.linear.documents import document
from integrations.linear.mapping import (
    UnmappablePayload,
    is_truncated,
    kind,
    normalise,
    slug,
)

GOLDEN = GOLDEN_ROOT / "linear"


LINEAR_FIXTURES = FIXTURES / "linear"


def _read(name: str) -> dict[str, Any]:
    return json.loads((LINEAR_FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def fixture(name: str) -> dict[str, Any]:
    """The `data` of one of our webhook deliveries (tests/fixtures/linear/webhook_*.json)."""
    return dict(_read(name)["data"])


def page(name: str) -> list[dict[str, Any]]:
    """The nodes of one of our GraphQL answers (tests/fixtures/linear/graphql_*.json)."""
    (connection,) = _read(name)["data"].values()
    return [dict(node) for node in connection["nodes"]]


def node(name: str, key: str) -> dict[str, Any]:
    """The node of a GraphQL answer whose identifier (issues) or slugId (projects) is `key`."""
    (found,) = [n for n in page(name) if key in (n.get("identifier"), n.get("slugId"))]
    return found


def fixture_cases() -> list[tuple[str, dict[str, Any]]]:
    """(golden name, payload): each webhook's `data`, and each node of each GraphQL page."""
    cases = [(p.stem, fixture(p.stem)) for p in sorted(LINEAR_FIXTURES.glob("webhook_*.json"))]
    for path in sorted(LINEAR_FIXTURES.glob("graphql_*.json")):
        for found in page(path.stem):
            cases.append((f"{path.stem}__{found.get('identifier') or found['slugId']}", found))
    return cases


CASES = fixture_cases()


def mapped(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return as_json(normalise(payload))
    except UnmappablePayload as exc:
        return {"error": str(exc)}


@pytest.mark.parametrize(("name", "payload"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, payload: dict[str, Any]) -> None:
    assert_golden(GOLDEN, f"fixture__{name}", mapped(payload))


def test_every_fixture_has_its_golden_item() -> None:
    files = {p.name for p in LINEAR_FIXTURES.glob("*.json")}
    assert all(f.startswith(("webhook_", "graphql_")) for f in files)  # none left unread
    golden = {p.stem for p in GOLDEN.glob("fixture__*.json")}
    assert golden == {f"fixture__{name}" for name, _ in CASES} or UPDATE
    items = [name for name, payload in CASES if "error" not in mapped(payload)]
    # Every issue and project, delivered or queried, except a project's `remove` body.
    assert sorted(items) == [
        "graphql_issues_page__ENG-12",
        "graphql_issues_page__ENG-31",
        "graphql_issues_page__ENG-42",
        "graphql_issues_page__ENG-57",
        "graphql_issues_page__ENG-58",
        "graphql_projects_page__2f3e4d5c6b7a",
        "graphql_projects_page__4437c60bc5ec",
        "graphql_projects_page__9d8c7b6a5f4e",
        "webhook_issue_create_bug",
        "webhook_issue_remove",
        "webhook_issue_update",
        "webhook_project_cancel",
        "webhook_project_create",
        "webhook_project_update",
        "webhook_sub_issue_create",
    ]


def _selected(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode]
) -> dict[str, Any]:
    """The response keys a selection set asks for, nested (None for a scalar)."""
    keys: dict[str, Any] = {}
    for selection in selections.selections:
        if isinstance(selection, FragmentSpreadNode):
            keys |= _selected(fragments[selection.name.value].selection_set, fragments)
        elif isinstance(selection, FieldNode):
            sub = selection.selection_set
            keys[(selection.alias or selection.name).value] = (
                _selected(sub, fragments) if sub else None
            )
    return keys


def _shape_errors(value: Any, selected: dict[str, Any] | None, where: str) -> Iterator[str]:
    """Where `value` has other keys than the selection: an answer GraphQL could not give."""
    if selected is None or value is None:
        return
    if isinstance(value, list):
        for n, element in enumerate(value):
            yield from _shape_errors(element, selected, f"{where}[{n}]")
        return
    if set(value) != set(selected):
        yield f"{where}: has {sorted(value)}, the query selects {sorted(selected)}"
    for key, sub in selected.items():
        yield from _shape_errors(value.get(key), sub, f"{where}.{key}")


def _operation(name: str) -> tuple[OperationDefinitionNode, dict[str, FragmentDefinitionNode]]:
    ast = document(name).ast
    fragments = {d.name.value: d for d in ast.definitions if isinstance(d, FragmentDefinitionNode)}
    (operation,) = [d for d in ast.definitions if isinstance(d, OperationDefinitionNode)]
    return operation, fragments


@pytest.mark.parametrize(
    ("name", "operation"),
    [("graphql_issues_page", "Issues"), ("graphql_projects_page", "Projects")],
)
def test_our_graphql_answers_have_the_shape_the_adapter_queries(name: str, operation: str) -> None:
    # Hand-written answers drift from the queries unless something holds them together.
    query, fragments = _operation(operation)
    selected = _selected(query.selection_set, fragments)
    assert list(_shape_errors(_read(name)["data"], selected, "data")) == []


def test_the_queried_issue_below_has_the_shape_of_issue_fields() -> None:
    _, fragments = _operation("Issues")
    selected = _selected(fragments["IssueFields"].selection_set, fragments)
    assert list(_shape_errors(QUERIED_ISSUE, selected, "QUERIED_ISSUE")) == []


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
    assert normalise(fixture("webhook_sub_issue_create")).type == "subtask"
    assert normalise(fixture("webhook_issue_create_bug")).type == "bug"  # "Bug"
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


def test_projects_resolve_like_issues_and_a_removal_body_is_not_an_item() -> None:
    done = normalise(fixture("webhook_project_update"))  # In Progress → Completed
    assert (done.status_category, done.resolved_at) == (
        "done",
        datetime.fromisoformat("2026-10-20T17:05:41.911+00:00"),
    )
    gift_cards = normalise(node("graphql_projects_page", "9d8c7b6a5f4e"))
    assert (gift_cards.status_category, gift_cards.deleted) == ("canceled", True)
    assert gift_cards.resolved_at == datetime.fromisoformat("2026-10-21T10:13:58.602+00:00")
    # A `remove` delivery names the project and nothing else; the delivery says it is gone.
    with pytest.raises(UnmappablePayload, match="has no status"):
        normalise(fixture("webhook_project_remove"))


def test_archiving_counts_as_the_latest_change() -> None:
    removed = normalise(fixture("webhook_issue_remove"))
    assert removed.deleted
    # updatedAt is 11:20:00.500 in the delivery; archivedAt 11:20:31.006 is newer.
    assert removed.updated_at == datetime.fromisoformat("2026-10-16T11:20:31.006+00:00")
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
    payload = fixture("webhook_issue_update")
    assert "identifier" not in payload
    assert normalise(payload).key == "ENG-42"
    del payload["team"]
    with pytest.raises(UnmappablePayload, match="no identifier"):
        normalise(payload)


def test_projects_are_containers_with_their_initiatives_as_refs() -> None:
    checkout = node("graphql_projects_page", "4437c60bc5ec")
    project = normalise(checkout)
    assert (project.type, project.key, project.estimate) == ("project", "4437c60bc5ec", None)
    assert "linear:initiative:708192a3-b4c5-4d6e-8f70-8192a3b4c5d6" in project.container_refs
    assert "linear:initiative:Faster checkout" in project.container_refs
    assert "linear:initiative:Revenue" in project.container_refs  # the parent initiative
    # Without a slugId (Linear's Zapier samples select none), the URL ends in it.
    del checkout["slugId"]
    assert normalise(checkout).key == "4437c60bc5ec"
    # A webhook lists the initiatives plainly, with no parents: the refs it can give.
    delivered = normalise(fixture("webhook_project_create"))
    assert delivered.type == "project"
    assert "linear:initiative:Faster checkout" in delivered.container_refs
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
    assert kind(fixture("webhook_issue_update")) == "Issue"
    with pytest.raises(UnmappablePayload, match="project update"):
        kind(fixture("webhook_project_update_post"))  # has a slugId, but names its project
    with pytest.raises(UnmappablePayload, match="not a Linear issue or project"):
        kind(fixture("webhook_issue_label_create"))  # a team's label: a teamId, no number


def test_truncated_lists_are_detected() -> None:
    assert not is_truncated(QUERIED_ISSUE)
    more_labels = {**QUERIED_ISSUE, "labels": {"nodes": [], "pageInfo": {"hasNextPage": True}}}
    assert is_truncated(more_labels)
    assert not is_truncated(fixture("webhook_issue_update"))  # plain lists: complete
    assert is_truncated(node("graphql_issues_page", "ENG-12"))  # more labels than the page


def test_slugs_are_how_people_write_names() -> None:
    assert slug("Faster checkout!") == "faster-checkout"
    assert slug("  Ünïcode & more ") == "ünïcode-more"
