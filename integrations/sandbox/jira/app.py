"""A fake Jira (Cloud or Data Center) served over real HTTP, for the demo, tests and benchmarks.

It answers the endpoints Ladder uses in the shapes the real ones answer in: Cloud's
token-paged `/rest/api/3/search/jql` (the old `/search` answers 410, as it does since 2025),
Data Center's offset-paged `/rest/api/2/search`, `/field`, `/issuetype`, `/project`,
`/serverInfo`, `/myself`, issues and comments. Every request is counted, and `faults` makes
requests slow, throttled, failing, hanging or cut short.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from bisect import bisect_right
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from integrations.sandbox.jira.data import (
    DEFAULT_SPAN,
    DEFAULT_START,
    Flavour,
    JiraStore,
    Kind,
    SandboxIssue,
)
from integrations.sandbox.jira.faults import Faults
from integrations.sandbox.jira.jql import JqlError, Query, parse
from integrations.sandbox.jira.render import ALL, NAVIGABLE, Renderer

Handler = Callable[[Request, Renderer], Awaitable[Response]]
MOVED = (
    "The requested API has been removed. Please migrate to the /rest/api/3/search/jql API. "
    "A full migration guideline is available at https://developer.atlassian.com/changelog/#CHANGE-2046"
)
UNBOUNDED = (
    "Unbounded JQL queries are not allowed here. Please add a search restriction to your query."
)
ID_ONLY = frozenset({"id", "key"})


@dataclass(frozen=True, slots=True)
class SearchRecord:
    """One search request as the sandbox understood it, for tests to inspect."""

    path: str
    jql: str
    fields: tuple[str, ...]
    max_results: int
    page_token: str | None
    start_at: int | None


def jira_error(status: int, *messages: str, errors: dict[str, str] | None = None) -> Response:
    """Jira's error body: `{"errorMessages": [...], "errors": {...}}`."""
    return json_response({"errorMessages": list(messages), "errors": errors or {}}, status)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(content, status, headers, media_type="application/json;charset=UTF-8")


class JiraSandbox:
    """N generated issues behind a Jira REST API; `.app` is the ASGI application.

    Cloud authenticates `email` + `api_token` (HTTP basic), Data Center the personal access
    token `pat` (bearer). Projects listed in `team_managed` (Cloud only; default every
    second project) estimate in "Story point estimate", the others in "Story Points".
    `labels` (e.g. `bet:<key>`, `kr:<key>`, `ktlo`) are sprinkled over epics and stories;
    a mapping gives each project its own. `epics` are (project, summary) pairs created before
    the generated issues, so a project's named epics are its issues 1, 2, … in that order.
    Issues are created at a steady pace over `span` from `start` (330 days by default; a
    span of zero puts them all in one minute) and updated up to 60 days later; `weights`,
    one per project, make some projects bigger than others (by default all are alike).
    Dates in JQL and in payloads are in `time_zone`, the API user's zone, as in Jira.
    """

    def __init__(
        self,
        flavour: Flavour = "cloud",
        issues: int = 200,
        seed: int = 0,
        projects: Sequence[str] = ("PAY", "OPS", "WEB"),
        labels: Sequence[str] | Mapping[str, Sequence[str]] = (),
        *,
        epics: Sequence[tuple[str, str]] = (),
        start: datetime = DEFAULT_START,
        span: timedelta = DEFAULT_SPAN,
        weights: Sequence[float] | None = None,
        team_managed: Sequence[str] | None = None,
        time_zone: str = "Australia/Sydney",
        email: str = "ladder-bot@example.com",
        api_token: str = "sandbox-token",
        pat: str = "sandbox-pat",
    ) -> None:
        if flavour not in ("cloud", "datacenter"):
            raise ValueError(f"flavour must be 'cloud' or 'datacenter', not {flavour!r}")
        if team_managed is None:
            team_managed = projects[1::2]
        self.flavour: Flavour = flavour
        self.store = JiraStore(
            flavour,
            projects,
            team_managed,
            time_zone,
            labels,
            issues,
            seed,
            epics,
            start,
            span,
            weights,
        )
        self.faults = Faults(seed=seed)
        self.email, self.api_token, self.pat = email, api_token, pat
        self.requests_total = 0
        self.requests_by_path: Counter[str] = Counter()
        self.searches: deque[SearchRecord] = deque(maxlen=10_000)
        self.app = Starlette(routes=self._routes())

    # --- what tests use -------------------------------------------------------------------

    def touch(self, count: int) -> list[str]:
        """Change `count` issues now; return their ids."""
        return self.store.touch(count)

    def delete(self, ids: Sequence[str | int]) -> None:
        """Delete issues (their sub-tasks too, as Jira does)."""
        self.store.delete(ids)

    def move(self, issue_id: str | int, project: str) -> str:
        """Move an issue to `project`; return its new key (its id stays)."""
        return self.store.move(issue_id, project)

    def create(self, project: str, kind: Kind = "story", **details: Any) -> str:
        """Create an issue (`summary`, `labels`, `parent`, `points`, `created`); return its id."""
        return self.store.create(project, kind, **details)

    def set_labels(self, issue_id: str | int, labels: Sequence[str]) -> None:
        self.store.set_labels(issue_id, labels)

    def issue(self, issue_id: str | int) -> SandboxIssue | None:
        """The sandbox's own record of an issue (the truth a sync should reproduce)."""
        return self.store.get(issue_id)

    def issues(self) -> list[SandboxIssue]:
        with self.store.lock:
            return list(self.store.issues.values())

    def comments(self, issue_id: str | int) -> list[dict[str, Any]]:
        """The comments posted on an issue: `id`, `body` (text), `created`, `updated` (ms)."""
        with self.store.lock:
            return [dict(c) for c in self.store.comments.get(int(issue_id), ())]

    def reset_counters(self) -> None:
        self.requests_total = 0
        self.requests_by_path.clear()
        self.searches.clear()

    # --- HTTP -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        api = "/rest/api/{version}"
        routes = [
            Route(f"{api}/field", self._wrap(self._fields)),
            Route(f"{api}/issuetype", self._wrap(self._issue_types)),
            Route(f"{api}/project", self._wrap(self._projects)),
            Route(f"{api}/serverInfo", self._wrap(self._server_info)),
            Route(f"{api}/myself", self._wrap(self._myself)),
            Route(f"{api}/issue/{{issue}}", self._wrap(self._issue)),
            Route(
                f"{api}/issue/{{issue}}/comment",
                self._wrap(self._comments),
                methods=["GET", "POST"],
            ),
            Route(
                f"{api}/issue/{{issue}}/comment/{{comment}}",
                self._wrap(self._comment),
                methods=["GET", "PUT"],
            ),
        ]
        if self.flavour == "cloud":
            routes += [
                Route(f"{api}/search/jql", self._wrap(self._search_jql), methods=["GET", "POST"]),
                Route(f"{api}/search/approximate-count", self._wrap(self._count), methods=["POST"]),
                Route(f"{api}/search", self._wrap(self._gone), methods=["GET", "POST"]),
            ]
        else:
            routes.append(
                Route(f"{api}/search", self._wrap(self._search_offset), methods=["GET", "POST"])
            )
        return routes

    def _wrap(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            self.requests_total += 1
            self.requests_by_path[request.url.path] += 1
            if self.faults.latency:
                # The whole request has arrived before Jira spends its time on it: a client
                # that gives up meanwhile does not stop the work (a comment is still posted).
                await request.body()
                await asyncio.sleep(self.faults.latency)
            version = request.path_params.get("version")
            if version not in ("2", "3", "latest") or (version == "3" and self.flavour != "cloud"):
                return jira_error(404, "Not found")
            fault = self.faults.draw(request.url.path)
            if fault == "timeout":
                await asyncio.sleep(self.faults.hang_seconds)
                return jira_error(504, "Gateway timeout")
            if fault in ("rate_limit", "unavailable"):
                status = 429 if fault == "rate_limit" else 503
                headers = {"Retry-After": str(self.faults.retry_after)}
                if fault == "rate_limit":
                    headers["RateLimit-Reason"] = "jira-burst-based"
                body = json.dumps(
                    {
                        "errorMessages": [
                            "Rate limit exceeded." if status == 429 else "Service unavailable."
                        ]
                    }
                )
                return Response(body, status, headers, media_type="application/json")
            if fault == "server_error":
                return jira_error(500, "Internal server error")
            if not self._authenticated(request):
                return jira_error(
                    401,
                    "You are not authenticated. Authentication required to perform this operation.",
                )
            renderer = Renderer(
                self.store, str(request.base_url), "2" if version == "latest" else version
            )
            response = await handler(request, renderer)
            if fault == "truncated":
                cut = bytes(response.body[: max(1, len(response.body) // 2)])
                return Response(cut, response.status_code, media_type=response.media_type)
            return response

        return endpoint

    def _authenticated(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        if self.flavour == "cloud":
            secret = base64.b64encode(f"{self.email}:{self.api_token}".encode()).decode()
            return header == f"Basic {secret}"
        return header == f"Bearer {self.pat}"

    async def _fields(self, request: Request, render: Renderer) -> Response:
        return json_response(render.field_list())

    async def _issue_types(self, request: Request, render: Renderer) -> Response:
        return json_response(render.issue_types())

    async def _projects(self, request: Request, render: Renderer) -> Response:
        return json_response([render.project(key) for key in self.store.projects])

    async def _server_info(self, request: Request, render: Renderer) -> Response:
        return json_response(
            render.server_info() | {"serverTime": render.time(int(time.time() * 1000))}
        )

    async def _myself(self, request: Request, render: Renderer) -> Response:
        return json_response(render.myself())

    async def _gone(self, request: Request, render: Renderer) -> Response:
        return jira_error(410, MOVED)

    async def _issue(self, request: Request, render: Renderer) -> Response:
        fields = _field_names(request.query_params.getlist("fields")) or [ALL]
        with self.store.lock:
            issue = self.store.get(request.path_params["issue"])
            if issue is None:
                return _no_issue()
            return json_response(render.issue(issue, fields))

    # --- search -----------------------------------------------------------------------------

    async def _search_jql(self, request: Request, render: Renderer) -> Response:
        params = await _search_params(request)
        fields = _field_names(params.get("fields")) or ["id"]  # Cloud returns ids unless told
        limit = 5000 if set(fields) <= ID_ONLY else 100
        max_results = min(_integer(params.get("maxResults"), 50), limit)
        token = params.get("nextPageToken") or None
        jql = str(params.get("jql") or "").strip()
        self.searches.append(
            SearchRecord(request.url.path, jql, tuple(fields), max_results, token, None)
        )
        digest = hashlib.sha1(jql.encode()).hexdigest()[:12]
        with self.store.lock:
            query = self._parse(jql, bounded=True)
            if isinstance(query, Response):
                return query
            keys, ids = self.store.search(jql, query)
            start = 0
            if token:
                try:
                    token_digest, last = json.loads(base64.urlsafe_b64decode(token.encode()))
                except (ValueError, TypeError):
                    token_digest, last = None, None
                if token_digest != digest:
                    return jira_error(400, "The provided next page token is invalid or expired.")
                start = bisect_right(keys, tuple(last))
            page = ids[start : start + max_results]
            body: dict[str, Any] = {"issues": [self._render(render, i, fields) for i in page]}
            if start + max_results < len(ids):
                next_token = json.dumps([digest, list(keys[start + max_results - 1])]).encode()
                body["nextPageToken"] = base64.urlsafe_b64encode(next_token).decode()
                body["isLast"] = False
            else:
                body["isLast"] = True
        return json_response(body)

    async def _count(self, request: Request, render: Renderer) -> Response:
        jql = str((await _search_params(request)).get("jql") or "").strip()
        with self.store.lock:
            query = self._parse(jql, bounded=True)
            if isinstance(query, Response):
                return query
            return json_response({"count": len(self.store.search(jql, query)[1])})

    async def _search_offset(self, request: Request, render: Renderer) -> Response:
        params = await _search_params(request)
        fields = _field_names(params.get("fields")) or [NAVIGABLE]
        max_results = min(_integer(params.get("maxResults"), 50), 1000)
        start = _integer(params.get("startAt"), 0)
        jql = str(params.get("jql") or "").strip()
        self.searches.append(
            SearchRecord(request.url.path, jql, tuple(fields), max_results, None, start)
        )
        with self.store.lock:
            query = self._parse(jql, bounded=False)
            if isinstance(query, Response):
                return query
            ids = self.store.search(jql, query)[1]
            page = ids[start : start + max_results]
            issues = [self._render(render, i, fields) for i in page]
        body = {
            "expand": "names,schema",
            "startAt": start,
            "maxResults": max_results,
            "total": len(ids),
            "issues": issues,
        }
        return json_response(body)

    def _parse(self, jql: str, *, bounded: bool) -> Query | Response:
        """The query, or the 400 Jira answers instead; `bounded`: refuse a query without a
        restriction, as Cloud's newer endpoints do. Call it holding the store's lock, so the
        issues the query names are those of the data searched."""
        try:
            query = parse(jql, self.store.zone, self.store.get)
        except JqlError as exc:
            return jira_error(400, str(exc))
        if bounded and not query.bounded:
            return jira_error(400, UNBOUNDED)
        return query

    def _render(self, render: Renderer, issue_id: int, fields: list[str]) -> dict[str, Any]:
        issue = self.store.issues[issue_id]
        if set(fields) <= ID_ONLY:
            minimal = {"id": str(issue.id)}
            return minimal | (
                {"key": issue.key} if "key" in fields or self.flavour != "cloud" else {}
            )
        return render.issue(issue, fields)

    # --- comments ---------------------------------------------------------------------------

    async def _comments(self, request: Request, render: Renderer) -> Response:
        with self.store.lock:
            issue = self.store.get(request.path_params["issue"])
            if issue is None:
                return _no_issue()
            if request.method == "GET":
                params = request.query_params
                start = _integer(params.get("startAt"), 0)
                size = min(_integer(params.get("maxResults"), 100), 5000)
                return json_response(render.comment_page(issue, start, size))
        text = _comment_text(await _json_body(request), render.api)
        if text is None:
            return jira_error(400, errors={"comment": "Comment body is not valid!"})
        with self.store.lock:
            comment = self.store.add_comment(issue.id, text)
            return json_response(render.comment(issue.id, comment), 201)

    async def _comment(self, request: Request, render: Renderer) -> Response:
        body = await _json_body(request) if request.method == "PUT" else None
        with self.store.lock:
            issue = self.store.get(request.path_params["issue"])
            if issue is None:
                return _no_issue()
            wanted = request.path_params["comment"]
            found = [c for c in self.store.comments.get(issue.id, ()) if str(c["id"]) == wanted]
            if not found:
                return jira_error(404, "Can not find a comment for the id: " + wanted)
            comment = found[0]
            if request.method == "PUT":
                text = _comment_text(body, render.api)
                if text is None:
                    return jira_error(400, errors={"comment": "Comment body is not valid!"})
                comment["body"], comment["updated"] = text, int(time.time() * 1000)
            return json_response(render.comment(issue.id, comment))


def _no_issue() -> Response:
    return jira_error(404, "Issue does not exist or you do not have permission to see it.")


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body() or b"{}")
    except ValueError:
        return None


async def _search_params(request: Request) -> dict[str, Any]:
    if request.method == "POST":
        body = await _json_body(request)
        return body if isinstance(body, dict) else {}
    params: dict[str, Any] = dict(request.query_params)
    params["fields"] = request.query_params.getlist("fields")
    return params


def _field_names(value: Any) -> list[str]:
    """`fields` as a JSON list, repeated query parameters, or comma-separated text."""
    items = value if isinstance(value, list) else [value] if value else []
    return [name.strip() for item in items for name in str(item).split(",") if name.strip()]


def _integer(value: Any, default: int) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return default


def _comment_text(body: Any, api: str) -> str | None:
    """The comment's text: v2 takes a string, v3 insists on an ADF document."""
    value = body.get("body") if isinstance(body, dict) else None
    if api == "2":
        return value if isinstance(value, str) and value.strip() else None
    if not isinstance(value, dict) or value.get("type") != "doc":
        return None
    texts: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "text":
                texts.append(str(node.get("text", "")))
            for child in node.get("content", ()):
                walk(child)

    walk(value)
    return "".join(texts) or None
