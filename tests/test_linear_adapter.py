"""The Linear adapter over real HTTP against the sandbox Linear.

Pagination, scope and the incremental filter, archived and trashed issues, lists too long
for one page, comments, and how the client behaves when Linear pushes back: rate limits
(HTTP 400 RATELIMITED, 429, an exhausted quota), 5xx, timeouts and GraphQL errors in a 200.
Request times come from the sandbox's own log, so spacing is measured where it matters.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from integrations.base import TrackerError
from integrations.linear import LinearAdapter
from integrations.linear.documents import documents
from integrations.linear.pacing import Pacer
from integrations.sandbox.linear import DEFAULT_API_KEY, LinearSandbox, Quota
from integrations.sandbox.server import serve_in_thread

# A small page ceiling makes a few hundred issues span many pages.
SMALL_PAGES = 800.0

AdapterFactory = Callable[..., LinearAdapter]


@pytest.fixture
def sandbox() -> LinearSandbox:
    sandbox = LinearSandbox(issues=300, teams=3, seed=7)
    sandbox.faults.reset_after = 0.4
    return sandbox


@pytest.fixture
def served(sandbox: LinearSandbox) -> Iterator[str]:
    with serve_in_thread(sandbox.app) as base:
        yield f"{base}/graphql"


@pytest.fixture
def connect(served: str) -> Iterator[AdapterFactory]:
    opened: list[LinearAdapter] = []

    def factory(*teams: str, page_ceiling: float = SMALL_PAGES, **options: object) -> LinearAdapter:
        options = {"pacer": Pacer(backoff_base=0.05, backoff_cap=0.2), "timeout": 5.0, **options}
        adapter = LinearAdapter.connect(served, DEFAULT_API_KEY, teams, **options)  # type: ignore[arg-type]
        adapter.page_ceiling = page_ceiling
        opened.append(adapter)
        return adapter

    yield factory
    for adapter in opened:
        adapter.close()


def fetch_all(adapter: LinearAdapter, since: datetime | None = None, partition: str | None = None):
    pages = list(adapter.iter_pages(since, partition))
    return pages, [raw for page in pages for raw in page.items]


def live_issue(sandbox: LinearSandbox, n: int = 0) -> str:
    return [i["id"] for i in sandbox.store.issues.values() if not i["archivedAt"]][n]


def test_a_full_fetch_pages_through_every_project_and_issue(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    adapter = connect()
    pages, raws = fetch_all(adapter)
    assert len(pages) > 10
    ids = [raw["id"] for raw in raws]
    assert len(ids) == len(set(ids))
    assert set(ids) == set(sandbox.store.issues) | set(sandbox.store.projects)
    assert sum(page.requests for page in pages) == sandbox.requests
    assert {entry.operation for entry in sandbox.log} <= set(documents())
    assert all(entry.complexity <= SMALL_PAGES for entry in sandbox.log)
    assert adapter.client.stats.requests == sandbox.requests
    assert adapter.client.stats.complexity == sandbox.complexity_spent


def test_archived_and_trashed_issues_come_as_deleted_items(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    archived = sandbox.archive(live_issue(sandbox, 0))["id"]
    trashed = sandbox.trash(live_issue(sandbox, 1))["id"]
    adapter = connect()
    items = {raw["id"]: adapter.normalise(raw) for raw in fetch_all(adapter)[1]}
    assert items[archived].deleted and items[trashed].deleted
    deleted = {i for i, item in items.items() if item.deleted}
    assert deleted == {i["id"] for i in sandbox.store.issues.values() if i["archivedAt"]}
    census = {i for page in adapter.iter_ids() for i in page.ids}
    assert census == set(items) - deleted  # the census lists live items only


def test_partitions_are_the_teams_plus_projects(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    assert connect().partitions() == ["projects", "ENG", "OPS", "WEB"]
    assert connect("web", "ENG").partitions() == ["projects", "WEB", "ENG"]
    _, raws = fetch_all(connect(), partition="OPS")
    assert raws and {raw["team"]["key"] for raw in raws} == {"OPS"}
    _, raws = fetch_all(connect(), partition="projects")
    assert {raw["id"] for raw in raws} == set(sandbox.store.projects)
    with pytest.raises(TrackerError, match="cannot see: NOPE"):
        connect("ENG", "NOPE").partitions()


def test_configured_teams_bound_the_scope(sandbox: LinearSandbox, connect: AdapterFactory) -> None:
    adapter = connect("ENG")
    raws = fetch_all(adapter)[1]
    issues = [raw for raw in raws if raw["__typename"] == "Issue"]
    projects = [raw for raw in raws if raw["__typename"] == "Project"]
    eng = sandbox.store.team("ENG")["id"]
    assert {raw["id"] for raw in issues} == {
        i["id"] for i in sandbox.store.issues.values() if i["teamId"] == eng
    }
    assert {raw["id"] for raw in projects} == {
        p["id"] for p in sandbox.store.projects.values() if eng in p["teamIds"]
    }


def test_an_incremental_fetch_asks_only_for_what_changed(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    adapter = connect()
    adapter.partitions()  # warm up: the page sizes are computed, the connection is open
    since = datetime.now(UTC)
    time.sleep(0.005)
    touched = sandbox.touch(5)
    archived = sandbox.archive(live_issue(sandbox, 250))["id"]  # archiving keeps updatedAt
    sandbox.clear_log()
    pages, raws = fetch_all(adapter, since)
    assert {raw["id"] for raw in raws} == {*touched, archived}
    assert [entry.operation for entry in sandbox.log] == ["Projects", "Issues"]
    assert sum(page.requests for page in pages) == 2
    assert adapter.normalise(next(r for r in raws if r["id"] == archived)).deleted


def test_an_issue_with_more_labels_than_a_page_is_fetched_whole(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    issue = live_issue(sandbox)
    names = [f"label-{n}" for n in range(14)]
    sandbox.update(issue, labelIds=[sandbox.store._label(name)["id"] for name in names])
    pages, raws = fetch_all(connect())
    raw = next(raw for raw in raws if raw["id"] == issue)
    assert list(connect().normalise(raw).labels) == names
    assert len(sandbox.requests_for("Item")) == 1
    assert sum(page.requests for page in pages) == sandbox.requests


def test_get_item_reads_issues_and_projects_archived_or_not(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    adapter = connect()
    issue = sandbox.archive(live_issue(sandbox))
    project = next(iter(sandbox.store.projects.values()))
    assert adapter.normalise(adapter.get_item(issue["id"])).deleted  # type: ignore[arg-type]
    assert adapter.get_item(project["id"])["slugId"] == project["slugId"]  # type: ignore[index]
    assert adapter.get_item("00000000-0000-4000-8000-000000000000") is None


def test_comments_are_posted_and_updated(sandbox: LinearSandbox, connect: AdapterFactory) -> None:
    adapter = connect()
    issue = live_issue(sandbox)
    comment_id = adapter.post_comment(issue, "Which bet does this serve? Add a `bet:` label.")
    adapter.update_comment(issue, comment_id, "Thanks, linked.")
    (comment,) = sandbox.comments
    assert (comment["issueId"], comment["body"]) == (issue, "Thanks, linked.")
    with pytest.raises(TrackerError, match="Entity not found: Issue"):
        adapter.post_comment("00000000-0000-4000-8000-000000000000", "hello")


def test_a_comment_is_found_by_its_marker(sandbox: LinearSandbox, connect: AdapterFactory) -> None:
    adapter = connect()
    issue, other = live_issue(sandbox), live_issue(sandbox, 1)
    sandbox.store.add_comment(issue, "a person's comment")
    posted = adapter.post_comment(issue, "Ladder: trace at https://ladder.test/x/trace")
    sandbox.store.add_comment(other, "Ladder: trace at https://ladder.test/x/trace")
    assert adapter.find_comment(issue, "https://ladder.test/x/trace") == posted
    assert adapter.find_comment(issue, "https://ladder.test/y/trace") is None


def test_a_comment_that_timed_out_is_not_posted_twice(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    adapter = connect(timeout=0.3)
    sandbox.faults.timeouts, sandbox.faults.hold = 1, 0.6
    with pytest.raises(TrackerError, match="did not answer CommentCreate"):
        adapter.post_comment(live_issue(sandbox), "hello")
    time.sleep(0.5)  # the sandbox finishes the held request after the client gave up
    assert len(sandbox.requests_for("CommentCreate")) == 1
    assert len(sandbox.comments) == 1


def test_check_names_the_user_and_workspace(connect: AdapterFactory) -> None:
    assert connect("ENG").check() == {
        "source": "linear",
        "url": connect().client.url,
        "user": "User 1",
        "organization": "Sandbox",
        "teams": ["ENG"],
    }


# --- when Linear pushes back -------------------------------------------------------------


def gaps_after(sandbox: LinearSandbox, outcome: str) -> list[float]:
    """For each answer with `outcome`, the time until the next request arrived."""
    return [b.at - a.at for a, b in itertools.pairwise(sandbox.log) if a.outcome == outcome]


@pytest.mark.parametrize("outcome", ["ratelimited", "too_many_requests"])
def test_rate_limit_answers_are_waited_out_not_burst_through(
    sandbox: LinearSandbox, connect: AdapterFactory, outcome: str
) -> None:
    reference = len(fetch_all(connect())[1])
    sandbox.clear_log()
    setattr(sandbox.faults, outcome, 3)
    adapter = connect()
    _, raws = fetch_all(adapter)
    assert len(raws) == reference  # converged
    gaps = gaps_after(sandbox, outcome)
    assert len(gaps) == 3
    # Each refusal said the budget resets in 0.4 s: nothing is sent before then.
    assert min(gaps) >= 0.38
    assert adapter.client.stats.rate_limited == 3


def test_concurrent_fetches_pause_together_after_a_rate_limit(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    adapter = connect()
    partitions = adapter.partitions()
    sandbox.clear_log()
    sandbox.faults.ratelimited = 1
    results: dict[str, int] = {}

    def fetch(partition: str) -> None:
        results[partition] = len(fetch_all(adapter, partition=partition)[1])

    threads = [threading.Thread(target=fetch, args=(p,)) for p in partitions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results.values()) == len(sandbox.store.issues) + len(sandbox.store.projects)
    (refused,) = [entry for entry in sandbox.log if entry.outcome == "ratelimited"]
    # Each other thread may have had one request on its way before the refusal reached the
    # client; after that, nothing is sent until the reset has passed.
    late = [e for e in sandbox.log if refused.at < e.at < refused.at + 0.38]
    assert len(late) < len(partitions)


def test_the_quota_is_spread_so_it_never_runs_out(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    sandbox.set_quota(Quota(requests=12, complexity=3_000_000, window=1.5))
    started = time.monotonic()
    _, raws = fetch_all(connect())
    assert len(raws) == len(sandbox.store.issues) + len(sandbox.store.projects)
    assert sandbox.requests > 12  # more than one window's worth was needed…
    assert time.monotonic() - started >= 1.5  # …so the client waited for the reset…
    # …instead of running into the quota, which the sandbox would have refused.
    assert [entry.outcome for entry in sandbox.log] == ["ok"] * sandbox.requests


def test_an_exhausted_complexity_budget_is_waited_for(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    sandbox.set_quota(Quota(requests=1_000, complexity=3_000, window=1.0))
    adapter = connect()
    _, raws = fetch_all(adapter, partition="ENG")
    assert raws
    assert adapter.client.stats.complexity > 3_000  # needed more than one window
    refusals = [entry for entry in sandbox.log if entry.outcome == "over_quota"]
    assert len(refusals) <= 1  # learnt the budget from the first answer at the latest


def test_server_errors_and_timeouts_are_retried_with_backoff(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    reference = len(fetch_all(connect())[1])
    sandbox.clear_log()
    sandbox.faults.server_errors = 2
    sandbox.faults.timeouts, sandbox.faults.hold = 1, 1.2
    adapter = connect(timeout=0.6)
    assert len(fetch_all(adapter)[1]) == reference
    assert adapter.client.stats.failures >= 3  # a loaded machine may add a timeout
    deadline = time.monotonic() + 3
    while all(e.outcome != "late" for e in sandbox.log) and time.monotonic() < deadline:
        time.sleep(0.05)  # the held request is answered after the client gave up on it
    outcomes = [e.outcome for e in sandbox.log]
    assert (outcomes.count("server_error"), outcomes.count("late")) == (2, 1)
    assert min(gaps_after(sandbox, "server_error")) >= 0.04  # backed off, not hammered


def test_persistent_failures_give_up_with_a_retryable_error(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    sandbox.faults.server_errors = 100
    adapter = connect(max_attempts=3)
    with pytest.raises(TrackerError, match=r"HTTP 503 .*gave up after 3 attempts") as failure:
        fetch_all(adapter)
    assert failure.value.retryable
    assert sandbox.requests == 3


def test_a_reset_further_away_than_allowed_fails_at_once(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    sandbox.faults.ratelimited, sandbox.faults.reset_after = 1, 120.0
    with pytest.raises(TrackerError, match=r"resets in 1[12][0-9] s, longer than the 5 s"):
        fetch_all(connect(max_wait=5.0))
    assert sandbox.requests == 1


def test_graphql_errors_in_a_200_are_errors_not_data(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    sandbox.faults.graphql_errors = 1
    with pytest.raises(TrackerError, match=r"HTTP 200\): Internal error \[INTERNAL_ERROR\]"):
        fetch_all(connect())
    assert sandbox.requests == 1  # not retried: the query itself is at fault


def test_a_wrong_api_key_is_refused_without_retrying(served: str, sandbox: LinearSandbox) -> None:
    adapter = LinearAdapter.connect(served, "lin_api_wrong")
    with pytest.raises(TrackerError, match="AUTHENTICATION_ERROR"):
        adapter.check()
    adapter.close()
    assert sandbox.requests == 1


def test_pages_linear_finds_too_complex_are_halved(
    sandbox: LinearSandbox, connect: AdapterFactory
) -> None:
    adapter = connect(page_ceiling=60_000)  # far above Linear's ceiling…
    adapter.list_sizes["labelCount"] = 40  # …with nodes heavy enough to cross it
    _, raws = fetch_all(adapter, partition="ENG")
    assert {raw["id"] for raw in raws} == {
        i["id"]
        for i in sandbox.store.issues.values()
        if i["teamId"] == sandbox.store.team("ENG")["id"]
    }
    assert [e.outcome for e in sandbox.log].count("too_complex") >= 1
