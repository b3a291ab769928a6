"""HTTP to Jira through the `jira` library's session, with Ladder's own retry policy.

The library authenticates (basic auth for Cloud, a bearer personal access token for Data
Center) and sends; its built-in retries are switched off because they cover only 429/503,
wait twice the Retry-After, and hide how many requests were made. Here every attempt is
counted, 429 and 503 wait as long as `Retry-After` asks, 5xx, timeouts, dropped connections
and truncated bodies back off exponentially with jitter, and giving up raises `TrackerError`.
Each thread gets its own client (a `requests.Session` is not meant to be shared).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
from jira import JIRA, JIRAError

from integrations.base import TrackerError

log = logging.getLogger(__name__)
T = TypeVar("T")
_THROTTLED = {429, 503}
_NETWORK_ERRORS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard to try: `attempts` per call in all; backoff starts at `base_delay` seconds,
    doubles, is jittered down to half, and never exceeds `max_delay`. A `Retry-After` longer
    than `max_delay` is not waited out: the call fails at once, still retryable later."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0

    def backoff(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * 2 ** (failures - 1)) * random.uniform(0.5, 1)


class Meter:
    """A running count of HTTP requests, added to from any number of threads."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """The requests counted so far."""
        return self._count

    def add(self) -> None:
        """Count one request."""
        with self._lock:
            self._count += 1


class Tally:
    """Counts the HTTP requests made on behalf of one page or call.

    With a `meter`, every request counted here is counted there too: a total kept across
    many tallies (and threads), which nothing has to hand over.
    """

    def __init__(self, meter: Meter | None = None) -> None:
        self.count = 0
        self.meter = meter

    def add(self) -> None:
        """Count one request."""
        self.count += 1
        if self.meter is not None:
            self.meter.add()

    def take(self) -> int:
        """The requests counted since the last take."""
        count, self.count = self.count, 0
        return count


class _Retry(Exception):
    """One failed attempt that may succeed if repeated.

    `unsent` is true when Jira surely did not act on the request (it was throttled, or no
    connection was made), so even a write that is not idempotent may be repeated.
    """

    def __init__(
        self, reason: str, status: int | None, wait: float | None = None, *, unsent: bool = False
    ) -> None:
        super().__init__(reason)
        self.status = status
        self.wait = wait  # what Retry-After asked for, if anything
        self.unsent = unsent


class JiraHttp:
    """Authenticated, counted, retried requests to one Jira site."""

    def __init__(
        self,
        url: str,
        *,
        email: str | None = None,
        api_token: str | None = None,
        pat: str | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not url:
            raise ValueError("a Jira URL is required")
        if not pat and not (email and api_token):
            raise ValueError("Jira needs an email and API token (Cloud) or a personal access token")
        self.url = url.rstrip("/")
        self._auth: dict[str, Any] = (
            {"token_auth": pat} if pat else {"basic_auth": (email, api_token)}
        )
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self._local = threading.local()
        self._clients: list[JIRA] = []
        self._lock = threading.Lock()
        self._sent = Meter()

    @property
    def requests(self) -> int:
        """Every HTTP request made so far, retries included."""
        return self._sent.count

    def client(self) -> JIRA:
        """This thread's `jira.JIRA` client (created without a request)."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = JIRA(
                self.url,
                get_server_info=False,
                max_retries=0,
                timeout=self.timeout,
                **self._auth,
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every thread's connections."""
        with self._lock:
            for client in self._clients:
                client.close()
            self._clients.clear()
        self._local = threading.local()

    def json(
        self,
        tally: Tally,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
        missing_ok: bool = False,
    ) -> Any:
        """The decoded JSON answer to an idempotent request (`None` on 404 if `missing_ok`)."""
        url = f"{self.url}{path}"
        data = None if body is None else json.dumps(body)

        def attempt() -> Any:
            try:
                response = self.client()._session.request(method, url, params=params, data=data)
            except JIRAError as exc:
                if missing_ok and exc.status_code == 404:
                    return None
                raise
            return response.json() if response.content else None

        return self.call(tally, f"{method} {path}", attempt)

    def call(
        self, tally: Tally, what: str, attempt: Callable[[], T], *, idempotent: bool = True
    ) -> T:
        """Run `attempt` (one HTTP request) until it succeeds or the policy gives up.

        A write that is not idempotent is repeated only when Jira surely did not act on it
        (429, or a connect timeout): repeating it after a read timeout could post it twice.
        """
        failures = 0
        while True:
            tally.add()
            self._sent.add()
            try:
                return attempt()
            except _Retry as exc:
                failure = exc
            except JIRAError as exc:
                failure = self._classify(what, exc)
            except ValueError:  # a body cut short (or otherwise not JSON)
                failure = _Retry(f"{what} answered a body that is not JSON", 200)
            except requests.exceptions.ConnectTimeout as exc:
                failure = _Retry(f"{what}: could not connect ({exc})", None, unsent=True)
            except _NETWORK_ERRORS as exc:
                failure = _Retry(f"{what}: {type(exc).__name__}: {exc}", None)
            if not idempotent and not failure.unsent:
                raise TrackerError(
                    f"{failure}; it may have been applied, so it is not repeated",
                    retryable=False,
                    status=failure.status,
                )
            failures += 1
            self._wait(what, failure, failures)

    def _wait(self, what: str, failure: _Retry, failures: int) -> None:
        policy = self.retry
        if failures >= policy.attempts:
            raise TrackerError(
                f"{what} failed {failures} times; giving up: {failure}",
                retryable=True,
                status=failure.status,
            )
        if failure.wait is not None and failure.wait > policy.max_delay:
            raise TrackerError(
                f"{what}: Jira asked to wait {failure.wait:g} s (Retry-After), longer than the "
                f"{policy.max_delay:g} s this sync waits",
                retryable=True,
                status=failure.status,
            )
        # Retrying before Retry-After only earns a longer wait; jitter spreads the threads.
        delay = failure.wait * random.uniform(1, 1.1) if failure.wait else policy.backoff(failures)
        log.warning("%s; retry %d/%d in %.2f s", failure, failures, policy.attempts - 1, delay)
        time.sleep(delay)

    @staticmethod
    def _classify(what: str, exc: JIRAError) -> _Retry:
        status = exc.status_code
        detail = exc.text or (exc.response.text[:200] if exc.response is not None else "")
        if status in _THROTTLED or (status is not None and status >= 500):
            retry_after = (
                exc.response.headers.get("Retry-After") if exc.response is not None else None
            )
            wait = _seconds(retry_after)
            return _Retry(f"{what} answered {status}", status, wait, unsent=status == 429)
        if status in (401, 403):
            raise TrackerError(
                f"{what}: Jira refused the credentials ({status}): {detail}", status=status
            ) from exc
        raise TrackerError(f"{what}: Jira answered {status}: {detail}", status=status) from exc


def _seconds(retry_after: str | None) -> float | None:
    if retry_after is None:
        return None
    try:
        return max(0.0, float(retry_after))
    except ValueError:
        return None  # an HTTP date: fall back to exponential backoff
