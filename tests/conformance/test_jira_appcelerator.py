"""The whole public Appcelerator Jira Server (29,057 real issues) maps field for field.

The dump (jira/samples/appcelerator-server in the corpus) holds one issue a file in the Jira
Software Agile representation: the epic is in `fields.epic`, sub-tasks name their `parent`,
users are Server-style, and the archivist stripped every custom field (so no story points and
no time spent). Each issue's expected item is read here straight from its JSON by the plain
rules of the contract, independently of the mapping code, and compared field by field.
"""

from __future__ import annotations

import json
import tarfile
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from support.reference import REFERENCE, present

from integrations.jira.mapping import DEFAULT_CANCELED_RESOLUTIONS, JiraFieldConfig, normalise

DUMP = REFERENCE / "jira" / "samples" / "appcelerator-server"
ARCHIVE = DUMP / "appcelerator-jira-dump-2021-11.tar.xz"
CONFIG = JiraFieldConfig(base_url="https://jira.appcelerator.org")
TYPES = {"Bug": "bug", "Story": "story", "Epic": "epic", "Sub-task": "subtask"}
CATEGORIES = {"new": "todo", "indeterminate": "in_progress", "done": "done"}
CANCELED = {name.casefold() for name in DEFAULT_CANCELED_RESOLUTIONS}


def _issues(files: Iterator[tuple[str, bytes]]) -> Iterator[dict[str, Any]]:
    for name, data in files:
        if not name.endswith("/project.json"):
            yield json.loads(data)


def archived_issues() -> Iterator[dict[str, Any]]:
    """Every issue in the archive, streamed (222 MB unpacked)."""
    with tarfile.open(ARCHIVE) as archive:
        for member in archive:
            handle = archive.extractfile(member) if member.isfile() else None
            if handle is not None:
                yield from _issues(iter([(member.name, handle.read())]))


def sample_issues() -> list[dict[str, Any]]:
    """The uncompressed sample of the dump: 457 issues."""
    if not present():
        return []
    paths = sorted((DUMP / "sample").rglob("*.json"))
    return list(_issues((str(path), path.read_bytes()) for path in paths))


def _time(value: str | None) -> str | None:
    # Jira Server writes `2016-05-20T17:34:09.000+0000`; Python reads that offset form too.
    return None if value is None else datetime.fromisoformat(value).isoformat()


def expected(issue: dict[str, Any]) -> dict[str, Any]:
    """The item the contract says this issue is, read without the mapping code."""
    fields = issue["fields"]
    issuetype = fields["issuetype"]
    resolution = (fields.get("resolution") or {}).get("name")
    category = CATEGORIES[fields["status"]["statusCategory"]["key"]]
    if category == "done" and resolution and resolution.casefold() in CANCELED:
        category = "canceled"
    parent = fields.get("parent") or fields.get("epic") or {}
    links = []
    for link in fields.get("issuelinks") or ():
        other = (link.get("outwardIssue") or link.get("inwardIssue"))["key"]
        if other not in links:
            links.append(other)
    return {
        "external_id": issue["id"],
        "key": issue["key"],
        "url": f"https://jira.appcelerator.org/browse/{issue['key']}",
        "title": (fields.get("summary") or "").replace("\x00", ""),  # AC-523 has none
        "type": "subtask" if issuetype["subtask"] else TYPES.get(issuetype["name"], "other"),
        "status": fields["status"]["name"],
        "status_category": category,
        "labels": list(dict.fromkeys(fields.get("labels") or ())),
        # The Agile API's epic carries its id as a number, the REST API's parent as a string.
        "parent_ref": str(parent["id"]) if "id" in parent else None,
        "parent_key": parent.get("key"),
        "project": fields["project"]["key"],
        "container_refs": [f"jira:project:{fields['project']['key']}"],
        "linked_keys": links,
        "estimate": None,
        "time_spent_seconds": None,
        "assignee": (fields.get("assignee") or {}).get("displayName"),
        "created_at": _time(fields.get("created")),
        "updated_at": _time(fields.get("updated")),
        "resolved_at": _time(fields.get("resolutiondate")),
    }


def actual(issue: dict[str, Any]) -> dict[str, Any]:
    item = normalise(issue, CONFIG)
    out = {name: getattr(item, name) for name in expected(issue)}
    for name in ("labels", "container_refs", "linked_keys"):
        out[name] = list(out[name])
    for name in ("created_at", "updated_at", "resolved_at"):
        out[name] = out[name].isoformat() if out[name] else None
    return out


SAMPLE = sample_issues()


@pytest.mark.parametrize("issue", SAMPLE, ids=[issue["key"] for issue in SAMPLE])
def test_a_sample_issue_maps_field_for_field(issue: dict[str, Any]) -> None:
    assert actual(issue) == expected(issue)


def test_the_sample_holds_the_hierarchy_the_dump_is_known_for() -> None:
    items = [normalise(issue, CONFIG) for issue in SAMPLE]
    daemon_48 = [i for i in items if i.parent_key == "DAEMON-48"]
    assert len(daemon_48) == 48  # the DAEMON epic and its children, all in the sample
    assert {i.type for i in daemon_48} <= {"story", "task", "bug", "other"}
    epics = {i.key for i in items if i.type == "epic"}
    # PROVENANCE.md: 40 epics, besides the two taken whole with their children.
    assert len(epics - {"TIMOB-26570", "TIMOB-19145"}) == 40


def test_every_issue_of_the_dump_maps_field_for_field() -> None:
    counts: Counter[str] = Counter()
    mismatches: list[str] = []
    for issue in archived_issues():
        counts["issues"] += 1
        want, got = expected(issue), actual(issue)
        if want != got:
            diff = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
            mismatches.append(f"{issue['key']}: {diff}")
        counts[got["type"]] += 1
        counts["under an epic"] += bool(issue["fields"].get("epic"))
    assert mismatches == [], mismatches[:5]
    # The dump's own figures (PROVENANCE.md): 29,057 issues, 890 of them under an epic.
    assert counts["issues"] == 29_057
    assert counts["under an epic"] == 890
    assert (counts["epic"], counts["subtask"], counts["bug"]) == (134, 1_375, 20_959)
