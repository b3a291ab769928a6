"""Real Linear query results (Faros AI's `devcube` workspace, June 2022) map field for field.

linear/samples/faros-devcube in the corpus holds what Faros's Airbyte source fetched from a
tiny real workspace (team Devcube, key DEV): 11 issues (Linear's onboarding issues and one
sub-issue), 1 project, 2 cycles, 5 labels. See its PROVENANCE.md. Faros selected its own
fields, not the adapter's, so the shape is adapted here, and only here, before mapping:

* issues_input.json is a Relay connection as `edges[].node`; the adapter reads `nodes`.
  Each node is unwrapped. issues.json (Faros's flattened copy) and the Airbyte RECORD
  envelopes of destination-all-streams.log hold the same issues with connections turned
  into plain lists. Those are unwrapped too, and must map to the same items.
* Faros selected no `identifier`. The issue's URL names it (`/issue/DEV-11/test`), so it is
  taken from there. There is no `team` either; the mapping reads the team key from the
  identifier, as it does for any payload without a team.
* Faros selected the workflow state's name but not its `type`, and the mapping refuses to
  guess a category from a name (checked below). devcube kept the stock workflow that Linear
  gives a new team, whose names say their types, so the type comes from that table.
* No estimate, attachments, archive time or slugId were selected: the expected item has none.

Each expected item is read straight from the JSON by the plain rules of the mapping contract,
without the mapping code, and compared field by field.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from support.golden import as_json
from support.reference import REFERENCE, present

from integrations.linear.mapping import UnmappablePayload, normalise

FAROS = REFERENCE / "linear" / "samples" / "faros-devcube"
# The stock workflow of a new Linear team: state name → state type.
STOCK_STATE_TYPES = {
    "Backlog": "backlog",
    "Todo": "unstarted",
    "In Progress": "started",
    "Done": "completed",
    "Canceled": "canceled",
}
# The contract's categories, written out again rather than imported from the mapping.
CATEGORIES = {
    "triage": "todo",
    "backlog": "todo",
    "unstarted": "todo",
    "started": "in_progress",
    "completed": "done",
    "canceled": "canceled",
}
ISSUE_URL = re.compile(r"^https://linear\.app/devcube/issue/(?P<key>[A-Z]+-\d+)/")


def _read(name: str) -> Any:
    return json.loads((FAROS / name).read_text(encoding="utf-8"))


def connection_nodes() -> list[dict[str, Any]]:
    """The issues of issues_input.json, unwrapped from their `edges[].node`."""
    if not present():
        return []
    return [edge["node"] for edge in _read("issues_input.json")["edges"]]


def flattened_issues() -> list[dict[str, Any]]:
    """Faros's flattened copy of the same issues (issues.json)."""
    return _read("issues.json") if present() else []


def airbyte_records(stream: str) -> list[dict[str, Any]]:
    """The `data` of each Airbyte RECORD message of `stream` (`issues`, `projects`…)."""
    if not present():
        return []
    records = []
    for line in (FAROS / "destination-all-streams.log").read_text(encoding="utf-8").splitlines():
        message = json.loads(line) if line.strip() else {}
        record = message.get("record") or {}
        if message.get("type") == "RECORD" and record["stream"].endswith(f"__linear__{stream}"):
            records.append(record["data"])
    return records


def in_adapter_shape(issue: dict[str, Any]) -> dict[str, Any]:
    """The issue with the two fields the mapping needs that Faros did not select."""
    match = ISSUE_URL.match(issue["url"])
    assert match, issue["url"]
    state = issue["state"]
    return {
        **issue,
        "identifier": match["key"],
        "state": {**state, "type": STOCK_STATE_TYPES[state["name"]]},
    }


def _iso(value: str | None) -> str | None:
    """`2022-06-16T15:07:18.821Z` as Python writes it: `2022-06-16T15:07:18.821000+00:00`."""
    if value is None:
        return None
    stamp, fraction = value.removesuffix("Z").split(".")
    return f"{stamp}.{fraction.ljust(6, '0')}+00:00"


def _label_names(labels: Any) -> list[str]:
    nodes = labels["nodes"] if isinstance(labels, dict) else labels
    return [label["name"] for label in nodes]


def expected(issue: dict[str, Any]) -> dict[str, Any]:
    """The item the contract says this issue is, read without the mapping code."""
    key = ISSUE_URL.match(issue["url"])["key"]  # type: ignore[index]
    team = key.split("-")[0]
    category = CATEGORIES[STOCK_STATE_TYPES[issue["state"]["name"]]]
    labels = _label_names(issue["labels"])
    parent, project, cycle = issue["parent"], issue["project"], issue["cycle"]
    if parent:
        item_type = "subtask"
    elif "bug" in {name.lower() for name in labels}:
        item_type = "bug"
    else:
        item_type = "story"
    refs = []
    if project:
        refs += [f"linear:project:{project['id']}"]
        refs += [f"linear:project:{project['name'].lower().replace(' ', '-')}"]
    if cycle:
        refs.append(f"linear:cycle:{cycle['id']}")
    refs.append(f"linear:team:{team}")
    resolved = {"done": issue.get("completedAt"), "canceled": issue.get("canceledAt")}
    return {
        "source": "linear",
        "external_id": issue["id"],
        "key": key,
        "title": issue["title"],
        "type": item_type,
        "status": issue["state"]["name"],
        "status_category": category,
        "updated_at": _iso(issue["updatedAt"]),
        "url": issue["url"],
        "labels": labels,
        "parent_ref": (parent or project or {}).get("id"),
        "parent_key": None,  # Faros selected neither the parent's identifier nor a slugId
        "container_refs": refs,
        "linked_urls": [],
        "linked_keys": [],
        "project": team,
        "estimate": None,
        "time_spent_seconds": None,
        "assignee": (issue["assignee"] or {}).get("name"),
        "created_at": _iso(issue["createdAt"]),
        "resolved_at": _iso(resolved.get(category)),
        "deleted": False,
    }


NODES = connection_nodes()
IDS = [ISSUE_URL.match(n["url"])["key"] for n in NODES]  # type: ignore[index]


@pytest.mark.parametrize("issue", NODES, ids=IDS)
def test_a_queried_issue_maps_field_for_field(issue: dict[str, Any]) -> None:
    assert as_json(normalise(in_adapter_shape(issue))) == expected(issue)


@pytest.mark.parametrize("issue", NODES, ids=IDS)
def test_the_flattened_and_airbyte_copies_map_to_the_same_item(issue: dict[str, Any]) -> None:
    # Plain lists instead of connections: the shape webhooks use, which the mapping reads too.
    item = as_json(normalise(in_adapter_shape(issue)))
    (flat,) = [i for i in flattened_issues() if i["id"] == issue["id"]]
    (record,) = [r for r in airbyte_records("issues") if r["id"] == issue["id"]]
    assert as_json(normalise(in_adapter_shape(flat))) == item
    assert as_json(normalise(in_adapter_shape(record))) == item


def test_the_workspace_is_what_its_provenance_says() -> None:
    assert len(NODES) == 11
    assert {n["id"] for n in flattened_issues()} == {n["id"] for n in NODES}
    assert {r["id"] for r in airbyte_records("issues")} == {n["id"] for n in NODES}
    assert set(IDS) == {f"DEV-{n}" for n in range(1, 12)}
    assert set(STOCK_STATE_TYPES) >= {n["state"]["name"] for n in NODES}
    # What the issues point at is in the other files: the cycles, labels and the project.
    cycles = {c["id"] for c in _read("cycles.json")}
    labels = {label["name"] for label in _read("labels.json")}
    (project,) = _read("projects.json")
    for node in NODES:
        assert node["cycle"] is None or node["cycle"]["id"] in cycles
        assert set(_label_names(node["labels"])) <= labels
        assert node["project"] is None or node["project"]["id"] == project["id"]


def test_two_issues_by_hand() -> None:
    items = {item.key: item for item in (normalise(in_adapter_shape(n)) for n in NODES)}
    welcome, sub_issue = items["DEV-1"], items["DEV-11"]
    assert (welcome.title, welcome.type, welcome.status_category) == (
        "Welcome to Linear 👋",
        "bug",  # labelled "Bug"
        "in_progress",
    )
    assert welcome.assignee is not None  # the workspace's one user
    assert welcome.container_refs == (
        "linear:project:43a993a9-878c-4bd2-8863-c19347cea072",
        "linear:project:my-first-project",
        "linear:cycle:d6eb162d-45a5-47e1-8338-4442fa139c13",
        "linear:team:DEV",
    )
    # The one sub-issue is labelled "Bug" too, but a sub-issue is a sub-task first.
    assert (sub_issue.title, sub_issue.type, sub_issue.status) == ("test", "subtask", "Todo")
    assert sub_issue.parent_ref == welcome.external_id
    assert Counter(item.status_category for item in items.values()) == {
        "todo": 10,
        "in_progress": 1,
    }


def test_a_state_without_its_type_is_refused_not_guessed() -> None:
    # As Faros captured it (no `type`): the mapping does not read a category from a name.
    with pytest.raises(UnmappablePayload, match="unknown workflow state type None"):
        normalise({**NODES[0], "identifier": "DEV-1"})


def test_the_project_as_selected_is_refused_for_want_of_a_status() -> None:
    (project,) = _read("projects.json")  # id, name, description, createdAt, updatedAt only
    (record,) = airbyte_records("projects")  # adds completedAt and progress, still no status
    for selected in (project, record):
        with pytest.raises(UnmappablePayload, match="not a Linear issue or project"):
            normalise(selected)  # nothing in it says it is a project
        with pytest.raises(UnmappablePayload, match="has no status"):
            normalise({**selected, "__typename": "Project"})  # as the adapter's query says
