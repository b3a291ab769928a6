"""End to end: the sync engine, the real Jira adapter and the sandbox Jira over HTTP.

Cloud and Data Center, on SQLite and PostgreSQL. The sandbox's own records are the truth
every sync must reproduce exactly; request counts are read from the sandbox.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from integrations.base import TrackerError
from integrations.jira.adapter import JiraAdapter
from integrations.jira.client import RetryPolicy
from integrations.sandbox.jira.app import JiraSandbox
from integrations.sandbox.jira.data import DEFAULT_SPAN, USERS, SandboxIssue
from integrations.sandbox.server import serve_in_thread
from service.cli import app
from service.settings import Settings
from service.trackers import build_adapters
from sync.ingest.engine import SyncProgress, run_sync
from sync.store.models import SyncCursor, SyncRun, TrackerItem

ISSUES = 2000
PAGE = 100  # the adapter's page size
LABELS = ("bet:one-click-checkout", "kr:KR-1.1", "ktlo")


@dataclass
class Site:
    sandbox: JiraSandbox
    url: str

    def settings(self, database_url: str, **overrides: Any) -> Settings:
        credentials: dict[str, Any] = (
            {"jira_email": self.sandbox.email, "jira_api_token": self.sandbox.api_token}
            if self.sandbox.flavour == "cloud"
            else {"jira_pat": self.sandbox.pat}
        )
        values = {"sync_concurrency": 4, **credentials, **overrides}
        return Settings(
            database_url=database_url, jira_url=self.url, scheduler=False, _env_file=None, **values
        )

    def searches(self) -> int:
        """Issue searches with the mapped fields (not discovery, counts or id censuses)."""
        return sum(1 for s in self.sandbox.searches if s.fields != ("id",) and s.max_results > 1)


@pytest.fixture(params=["cloud", "datacenter"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    sandbox = JiraSandbox(request.param, issues=ISSUES, labels=LABELS)
    with serve_in_thread(sandbox.app) as url:
        yield Site(sandbox, url)


def _millis(value: int | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value / 1000, UTC)


def expected(sandbox: JiraSandbox) -> dict[str, dict[str, Any]]:
    """Every issue as Ladder must store it, from the sandbox's own model."""
    issues = {issue.id: issue for issue in sandbox.issues()}

    def row(issue: SandboxIssue) -> dict[str, Any]:
        parent = issues.get(issue.parent_id) if issue.parent_id else None
        return {
            "key": issue.key,
            "title": issue.summary,
            "type": issue.kind,
            "status_category": issue.category,
            "labels": list(issue.labels),
            "parent_ref": str(parent.id) if parent else None,
            "project": issue.project,
            "estimate": issue.points,
            "time_spent_seconds": issue.time_spent,
            "assignee": None if issue.assignee is None else USERS[issue.assignee],
            "linked_keys": sorted(issues[link.other].key for link in issue.links),
            "created_at": _millis(issue.created),
            "updated_at": _millis(issue.updated),
            "resolved_at": _millis(issue.resolved),
            "deleted": False,
        }

    return {str(issue.id): row(issue) for issue in issues.values()}


def stored(sessions: sessionmaker[Session], *, live_only: bool = True) -> dict[str, dict]:
    with sessions() as session:
        rows = session.scalars(select(TrackerItem).where(TrackerItem.source == "jira")).all()
    return {
        row.external_id: {
            "key": row.key,
            "title": row.title,
            "type": row.type,
            "status_category": row.status_category,
            "labels": row.labels,
            "parent_ref": row.parent_ref,
            "project": row.project,
            "estimate": row.estimate,
            "time_spent_seconds": row.time_spent_seconds,
            "assignee": row.assignee,
            "linked_keys": sorted(row.linked_keys),
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "resolved_at": row.resolved_at,
            "deleted": row.deleted,
        }
        for row in rows
        if not (live_only and row.deleted)
    }


def test_full_incremental_deletions_and_moves(
    site: Site, database_url: str, sessions: sessionmaker[Session]
) -> None:
    adapter = build_adapters(site.settings(database_url))["jira"]
    sandbox = site.sandbox
    truth = expected(sandbox)
    kinds = {row["type"] for row in truth.values()}
    assert kinds == {"epic", "story", "task", "bug", "subtask"}
    # Both story-point fields are in play on Cloud (company- and team-managed projects).
    assert any(row["estimate"] for row in truth.values())

    full = run_sync(sessions, adapter, "full")

    assert full.ok, full.error
    assert stored(sessions) == truth
    assert (full.items_seen, full.items_upserted) == (ISSUES, ISSUES)
    assert site.searches() == math.ceil(ISSUES / PAGE)
    with sessions() as session:
        parents_by_key = dict(
            session.execute(
                select(TrackerItem.external_id, TrackerItem.parent_key).where(
                    TrackerItem.parent_key.is_not(None)
                )
            ).all()
        )
    assert parents_by_key == {
        i: truth[row["parent_ref"]]["key"] for i, row in truth.items() if row["parent_ref"]
    }

    # Ten changed issues: one incremental search, only them.
    sandbox.reset_counters()
    changed = sandbox.touch(10)
    incremental = run_sync(sessions, adapter, "incremental")
    assert incremental.ok, incremental.error
    assert (incremental.items_seen, incremental.items_upserted) == (10, 10)
    assert sandbox.requests_total == 1 and incremental.requests == 1
    assert stored(sessions) == expected(sandbox)
    with sessions() as session:
        assert session.get_one(SyncCursor, "jira").cursor == incremental.started_at
        updated = session.scalars(
            select(TrackerItem.external_id).where(TrackerItem.title.contains("(rev"))
        ).all()
    assert sorted(updated) == changed

    # A moved issue keeps its row, with its new key.
    story = next(i for i in sandbox.issues() if i.kind == "story" and i.project == "PAY")
    with sessions() as session:
        row_id = session.scalar(
            select(TrackerItem.id).where(TrackerItem.external_id == str(story.id))
        )
    new_key = sandbox.move(story.id, "OPS")
    doomed = [i.id for i in sandbox.issues() if i.kind == "subtask"][:3]
    sandbox.delete(doomed)
    moved = run_sync(sessions, adapter, "incremental")
    # The ten changed a moment ago are inside the overlap window and come again.
    assert moved.ok and moved.items_seen == len(changed) + 1
    with sessions() as session:
        row = session.get_one(TrackerItem, row_id)
        assert (row.external_id, row.key, row.project) == (str(story.id), new_key, "OPS")

    # The census finds the deletions in id-only pages (5,000 ids on Cloud, 1,000 on DC).
    sandbox.reset_counters()
    census = run_sync(sessions, adapter, "census")
    assert census.ok and census.items_deleted == 3
    id_page = 5000 if sandbox.flavour == "cloud" else 1000
    assert sandbox.requests_total == census.requests == math.ceil(len(truth) / id_page)
    assert stored(sessions) == expected(sandbox)

    # So does the next full sync, for deletions since.
    doomed += [i.id for i in sandbox.issues() if i.kind == "subtask"][:2]
    sandbox.delete(doomed[3:])
    again = run_sync(sessions, adapter, "full")
    assert again.ok and again.items_deleted == 2
    assert stored(sessions) == expected(sandbox)
    everything = stored(sessions, live_only=False)
    assert sorted(i for i, row in everything.items() if row["deleted"]) == sorted(map(str, doomed))
    with sessions() as session:
        total = session.scalar(select(func.count()).select_from(TrackerItem))
        distinct = session.scalar(select(func.count(func.distinct(TrackerItem.external_id))))
    assert total == distinct == ISSUES


def _quick_adapter(site: Site) -> JiraAdapter:
    """An adapter whose retries wait milliseconds, so faults do not slow the suite down."""
    sandbox = site.sandbox
    credentials: dict[str, Any] = (
        {"email": sandbox.email, "api_token": sandbox.api_token}
        if sandbox.flavour == "cloud"
        else {"pat": sandbox.pat}
    )
    retry = RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05)
    return JiraAdapter(site.url, timeout=0.5, retry=retry, max_partitions=4, **credentials)


def test_faults_are_survived_and_the_data_converges(
    site: Site, sessions: sessionmaker[Session]
) -> None:
    sandbox = site.sandbox
    sandbox.faults.retry_after = 0
    sandbox.faults.hang_seconds = 1.0
    for kind in ("rate_limit", "unavailable", "server_error", "truncated"):
        sandbox.faults.rate(kind, 0.05, path="search")
    sandbox.faults.inject("timeout", 2, path="search")

    summary = run_sync(sessions, _quick_adapter(site), "full", concurrency=4)

    assert summary.ok, summary.error
    assert stored(sessions) == expected(sandbox)
    pages = math.ceil(ISSUES / PAGE)
    assert summary.requests > pages  # the retries are counted


def test_a_run_that_cannot_finish_fails_cleanly_and_the_next_converges(
    site: Site, sessions: sessionmaker[Session]
) -> None:
    sandbox = site.sandbox
    adapter = _quick_adapter(site)
    first = run_sync(sessions, adapter, "full")
    assert first.ok
    changed = sandbox.touch(300)
    sandbox.faults.hang_seconds = 1.0
    # After two good pages every search fails: 5xx, then a hang past the client's timeout.
    sandbox.faults.inject("server_error", 3, path="search")
    sandbox.faults.inject("timeout", 50, path="search")

    failed = run_sync(sessions, adapter, "incremental")

    assert failed.status == "failed"
    assert failed.error and failed.error.startswith(TrackerError.__name__)
    with sessions() as session:
        assert session.get_one(SyncCursor, "jira").cursor == first.started_at
        assert session.get_one(SyncRun, failed.run_id).finished_at is not None
    sandbox.faults.clear()
    retried = run_sync(sessions, adapter, "incremental")
    assert retried.ok and retried.items_seen >= len(changed)
    assert stored(sessions) == expected(sandbox)


def test_a_sync_killed_mid_run_converges_when_run_again(
    site: Site, database_url: str, sessions: sessionmaker[Session]
) -> None:
    sandbox = site.sandbox
    sandbox.faults.latency = 0.05
    settings = site.settings(database_url, sync_concurrency=1)
    env = {
        **os.environ,
        "LADDER_DATABASE_URL": database_url,
        "LADDER_JIRA_URL": site.url,
        "LADDER_SYNC_CONCURRENCY": "1",
        "LADDER_JIRA_EMAIL": settings.jira_email or "",
        "LADDER_JIRA_API_TOKEN": settings.jira_api_token or "",
        "LADDER_JIRA_PAT": settings.jira_pat or "",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", "from service.cli import app; app()", "sync", "--full"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while _count(sessions) < 500:
            assert process.poll() is None, "the sync ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        process.kill()
        process.wait()
    assert 500 <= _count(sessions) < ISSUES

    sandbox.faults.latency = 0
    adapter = build_adapters(settings)["jira"]
    summary = run_sync(sessions, adapter, "full")

    assert summary.ok, summary.error
    assert stored(sessions) == expected(sandbox)
    assert _count(sessions) == ISSUES
    with sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert [(run.status, run.error) for run in runs] == [
        ("failed", "abandoned: the process running it stopped before it finished"),
        ("success", None),
    ]


def _count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return session.scalar(select(func.count()).select_from(TrackerItem))


def test_the_sync_command_shows_the_outcome_and_its_exit_code(database_url: str) -> None:
    sandbox = JiraSandbox("cloud", issues=150)
    runner = CliRunner()
    with serve_in_thread(sandbox.app) as url:
        env = {
            "LADDER_DATABASE_URL": database_url,
            "LADDER_JIRA_URL": url,
            "LADDER_JIRA_EMAIL": sandbox.email,
            "LADDER_JIRA_API_TOKEN": sandbox.api_token,
        }
        done = runner.invoke(app, ["sync", "--full", "--source", "jira"], env=env)
        assert done.exit_code == 0, done.output
        assert "success" in done.output and "150" in done.output

        # A Retry-After longer than the adapter waits: the run fails at once.
        sandbox.faults.retry_after = 3600
        sandbox.faults.inject("rate_limit", 5, path="search")
        failed = runner.invoke(app, ["sync"], env=env)
        assert failed.exit_code == 1
        assert "failed" in failed.output and "TrackerError" in failed.output

        unknown = runner.invoke(app, ["sync", "--source", "linear"], env=env)
        assert unknown.exit_code == 2 and "'linear' is not configured" in unknown.output
    nothing = runner.invoke(app, ["sync"], env={"LADDER_DATABASE_URL": database_url})
    assert nothing.exit_code == 2 and "no tracker is configured" in nothing.output


# --- the requests a run records ---------------------------------------------------------------


def _adapter(sandbox: JiraSandbox, url: str, **options: Any) -> JiraAdapter:
    credentials: dict[str, Any] = (
        {"email": sandbox.email, "api_token": sandbox.api_token}
        if sandbox.flavour == "cloud"
        else {"pat": sandbox.pat}
    )
    retry = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)
    return JiraAdapter(url, retry=retry, **credentials, **options)


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_a_run_records_every_request_the_tracker_received(
    flavour: str, sessions: sessionmaker[Session]
) -> None:
    sandbox = JiraSandbox(flavour, issues=300)  # type: ignore[arg-type]
    with serve_in_thread(sandbox.app) as url:
        adapter = _adapter(sandbox, url, page_size=40, partition_size=50, max_partitions=4)
        adapter.site()  # as normalising a webhook's issue would: before the run, not its own
        sandbox.reset_counters()

        full = run_sync(sessions, adapter, "full", concurrency=4)

        assert full.ok, full.error
        assert stored(sessions) == expected(sandbox)
        edges = [s for s in sandbox.searches if s.max_results == 1]  # first and last created
        assert len(edges) == 2
        assert full.requests == sandbox.requests_total

        # Planning the ranges fails (after its retries): the run still counts its requests.
        sandbox.reset_counters()
        counting = "approximate-count" if flavour == "cloud" else "/search"
        sandbox.faults.inject("server_error", adapter.http.retry.attempts, path=counting)
        planless = run_sync(sessions, adapter, "full", concurrency=4)
        assert planless.status == "failed"
        assert planless.requests == sandbox.requests_total == adapter.http.retry.attempts

        # Every range fails after its first page, while the others are still being fetched.
        sandbox.reset_counters()
        adapter.max_pages = 1
        cut = run_sync(sessions, adapter, "full", concurrency=4)
        assert cut.status == "failed" and "did not end after 1 pages" in (cut.error or "")
        assert cut.requests == sandbox.requests_total


# --- partitions over projects of different sizes ----------------------------------------------


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
@pytest.mark.parametrize("created", ["over a year", "in one minute", "in one minute, and outliers"])
def test_a_partitioned_full_sync_stores_every_issue_once_whatever_the_projects(
    flavour: str, created: str, sessions: sessionmaker[Session]
) -> None:
    """Several projects, one much bigger: slices by creation time hold issues of every
    project (an id or key comparison would stay in one project). Issues created in one
    minute cannot be sliced: the scope stays whole. Issues dated far outside the bulk
    (an import, one created just now) still land in exactly one slice."""
    sandbox = JiraSandbox(
        flavour,  # type: ignore[arg-type]
        issues=1200,
        projects=("PAY", "OPS", "WEB", "DATA"),
        weights=(1, 1, 2, 16),
        start=datetime(2025, 2, 3, 4, 5, tzinfo=UTC),
        span=DEFAULT_SPAN if created == "over a year" else timedelta(),
        labels=LABELS,
    )
    if created != "in one minute":
        sandbox.create("OPS", "bug", created=datetime(2003, 4, 5, tzinfo=UTC))
        sandbox.create("WEB", "task")
    sizes = Counter(issue.project for issue in sandbox.issues())
    assert sizes["DATA"] > 2 * (sizes["PAY"] + sizes["OPS"] + sizes["WEB"])
    with serve_in_thread(sandbox.app) as url:
        adapter = _adapter(sandbox, url, partition_size=100, max_partitions=8)

        full = run_sync(sessions, adapter, "full", concurrency=4)

        assert full.ok, full.error
        assert stored(sessions) == expected(sandbox)  # none missing
        assert full.items_seen == len(sandbox.issues())  # none fetched twice
        listings = {
            s.jql.split(" ORDER BY ")[0]
            for s in sandbox.searches
            if s.fields != ("id",) and s.max_results > 1
        }
    if created == "in one minute":
        assert listings == {'(project in ("PAY", "OPS", "WEB", "DATA"))'}
    else:
        assert len(listings) == 8
        assert all("created" in jql and "id " not in jql for jql in listings)


# --- Data Center's offset pages, while the issues change -------------------------------------


def test_a_data_center_census_misses_no_issue_when_one_goes_between_pages(
    sessions: sessionmaker[Session],
) -> None:
    sandbox = JiraSandbox("datacenter", issues=1500)  # two census pages of 1,000 ids
    with serve_in_thread(sandbox.app) as url:
        adapter = _adapter(sandbox, url)
        assert run_sync(sessions, adapter, "full").ok
        # Deleted once the first page is in: every later issue moves one place back.
        doomed = min(
            (i for i in sandbox.issues() if i.kind == "subtask"), key=lambda i: (i.created, i.id)
        )
        deletions = [doomed.id]

        def delete_after_first_page(progress: SyncProgress) -> None:
            if deletions:
                sandbox.delete([deletions.pop()])

        sandbox.reset_counters()
        census = run_sync(sessions, adapter, "census", progress=delete_after_first_page)

        assert census.ok, census.error
        assert not deletions
        # No live issue is marked deleted; the deleted one was listed before it went.
        assert census.items_deleted == 0
        live = stored(sessions)
        assert live == expected(sandbox) | {str(doomed.id): live[str(doomed.id)]}
        # The second page did not find the first one's last id where it was: it stepped back.
        assert [s.start_at for s in sandbox.searches] == [0, 999, 499]
        assert census.requests == sandbox.requests_total == 3

        # The next census finds the deletion, and only it.
        again = run_sync(sessions, adapter, "census")
        assert again.ok and again.items_deleted == 1
        assert stored(sessions) == expected(sandbox)
        everything = stored(sessions, live_only=False)
        assert [i for i, row in everything.items() if row["deleted"]] == [str(doomed.id)]


@pytest.mark.parametrize("flavour", ["cloud", "datacenter"])
def test_a_full_sync_misses_no_issue_when_some_are_edited_between_pages(
    flavour: str, sessions: sessionmaker[Session]
) -> None:
    sandbox = JiraSandbox(flavour, issues=1500)  # type: ignore[arg-type]
    with serve_in_thread(sandbox.app) as url:
        adapter = _adapter(sandbox, url)
        assert run_sync(sessions, adapter, "full", concurrency=1).ok
        # Edits move issues to the end of the sync order (`updated`): more of them leave the
        # part already read than a page re-reads.
        first_read = sorted(sandbox.issues(), key=lambda i: (i.updated, i.id))[:25]
        edits = [first_read]

        def edit_after_first_batch(progress: SyncProgress) -> None:
            for issue in edits.pop() if edits else ():
                sandbox.set_labels(issue.id, [*issue.labels, "edited"])

        again = run_sync(sessions, adapter, "full", concurrency=1, progress=edit_after_first_batch)

        assert again.ok, again.error
        assert not edits
        assert again.items_deleted == 0
        assert stored(sessions) == expected(sandbox)
