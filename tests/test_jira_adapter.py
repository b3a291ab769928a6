"""The Jira adapter against the sandbox Jira over real HTTP, Cloud and Data Center."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from integrations.base import TrackerError
from integrations.jira.adapter import JiraAdapter
from integrations.jira.client import RetryPolicy
from integrations.jira.jql import created_ranges, scope_jql, search_jql, since_literal
from integrations.sandbox.jira import JiraSandbox
from integrations.sandbox.jira.render import Renderer
from integrations.sandbox.server import serve_in_thread

FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=2.0)
DISCOVERY = 4  # serverInfo, field, issuetype, myself
ISSUES = 300
PAGE = 40


@dataclass
class Site:
    sandbox: JiraSandbox
    url: str

    @property
    def cloud(self) -> bool:
        return self.sandbox.flavour == "cloud"

    def adapter(self, **options: object) -> JiraAdapter:
        sandbox = self.sandbox
        auth: dict[str, object] = (
            {"email": sandbox.email, "api_token": sandbox.api_token}
            if self.cloud
            else {"pat": sandbox.pat}
        )
        settings: dict[str, object] = {"page_size": PAGE, "retry": FAST, "timeout": 5.0}
        return JiraAdapter(self.url, **(auth | settings | options))  # type: ignore[arg-type]


@pytest.fixture(params=["cloud", "datacenter"])
def site(request: pytest.FixtureRequest) -> Iterator[Site]:
    """A fresh sandbox per test: tests change data, inject faults and count requests."""
    sandbox = JiraSandbox(request.param, ISSUES, seed=11, labels=["bet:checkout", "ktlo"])
    with serve_in_thread(sandbox.app) as url:
        yield Site(sandbox, url)


def all_ids(site: Site) -> list[str]:
    return sorted(str(i.id) for i in site.sandbox.issues())


def search_paths(site: Site) -> set[str]:
    return {p for p in site.sandbox.requests_by_path if "/search" in p}


# --- full and incremental fetch -------------------------------------------------------------


def test_a_full_fetch_pages_through_everything_once(site: Site) -> None:
    adapter = site.adapter()
    pages = list(adapter.iter_pages(None))
    ids = [issue["id"] for page in pages for issue in page.items]
    assert sorted(ids) == all_ids(site)
    assert len(pages) == -(-ISSUES // PAGE)
    # Every request is reported exactly once: discovery, the project list, then one per page.
    assert [page.requests for page in pages] == [DISCOVERY + 1 + 1] + [1] * (len(pages) - 1)
    assert sum(page.requests for page in pages) == site.sandbox.requests_total == adapter.requests
    searches = list(site.sandbox.searches)
    if site.cloud:
        assert search_paths(site) == {"/rest/api/3/search/jql"}  # never the removed /search
        assert searches[0].page_token is None and all(s.page_token for s in searches[1:])
    else:
        assert search_paths(site) == {"/rest/api/2/search"}
        assert [s.start_at for s in searches] == list(range(0, ISSUES, PAGE))
    # Data Center pages also re-read the last tenth of the page before (see the census tests).
    size = PAGE if site.cloud else PAGE + PAGE // 10
    fields = adapter.site().config.fields()
    assert all(list(s.fields) == fields and s.max_results == size for s in searches)
    assert all(s.jql.endswith("ORDER BY updated ASC, id ASC") for s in searches)
    updated = [issue["fields"]["updated"] for page in pages for issue in page.items]
    times = [datetime.strptime(u, "%Y-%m-%dT%H:%M:%S.%f%z") for u in updated]
    assert times == sorted(times)  # oldest update first


def test_items_map_to_the_sandbox_truth(site: Site) -> None:
    adapter = site.adapter()
    truth = {str(i.id): i for i in site.sandbox.issues()}
    items = [adapter.normalise(raw) for page in adapter.iter_pages(None) for raw in page.items]
    for item in items:
        issue = truth[item.external_id]
        parent = site.sandbox.issue(issue.parent_id) if issue.parent_id else None
        assert (item.key, item.type, item.status_category) == (
            issue.key,
            issue.kind,
            issue.category,
        )
        assert (item.estimate, item.labels, item.project) == (
            issue.points,
            issue.labels,
            issue.project,
        )
        assert item.parent_key == (parent.key if parent else None)
        assert item.url == f"{site.url}/browse/{issue.key}"
    team_managed = {p.key for p in site.sandbox.store.projects.values() if p.team_managed}
    estimated = {item.project in team_managed for item in items if item.estimate is not None}
    assert estimated == ({True, False} if site.cloud else {False})


def test_discovery_finds_both_story_point_fields_and_the_epic_link(site: Site) -> None:
    config = site.adapter().site().config
    if site.cloud:
        assert config.story_points_fields == ("customfield_10024", "customfield_10016")
        assert config.epic_link_field == "customfield_10014"
        assert config.issue_type_names["10003"] == "Subtask"
    else:
        assert config.story_points_fields == ("customfield_10106",)
        assert config.epic_link_field == "customfield_10101"


def test_story_point_field_overrides_by_id_or_name(site: Site) -> None:
    fields = site.sandbox.store.fields
    by_id = site.adapter(story_points_field=fields.story_points).site().config
    assert by_id.story_points_fields == (fields.story_points,)
    by_name = site.adapter(story_points_field="story points").site().config
    assert by_name.story_points_fields == (fields.story_points,)
    with pytest.raises(
        TrackerError, match="'customfield_99999' is neither the id nor the name"
    ) as raised:
        site.adapter(story_points_field="customfield_99999").site()
    assert not raised.value.retryable


def test_an_incremental_fetch_returns_only_what_changed(site: Site) -> None:
    adapter = site.adapter()
    since = datetime.now(UTC) - timedelta(minutes=1)
    changed = site.sandbox.touch(10)
    pages = list(adapter.iter_pages(since))
    assert sorted(issue["id"] for page in pages for issue in page.items) == sorted(changed)
    # JQL dates are read in the API user's zone (Sydney here), at minute resolution.
    local = since.astimezone(ZoneInfo("Australia/Sydney")).strftime("%Y-%m-%d %H:%M")
    assert f'updated >= "{local}"' in site.sandbox.searches[-1].jql


def test_a_moved_issue_keeps_its_id_with_a_new_key(site: Site) -> None:
    adapter = site.adapter()
    issue = site.sandbox.issues()[10]
    new_key = site.sandbox.move(issue.id, "WEB")
    raw = adapter.get_item(str(issue.id))
    assert raw is not None
    item = adapter.normalise(raw)
    assert (item.external_id, item.key, item.project) == (str(issue.id), new_key, "WEB")


def test_get_item_is_none_once_deleted(site: Site) -> None:
    adapter = site.adapter()
    issue = next(i for i in site.sandbox.issues() if i.kind == "epic")
    assert adapter.get_item(str(issue.id))["key"] == issue.key  # type: ignore[index]
    site.sandbox.delete([issue.id])
    assert adapter.get_item(str(issue.id)) is None


# --- census and partitions ------------------------------------------------------------------


def test_the_census_lists_every_id_in_cheap_pages(site: Site) -> None:
    adapter = site.adapter()
    adapter.site()
    site.sandbox.delete([site.sandbox.issues()[0].id])
    pages = list(adapter.iter_ids())
    assert sorted(i for page in pages for i in page.ids) == all_ids(site)
    census = list(site.sandbox.searches)
    assert all(
        s.fields == ("id",) and s.max_results == (5000 if site.cloud else 1000) for s in census
    )
    # Discovery (run before the deletion) is reported with the first page, as is the project list.
    assert sum(page.requests for page in pages) == DISCOVERY + 1 + len(census)
    assert site.sandbox.requests_total == DISCOVERY + 1 + len(census)


def test_a_data_center_listing_that_loses_its_place_fails_rather_than_guess() -> None:
    sandbox = JiraSandbox("datacenter", 1200, seed=11)
    with serve_in_thread(sandbox.app) as url:
        adapter = JiraAdapter(url, pat=sandbox.pat, retry=FAST)
        pages = adapter.iter_ids()
        first = next(pages)
        # Every issue of the first page goes before the second is read: there is no telling
        # where the second page should begin (stepping back finds none of them either).
        sandbox.delete(first.ids)
        with pytest.raises(TrackerError, match="could not be paged through") as raised:
            next(pages)
        assert raised.value.retryable
        assert [s.start_at for s in sandbox.searches] == [0, 999, 499, 0]
        assert adapter.listing_requests == sandbox.requests_total == adapter.requests


def test_partitions_cover_the_scope_exactly_once_in_parallel(site: Site) -> None:
    adapter = site.adapter(partition_size=50)
    partitions = adapter.partitions()
    assert len(partitions) == -(-ISSUES // 50)
    assert all(p and p.startswith("created ") and "id " not in p for p in partitions)
    # Created after the split, or dated before anything seen (an import): still covered once.
    late = site.sandbox.create("PAY", "task")
    backdated = site.sandbox.create("OPS", "bug", created=datetime(2003, 4, 5, tzinfo=UTC))
    requests: list[int] = []

    def fetch(partition: str | None) -> list[str]:
        pages = list(adapter.iter_pages(None, partition))
        requests.extend(page.requests for page in pages)
        return [issue["id"] for page in pages for issue in page.items]

    with ThreadPoolExecutor(4) as pool:
        chunks = list(pool.map(fetch, partitions))
    ids = [i for chunk in chunks for i in chunk]
    assert sorted(ids) == all_ids(site) and late in chunks[-1] and backdated in chunks[0]
    sizes = [len(chunk) for chunk in chunks[1:-1]]
    assert max(sizes) <= 2 * min(sizes)  # even enough to keep every worker busy
    # Partitioning's own requests (discovery, count, first and last creation) ride on a page.
    assert sum(requests) == site.sandbox.requests_total == adapter.requests
    edges = [s for s in site.sandbox.searches if s.max_results == 1]
    assert [(s.jql.split(" ORDER BY ")[1], s.fields) for s in edges] == [
        ("created ASC", ("created",)),
        ("created DESC", ("created",)),
    ]


def test_a_small_scope_is_one_partition_without_a_partition_clause(site: Site) -> None:
    adapter = site.adapter()
    assert adapter.partitions() == [None]
    list(adapter.iter_pages(None, None))
    scope = 'project in ("PAY", "OPS", "WEB")'
    assert site.sandbox.searches[-1].jql == f"({scope}) ORDER BY updated ASC, id ASC"


def test_without_the_users_time_zone_the_scope_stays_whole(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    myself = Renderer.myself
    # A zone Jira names but Python does not know: JQL times could not be written in it.
    monkeypatch.setattr(Renderer, "myself", lambda self: myself(self) | {"timeZone": "Mars/Base"})
    adapter = site.adapter(partition_size=50)
    assert adapter.partitions() == [None]
    assert not site.sandbox.searches  # nothing counted or looked up for nothing
    ids = [issue["id"] for page in adapter.iter_pages(None, None) for issue in page.items]
    assert sorted(ids) == all_ids(site)


def test_a_configured_jql_restricts_the_scope(site: Site) -> None:
    adapter = site.adapter(jql="project = OPS ORDER BY created DESC")
    ids = [issue["id"] for page in adapter.iter_pages(None) for issue in page.items]
    assert sorted(ids) == sorted(str(i.id) for i in site.sandbox.issues() if i.project == "OPS")
    assert "/rest/api/3/project" not in site.sandbox.requests_by_path
    assert site.sandbox.searches[0].jql.startswith("(project = OPS) ORDER BY updated")


def test_a_query_jira_rejects_fails_clearly_at_once(site: Site) -> None:
    adapter = site.adapter(jql="assignee = currentUser()")
    with pytest.raises(
        TrackerError, match="answered 400: Field 'assignee' does not exist"
    ) as raised:
        list(adapter.iter_pages(None))
    assert (raised.value.retryable, raised.value.status) == (False, 400)
    assert len(site.sandbox.searches) == 1


# --- comments and check ---------------------------------------------------------------------


def test_comments_are_posted_as_plain_text_and_updated(site: Site) -> None:
    adapter = site.adapter()
    issue = str(site.sandbox.issues()[3].id)
    comment_id = adapter.post_comment(issue, "This ticket serves no objective yet: add bet:<key>.")
    adapter.update_comment(issue, comment_id, "Linked, thanks.")
    assert [(str(c["id"]), c["body"]) for c in site.sandbox.comments(issue)] == [
        (comment_id, "Linked, thanks.")
    ]
    assert "/rest/api/2/issue/" + issue + "/comment" in site.sandbox.requests_by_path


def test_a_comment_is_found_by_its_marker_across_pages(site: Site) -> None:
    adapter = site.adapter()
    issue = site.sandbox.issues()[4].id
    for number in range(130):  # the adapter reads 100 a page
        site.sandbox.store.add_comment(issue, f"comment {number}")
    posted = adapter.post_comment(str(issue), "Ladder: trace at https://ladder.test/x/trace")
    assert adapter.find_comment(str(issue), "https://ladder.test/x/trace") == posted
    assert adapter.find_comment(str(issue), "https://ladder.test/y/trace") is None
    assert site.sandbox.requests_by_path[f"/rest/api/2/issue/{issue}/comment"] == 1 + 2 + 2


def test_check_describes_what_answered(site: Site) -> None:
    described = site.adapter().check()
    assert described["deployment"] == ("Cloud" if site.cloud else "Server")
    assert (described["user"], described["time_zone"]) == ("Ladder Bot", "Australia/Sydney")
    assert site.sandbox.requests_total == 2


def test_wrong_credentials_fail_without_retrying(site: Site) -> None:
    auth = {"email": "x@example.com", "api_token": "wrong"} if site.cloud else {"pat": "wrong"}
    with pytest.raises(TrackerError, match="refused the credentials") as raised:
        JiraAdapter(site.url, retry=FAST, **auth).check()  # type: ignore[arg-type]
    assert (raised.value.retryable, raised.value.status) == (False, 401)
    assert site.sandbox.requests_total == 1


# --- faults ---------------------------------------------------------------------------------


def warmed(site: Site, **options: object) -> JiraAdapter:
    """An adapter that has discovered the site and reported it (with a census), counters zeroed."""
    adapter = site.adapter(**options)
    list(adapter.iter_ids())
    site.sandbox.reset_counters()
    return adapter


def test_429_waits_as_long_as_retry_after_asks(site: Site) -> None:
    adapter = warmed(site)
    site.sandbox.faults.retry_after = 2
    site.sandbox.faults.inject("rate_limit", path="/search")
    started = time.monotonic()
    first = next(adapter.iter_pages(None))
    waited = time.monotonic() - started
    # At least what Jira asked for, and not the doubled wait of the library's own retry
    # loop (twice Retry-After); the slack absorbs a loaded machine.
    assert 2.0 <= waited < 4.0
    assert first.requests == 2 == site.sandbox.requests_total


@pytest.mark.parametrize("fault", ["unavailable", "server_error", "timeout", "truncated"])
def test_transient_faults_are_retried_and_counted(site: Site, fault: str) -> None:
    # A timeout well above a loaded machine's slowest answer: only the fault may trip it.
    adapter = warmed(site, timeout=1.5)
    site.sandbox.faults.retry_after = 0
    site.sandbox.faults.hang_seconds = 3.0
    site.sandbox.faults.inject(fault, path="/search")  # type: ignore[arg-type]
    pages = list(adapter.iter_pages(None))
    assert sorted(issue["id"] for page in pages for issue in page.items) == all_ids(site)
    assert pages[0].requests == 2  # the failed attempt and its retry
    assert sum(page.requests for page in pages) == site.sandbox.requests_total


def test_giving_up_raises_a_retryable_error(site: Site) -> None:
    adapter = warmed(site)
    site.sandbox.faults.inject("server_error", 10, path="/search")
    with pytest.raises(TrackerError, match=r"failed 3 times; giving up: .* answered 500") as raised:
        list(adapter.iter_pages(None))
    assert (raised.value.retryable, raised.value.status) == (True, 500)
    assert site.sandbox.requests_total == FAST.attempts


def test_a_retry_after_beyond_the_limit_is_not_waited_out(site: Site) -> None:
    adapter = warmed(site)
    site.sandbox.faults.retry_after = 3600
    site.sandbox.faults.inject("rate_limit", path="/search")
    started = time.monotonic()
    with pytest.raises(TrackerError, match="asked to wait 3600 s") as raised:
        list(adapter.iter_pages(None))
    assert time.monotonic() - started < 1 and raised.value.retryable


def test_a_comment_is_never_posted_twice(site: Site) -> None:
    adapter = warmed(site)
    issue = str(site.sandbox.issues()[0].id)
    site.sandbox.faults.retry_after = 0
    site.sandbox.faults.inject("rate_limit", path="/comment")  # refused: safe to repeat
    adapter.post_comment(issue, "first")
    assert site.sandbox.requests_total == 2 and len(site.sandbox.comments(issue)) == 1
    site.sandbox.faults.inject("truncated", path="/comment")  # posted, answer lost: not repeated
    with pytest.raises(TrackerError, match="not repeated") as raised:
        adapter.post_comment(issue, "second")
    assert not raised.value.retryable
    assert site.sandbox.requests_total == 3 and len(site.sandbox.comments(issue)) == 2


def test_a_never_ending_search_is_cut_off(site: Site) -> None:
    adapter = site.adapter(max_pages=2)
    with pytest.raises(TrackerError, match="did not end after 2 pages"):
        list(adapter.iter_pages(None))


# --- JQL building ---------------------------------------------------------------------------


def test_jql_building() -> None:
    assert scope_jql("project = A order by rank", []) == "project = A"
    assert scope_jql(None, ["A", "B"]) == 'project in ("A", "B")'
    partition = 'created < "2025-05-06 07:08"'
    assert search_jql("project = A", partition=partition, since="2026-01-02 03:04") == (
        '(project = A) AND (created < "2025-05-06 07:08") AND updated >= "2026-01-02 03:04" '
        "ORDER BY updated ASC, id ASC"
    )
    assert search_jql("project = A", partition=None) == "(project = A) ORDER BY updated ASC, id ASC"
    moment = datetime(2026, 1, 1, 23, 59, 59, tzinfo=UTC)
    assert since_literal(moment, ZoneInfo("Australia/Sydney")) == "2026-01-02 10:59"
    assert since_literal(moment, None) == "2025-12-31 23:59"  # a day back when the zone is unknown
    with pytest.raises(ValueError):
        since_literal(datetime(2026, 1, 1), None)


def _reads(restriction: str | None, moment: datetime, zone: ZoneInfo) -> bool:
    """Whether `moment` matches a slice, its times read in `zone` as Jira reads them."""
    if restriction is None:
        return True
    for clause in restriction.split(" AND "):
        field, operator, literal = clause.split(" ", 2)
        assert field == "created"
        bound = datetime.strptime(literal.strip('"'), "%Y-%m-%d %H:%M").replace(tzinfo=zone)
        if not (moment < bound if operator == "<" else moment >= bound):
            return False
    return True


SYDNEY = ZoneInfo("Australia/Sydney")


@pytest.mark.parametrize(
    ("first", "last", "count", "slices"),
    [
        # Most of a year, 100,000 issues: as many slices as allowed.
        (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 11, 27, 3, 4, 5, tzinfo=UTC), 10**5, 64),
        # 90 issues in slices of 25.
        (datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC), 90, 4),
        # Three and a bit minutes: a cut per minute at most, never two in one.
        (
            datetime(2025, 3, 1, 9, 0, 10, tzinfo=UTC),
            datetime(2025, 3, 1, 9, 3, 20, tzinfo=UTC),
            900,
            4,
        ),
        # Everything in one minute, or just one issue: nothing to split.
        (
            datetime(2025, 3, 1, 9, 0, 1, tzinfo=UTC),
            datetime(2025, 3, 1, 9, 0, 59, tzinfo=UTC),
            900,
            1,
        ),
        (datetime(2025, 3, 1, 9, tzinfo=UTC), datetime(2025, 3, 1, 9, tzinfo=UTC), 1, 1),
        # Across the night Sydney's clocks go back (2025-04-06 03:00 → 02:00): no cut in the
        # hour that happens twice, where a cut made on the second pass would read as a moment
        # before the cuts of the first (a third of the 63 cuts go, none in two slices).
        (datetime(2025, 4, 5, 13, tzinfo=UTC), datetime(2025, 4, 5, 19, tzinfo=UTC), 10**5, 43),
        # And the night they go forward (2025-10-05 02:00 → 03:00): no time of the skipped
        # hour is ever written, so every cut stays.
        (datetime(2025, 10, 4, 14, tzinfo=UTC), datetime(2025, 10, 4, 17, tzinfo=UTC), 10**5, 64),
    ],
)
def test_created_ranges_cover_every_moment_exactly_once(
    first: datetime, last: datetime, count: int, slices: int
) -> None:
    ranges = created_ranges(first, last, count, size=25, most=64, zone=SYDNEY)
    assert len(ranges) == slices
    if slices == 1:
        assert ranges == [None]
        return
    literals = [r.rsplit('"', 2)[1] for r in ranges[:-1]]
    assert len(set(literals)) == len(literals)  # never two cuts in one minute
    bounds = [datetime.strptime(t, "%Y-%m-%d %H:%M").replace(tzinfo=SYDNEY) for t in literals]
    assert all(a < b for a, b in pairwise(bounds))  # as Jira reads them
    span = last - first
    moments = [first - timedelta(days=9000), last + timedelta(days=9000)]
    moments += [first + span * k / 997 for k in range(998)]
    moments += [b + d for b in bounds for d in (timedelta(microseconds=-1), timedelta())]
    for moment in moments:
        assert sum(_reads(r, moment, SYDNEY) for r in ranges) == 1, moment


def test_created_ranges_write_the_api_users_wall_clock() -> None:
    first = datetime(2025, 1, 1, tzinfo=UTC)  # 11:00 in Sydney
    ranges = created_ranges(first, first + timedelta(hours=2), 3, size=1, most=2, zone=SYDNEY)
    assert ranges == ['created < "2025-01-01 12:00"', 'created >= "2025-01-01 12:00"']
    utc = created_ranges(first, first + timedelta(hours=3), 3, size=1, most=3, zone=UTC)
    assert utc == [
        'created < "2025-01-01 01:00"',
        'created >= "2025-01-01 01:00" AND created < "2025-01-01 02:00"',
        'created >= "2025-01-01 02:00"',
    ]
