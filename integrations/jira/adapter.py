"""The Jira adapter: Cloud and Data Center behind Ladder's TrackerAdapter interface.

Cloud pages with `POST /rest/api/3/search/jql` and `nextPageToken` (the old `/search` answers
410 there); Data Center with `POST /rest/api/2/search` and `startAt`, each page re-reading the
end of the one before, so that issues leaving the result meanwhile cannot make it skip one
(see `_offset_pages`). Both send an explicit field list: exactly the fields the mapping reads.
The first call discovers the site once (deployment type, story points and Epic Link fields,
issue type names, the API user's time zone, which JQL dates are read in) and every later call
reuses it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from integrations.base import IdPage, NormalisedItem, Page, TrackerError, WebhookEvent
from integrations.jira import webhooks
from integrations.jira.client import JiraHttp, Meter, RetryPolicy, Tally
from integrations.jira.jql import (
    CENSUS_ORDER,
    created_ranges,
    scope_jql,
    search_jql,
    since_literal,
)
from integrations.jira.mapping import (
    DEFAULT_CANCELED_RESOLUTIONS,
    JiraFieldConfig,
    normalise,
    parse_time,
)

STORY_POINTS_NAMES = ("Story Points", "Story point estimate")
EPIC_LINK_NAME = "Epic Link"
CLOUD_ID_PAGE = 5000  # Cloud's largest page when only ids are asked for
DATACENTER_PAGE = 1000  # Data Center's default jira.search.views.default.max
# How many issues a Data Center page re-reads from the end of the one before (see
# `_offset_pages`). Every edit moves an issue to the end of the sync order, so on a busy site
# a few leave the part already read between two pages: a tenth of a page absorbs them. The
# census order (creation) shifts only when an issue is deleted or leaves the scope: one issue
# of overlap tells whether it did, and a rare shift costs a step back.
SYNC_OVERLAP_SHARE = 10
CENSUS_OVERLAP = 1


@dataclass(frozen=True, slots=True)
class JiraSite:
    """What discovery learned about the site."""

    cloud: bool
    config: JiraFieldConfig
    zone: ZoneInfo | None
    server_title: str


class JiraAdapter:
    """Fetch, map and comment on Jira issues (Cloud or Data Center).

    `jql` restricts the scope (default: every project the user can see). `story_points_field`
    and `epic_link_field` take field ids or names, comma-separated, and override discovery
    by name. `page_size` is the issues per search page; scopes larger than `partition_size`
    issues are split into creation-time ranges (at most `max_partitions`) for concurrent
    fetching.
    """

    source = "jira"

    def __init__(
        self,
        url: str,
        *,
        email: str | None = None,
        api_token: str | None = None,
        pat: str | None = None,
        jql: str | None = None,
        story_points_field: str | None = None,
        epic_link_field: str | None = None,
        canceled_resolutions: Sequence[str] = DEFAULT_CANCELED_RESOLUTIONS,
        page_size: int = 100,
        partition_size: int = 5000,
        max_partitions: int = 64,
        max_pages: int = 20_000,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        webhook_secret: str | None = None,
        bot_account_id: str | None = None,
    ) -> None:
        self.http = JiraHttp(
            url, email=email, api_token=api_token, pat=pat, timeout=timeout, retry=retry
        )
        self.jql = jql
        self.story_points_field = story_points_field
        self.epic_link_field = epic_link_field
        self.canceled_resolutions = tuple(canceled_resolutions)
        self.page_size = page_size
        self.partition_size = partition_size
        self.max_partitions = max_partitions
        self.max_pages = max_pages
        self.webhook_secret = webhook_secret
        self.bot_account_id = bot_account_id
        self._site: JiraSite | None = None
        self._scope: str | None = None
        self._lock = threading.RLock()
        self._unreported = 0  # requests made outside any page, reported with the next one
        self._listings = Meter()

    @property
    def requests(self) -> int:
        """Every HTTP request made so far, retries and discovery included."""
        return self.http.requests

    @property
    def listing_requests(self) -> int:
        """The HTTP requests made so far by `partitions`, `iter_pages` and `iter_ids`: their
        retries and the discovery they needed included, and also those no page reports (a
        listing that failed, pages a sync dropped when it stopped). Comments, `get_item` and
        `check` are not listings: a sync run is measured by the growth of this count alone.
        """
        return self._listings.count

    def close(self) -> None:
        """Close the HTTP connections of every thread that used the adapter."""
        self.http.close()

    # --- discovery ------------------------------------------------------------------------

    def site(self, tally: Tally | None = None) -> JiraSite:
        """The site's facts, discovered on first use (four requests) and kept."""
        with self._lock:
            if self._site is None:
                own = tally or Tally()
                self._site = self._discover(own)
                if tally is None:
                    self._carry(own)
            return self._site

    def _discover(self, tally: Tally) -> JiraSite:
        info = self._get(tally, "/rest/api/2/serverInfo")
        cloud = info.get("deploymentType") == "Cloud"
        api = _api(cloud)
        fields = self._get(tally, f"{api}/field")
        types = self._get(tally, f"{api}/issuetype")
        me = self._get(tally, f"{api}/myself")
        if not isinstance(info, dict) or not isinstance(me, dict):
            raise TrackerError("Jira's /serverInfo or /myself did not answer a JSON object")
        if not isinstance(fields, list) or not isinstance(types, list):
            raise TrackerError("Jira's /field or /issuetype did not answer a list")
        story_points = (
            _field_ids(fields, self.story_points_field, "story points")
            if self.story_points_field
            else _named(fields, STORY_POINTS_NAMES)
        )
        epic_link = (
            _field_ids(fields, self.epic_link_field, "Epic Link")
            if self.epic_link_field
            else _named(fields, (EPIC_LINK_NAME,))
        )
        config = JiraFieldConfig(
            base_url=self.http.url,
            story_points_fields=story_points,
            epic_link_field=epic_link[0] if epic_link else None,
            canceled_resolutions=self.canceled_resolutions,
            issue_type_names={
                str(t["id"]): str(t["untranslatedName"])
                for t in types
                if isinstance(t, Mapping) and t.get("untranslatedName")
            },
        )
        return JiraSite(cloud, config, _zone(me.get("timeZone")), str(info.get("serverTitle", "")))

    def scope(self, tally: Tally | None = None) -> str:
        """The JQL restriction of the whole scope (all visible projects when none is set)."""
        with self._lock:
            if self._scope is None:
                projects: list[str] = []
                if not (self.jql and self.jql.strip()):
                    own = tally or Tally()
                    found = self._get(own, f"{_api(self.site(own).cloud)}/project")
                    projects = [
                        str(p["key"]) for p in found if isinstance(p, Mapping) and p.get("key")
                    ]
                    if tally is None:
                        self._carry(own)
                self._scope = scope_jql(self.jql, projects)
            return self._scope

    # --- fetching ---------------------------------------------------------------------------

    def partitions(self) -> list[str | None]:
        """Creation-time ranges of about `partition_size` issues each (JQL restrictions such
        as `created >= "2025-03-01 10:00" AND created < "2025-06-01 04:00"`), for concurrent
        fetching; `[None]`, the whole scope in one listing, when the scope is small.

        Ranges split the span between the first- and last-created issue evenly: issues are
        created at a fairly steady pace, so ranges hold similar numbers of issues, and,
        unlike projects, they stay even when one project dwarfs the others. Not id ranges:
        JQL compares ids as key numbers within one project (see `integrations.jira.jql`).
        Times in JQL are read in the API user's zone, so without it (Jira did not say, or
        named a zone unknown here) the scope stays whole rather than risk overlapping cuts.
        """
        tally = Tally(self._listings)
        site, scope = self.site(tally), self.scope(tally)
        if site.zone is None:
            self._carry(tally)
            return [None]
        if site.cloud:
            counted = self._post(tally, "/rest/api/3/search/approximate-count", {"jql": scope})
            count = int(counted.get("count", 0))
        else:
            count = int(self._search(tally, site, scope, ["id"], 0).get("total", 0))
        first = last = None
        if count > self.partition_size:
            first, last = (self._edge_created(tally, site, scope, way) for way in ("ASC", "DESC"))
        self._carry(tally)
        if first is None or last is None:
            return [None]
        return created_ranges(
            first, last, count, self.partition_size, self.max_partitions, site.zone
        )

    def iter_pages(self, since: datetime | None, partition: str | None = None) -> Iterator[Page]:
        """Raw issues page by page, least recently updated first.

        `since` becomes `updated >= "yyyy-MM-dd HH:mm"` in the API user's time zone (JQL's
        minute resolution; the engine subtracts its overlap beforehand).
        """
        tally = Tally(self._listings)
        site, scope = self.site(tally), self.scope(tally)
        since_text = since_literal(since, site.zone) if since else None
        jql = search_jql(scope, partition=partition, since=since_text)
        fields = site.config.fields()
        overlap = max(1, self.page_size // SYNC_OVERLAP_SHARE)
        for body in self._pages(tally, site, jql, fields, self.page_size, overlap):
            yield Page(list(body["issues"]), self._reported(tally))

    def iter_ids(self) -> Iterator[IdPage]:
        """The id of every issue in scope, in id-only pages (5,000 on Cloud, 1,000 on DC)."""
        tally = Tally(self._listings)
        site, scope = self.site(tally), self.scope(tally)
        jql = search_jql(scope, order=CENSUS_ORDER)
        size = CLOUD_ID_PAGE if site.cloud else DATACENTER_PAGE
        for body in self._pages(tally, site, jql, ["id"], size, CENSUS_OVERLAP):
            yield IdPage([str(issue["id"]) for issue in body["issues"]], self._reported(tally))

    def get_item(self, external_id: str) -> dict[str, Any] | None:
        """One issue with the mapped fields, or None when Jira no longer has it (404)."""
        tally = Tally()
        site = self.site(tally)
        path = f"{_api(site.cloud)}/issue/{external_id}"
        params = {"fields": ",".join(site.config.fields())}
        found = self.http.json(tally, "GET", path, params=params, missing_ok=True)
        return found if isinstance(found, dict) else None

    def normalise(self, raw: Mapping[str, Any]) -> NormalisedItem:
        """Pure mapping with this site's field configuration (discovered on first use)."""
        return normalise(raw, self.site().config)

    # --- writing and checking -------------------------------------------------------------

    def post_comment(self, external_id: str, text: str) -> str:
        """Post a plain-text comment through the library (REST v2); return its id.

        Repeated only when Jira surely did not act (429): a retried timeout could post twice.
        """
        comment = self.http.call(
            Tally(),
            f"POST comment on issue {external_id}",
            lambda: self.http.client().add_comment(external_id, text),
            idempotent=False,
        )
        return str(comment.id)

    def update_comment(self, external_id: str, comment_id: str, text: str) -> None:
        """Replace a comment's text (an idempotent PUT, retried like reads)."""
        path = f"/rest/api/2/issue/{external_id}/comment/{comment_id}"
        self.http.json(Tally(), "PUT", path, body={"body": text})

    def find_comment(self, external_id: str, marker: str) -> str | None:
        """The id of a comment on the issue whose text holds `marker`, paging through all."""
        start = 0
        while True:
            path = f"/rest/api/2/issue/{external_id}/comment?startAt={start}&maxResults=100"
            page = self._get(Tally(), path)
            comments = page.get("comments") or []
            for comment in comments:
                if marker in str(comment.get("body") or ""):
                    return str(comment["id"])
            start += len(comments)
            if not comments or start >= int(page.get("total") or 0):
                return None

    # --- webhooks (pure: no request to Jira) -----------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Raise WebhookRejected unless the delivery is signed with the webhook secret."""
        webhooks.verify(headers, raw_body, secret=self.webhook_secret)

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        """Parse a verified delivery; Ladder's own comments (`bot_account_id`) are ignored."""
        return webhooks.parse(headers, raw_body, bot_account_id=self.bot_account_id)

    def check(self) -> dict[str, Any]:
        """Reach Jira with the configured credentials: server info and the API user."""
        tally = Tally()
        info = self._get(tally, "/rest/api/2/serverInfo")
        me = self._get(tally, "/rest/api/2/myself")
        return {
            "url": self.http.url,
            "deployment": info.get("deploymentType"),
            "version": info.get("version"),
            "user": me.get("displayName") or me.get("accountId") or me.get("name"),
            "time_zone": me.get("timeZone"),
        }

    # --- helpers ----------------------------------------------------------------------------

    def _carry(self, tally: Tally) -> None:
        """Keep requests made outside a page (discovery, partitioning) for the next page."""
        with self._lock:
            self._unreported += tally.take()

    def _reported(self, tally: Tally) -> int:
        """A page's requests, plus any made outside pages since the last one."""
        with self._lock:
            carried, self._unreported = self._unreported, 0
        return tally.take() + carried

    def _get(self, tally: Tally, path: str) -> Any:
        found = self.http.json(tally, "GET", path)
        if found is None:
            raise TrackerError(f"GET {path}: Jira answered an empty body")
        return found

    def _post(self, tally: Tally, path: str, body: dict[str, Any]) -> dict[str, Any]:
        found = self.http.json(tally, "POST", path, body=body)
        if not isinstance(found, dict):
            raise TrackerError(f"POST {path}: Jira did not answer a JSON object")
        return found

    def _search(
        self,
        tally: Tally,
        site: JiraSite,
        jql: str,
        fields: list[str],
        size: int,
        cursor: str | int | None = None,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {"jql": jql, "fields": fields, "maxResults": size}
        if site.cloud:
            if cursor:
                body["nextPageToken"] = cursor
            page = self._post(tally, "/rest/api/3/search/jql", body)
        else:
            page = self._post(tally, "/rest/api/2/search", body | {"startAt": cursor or 0})
        if not isinstance(page.get("issues", []), list):
            raise TrackerError(f"Jira's search answered `issues` that is not a list for {jql!r}")
        page.setdefault("issues", [])
        return page

    def _pages(
        self, tally: Tally, site: JiraSite, jql: str, fields: list[str], size: int, overlap: int
    ) -> Iterator[dict[str, Any]]:
        """Search pages until the last: Cloud follows tokens, Data Center offsets (each page
        re-reading `overlap` issues of the one before, see `_offset_pages`).

        Stops on an empty page or a missing token too, and fails on a token seen before
        or past `max_pages`, rather than loop on a site that never says it is done.
        """
        if site.cloud:
            yield from self._token_pages(tally, site, jql, fields, size)
        else:
            yield from self._offset_pages(tally, site, jql, fields, size, overlap)

    def _token_pages(
        self, tally: Tally, site: JiraSite, jql: str, fields: list[str], size: int
    ) -> Iterator[dict[str, Any]]:
        token: str | None = None
        seen: set[str] = set()
        for _ in range(self.max_pages):
            page = self._search(tally, site, jql, fields, size, token)
            issues = page["issues"]
            yield page
            token = page.get("nextPageToken")
            if not issues or not token or page.get("isLast") is True:
                return
            if token in seen:
                raise TrackerError(f"Jira repeated a page token while searching {jql!r}")
            seen.add(token)
        raise self._endless(jql)

    def _offset_pages(
        self, tally: Tally, site: JiraSite, jql: str, fields: list[str], size: int, overlap: int
    ) -> Iterator[dict[str, Any]]:
        """Data Center's pages, each holding only issues that no page before it held.

        An offset counts places in the result as it is when the page is asked for, so an
        issue that leaves the part already read (deleted, moved out of scope or, in the sync
        order, edited) moves every later issue one place back, and the issue at the next
        page's boundary would be skipped: a full sync or a census would then mark a live
        issue deleted. So each page starts `overlap` issues early and resumes after the last
        issue of the page before that it finds again unchanged (same id and `updated`). A
        page that finds none of them steps back half a page at a time until one does; when
        even the first page holds none, the listing fails (retryable) rather than guess.
        """
        start = 0
        previous: list[tuple[str, Any]] = []  # the page before, when it overlaps this one
        for _ in range(self.max_pages):
            page = self._search(tally, site, jql, fields, size + overlap, start)
            issues = page["issues"]
            resume = _resume_point(previous, issues)
            if resume is None:
                if start == 0:
                    raise TrackerError(
                        f"every issue of the last page of {jql!r} changed or went before the "
                        "next page was read: Jira could not be paged through; try again",
                        retryable=True,
                    )
                start = max(0, start - max(1, size // 2))
                continue
            yield page | {"issues": issues[resume:]}
            end = start + len(issues)
            if not issues or end >= int(page.get("total", 0)):
                return
            # Move on by at least one issue, even if Jira answers pages no larger than the
            # overlap (then without checking for shifts: there is nothing to check with).
            kept = min(overlap, len(issues) - 1)
            previous = [_fingerprint(issue) for issue in issues] if kept else []
            start = end - kept
        raise self._endless(jql)

    def _endless(self, jql: str) -> TrackerError:
        return TrackerError(
            f"searching {jql!r} did not end after {self.max_pages} pages", retryable=False
        )

    def _edge_created(
        self, tally: Tally, site: JiraSite, scope: str, direction: str
    ) -> datetime | None:
        """When the first (ASC) or last (DESC) issue in scope was created; None when the
        scope is empty or Jira answered no readable `created`."""
        jql = search_jql(scope, order=f"created {direction}")
        issues = self._search(tally, site, jql, ["created"], 1)["issues"]
        fields = issues[0].get("fields") if issues and isinstance(issues[0], Mapping) else None
        try:
            return parse_time(fields.get("created")) if isinstance(fields, Mapping) else None
        except ValueError:
            return None


def _api(cloud: bool) -> str:
    return "/rest/api/3" if cloud else "/rest/api/2"


def _fingerprint(issue: Mapping[str, Any]) -> tuple[str, Any]:
    """An issue's id and, when the page holds it, `updated`: an edited issue has moved."""
    fields = issue.get("fields")
    return str(issue.get("id")), fields.get("updated") if isinstance(fields, Mapping) else None


def _resume_point(previous: Sequence[tuple[str, Any]], issues: list[Any]) -> int | None:
    """Where in `issues` the ones not listed before begin: just after the last issue of
    `previous` (fingerprints) found among them unchanged; 0 without a previous page; None
    when none of its issues is there."""
    if not previous:
        return 0
    places = {_fingerprint(issue): place for place, issue in enumerate(issues)}
    for mark in reversed(previous):
        if mark in places:
            return places[mark] + 1
    return None


def _named(fields: list[Any], names: Sequence[str]) -> tuple[str, ...]:
    """Ids of custom fields with one of `names` (case-insensitive), in the order of `names`."""
    wanted = [n.casefold() for n in names]
    found = [
        (wanted.index(str(f.get("name", "")).casefold()), str(f["id"]))
        for f in fields
        if isinstance(f, Mapping) and str(f.get("name", "")).casefold() in wanted and f.get("id")
    ]
    return tuple(field_id for _, field_id in sorted(found))


def _field_ids(fields: list[Any], configured: str, what: str) -> tuple[str, ...]:
    """Resolve configured field ids or names (comma-separated) against the site's `/field`."""
    ids = {str(f.get("id")) for f in fields if isinstance(f, Mapping)}
    resolved: list[str] = []
    for token in (t.strip() for t in configured.split(",")):
        if not token:
            continue
        matches = (token,) if token in ids else _named(fields, (token,))
        if not matches:
            raise TrackerError(
                f"the {what} field {token!r} is neither the id nor the name of a field on this "
                "Jira (see its /rest/api/2/field)"
            )
        resolved.extend(matches)
    return tuple(dict.fromkeys(resolved))


def _zone(name: Any) -> ZoneInfo | None:
    try:
        return ZoneInfo(str(name)) if name else None
    except (ZoneInfoNotFoundError, ValueError):
        return None
