"""The sandbox Jira: real shapes, the JQL subset, paging, mutations, comments and faults."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from support.reference import FIXTURES

from integrations.jira.mapping import JiraFieldConfig, normalise
from integrations.sandbox.jira import JiraSandbox
from integrations.sandbox.jira.jql import JqlError, parse
from integrations.sandbox.jira.render import ALL, Renderer
from integrations.sandbox.server import free_port, serve_in_thread

LABELS = ["bet:one-click-checkout", "kr:KR-1.1", "ktlo"]
SYDNEY = ZoneInfo("Australia/Sydney")


def session_for(sandbox: JiraSandbox) -> requests.Session:
    session = requests.Session()
    if sandbox.flavour == "cloud":
        session.auth = (sandbox.email, sandbox.api_token)
    else:
        session.headers["Authorization"] = f"Bearer {sandbox.pat}"
    return session


@pytest.fixture(scope="module")
def cloud() -> Iterator[tuple[JiraSandbox, str, requests.Session]]:
    sandbox = JiraSandbox("cloud", 400, seed=3, labels=LABELS)
    with serve_in_thread(sandbox.app) as url:
        yield sandbox, url, session_for(sandbox)


@pytest.fixture(scope="module")
def datacenter() -> Iterator[tuple[JiraSandbox, str, requests.Session]]:
    sandbox = JiraSandbox("datacenter", 400, seed=3, labels=LABELS)
    with serve_in_thread(sandbox.app) as url:
        yield sandbox, url, session_for(sandbox)


# --- generation -----------------------------------------------------------------------------


def test_generation_is_deterministic_per_seed() -> None:
    def summary(sandbox: JiraSandbox) -> list[tuple[Any, ...]]:
        return [
            (i.id, i.key, i.kind, i.labels, i.parent_id, i.points, i.status, i.resolution)
            for i in sandbox.issues()
        ]

    assert summary(JiraSandbox(issues=300, seed=1)) == summary(JiraSandbox(issues=300, seed=1))
    assert summary(JiraSandbox(issues=300, seed=1)) != summary(JiraSandbox(issues=300, seed=2))


def test_generated_issues_cover_what_a_sync_meets() -> None:
    sandbox = JiraSandbox("cloud", 2000, labels=LABELS)
    issues = sandbox.issues()
    kinds = {i.kind for i in issues}
    assert kinds == {"epic", "story", "task", "bug", "subtask"}
    assert {i.category for i in issues} == {"todo", "in_progress", "done", "canceled"}
    assert {label for i in issues for label in i.labels} >= set(LABELS)
    assert any(i.links for i in issues) and any(i.time_spent for i in issues)
    by_id = {i.id: i for i in issues}
    for issue in issues:
        if issue.kind == "subtask":
            assert by_id[issue.parent_id].kind in {"story", "task", "bug"}  # type: ignore[index]
        elif issue.parent_id is not None:
            assert by_id[issue.parent_id].kind == "epic"
    team_managed = {p.key for p in sandbox.store.projects.values() if p.team_managed}
    assert team_managed == {"OPS"}  # every second project
    estimated = {i.project in team_managed for i in issues if i.points is not None}
    assert estimated == {True, False}  # both story point fields carry estimates


def test_issues_are_created_over_the_span_in_projects_of_the_sizes_asked() -> None:
    sandbox = JiraSandbox("cloud", 3000, projects=("PAY", "OPS", "WEB"), weights=(1, 1, 8))
    issues = sandbox.issues()
    sizes = Counter(i.project for i in issues)
    assert sizes["WEB"] > 3 * (sizes["PAY"] + sizes["OPS"])
    created = sorted(i.created for i in issues)
    assert created[-1] - created[0] > 320 * 24 * 3600 * 1000  # most of the 330 days
    assert len({c // 60_000 for c in created}) > 0.99 * len(created)  # hardly two a minute
    # Issues are created in key order within a project, give or take the same minute.
    pay = sorted((i for i in issues if i.project == "PAY"), key=lambda i: int(i.key[4:]))
    assert all(b.created - a.created > -60_000 for a, b in pairwise(pay))

    burst = JiraSandbox("cloud", 500, start=datetime(2025, 5, 1, 9, tzinfo=UTC), span=timedelta())
    assert {i.created // 60_000 for i in burst.issues()} == {
        int(datetime(2025, 5, 1, 9, tzinfo=UTC).timestamp()) // 60
    }


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_every_generated_issue_maps_to_the_sandbox_truth(flavour: str) -> None:
    sandbox = JiraSandbox(flavour, 800, labels=LABELS)  # type: ignore[arg-type]
    fields = sandbox.store.fields
    config = JiraFieldConfig(
        story_points_fields=tuple(
            f for f in (fields.story_points, fields.story_point_estimate) if f
        ),
        epic_link_field=fields.epic_link,
    )
    render = Renderer(sandbox.store, "http://jira.test", "3" if flavour == "cloud" else "2")
    by_id = {i.id: i for i in sandbox.issues()}
    for issue in by_id.values():
        item = normalise(render.issue(issue, [ALL]), config)
        parent = by_id[issue.parent_id] if issue.parent_id else None
        assert (item.external_id, item.key, item.type) == (str(issue.id), issue.key, issue.kind)
        assert item.status_category == issue.category
        assert item.labels == issue.labels
        assert item.estimate == issue.points
        assert item.time_spent_seconds == issue.time_spent
        assert item.parent_key == (parent.key if parent else None)
        if flavour == "cloud" or issue.kind == "subtask":
            assert item.parent_ref == (str(parent.id) if parent else None)
        assert item.updated_at.timestamp() * 1000 == pytest.approx(issue.updated)
        assert item.linked_keys == tuple(by_id[link.other].key for link in issue.links)


# --- shapes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flavour", "fixture", "api"),
    [("cloud", "cloud_issue_PAY-12.json", "3"), ("datacenter", "dc_issue_SRCH-7.json", "2")],
)
def test_rendered_objects_carry_the_keys_our_fixtures_carry(
    flavour: str, fixture: str, api: str
) -> None:
    # The same comparison against real captures is tests/conformance/test_jira_sandbox_shapes.py.
    ours = json.loads((FIXTURES / "jira" / fixture).read_text(encoding="utf-8"))["fields"]
    sandbox = JiraSandbox(flavour, 200)  # type: ignore[arg-type]
    render = Renderer(sandbox.store, "http://jira.test", api)
    story = next(i for i in sandbox.issues() if i.kind == "story" and i.assignee is not None)
    fields = render.issue(story, [ALL])["fields"]
    for name in ("status", "issuetype", "project", "priority"):
        assert set(ours[name]) <= set(fields[name]), name
    assert set(ours["status"]["statusCategory"]) <= set(fields["status"]["statusCategory"])
    user = "accountId" if flavour == "cloud" else "name"
    assert user in fields["assignee"] and "displayName" in fields["assignee"]
    assert isinstance(fields["description"], type(ours["description"]))


def test_data_center_links_epics_by_key_and_cloud_by_parent(
    cloud: tuple[JiraSandbox, str, requests.Session],
    datacenter: tuple[JiraSandbox, str, requests.Session],
) -> None:
    for (sandbox, url, session), api in ((cloud, "3"), (datacenter, "2")):
        story = next(i for i in sandbox.issues() if i.kind == "story" and i.parent_id)
        epic = sandbox.issue(story.parent_id)
        assert epic is not None
        fields = session.get(f"{url}/rest/api/{api}/issue/{story.id}").json()["fields"]
        epic_link = fields[sandbox.store.fields.epic_link]
        if sandbox.flavour == "cloud":
            assert (fields["parent"]["key"], epic_link) == (epic.key, None)
        else:
            assert (fields.get("parent"), epic_link) == (None, epic.key)


def test_site_metadata(cloud: tuple[JiraSandbox, str, requests.Session]) -> None:
    _, url, session = cloud
    names = {f["name"]: f["id"] for f in session.get(f"{url}/rest/api/3/field").json()}
    assert names["Story Points"] == "customfield_10024"
    assert names["Story point estimate"] == "customfield_10016"
    assert names["Epic Link"] == "customfield_10014"
    info = session.get(f"{url}/rest/api/2/serverInfo").json()
    assert info["deploymentType"] == "Cloud"
    assert session.get(f"{url}/rest/api/3/myself").json()["timeZone"] == "Australia/Sydney"
    types = session.get(f"{url}/rest/api/3/issuetype").json()
    assert {t["untranslatedName"] for t in types} == {"Epic", "Story", "Task", "Subtask", "Bug"}
    assert [p["key"] for p in session.get(f"{url}/rest/api/3/project").json()] == [
        "PAY",
        "OPS",
        "WEB",
    ]


def test_wrong_credentials_are_refused(cloud: tuple[JiraSandbox, str, requests.Session]) -> None:
    _, url, _ = cloud
    response = requests.get(f"{url}/rest/api/3/myself", auth=("ladder-bot@example.com", "nope"))
    assert response.status_code == 401
    assert response.json()["errorMessages"]


# --- search ---------------------------------------------------------------------------------


def cloud_search(session: requests.Session, url: str, **body: Any) -> requests.Response:
    return session.post(f"{url}/rest/api/3/search/jql", json=body)


def test_the_old_search_answers_410_on_cloud(
    cloud: tuple[JiraSandbox, str, requests.Session],
) -> None:
    _, url, session = cloud
    for path in ("/rest/api/3/search", "/rest/api/2/search"):
        response = session.get(url + path, params={"jql": "project = PAY"})
        assert response.status_code == 410
        assert "/rest/api/3/search/jql" in response.json()["errorMessages"][0]


def test_data_center_has_no_v3_and_no_token_search(
    datacenter: tuple[JiraSandbox, str, requests.Session],
) -> None:
    _, url, session = datacenter
    assert session.get(f"{url}/rest/api/3/field").status_code == 404
    response = session.post(f"{url}/rest/api/2/search/jql", json={"jql": "project = PAY"})
    assert response.status_code == 404


def test_token_pages_cover_the_query_once_even_while_issues_change() -> None:
    sandbox = JiraSandbox("cloud", 400, seed=5)
    with serve_in_thread(sandbox.app) as url:
        session = session_for(sandbox)
        jql = 'project in (PAY, "WEB") ORDER BY updated ASC, id ASC'
        expected = {str(i.id) for i in sandbox.issues() if i.project in {"PAY", "WEB"}}
        seen: list[str] = []
        token = None
        while True:
            body = cloud_search(
                session, url, jql=jql, fields=["updated"], maxResults=40, nextPageToken=token
            ).json()
            seen += [issue["id"] for issue in body["issues"]]
            if len(seen) == 40:
                sandbox.touch(5)  # moved to the end: seen again, nothing skipped
            if body["isLast"]:
                assert "nextPageToken" not in body
                break
            token = body["nextPageToken"]
        assert set(seen) == expected
        assert len(seen) - len(set(seen)) <= 5


def test_cloud_returns_only_ids_unless_told_and_caps_pages(
    cloud: tuple[JiraSandbox, str, requests.Session],
) -> None:
    _, url, session = cloud
    body = cloud_search(session, url, jql="project = PAY", maxResults=10).json()
    assert set(body["issues"][0]) == {"id"}
    everything = "project in (PAY, OPS, WEB)"
    for fields, cap in ((["id"], 400), (["summary"], 100)):  # 5,000 for ids only, else 100
        body = cloud_search(session, url, jql=everything, maxResults=500, fields=fields).json()
        assert len(body["issues"]) == cap


def test_a_token_from_another_query_is_rejected(
    cloud: tuple[JiraSandbox, str, requests.Session],
) -> None:
    _, url, session = cloud
    token = cloud_search(session, url, jql="project = PAY", maxResults=5).json()["nextPageToken"]
    response = cloud_search(session, url, jql="project = OPS", maxResults=5, nextPageToken=token)
    assert response.status_code == 400
    garbage = cloud_search(session, url, jql="project = PAY", nextPageToken="garbage")
    assert garbage.status_code == 400


def test_offset_pages_on_data_center(datacenter: tuple[JiraSandbox, str, requests.Session]) -> None:
    sandbox, url, session = datacenter
    seen: list[str] = []
    start = 0
    while True:
        body = session.get(
            f"{url}/rest/api/2/search",
            params={
                "jql": "project = OPS ORDER BY created ASC",
                "startAt": start,
                "maxResults": 50,
                "fields": "id",
            },
        ).json()
        assert body["startAt"] == start and body["total"] == sum(
            i.project == "OPS" for i in sandbox.issues()
        )
        seen += [issue["id"] for issue in body["issues"]]
        start += len(body["issues"])
        if not body["issues"] or start >= body["total"]:
            break
    assert seen == [
        str(i.id)
        for i in sorted(sandbox.issues(), key=lambda i: (i.created, i.id))
        if i.project == "OPS"
    ]


def test_approximate_count(cloud: tuple[JiraSandbox, str, requests.Session]) -> None:
    sandbox, url, session = cloud
    response = session.post(
        f"{url}/rest/api/3/search/approximate-count", json={"jql": "project = PAY"}
    )
    assert response.json() == {"count": sum(i.project == "PAY" for i in sandbox.issues())}


SEARCH_PATHS = {"cloud": "/rest/api/3/search/jql", "datacenter": "/rest/api/2/search"}


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_comparing_ids_or_keys_stays_in_the_named_issues_project(
    request: pytest.FixtureRequest, flavour: str
) -> None:
    sandbox, url, session = request.getfixturevalue(flavour)
    issues = sandbox.issues()
    pivot = sandbox.issue("OPS-40")

    def ids(jql: str) -> set[int]:
        body = {"jql": jql, "fields": ["id"], "maxResults": 1000}
        response = session.post(url + SEARCH_PATHS[flavour], json=body)
        assert response.status_code == 200, response.text
        return {int(issue["id"]) for issue in response.json()["issues"]}

    def ops(test: Any) -> set[int]:
        return {i.id for i in issues if i.project == "OPS" and test(int(i.key[4:]))}

    # Not an id range: OPS-40 and the OPS issues after it, whatever their ids.
    assert ids(f"id >= {pivot.id}") == ops(lambda n: n >= 40)
    assert ids("key > OPS-40") == ops(lambda n: n > 40)
    assert ids(f"issuekey < {pivot.id}") == ops(lambda n: n < 40)
    assert ids("issue <= ops-40") == ops(lambda n: n <= 40)
    later_elsewhere = {i.id for i in issues if i.id > pivot.id and i.project != "OPS"}
    assert later_elsewhere and not ids(f"id >= {pivot.id}") & later_elsewhere
    # Equality is the issue itself, by id or key.
    assert ids(f"id = {pivot.id}") == ids("key = OPS-40") == {pivot.id}
    assert ids(f"project = OPS AND id != {pivot.id}") == ops(lambda n: n != 40)
    assert ids(f"id in ({pivot.id}, PAY-1)") == {pivot.id, sandbox.issue("PAY-1").id}


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("id >= 0", "An issue with key '0' does not exist for field 'id'."),
        ("key < NOPE-1", "An issue with key 'NOPE-1' does not exist for field 'key'."),
        ("project = PAY AND id = 99999999", "An issue with key '99999999' does not exist"),
        ("issuekey in (PAY-1, PAY-99999)", "An issue with key 'PAY-99999' does not exist"),
        ("key > checkout", "The issue key 'checkout' for field 'key' is invalid."),
    ],
)
@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_an_id_or_key_naming_no_issue_is_refused(
    request: pytest.FixtureRequest, flavour: str, jql: str, message: str
) -> None:
    _, url, session = request.getfixturevalue(flavour)
    response = session.post(url + SEARCH_PATHS[flavour], json={"jql": jql})
    assert response.status_code == 400
    assert response.json()["errorMessages"][0].startswith(message)


@pytest.mark.parametrize(
    "jql",
    ["", "ORDER BY updated ASC"],
)
def test_unbounded_queries_are_rejected_on_cloud(
    cloud: tuple[JiraSandbox, str, requests.Session], jql: str
) -> None:
    _, url, session = cloud
    response = cloud_search(session, url, jql=jql)
    assert response.status_code == 400
    assert response.json()["errorMessages"][0].startswith("Unbounded JQL queries are not allowed")


def test_any_restriction_bounds_a_cloud_query(
    cloud: tuple[JiraSandbox, str, requests.Session],
) -> None:
    sandbox, url, session = cloud
    for jql in ('created >= "2000-01-01" ORDER BY created', "project = PAY", "key = PAY-1"):
        response = cloud_search(session, url, jql=jql, maxResults=1)
        assert response.status_code == 200, jql
    everything = cloud_search(session, url, jql='created >= "2000-01-01"', maxResults=1000)
    assert len(everything.json()["issues"]) == len(sandbox.issues())


@pytest.mark.parametrize(
    ("jql", "message"),
    [
        ("summary ~ checkout", "expecting an operator"),
        ("assignee = currentUser()", "Field 'assignee' does not exist"),
        ("project > PAY", "operator '>' is not supported"),
        ('updated >= "yesterday"', "Valid formats include"),
        ("project = PAY ORDER BY rank", "Not able to sort using field 'rank'"),
        ("project = PAY AND", "ended unexpectedly"),
        ("project in (PAY", "ended unexpectedly"),
    ],
)
def test_jql_outside_the_subset_gets_jiras_400(
    cloud: tuple[JiraSandbox, str, requests.Session], jql: str, message: str
) -> None:
    _, url, session = cloud
    response = cloud_search(session, url, jql=jql)
    assert response.status_code == 400
    assert message in response.json()["errorMessages"][0]
    assert response.json()["errors"] == {}


class Row:
    def __init__(self, id: int, key: str, updated: int, created: int) -> None:
        self.id, self.key, self.updated, self.created = id, key, updated, created
        self.project = key.split("-")[0]


def ms(text: str) -> int:
    return int(datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=SYDNEY).timestamp() * 1000)


def test_the_jql_subset_means_what_jira_means() -> None:
    rows = [
        Row(1, "PAY-1", ms("2025-03-01 10:00"), 0),
        Row(2, "OPS-1", ms("2025-03-01 10:01"), 0),
        Row(3, "PAY-2", ms("2025-03-01 09:59"), 0),
        Row(4, "PAY-3", ms("2025-03-01 09:58"), 0),
    ]
    by_name = {str(r.id): r for r in rows} | {r.key: r for r in rows} | {"OPS-7": rows[3]}

    def lookup(name: str) -> Row | None:
        return by_name.get(name.upper())

    def ids(jql: str) -> list[int]:
        query = parse(jql, SYDNEY, lookup)
        kept = [r for r in rows if query.where is None or query.where(r)]
        return [r.id for r in sorted(kept, key=query.sort_key)]

    assert ids('updated >= "2025-03-01 10:00" ORDER BY updated ASC') == [1, 2]
    assert ids('updated >= "2025/03/01 10:00"') == [1, 2]
    assert ids("project in (pay) ORDER BY updated DESC") == [1, 3, 4]
    assert ids("NOT project = PAY OR id = 3 ORDER BY id DESC") == [3, 2]
    assert ids("id in (1, OPS-1) AND project != OPS") == [1]
    # Comparisons are key numbers within the named issue's project, not id ranges.
    assert ids("id >= 1 ORDER BY id") == [1, 3, 4]  # PAY-1 and later, not OPS-1 (id 2)
    assert ids("id < 4 ORDER BY id") == [1, 3]
    assert ids("id >= 2") == [2]  # OPS-1 and later
    assert ids("key > pay-1 AND issuekey <= PAY-2") == [3]
    assert ids("key >= OPS-7") == [4]  # a key the issue had before a move: where it is now
    for jql, message in (
        ("id >= 0", "An issue with key '0' does not exist for field 'id'."),
        ("issue in (1, 5)", "An issue with key '5' does not exist for field 'issue'."),
        ("key != PAY", "The issue key 'PAY' for field 'key' is invalid."),
        ("project = PAY extra", "unexpected 'extra'"),
    ):
        with pytest.raises(JqlError, match=message):
            parse(jql, SYDNEY, lookup)


def test_creation_bounds_narrow_the_search_only_when_every_result_obeys_them() -> None:
    def bounds(jql: str) -> tuple[int | None, int | None]:
        query = parse(jql, SYDNEY, lambda name: None)
        return query.created_low, query.created_high

    day, next_day = ms("2025-03-01 10:00"), ms("2025-03-02 10:00")
    jql = '(project = PAY) AND (created >= "2025-03-01 10:00" AND created < "2025-03-02 10:00")'
    assert bounds(jql + " ORDER BY updated") == (day, next_day - 1)
    assert bounds('created > "2025-03-01 10:00"') == (day + 1, None)
    assert bounds('created <= "2025-03-02 10:00" AND updated >= "2025-01-01"') == (None, next_day)
    assert bounds('created >= "2025-03-01 10:00" OR project = PAY') == (None, None)
    assert bounds('NOT created < "2025-03-01 10:00"') == (None, None)
    assert bounds('updated >= "2025-03-01 10:00"') == (None, None)


def test_creation_ranges_split_the_issues_exactly_as_issues_come_and_go() -> None:
    sandbox = JiraSandbox("datacenter", 600, seed=4)
    store = sandbox.store
    backdated = store.create("WEB", created=datetime(2001, 2, 3, tzinfo=UTC))
    cut = datetime.fromtimestamp(sorted(i.created for i in sandbox.issues())[300] / 1000, SYDNEY)
    literal = cut.strftime("%Y-%m-%d %H:%M")
    halves = []
    for jql in (f'created < "{literal}"', f'created >= "{literal}"'):
        halves.append(set(store.search(jql, parse(jql, store.zone, store.get))[1]))
    assert halves[0].isdisjoint(halves[1])
    assert halves[0] | halves[1] == {i.id for i in sandbox.issues()}
    assert int(backdated) in halves[0]
    sandbox.delete([backdated])
    jql = f'created < "{literal}"'
    assert int(backdated) not in store.search(jql, parse(jql, store.zone, store.get))[1]


# --- changes --------------------------------------------------------------------------------


def test_touch_delete_move_create_and_labels() -> None:
    sandbox = JiraSandbox("cloud", 100, seed=9)
    with serve_in_thread(sandbox.app) as url:
        session = session_for(sandbox)
        before = {i.id: i.updated for i in sandbox.issues()}
        touched = sandbox.touch(3)
        assert len(touched) == 3
        assert all(sandbox.issue(i).updated > before[int(i)] for i in touched)  # type: ignore[union-attr]

        story = next(
            i for i in sandbox.issues() if sandbox.store.children.get(i.id) and i.kind != "epic"
        )
        subtasks = [str(c) for c in sandbox.store.children[story.id]]
        sandbox.delete([story.id])
        for gone in [str(story.id), *subtasks]:
            assert session.get(f"{url}/rest/api/3/issue/{gone}").status_code == 404

        issue = sandbox.issues()[0]
        old_key = issue.key
        new_key = sandbox.move(issue.id, "WEB")
        assert new_key.startswith("WEB-") and sandbox.issue(issue.id).key == new_key  # type: ignore[union-attr]
        moved = session.get(f"{url}/rest/api/3/issue/{old_key}").json()
        assert (moved["id"], moved["key"]) == (str(issue.id), new_key)

        created = sandbox.create("PAY", "bug", summary="A fresh bug", labels=["ktlo"], points=3)
        fields = session.get(f"{url}/rest/api/3/issue/{created}").json()["fields"]
        assert (fields["summary"], fields["labels"], fields["customfield_10024"]) == (
            "A fresh bug",
            ["ktlo"],
            3,
        )

        sandbox.set_labels(created, ["bet:one-click-checkout"])
        fields = session.get(f"{url}/rest/api/3/issue/{created}?fields=labels").json()["fields"]
        assert fields == {"labels": ["bet:one-click-checkout"]}


def test_an_epic_deleted_leaves_its_stories_without_an_epic() -> None:
    sandbox = JiraSandbox("cloud", 100, seed=9)
    epic = next(
        i for i in sandbox.issues() if i.kind == "epic" and sandbox.store.children.get(i.id)
    )
    children = list(sandbox.store.children[epic.id])
    sandbox.delete([epic.id])
    assert [sandbox.issue(c).parent_id for c in children] == [None] * len(children)  # type: ignore[union-attr]
    with pytest.raises(KeyError):
        sandbox.delete([epic.id])


# --- comments -------------------------------------------------------------------------------


def test_comments_v2_text_v3_adf(cloud: tuple[JiraSandbox, str, requests.Session]) -> None:
    sandbox, url, session = cloud
    issue = sandbox.issues()[5].id
    v3 = f"{url}/rest/api/3/issue/{issue}/comment"
    rejected = session.post(v3, json={"body": "plain text"})
    assert rejected.status_code == 400
    assert rejected.json()["errors"] == {"comment": "Comment body is not valid!"}
    adf = {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": "Hi"}]}],
    }
    assert session.post(v3, json={"body": adf}).status_code == 201
    posted = session.post(f"{url}/rest/api/2/issue/{issue}/comment", json={"body": "Link it"})
    assert posted.status_code == 201
    comment_id = posted.json()["id"]
    edited = session.put(
        f"{url}/rest/api/2/issue/{issue}/comment/{comment_id}", json={"body": "Linked"}
    )
    assert edited.json()["body"] == "Linked"
    assert [c["body"] for c in sandbox.comments(issue)] == ["Hi", "Linked"]
    listed = session.get(v3).json()
    assert listed["total"] == 2 and listed["comments"][1]["body"]["type"] == "doc"
    assert (
        session.put(f"{url}/rest/api/2/issue/{issue}/comment/1", json={"body": "x"}).status_code
        == 404
    )


# --- faults and counters --------------------------------------------------------------------


def test_faults_and_counters() -> None:
    sandbox = JiraSandbox("cloud", 50)
    sandbox.faults.hang_seconds = 0.3
    with serve_in_thread(sandbox.app) as url:
        session = session_for(sandbox)
        path = "/rest/api/3/myself"
        sandbox.faults.inject("rate_limit", path="/myself")
        response = session.get(url + path)
        assert (response.status_code, response.headers["Retry-After"]) == (429, "1")
        sandbox.faults.inject("unavailable")
        assert session.get(url + path).status_code == 503
        sandbox.faults.inject("server_error", 2)
        assert [session.get(url + path).status_code for _ in range(3)] == [500, 500, 200]
        sandbox.faults.inject("truncated")
        cut = session.get(url + path)
        with pytest.raises(ValueError):
            cut.json()
        with pytest.raises(requests.exceptions.ReadTimeout):
            sandbox.faults.inject("timeout")
            session.get(url + path, timeout=0.1)
        sandbox.faults.inject("server_error", path="/field")
        assert session.get(url + path).status_code == 200
        sandbox.faults.latency = 0.2
        started = time.monotonic()
        session.get(url + path)
        assert time.monotonic() - started >= 0.2
        sandbox.faults.clear()
        assert sandbox.requests_total == 9  # faulted requests count too
        assert sandbox.requests_by_path == {path: 9}
        sandbox.faults.rate("server_error", 1.0, path="/serverInfo")
        assert session.get(f"{url}/rest/api/2/serverInfo").status_code == 500
        with pytest.raises(ValueError):
            sandbox.faults.inject("meteor")  # type: ignore[arg-type]


def test_runs_standalone() -> None:
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "integrations.sandbox.jira",
        "--port",
        str(port),
        "--issues",
        "30",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ})
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                info = requests.get(
                    f"http://127.0.0.1:{port}/rest/api/2/serverInfo",
                    auth=("ladder-bot@example.com", "sandbox-token"),
                    timeout=1,
                )
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.1)
        assert info.json()["deploymentType"] == "Cloud"
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=10)
    assert f"LADDER_JIRA_URL=http://127.0.0.1:{port}" in output
