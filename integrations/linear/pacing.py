"""Pace requests to Linear so neither of its hourly budgets runs out.

Linear meters every API key twice: requests per hour and complexity points per hour, and
reports both on each answer in `X-RateLimit-Requests-*` and `X-RateLimit-Complexity-*`
headers (limit, remaining, reset as epoch milliseconds). The pacer reads them and

* lets requests through at full speed while a budget is comfortable;
* once less than `low_water` of a budget is left, spreads what remains evenly over the
  time until it resets, so the budget lasts instead of running dry;
* when the next request would dip into the `reserve` (kept for webhooks and comments that
  share the key), waits for the reset;
* after a rate-limit answer or a failure, holds every thread until the reset (or an
  exponential backoff when no reset is known), then lets exactly one request through; the
  others follow only once it has succeeded. There is never a burst after a refusal.

One pacer is shared by all threads using one API key.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

# Of the request budget, kept back for webhook refreshes and comments that share the key.
RESERVE_FRACTION = 0.02


class Outcome(Enum):
    """How a request ended, as far as pacing is concerned."""

    ok = "ok"
    rate_limited = "rate_limited"
    failed = "failed"  # a 5xx, a timeout, a dropped connection


@dataclass
class Budget:
    """One of Linear's budgets, as its latest answer described it."""

    name: str
    limit: float | None = None
    remaining: float | None = None
    reset_at: float | None = None  # epoch seconds

    def update(self, headers: Mapping[str, str], prefix: str) -> None:
        limit = _number(headers.get(f"{prefix}-limit"))
        remaining = _number(headers.get(f"{prefix}-remaining"))
        reset = _number(headers.get(f"{prefix}-reset"))
        if limit is not None:
            self.limit = limit
        if remaining is not None:
            self.remaining = remaining
        if reset is not None:
            # Linear sends epoch milliseconds; accept seconds from anything that does not.
            self.reset_at = reset / 1000 if reset > 10**11 else reset

    def exhausted(self, now: float) -> bool:
        return self.remaining is not None and self.remaining <= 0 and self._open(now)

    def delay(self, cost: float, now: float, since_last: float, low_water: float) -> float:
        """How long to wait before spending `cost` of this budget (0 when free to go)."""
        if self.remaining is None or self.limit is None or not self._open(now):
            return 0.0
        until_reset = self.reset_at - now  # type: ignore[operator]
        reserve = max(1.0, self.limit * RESERVE_FRACTION) if self.name == "requests" else 0.0
        spare = self.remaining - cost - reserve
        if spare < 0:
            return until_reset
        if self.remaining >= low_water * self.limit:
            return 0.0
        # Spread what is left: one request every `interval`, reaching the reset as it ends.
        interval = until_reset * cost / max(self.remaining - reserve, cost)
        return max(0.0, interval - since_last)

    def _open(self, now: float) -> bool:
        """Whether the window this budget describes is still running."""
        return self.reset_at is not None and self.reset_at > now


class Pacer:
    """Decides when the next request to Linear may start; thread-safe."""

    def __init__(
        self,
        *,
        low_water: float = 0.1,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
    ) -> None:
        self.low_water = low_water
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.requests = Budget("requests")
        self.complexity = Budget("complexity")
        self._condition = threading.Condition()
        self._not_before = 0.0
        self._last_start = 0.0
        self._in_flight = 0
        self._probing = False
        self._setbacks = 0

    def acquire(self, cost: float) -> None:
        """Block until a request costing `cost` complexity points may start."""
        with self._condition:
            while True:
                now = time.time()
                if now < self._not_before:
                    self._condition.wait(self._not_before - now)
                    continue
                if self._probing and self._in_flight:
                    self._condition.wait()
                    continue
                since_last = now - self._last_start
                wait = max(
                    self.requests.delay(1, now, since_last, self.low_water),
                    self.complexity.delay(cost, now, since_last, self.low_water),
                )
                if wait > 0:
                    self._not_before = now + wait
                    continue
                self._in_flight += 1
                self._last_start = now
                # Count the spend now, so that other threads see it before the answer does.
                if self.requests.remaining is not None:
                    self.requests.remaining -= 1
                if self.complexity.remaining is not None:
                    self.complexity.remaining -= cost
                return

    def release(self, headers: Mapping[str, str], outcome: Outcome) -> float:
        """Record how a request ended; return how long until the next may start."""
        lowered = {name.lower(): value for name, value in headers.items()}
        with self._condition:
            self._in_flight -= 1
            self.requests.update(lowered, "x-ratelimit-requests")
            self.complexity.update(lowered, "x-ratelimit-complexity")
            now = time.time()
            if outcome is Outcome.ok:
                self._setbacks = 0
                self._probing = False
            else:
                self._setbacks += 1
                self._probing = True
                self._not_before = max(self._not_before, self._resume_at(lowered, outcome, now))
            self._condition.notify_all()
            return max(0.0, self._not_before - now)

    def _resume_at(self, headers: Mapping[str, str], outcome: Outcome, now: float) -> float:
        backoff = min(self.backoff_cap, self.backoff_base * 2 ** (self._setbacks - 1))
        resume = now + backoff
        if outcome is Outcome.rate_limited:
            retry_after = _number(headers.get("retry-after"))
            if retry_after is not None:
                resume = max(resume, now + retry_after)
            for budget in (self.requests, self.complexity):
                if budget.exhausted(now):
                    resume = max(resume, budget.reset_at)  # type: ignore[arg-type]
        return resume


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
