"""The Linear adapter: issues and projects, page by page, for the sync engine.

Scope is the configured teams (`LADDER_LINEAR_TEAMS`), or every team the key can see. The
partitions of a sync are those teams plus `projects`, the slice that holds the projects
(which may span teams). Pages come from Relay pagination (`first`/`after`):

* an incremental fetch (`since` given) asks for what was updated since then, ordered by
  `updatedAt`, and for issues also what was archived since then: archiving does not move
  `updatedAt` (Linear's filter for projects has no `archivedAt`);
* a full fetch orders by `createdAt`, which no edit changes, so an issue edited while the
  pages are read cannot slip past them unseen;
* archived and trashed issues are included (`includeArchived`): they become deleted items.

Page sizes are the largest that keep a query under `page_ceiling` complexity points (Linear
refuses any above 10,000); if Linear still finds a page too complex, the page is halved.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from integrations.base import IdPage, NormalisedItem, Page, TrackerError, WebhookEvent
from integrations.linear import mapping, webhooks
from integrations.linear.client import LinearClient, QueryTooComplex
from integrations.linear.complexity import largest_page
from integrations.linear.documents import document
from integrations.linear.pacing import Pacer

PROJECTS = "projects"  # the partition holding projects; team keys are upper case
PAGE_CAP = 250  # Linear's largest page
# Bounded lists inside one node: enough for nearly every issue; an issue with more is
# fetched again on its own with `FULL_LIST` pages.
LIST_SIZES = {"labelCount": 10, "attachmentCount": 5, "teamCount": 5, "initiativeCount": 5}
FULL_LIST = 250


class LinearAdapter:
    """Linear as a `TrackerAdapter`: a GraphQL client plus the pure mapping."""

    source = "linear"

    def __init__(
        self,
        client: LinearClient,
        teams: Sequence[str] = (),
        *,
        page_ceiling: float = 8_000,
        page_cap: int = PAGE_CAP,
        list_sizes: Mapping[str, int] = LIST_SIZES,
        webhook_secret: str | None = None,
    ) -> None:
        self.client = client
        self.teams = tuple(key.upper() for key in teams)
        self.page_ceiling = page_ceiling
        self.page_cap = page_cap
        self.list_sizes = dict(list_sizes)
        self.webhook_secret = webhook_secret
        self._page_sizes: dict[str, int] = {}

    @classmethod
    def connect(
        cls,
        url: str,
        api_key: str,
        teams: Sequence[str] = (),
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        max_wait: float = 3600.0,
        pacer: Pacer | None = None,
        webhook_secret: str | None = None,
    ) -> LinearAdapter:
        """An adapter with its own client for `url` (Linear's GraphQL endpoint)."""
        client = LinearClient(
            url, api_key, timeout=timeout, max_attempts=max_attempts, max_wait=max_wait, pacer=pacer
        )
        return cls(client, teams, webhook_secret=webhook_secret)

    def close(self) -> None:
        self.client.close()

    # --- reading ---------------------------------------------------------------------------

    def partitions(self) -> list[str]:
        """`projects`, then the team keys in scope; unknown configured teams are an error."""
        known: list[str] = []
        for nodes, _ in self._paginate("Teams", {}, "teams"):
            known.extend(str(node["key"]) for node in nodes)
        if not self.teams:
            return [PROJECTS, *sorted(known)]
        missing = sorted(set(self.teams) - set(known))
        if missing:
            raise TrackerError(
                f"LADDER_LINEAR_TEAMS names teams this API key cannot see: {', '.join(missing)}"
                f" (visible: {', '.join(sorted(known)) or 'none'})"
            )
        return [PROJECTS, *self.teams]

    def iter_pages(self, since: datetime | None, partition: str | None = None) -> Iterator[Page]:
        """Raw projects and issues updated since `since` (all when None), page by page.

        Pages come in Linear's order for `updatedAt` (changes) or `createdAt` (everything),
        whose direction Linear does not document; the store keeps the newest version anyway.
        """
        if partition in (None, PROJECTS):
            yield from self._pages("Projects", self._project_filter(since), since, "projects")
        if partition != PROJECTS:
            teams = (partition,) if partition else self.teams
            yield from self._pages("Issues", self._issue_filter(since, teams), since, "issues")

    def iter_ids(self) -> Iterator[IdPage]:
        """The ids of every live project and issue in scope, in id-only pages."""
        for name, connection, filter_ in (
            ("ProjectIds", "projects", self._project_filter(None)),
            ("IssueIds", "issues", self._issue_filter(None, self.teams)),
        ):
            for nodes, requests in self._paginate(name, {"filter": filter_}, connection):
                yield IdPage([str(node["id"]) for node in nodes], requests)

    def get_item(self, external_id: str) -> dict[str, Any] | None:
        """The issue or project with this id, archived or not; None when Linear has neither."""
        item, _ = self._fetch_whole(external_id)
        return item

    def normalise(self, raw: Mapping[str, Any]) -> NormalisedItem:
        """Pure mapping of one issue or project payload (see `mapping`)."""
        return mapping.normalise(raw)

    # --- writing ---------------------------------------------------------------------------

    def post_comment(self, external_id: str, text: str) -> str:
        """Comment on an issue (markdown); return the comment's id."""
        data = self.client.execute(
            document("CommentCreate"), {"issueId": external_id, "body": text}
        ).data
        return _comment_id(data["commentCreate"], f"commenting on issue {external_id}")

    def update_comment(self, external_id: str, comment_id: str, text: str) -> None:
        """Replace the body of a comment posted earlier on issue `external_id`."""
        data = self.client.execute(document("CommentUpdate"), {"id": comment_id, "body": text}).data
        _comment_id(data["commentUpdate"], f"updating comment {comment_id} on {external_id}")

    def find_comment(self, external_id: str, marker: str) -> str | None:
        """The id of a comment on the issue whose body holds `marker` (Linear filters)."""
        variables = {"id": external_id, "marker": marker}
        data = self.client.execute(document("IssueComments"), variables).data
        found = data["issue"]["comments"]["nodes"]
        return str(found[0]["id"]) if found else None

    # --- webhooks (pure: no request to Linear) ---------------------------------------------

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Raise WebhookRejected unless the delivery is signed with the webhook secret."""
        webhooks.verify(headers, raw_body, secret=self.webhook_secret)

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        """Parse a verified delivery (see `integrations.linear.webhooks`)."""
        return webhooks.parse(headers, raw_body)

    def check(self) -> dict[str, Any]:
        """Who the API key belongs to and in which workspace, and which teams are in scope."""
        data = self.client.execute(document("Viewer")).data
        return {
            "source": self.source,
            "url": self.client.url,
            "user": data["viewer"].get("name"),
            "organization": data["organization"].get("name"),
            "teams": list(self.teams) or "all",
        }

    # --- internals -------------------------------------------------------------------------

    def _pages(
        self, name: str, filter_: dict[str, Any] | None, since: datetime | None, connection: str
    ) -> Iterator[Page]:
        variables = {
            **self.list_sizes,
            "filter": filter_,
            "orderBy": "updatedAt" if since else "createdAt",
        }
        for nodes, requests in self._paginate(name, variables, connection):
            items: list[dict[str, Any]] = []
            for node in nodes:
                if mapping.is_truncated(node):
                    whole, extra = self._fetch_whole(str(node["id"]))
                    requests += extra
                    node = whole or node
                items.append(node)
            yield Page(items, requests)

    def _paginate(
        self, name: str, variables: dict[str, Any], connection: str
    ) -> Iterator[tuple[list[dict[str, Any]], int]]:
        """Nodes of `connection` page by page, with the requests each page took."""
        doc = document(name)
        first = self._page_size(name, variables)
        after: str | None = None
        while True:
            try:
                result = self.client.execute(doc, {**variables, "first": first, "after": after})
            except QueryTooComplex:
                if first == 1:
                    raise
                first = self._page_sizes[name] = max(1, first // 2)
                continue
            page = result.data[connection]
            yield page["nodes"], result.requests
            info = page["pageInfo"]
            if not info["hasNextPage"]:
                return
            if not info.get("endCursor") or info["endCursor"] == after:
                raise TrackerError(f"Linear's {name} pages do not advance past cursor {after!r}")
            after = info["endCursor"]

    def _page_size(self, name: str, variables: dict[str, Any]) -> int:
        if name not in self._page_sizes:
            self._page_sizes[name] = largest_page(
                document(name).ast, variables, ceiling=self.page_ceiling, cap=self.page_cap
            )
        return self._page_sizes[name]

    def _fetch_whole(self, external_id: str) -> tuple[dict[str, Any] | None, int]:
        """One issue or project with every label, attachment, team and initiative."""
        full = dict.fromkeys(self.list_sizes, FULL_LIST)
        result = self.client.execute(document("Item"), {"id": external_id, **full})
        for connection in ("issues", "projects"):
            nodes = result.data[connection]["nodes"]
            if nodes:
                return nodes[0], result.requests
        return None, result.requests

    def _issue_filter(self, since: datetime | None, teams: Sequence[str]) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        if teams:
            clauses.append({"team": {"key": {"in": list(teams)}}})
        if since is not None:
            # Archiving does not move an issue's updatedAt, so ask for both.
            moment = _iso(since)
            clauses.append(
                {"or": [{"updatedAt": {"gte": moment}}, {"archivedAt": {"gte": moment}}]}
            )
        return {"and": clauses} if clauses else None

    def _project_filter(self, since: datetime | None) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        if self.teams:
            clauses.append({"accessibleTeams": {"some": {"key": {"in": list(self.teams)}}}})
        if since is not None:
            # Projects cannot be filtered on archivedAt: an archived project that was not
            # also updated is found deleted by the next full sync.
            clauses.append({"updatedAt": {"gte": _iso(since)}})
        return {"and": clauses} if clauses else None


def _comment_id(payload: Mapping[str, Any], doing: str) -> str:
    if not payload.get("success") or not payload.get("comment"):
        raise TrackerError(f"Linear reported no success {doing}")
    return str(payload["comment"]["id"])


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass an aware UTC time")
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
