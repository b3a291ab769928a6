"""A small GraphQL client for Linear on httpx: paced, retried, and strict about errors.

Every request goes through the shared `Pacer`. Transient trouble (HTTP 5xx, timeouts,
dropped connections) and rate limiting (HTTP 429, or any answer whose error carries
`extensions.code == "RATELIMITED"`, which Linear sends with HTTP 400) are retried up to
`max_attempts` times; anything else is a `TrackerError` at once. A mutation is resent only
when Linear surely did not apply it (refused for rate, or never reached), so a comment is
never posted twice. A 200 answer with GraphQL
`errors` is an error too, never partial data.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from integrations.base import TrackerError
from integrations.linear.complexity import estimate, points
from integrations.linear.documents import Document
from integrations.linear.pacing import Outcome, Pacer

RATE_LIMITED_CODE = "RATELIMITED"
# Failures that prove the request never reached Linear, so even a mutation may be resent.
NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
TOO_COMPLEX = "too complex"


class QueryTooComplex(TrackerError):
    """Linear refused a query as too complex; a smaller page may pass."""


@dataclass
class ClientStats:
    """What this client has spent: HTTP requests, complexity points, and setbacks."""

    requests: int = 0
    complexity: int = 0
    rate_limited: int = 0
    failures: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, complexity: int, outcome: Outcome) -> None:
        with self._lock:
            self.requests += 1
            self.complexity += complexity
            if outcome is Outcome.rate_limited:
                self.rate_limited += 1
            elif outcome is Outcome.failed:
                self.failures += 1


@dataclass(frozen=True)
class Result:
    """The `data` of a successful answer, and how many HTTP requests it took."""

    data: dict[str, Any]
    requests: int


class LinearClient:
    """Sends GraphQL documents to Linear with one API key."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_attempts: int = 6,
        max_wait: float = 3600.0,
        pacer: Pacer | None = None,
    ) -> None:
        if not api_key:
            raise ValueError("a Linear API key is required")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.url = url
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.pacer = pacer or Pacer()
        self.stats = ClientStats()
        # Personal API keys go bare in Authorization; OAuth tokens arrive as "Bearer …".
        self._http = httpx.Client(
            headers={"Authorization": api_key, "User-Agent": "ladder-linear-sync"},
            timeout=timeout,
        )

    def execute(self, document: Document, variables: Mapping[str, Any] | None = None) -> Result:
        """Run `document`; return its `data`, or raise `TrackerError`."""
        variables = dict(variables or {})
        cost = estimate(document.ast, variables)
        body = {"query": document.text, "variables": variables, "operationName": document.name}
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            self.pacer.acquire(cost)
            try:
                response = self._http.post(self.url, json=body)
            except httpx.TransportError as exc:  # timeouts and connection failures
                self._settle({}, Outcome.failed, cost)
                problem = f"Linear did not answer {document.name}: {exc!r}"
                if document.mutates and not isinstance(exc, NOT_SENT):
                    break  # it may have been applied: sending it again could apply it twice
                continue
            try:
                outcome, data, problem = _classify(response)
            except TrackerError:
                self._settle(response.headers, Outcome.ok, cost)  # answered; nothing to slow
                raise
            wait = self._settle(response.headers, outcome, cost)
            if data is not None:
                return Result(data, attempt)
            if document.mutates and outcome is Outcome.failed:
                break
            if wait > self.max_wait:
                raise TrackerError(
                    f"{problem}; Linear's budget resets in {wait:.0f} s, longer than the "
                    f"{self.max_wait:.0f} s this sync may wait",
                    retryable=True,
                    status=response.status_code,
                )
        raise TrackerError(f"{problem} (gave up after {attempt} attempts)", retryable=True)

    def _settle(self, headers: Mapping[str, str], outcome: Outcome, cost: float) -> float:
        """Tell the pacer and the stats how a request ended; return the wait before the next."""
        charged = _number(headers.get("x-complexity"))
        self.stats.record(points(cost) if charged is None else charged, outcome)
        return self.pacer.release(headers, outcome)

    def close(self) -> None:
        self._http.close()


def _classify(response: httpx.Response) -> tuple[Outcome, dict[str, Any] | None, str]:
    """Sort an answer into ok (with its data) / rate limited / transient failure; raise on
    the rest, naming Linear's own explanation."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    errors = payload.get("errors") if isinstance(payload, dict) else None
    errors = errors if isinstance(errors, list) else []
    codes = {_extensions(error).get("code") for error in errors}
    if response.status_code == 429 or RATE_LIMITED_CODE in codes:
        return Outcome.rate_limited, None, f"Linear rate-limited the request: {_describe(errors)}"
    if response.status_code >= 500:
        return Outcome.failed, None, f"Linear answered HTTP {response.status_code}"
    if errors:
        message = _describe(errors)
        error_class = QueryTooComplex if TOO_COMPLEX in message.lower() else TrackerError
        raise error_class(
            f"Linear refused the request (HTTP {response.status_code}): {message}",
            status=response.status_code,
        )
    if response.status_code != 200 or not isinstance(payload, dict):
        raise TrackerError(
            f"Linear answered HTTP {response.status_code}: {response.text[:200]!r}",
            status=response.status_code,
        )
    if not isinstance(payload.get("data"), dict):
        raise TrackerError("Linear answered without data or errors", status=200)
    return Outcome.ok, payload["data"], ""


def _describe(errors: list[Any]) -> str:
    if not errors:
        return "no details"
    first = errors[0] if isinstance(errors[0], dict) else {"message": str(errors[0])}
    extensions = _extensions(first)
    detail = extensions.get("userPresentableMessage") or first.get("message") or "no message"
    code = extensions.get("code")
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{detail}{f' [{code}]' if code else ''}{more}"


def _extensions(error: Any) -> dict[str, Any]:
    extensions = error.get("extensions") if isinstance(error, dict) else None
    return extensions if isinstance(extensions, dict) else {}


def _number(value: str | None) -> int | None:
    try:
        return int(float(value)) if value is not None else None
    except ValueError:
        return None
