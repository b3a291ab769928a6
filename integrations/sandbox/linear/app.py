"""The sandbox Linear: an ASGI app that answers GraphQL like Linear does, from memory.

Every request is parsed and validated against the project's schema of Linear's API (a
faithful subset of Linear's published one) before it runs, so a query Linear would reject is
rejected here, in Linear's error shape. The sandbox also
meters what Linear meters:

* an hourly quota of requests and of complexity points (defaults 1,500 and 3,000,000, the
  values Linear's headers have shown for API keys), reported in `X-RateLimit-Requests-*`,
  `X-RateLimit-Complexity-*` and `X-Complexity` headers. The window is fixed (it restarts
  `window` seconds after it began) where Linear's is a leaky bucket: close enough for a
  client that reads the headers. Over quota, requests get HTTP 400 `RATELIMITED`;
* complexity with the published price list (`integrations.linear.complexity`); a query
  above 10,000 points is refused as "Query too complex", as Linear does.

`faults` injects trouble into the next requests: latency, RATELIMITED answers, HTTP 429,
5xx, answers held past a client's timeout, GraphQL errors in a 200. `log` records every
request (time, operation, status), so tests can count requests and how they were spaced.
"""

from __future__ import annotations

import asyncio
import bisect
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphql import DocumentNode, GraphQLError, execute_sync, parse, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from integrations.linear.complexity import MAX_QUERY_COMPLEXITY, estimate, points
from integrations.sandbox.linear.resolvers import Context, ResultCache, field_resolver
from integrations.sandbox.linear.schema import load_schema
from integrations.sandbox.linear.store import LinearStore, ProjectSpec, Record

DEFAULT_API_KEY = "lin_api_sandbox"


@dataclass
class Faults:
    """Trouble for the next requests; each counter is used up one request at a time."""

    latency: float = 0.0  # seconds added to every request
    ratelimited: int = 0  # HTTP 400 with extensions.code RATELIMITED
    too_many_requests: int = 0  # HTTP 429
    server_errors: int = 0  # HTTP 503
    timeouts: int = 0  # held for `hold` seconds, then answered (too late for the client)
    graphql_errors: int = 0  # HTTP 200 carrying an INTERNAL_ERROR
    hold: float = 5.0
    reset_after: float = 1.0  # when an injected rate-limit answer says the budget resets
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def take(self, name: str) -> bool:
        """Use up one of fault `name`, if any is left."""
        with self._lock:
            left = getattr(self, name)
            if left > 0:
                setattr(self, name, left - 1)
                return True
            return False


@dataclass(frozen=True)
class Quota:
    """Linear's hourly budgets for one API key."""

    requests: int = 1_500
    complexity: int = 3_000_000
    window: float = 3_600.0  # seconds


@dataclass(frozen=True)
class Logged:
    """One request as the sandbox saw it."""

    at: float  # time.monotonic() when it arrived
    operation: str | None
    status: int
    outcome: str  # ok, late (held past timeouts), ratelimited, over_quota, server_error, …
    complexity: int


class LinearSandbox:
    """A fake Linear workspace served over GraphQL; mount `.app` on any ASGI server.

    `teams`, `labels` and `projects` shape the generated workspace (see `LinearStore`).
    """

    def __init__(
        self,
        issues: int = 0,
        teams: int | Mapping[str, str] = 3,
        seed: int = 0,
        labels: Sequence[str] | Mapping[str, Sequence[str]] = (),
        *,
        projects: Sequence[ProjectSpec] = (),
        api_key: str = DEFAULT_API_KEY,
        quota: Quota | None = None,
        schema_path: str | Path | None = None,
    ) -> None:
        self.schema = load_schema(schema_path)
        self.store = LinearStore(issues, teams, seed, labels, projects)
        self.api_key = api_key
        self.quota = quota or Quota()
        self.faults = Faults()
        self.log: list[Logged] = []
        self._cache = ResultCache()
        self._documents: OrderedDict[str, tuple[DocumentNode | None, list[GraphQLError]]] = (
            OrderedDict()
        )
        self._window_start = time.time()
        self._spent_requests = 0
        self._spent_complexity = 0
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/graphql", self._graphql, methods=["POST"])])

    # --- what tests look at and change ----------------------------------------------------

    @property
    def requests(self) -> int:
        """How many requests reached the sandbox."""
        return len(self.log)

    @property
    def complexity_spent(self) -> int:
        """Complexity points charged, over all requests (not just this window)."""
        return sum(entry.complexity for entry in self.log)

    @property
    def comments(self) -> list[Record]:
        return list(self.store.comments.values())

    def requests_for(self, operation: str) -> list[Logged]:
        return [entry for entry in self.log if entry.operation == operation]

    def clear_log(self) -> None:
        self.log.clear()

    def set_quota(self, quota: Quota) -> None:
        """Change the hourly budgets and start a fresh window now."""
        with self._lock:
            self.quota = quota
            self._window_start = time.time()
            self._spent_requests = self._spent_complexity = 0

    def touch(self, count: int) -> list[str]:
        """Edit `count` issues; return their ids."""
        return self.store.touch(count)

    def archive(self, issue_id: str) -> Record:
        return self.store.archive(issue_id)

    def trash(self, issue_id: str) -> Record:
        return self.store.trash(issue_id)

    def move(self, issue_id: str, team_key: str) -> Record:
        return self.store.move(issue_id, team_key)

    def create(self, team_key: str, title: str, **fields: Any) -> Record:
        return self.store.create(team_key, title, **fields)

    def update(self, issue_id: str, **fields: Any) -> Record:
        return self.store.update(issue_id, **fields)

    # --- serving --------------------------------------------------------------------------

    async def _graphql(self, request: Request) -> JSONResponse:
        arrived = time.monotonic()
        faults = self.faults
        if faults.latency:
            await asyncio.sleep(faults.latency)
        try:
            body = json.loads(await request.body())
            query, variables = body["query"], body.get("variables") or {}
            operation = body.get("operationName")
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise TypeError
        except (ValueError, KeyError, TypeError):
            return self._answer(
                arrived,
                None,
                400,
                "bad_request",
                0,
                _error("Request body must be JSON with a `query` string", "BAD_USER_INPUT", 400),
            )
        if not self._authorised(request.headers.get("authorization")):
            return self._answer(
                arrived,
                operation,
                400,
                "unauthenticated",
                0,
                _error(
                    "Authentication required, not authenticated",
                    "AUTHENTICATION_ERROR",
                    401,
                    "authentication error",
                ),
            )
        if faults.take("ratelimited"):
            return self._rate_limited(arrived, operation, 400, "ratelimited")
        if faults.take("too_many_requests"):
            return self._rate_limited(arrived, operation, 429, "too_many_requests")
        if faults.take("server_errors"):
            return self._answer(
                arrived, operation, 503, "server_error", 0, {"error": "unavailable"}
            )
        outcome = "ok"
        if faults.take("timeouts"):
            await asyncio.sleep(faults.hold)
            outcome = "late"
        if faults.take("graphql_errors"):
            return self._answer(
                arrived,
                operation,
                200,
                "graphql_error",
                0,
                {"data": None, **_error("Internal error", "INTERNAL_ERROR", 500, "internal error")},
            )
        return self._run(arrived, query, variables, operation, outcome)

    def _run(
        self,
        arrived: float,
        query: str,
        variables: dict[str, Any],
        operation: str | None,
        outcome: str,
    ) -> JSONResponse:
        document, errors = self._parse(query)
        if errors or document is None:
            return self._answer(
                arrived,
                operation,
                400,
                "invalid",
                0,
                {"errors": [_validation_error(error) for error in errors]},
            )
        try:
            cost = points(estimate(document, variables, operation))
        except ValueError as exc:
            return self._answer(
                arrived,
                operation,
                400,
                "invalid",
                0,
                _error(str(exc), "GRAPHQL_VALIDATION_FAILED", 400, "graphql error"),
            )
        if cost > MAX_QUERY_COMPLEXITY:
            return self._answer(
                arrived,
                operation,
                400,
                "too_complex",
                0,
                _error(
                    "Query too complex",
                    "INPUT_ERROR",
                    400,
                    "invalid input",
                    f"The query is too complex. Complexity: {cost}. "
                    f"Maximum allowed complexity: {MAX_QUERY_COMPLEXITY}.",
                ),
            )
        if not self._charge(cost):
            return self._rate_limited(arrived, operation, 400, "over_quota")
        with self.store.lock:
            result = execute_sync(
                self.schema,
                document,
                variable_values=variables,
                operation_name=operation,
                context_value=Context(self.store, self._cache),
                field_resolver=field_resolver,
            )
        if result.errors and all(error.path is None for error in result.errors):
            # Variables that do not fit their types: refused before anything ran.
            return self._answer(
                arrived,
                operation,
                400,
                "invalid",
                0,
                {"errors": [_request_error(error) for error in result.errors]},
            )
        payload: dict[str, Any] = {"data": result.data}
        if result.errors:
            payload["errors"] = [_execution_error(error) for error in result.errors]
        return self._answer(arrived, operation, 200, outcome, cost, payload)

    def _parse(self, query: str) -> tuple[DocumentNode | None, list[GraphQLError]]:
        """Parse and validate once per distinct query text."""
        with self._lock:
            if query in self._documents:
                self._documents.move_to_end(query)
                return self._documents[query]
        try:
            document: DocumentNode | None = parse(query)
            errors = list(validate(self.schema, document))  # type: ignore[arg-type]
        except GraphQLError as error:
            document, errors = None, [error]
        with self._lock:
            self._documents[query] = (document, errors)
            if len(self._documents) > 64:
                self._documents.popitem(last=False)
        return document, errors

    def _authorised(self, header: str | None) -> bool:
        return header in (self.api_key, f"Bearer {self.api_key}")

    def _window(self) -> float:
        """Start a new quota window when the last one is over; return its end (epoch s)."""
        now = time.time()
        if now >= self._window_start + self.quota.window:
            self._window_start, self._spent_requests, self._spent_complexity = now, 0, 0
        return self._window_start + self.quota.window

    def _charge(self, cost: int) -> bool:
        with self._lock:
            self._window()
            if (
                self._spent_requests >= self.quota.requests
                or self._spent_complexity + cost > self.quota.complexity
            ):
                return False
            self._spent_requests += 1
            self._spent_complexity += cost
            return True

    def _rate_limited(
        self, arrived: float, operation: str | None, status: int, outcome: str
    ) -> JSONResponse:
        injected = outcome != "over_quota"
        reset = time.time() + self.faults.reset_after if injected else None
        response = self._answer(
            arrived,
            operation,
            status,
            outcome,
            0,
            _error(
                "Rate limit exceeded",
                "RATELIMITED",
                429,
                "ratelimited",
                "Too many API requests. Please try again later.",
            ),
            exhausted_until=reset,
        )
        if status == 429:
            response.headers["Retry-After"] = f"{self.faults.reset_after:g}"
        return response

    def _answer(
        self,
        arrived: float,
        operation: str | None,
        status: int,
        outcome: str,
        cost: int,
        payload: dict[str, Any],
        exhausted_until: float | None = None,
    ) -> JSONResponse:
        # In arrival order, though a held request is answered after later ones.
        bisect.insort(self.log, Logged(arrived, operation, status, outcome, cost), key=_arrival)
        return JSONResponse(
            payload, status_code=status, headers=self._headers(cost, exhausted_until)
        )

    def _headers(self, cost: int, exhausted_until: float | None) -> dict[str, str]:
        with self._lock:
            end = self._window()
            requests_left = max(0, self.quota.requests - self._spent_requests)
            complexity_left = max(0, self.quota.complexity - self._spent_complexity)
        if exhausted_until is not None:  # an injected refusal describes its own budget
            requests_left, end = 0, exhausted_until
        reset_ms = str(int(end * 1000))
        return {
            "X-RateLimit-Requests-Limit": str(self.quota.requests),
            "X-RateLimit-Requests-Remaining": str(requests_left),
            "X-RateLimit-Requests-Reset": reset_ms,
            "X-RateLimit-Complexity-Limit": str(self.quota.complexity),
            "X-RateLimit-Complexity-Remaining": str(complexity_left),
            "X-RateLimit-Complexity-Reset": reset_ms,
            "X-Complexity": str(cost),
        }


def _arrival(entry: Logged) -> float:
    return entry.at


def _error(
    message: str,
    code: str,
    status: int,
    kind: str = "invalid input",
    presentable: str | None = None,
) -> dict[str, Any]:
    """A body carrying one error, in the shape Linear gives its errors."""
    return {
        "errors": [
            {
                "message": message,
                "extensions": {
                    "type": kind,
                    "code": code,
                    "statusCode": status,
                    "userError": status < 500,
                    "userPresentableMessage": presentable or message,
                },
            }
        ]
    }


def _validation_error(error: GraphQLError) -> dict[str, Any]:
    return _with_extensions(error, "GRAPHQL_VALIDATION_FAILED")


def _request_error(error: GraphQLError) -> dict[str, Any]:
    return _with_extensions(error, "BAD_USER_INPUT")


def _with_extensions(error: GraphQLError, code: str) -> dict[str, Any]:
    formatted = dict(error.formatted)
    formatted["extensions"] = {
        "type": "graphql error",
        "code": code,
        "statusCode": 400,
        "userError": True,
        "userPresentableMessage": error.message,
    }
    return formatted


def _execution_error(error: GraphQLError) -> dict[str, Any]:
    formatted = dict(error.formatted)
    if not formatted.get("extensions"):
        # An error the resolvers did not expect: Linear reports these as internal.
        formatted["extensions"] = _error("Internal error", "INTERNAL_ERROR", 500, "internal error")[
            "errors"
        ][0]["extensions"]
    return formatted
