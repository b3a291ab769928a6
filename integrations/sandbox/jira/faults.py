"""Fault injection for the sandbox Jira: what a flaky or throttling site does to a client."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal["rate_limit", "unavailable", "server_error", "timeout", "truncated"]
FAULT_KINDS: tuple[FaultKind, ...] = (
    "rate_limit",
    "unavailable",
    "server_error",
    "timeout",
    "truncated",
)


@dataclass
class _Planned:
    kind: FaultKind
    remaining: int
    path: str


@dataclass
class Faults:
    """What goes wrong, per request: set attributes or plan faults while the server runs.

    `latency` delays every request. `inject(kind, times, path=...)` makes the next `times`
    requests whose path contains `path` fail that way; `rate(kind, p)` makes each request
    fail with probability `p` (seeded, so runs repeat). Kinds: `rate_limit` (429 with
    `Retry-After: retry_after`), `unavailable` (503 with `Retry-After`), `server_error`
    (500), `timeout` (the answer comes only after `hang_seconds`), `truncated` (200 whose
    body stops halfway).
    """

    latency: float = 0.0
    retry_after: int = 1
    hang_seconds: float = 5.0
    seed: int = 0
    _planned: list[_Planned] = field(default_factory=list)
    _rates: dict[FaultKind, tuple[float, str]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def inject(self, kind: FaultKind, times: int = 1, *, path: str = "") -> None:
        """Fail the next `times` requests whose path contains `path`."""
        if kind not in FAULT_KINDS or times < 1:
            raise ValueError(f"need a fault in {FAULT_KINDS} and times >= 1")
        with self._lock:
            self._planned.append(_Planned(kind, times, path))

    def rate(self, kind: FaultKind, probability: float, *, path: str = "") -> None:
        """Fail each matching request with `probability` (0 turns the fault off)."""
        if kind not in FAULT_KINDS or not 0 <= probability <= 1:
            raise ValueError(f"need a fault in {FAULT_KINDS} and a probability in [0, 1]")
        with self._lock:
            self._rates[kind] = (probability, path)

    def clear(self) -> None:
        """No more faults and no latency."""
        with self._lock:
            self._planned.clear()
            self._rates.clear()
            self.latency = 0.0

    def draw(self, path: str) -> FaultKind | None:
        """The fault the request to `path` suffers, if any (planned ones first)."""
        with self._lock:
            for planned in self._planned:
                if planned.path in path:
                    planned.remaining -= 1
                    if not planned.remaining:
                        self._planned.remove(planned)
                    return planned.kind
            for kind, (probability, where) in self._rates.items():
                if where in path and self._rng.random() < probability:
                    return kind
        return None
