"""Linear end to end: the sync engine, the real adapter over HTTP, the sandbox Linear, and the
store (SQLite and PostgreSQL).

The expected items are derived from the sandbox's own records, independently of the mapping
module, so the whole chain (queries, pagination, mapping, upsert) is checked at once.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.linear import LinearAdapter
from integrations.linear.pacing import Pacer
from integrations.sandbox.linear import DEFAULT_API_KEY, LinearSandbox
from integrations.sandbox.linear.store import LinearStore
from integrations.sandbox.server import serve_in_thread
from sync.ingest.engine import run_sync
from sync.store.models import SyncCursor, TrackerItem

CATEGORIES = {
    "triage": "todo",
    "backlog": "todo",
    "unstarted": "todo",
    "started": "in_progress",
    "completed": "done",
    "canceled": "canceled",
    "planned": "todo",
    "paused": "in_progress",
}
BET_LABELS = ["bet:one-click-checkout", "kr:KR-1.1"]


def expected_items(store: LinearStore) -> dict[str, dict[str, Any]]:
    """What the store should hold for every issue and project of the sandbox."""
    expected: dict[str, dict[str, Any]] = {}
    for issue in store.issues.values():
        state = store.states[issue["stateId"]]
        labels = [store.labels[label_id]["name"] for label_id in issue["labelIds"]]
        kind = "subtask" if issue["parentId"] else "bug" if "Bug" in labels else "story"
        expected[issue["id"]] = {
            "key": issue["identifier"],
            "title": issue["title"],
            "type": kind,
            "status": state["name"],
            "status_category": CATEGORIES[state["type"]],
            "estimate": issue["estimate"],
            "labels": labels,
            "parent_ref": issue["parentId"] or issue["projectId"],
            "project": store.teams[issue["teamId"]]["key"],
            "linked_urls": [attachment["url"] for attachment in issue["attachments"]],
            "deleted": issue["archivedAt"] is not None,
        }
    for project in store.projects.values():
        expected[project["id"]] = {
            "key": project["slugId"],
            "title": project["name"],
            "type": "project",
            "status": project["statusName"],
            "status_category": CATEGORIES[project["statusType"]],
            "estimate": None,
            "labels": [],
            "parent_ref": None,
            "project": store.teams[project["teamIds"][0]]["key"],
            "linked_urls": [],
            "deleted": False,
        }
    return expected


def expected_refs(store: LinearStore) -> dict[str, set[str]]:
    """Refs each item must carry: its project, cycle, team; a project's initiatives."""
    refs: dict[str, set[str]] = {}
    for issue in store.issues.values():
        refs[issue["id"]] = {f"linear:team:{store.teams[issue['teamId']]['key']}"}
        if issue["projectId"]:
            project = store.projects[issue["projectId"]]
            refs[issue["id"]] |= {f"linear:project:{project['id']}"}
            refs[issue["id"]] |= {f"linear:project:{project['slugId']}"}
        if issue["cycleId"]:
            refs[issue["id"]].add(f"linear:cycle:{issue['cycleId']}")
    for project in store.projects.values():
        initiatives = [store.initiatives[i] for i in project["initiativeIds"]]
        parents = [store.initiatives[i["parentId"]] for i in initiatives if i["parentId"]]
        refs[project["id"]] = {f"linear:project:{project['slugId']}"}
        refs[project["id"]] |= {f"linear:initiative:{i['id']}" for i in initiatives + parents}
        refs[project["id"]] |= {f"linear:initiative:{i['name']}" for i in initiatives + parents}
    return refs


def missing_refs(sessions: sessionmaker[Session], store: LinearStore) -> dict[str, set[str]]:
    with sessions() as session:
        stored = dict(
            session.execute(
                select(TrackerItem.external_id, TrackerItem.container_refs).where(
                    TrackerItem.source == "linear"
                )
            ).all()
        )
    expected = expected_refs(store)
    return {i: refs - set(stored[i]) for i, refs in expected.items() if refs - set(stored[i])}


def stored_items(sessions: sessionmaker[Session]) -> dict[str, dict[str, Any]]:
    with sessions() as session:
        rows = session.scalars(select(TrackerItem).where(TrackerItem.source == "linear")).all()
        return {
            row.external_id: {
                "key": row.key,
                "title": row.title,
                "type": row.type,
                "status": row.status,
                "status_category": row.status_category,
                "estimate": row.estimate,
                "labels": row.labels,
                "parent_ref": row.parent_ref,
                "project": row.project,
                "linked_urls": row.linked_urls,
                "deleted": row.deleted,
            }
            for row in rows
        }


def cursor(sessions: sessionmaker[Session]) -> Any:
    with sessions() as session:
        return session.scalar(select(SyncCursor.cursor).where(SyncCursor.source == "linear"))


def connect(url: str, **options: Any) -> LinearAdapter:
    pacer = Pacer(backoff_base=0.05, backoff_cap=0.2)
    return LinearAdapter.connect(url, DEFAULT_API_KEY, pacer=pacer, **options)


@pytest.fixture
def sandbox() -> LinearSandbox:
    """~2,000 issues across 3 teams, with sub-issues, projects, initiatives and labels."""
    return LinearSandbox(issues=2_000, teams=3, seed=11, labels=BET_LABELS)


def live(store: LinearStore, team: str | None = None, *, skip: tuple[str, ...] = ()) -> str:
    """The id of a live issue (of `team`), other than those in `skip`."""
    return next(
        i["id"]
        for i in store.issues.values()
        if not i["archivedAt"]
        and i["id"] not in skip
        and (team is None or store.teams[i["teamId"]]["key"] == team)
    )


def test_full_then_incremental_syncs_track_linear_exactly(
    sessions: sessionmaker[Session], sandbox: LinearSandbox
) -> None:
    store = sandbox.store
    assert len(store.issues) == 2_000 and len(store.teams) == 3
    assert sum(1 for i in store.issues.values() if i["parentId"]) > 100
    assert sum(1 for i in store.issues.values() if i["archivedAt"]) > 10
    with serve_in_thread(sandbox.app) as base:
        adapter = connect(f"{base}/graphql")

        full = run_sync(sessions, adapter, "full")
        assert full.ok, full.error
        assert stored_items(sessions) == expected_items(store)
        assert missing_refs(sessions, store) == {}
        assert any(p["initiativeIds"] for p in store.projects.values())
        assert full.items_seen == 2_000 + len(store.projects)
        assert full.requests == sandbox.requests - 1  # all but the listing of teams

        # Ten edits: the incremental run fetches those ten, in one page of each kind.
        sandbox.clear_log()
        time.sleep(0.01)
        touched = sandbox.touch(10)
        changes = run_sync(sessions, adapter, "incremental")
        assert changes.ok, changes.error
        assert (changes.items_seen, changes.requests) == (10, 2)
        assert [entry.operation for entry in sandbox.log] == ["Projects", "Issues"]
        stored = stored_items(sessions)
        assert all(stored[i]["title"] == store.issues[i]["title"] for i in touched)
        assert all("(edited" in stored[i]["title"] for i in touched)

        # Archived and trashed issues become deleted items; a moved issue keeps its row.
        archived = live(store)
        trashed = live(store, skip=(archived,))
        moved = store.issues[live(store, "ENG", skip=(archived, trashed))]
        old_key = moved["identifier"]
        sandbox.archive(archived)
        sandbox.trash(trashed)
        sandbox.move(moved["id"], "OPS")
        before = cursor(sessions)
        assert run_sync(sessions, adapter, "incremental").ok
        assert cursor(sessions) > before
        stored = stored_items(sessions)
        assert stored[archived]["deleted"] and stored[trashed]["deleted"]
        assert stored[moved["id"]]["key"] == moved["identifier"] != old_key
        assert stored[moved["id"]]["project"] == "OPS"
        assert stored == expected_items(store)
        assert missing_refs(sessions, store) == {}  # the moved issue under its new team

        # A full sync finds nothing else to change, and nothing deleted by mistake.
        again = run_sync(sessions, adapter, "full")
        assert (again.ok, again.items_deleted) == (True, 0)
        assert stored_items(sessions) == expected_items(store)
        adapter.close()


def test_a_sync_rides_out_rate_limits_and_faults(
    sessions: sessionmaker[Session], sandbox: LinearSandbox
) -> None:
    sandbox.faults.reset_after = 0.2
    sandbox.faults.ratelimited, sandbox.faults.too_many_requests = 2, 1
    sandbox.faults.server_errors, sandbox.faults.timeouts, sandbox.faults.hold = 2, 1, 1.2
    with serve_in_thread(sandbox.app) as base:
        # One call may meet every fault in turn: give it room for all of them.
        adapter = connect(f"{base}/graphql", timeout=0.6, max_attempts=10)
        summary = run_sync(sessions, adapter, "full")
        adapter.close()
    assert summary.ok, summary.error
    assert stored_items(sessions) == expected_items(sandbox.store)
    outcomes = [entry.outcome for entry in sandbox.log]
    assert outcomes.count("ratelimited") == 2 and outcomes.count("server_error") == 2


def test_a_sync_that_cannot_finish_keeps_its_cursor_and_the_next_converges(
    sessions: sessionmaker[Session], sandbox: LinearSandbox
) -> None:
    with serve_in_thread(sandbox.app) as base:
        adapter = connect(f"{base}/graphql", max_attempts=3)
        assert run_sync(sessions, adapter, "full").ok
        before = cursor(sessions)
        time.sleep(0.01)
        touched = sandbox.touch(3)
        sandbox.faults.server_errors = 1_000
        failed = run_sync(sessions, adapter, "incremental")
        assert (failed.ok, cursor(sessions)) == (False, before)
        assert "HTTP 503" in (failed.error or "") and "gave up after 3 attempts" in failed.error
        sandbox.faults.server_errors = 0
        recovered = run_sync(sessions, adapter, "incremental")
        adapter.close()
    assert recovered.ok, recovered.error
    assert cursor(sessions) > before
    stored = stored_items(sessions)
    assert all(stored[i]["title"] == sandbox.store.issues[i]["title"] for i in touched)
