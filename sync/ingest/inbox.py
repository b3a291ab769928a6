"""The webhook inbox: verified deliveries are stored first, then processed, retried or parked.

Accepting is one idempotent INSERT, so a tracker's retries and concurrent duplicates are stored
once and the endpoint can answer 202 at once. Processing claims a batch of due events, fetches
what the payloads lack *outside* any transaction, then brings the items up to date through the
same store helpers as a sync (`upsert_items` never overwrites newer data) and re-matches them
and their descendants in one transaction. An event whose processing fails is retried with
exponential backoff and parked after too many attempts; a process that dies mid-way loses
nothing, because a claim is only a lease: once it expires, the event is due again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Insert, Table, select, tuple_, update
from sqlalchemy.orm import Session, sessionmaker

from integrations.base import NormalisedItem, TrackerAdapter, WebhookEvent
from sync.errors import Conflict, Invalid, NotFound
from sync.matching.rematch import MatchRules, rematch_items
from sync.store.db import retry_deadlocks, transaction
from sync.store.items import dialect_insert, mark_deleted, upsert_items
from sync.store.models import WebhookEvent as InboxRow
from sync.store.models import utcnow
from sync.store.pagination import paginate

log = logging.getLogger("ladder.inbox")

EVENTS: Table = InboxRow.__table__  # type: ignore[assignment]
STATUSES = ("received", "processed", "failed", "parked", "ignored")
DUE = ("received", "failed")
# Headers never worth keeping: they carry credentials, not facts about the event.
SECRET_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})

Clock = Callable[[], datetime]
_INSERTS: dict[str, Insert] = {}


@dataclass(frozen=True)
class RetryPolicy:
    """How the inbox retries: `base_seconds` doubling per attempt up to `max_seconds`, parked
    after `max_attempts`. A claim hides an event from other workers for `lease_seconds`,
    which must outlast the slowest processing (a re-fetch with the tracker's own retries)."""

    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_attempts: int = 8
    lease_seconds: float = 300.0

    def delay(self, attempts: int) -> timedelta:
        """The wait before the next try, after `attempts` failed ones."""
        seconds = self.base_seconds * 2 ** max(attempts - 1, 0)
        return timedelta(seconds=min(seconds, self.max_seconds))


@dataclass(frozen=True)
class Accepted:
    """The inbox row a delivery landed in; `duplicate` when it was stored before."""

    id: int
    status: str
    duplicate: bool


@dataclass
class DrainReport:
    """What one drain did, by event count."""

    processed: int = 0
    failed: int = 0
    parked: int = 0
    items_changed: int = 0
    full: bool = False  # the last batch claimed all it could: more may be due

    def add(self, other: DrainReport) -> None:
        self.processed += other.processed
        self.failed += other.failed
        self.parked += other.parked
        self.items_changed += other.items_changed


@dataclass(frozen=True)
class Claimed:
    """An event claimed for processing, with what is needed to process it."""

    id: int
    source: str
    headers: dict[str, str]
    body: bytes
    attempts: int


@dataclass
class _Changes:
    """The store changes a group of events asks for."""

    items: list[NormalisedItem] = field(default_factory=list)
    deletions: dict[str, set[str]] = field(default_factory=dict)

    def extend(self, other: _Changes) -> None:
        self.items.extend(other.items)
        for source, ids in other.deletions.items():
            self.deletions.setdefault(source, set()).update(ids)


@dataclass(frozen=True)
class Delivery:
    """A verified webhook delivery, as the inbox stores it."""

    event: WebhookEvent
    headers: Mapping[str, str]
    body: bytes


def accept(session: Session, delivery: Delivery, now: datetime | None = None) -> Accepted:
    """Store one delivery unless (source, delivery id) is already there (see `accept_many`)."""
    return accept_many(session, [delivery], now)[0]


def accept_many(
    session: Session, deliveries: Sequence[Delivery], now: datetime | None = None
) -> list[Accepted]:
    """Store verified deliveries, each unless its (source, delivery id) is already there.

    One multi-row `INSERT … ON CONFLICT DO NOTHING`: duplicates, concurrent or in the same
    batch, land once. Events that need no work are stored as `ignored`, so they too are
    answered once. Returns, in order, where each delivery landed.
    """
    now = now or utcnow()
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for delivery in deliveries:
        key = (delivery.event.source, delivery.event.delivery_id)
        rows.setdefault(key, _row(delivery, now))
    inserted = {
        (row.source, row.delivery_id): row.id
        for row in session.execute(_insert_events(session), list(rows.values()))
    }
    existing = {}
    if len(inserted) < len(rows):
        stored_before = [key for key in rows if key not in inserted]
        existing = {
            (row.source, row.delivery_id): Accepted(row.id, row.status, duplicate=True)
            for row in session.execute(
                select(EVENTS.c.id, EVENTS.c.source, EVENTS.c.delivery_id, EVENTS.c.status).where(
                    tuple_(EVENTS.c.source, EVENTS.c.delivery_id).in_(stored_before)
                )
            )
        }
    answers: list[Accepted] = []
    answered: set[tuple[str, str]] = set()
    for delivery in deliveries:
        key = (delivery.event.source, delivery.event.delivery_id)
        if key in inserted:  # stored now; a second copy in the same batch is a duplicate
            status = rows[key]["status"]
            answers.append(Accepted(inserted[key], status, duplicate=key in answered))
        else:
            answers.append(existing[key])
        answered.add(key)
    return answers


def _row(delivery: Delivery, now: datetime) -> dict[str, Any]:
    event = delivery.event
    status = "ignored" if event.kind == "ignored" else "received"
    headers = delivery.headers
    return {
        "source": event.source,
        "delivery_id": event.delivery_id,
        "event_type": event.event_type[:100],
        "kind": event.kind,
        "external_id": event.external_id,
        "received_at": now,
        "headers": {k.lower(): v for k, v in headers.items() if k.lower() not in SECRET_HEADERS},
        "body": delivery.body,
        "status": status,
        "attempts": 0,
        "next_attempt_at": now,
        "processed_at": now if status == "ignored" else None,
    }


def _insert_events(session: Session) -> Insert:
    """The idempotent INSERT, built once per backend: building it costs more than running it."""
    dialect = session.get_bind().dialect.name
    if dialect not in _INSERTS:
        _INSERTS[dialect] = (
            dialect_insert(session, EVENTS)
            .on_conflict_do_nothing(index_elements=[EVENTS.c.source, EVENTS.c.delivery_id])
            .returning(EVENTS.c.id, EVENTS.c.source, EVENTS.c.delivery_id)
        )
    return _INSERTS[dialect]


def claim(session: Session, limit: int, policy: RetryPolicy, now: datetime) -> list[Claimed]:
    """Take up to `limit` due events, oldest first, hiding them for the policy's lease.

    On PostgreSQL `FOR UPDATE SKIP LOCKED` lets workers of several replicas claim disjoint
    batches without waiting on each other; SQLite has a single writer anyway.
    """
    due = (
        select(EVENTS.c.id)
        .where(EVENTS.c.status.in_(DUE), EVENTS.c.next_attempt_at <= now)
        .order_by(EVENTS.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(EVENTS)
        .where(
            EVENTS.c.id.in_(due.scalar_subquery()),
            EVENTS.c.status.in_(DUE),
            EVENTS.c.next_attempt_at <= now,
        )
        .values(
            attempts=EVENTS.c.attempts + 1,
            next_attempt_at=now + timedelta(seconds=policy.lease_seconds),
        )
        .returning(EVENTS.c.id, EVENTS.c.source, EVENTS.c.headers, EVENTS.c.body, EVENTS.c.attempts)
    ).all()
    return sorted(
        (Claimed(r.id, r.source, r.headers, bytes(r.body), r.attempts) for r in rows),
        key=lambda claimed: claimed.id,
    )


def drain(
    sessions: sessionmaker[Session],
    adapters: Mapping[str, TrackerAdapter],
    rules: MatchRules,
    *,
    batch_size: int = 200,
    policy: RetryPolicy | None = None,
    clock: Clock = utcnow,
    max_batches: int | None = None,
) -> DrainReport:
    """Process due events batch by batch until none is due (or after `max_batches`); the
    job boundary of the inbox. `report.full` says whether the last batch was full."""
    policy = policy or RetryPolicy()
    report = DrainReport()
    batches = 0
    while max_batches is None or batches < max_batches:
        with transaction(sessions) as session:
            batch = claim(session, batch_size, policy, clock())
        report.full = len(batch) == batch_size
        if not batch:
            break
        report.add(process(sessions, batch, adapters, rules, policy=policy, clock=clock))
        batches += 1
    return report


def process(
    sessions: sessionmaker[Session],
    batch: Sequence[Claimed],
    adapters: Mapping[str, TrackerAdapter],
    rules: MatchRules,
    *,
    policy: RetryPolicy | None = None,
    clock: Clock = utcnow,
) -> DrainReport:
    """Bring the items of claimed events up to date, re-match them, and settle each event.

    Tracker calls (re-fetches) run before the write transaction opens. The batch is applied
    in one transaction; if that fails, each event is applied on its own so that one bad
    event cannot hold back the others.
    """
    policy = policy or RetryPolicy()
    report = DrainReport()
    changes: dict[int, _Changes] = {}
    failures: dict[int, str] = {}
    for event in batch:
        try:
            changes[event.id] = _changes_for(event, adapters)
        except Exception as exc:  # any failure is recorded and retried
            failures[event.id] = _describe(exc)
    try:
        report.items_changed = _commit(sessions, changes, rules, clock)
        report.processed = len(changes)
    except Exception as exc:
        log.warning("inbox batch failed, applying events one by one", extra={"error": str(exc)})
        for event_id, change in changes.items():
            try:
                report.items_changed += _commit(sessions, {event_id: change}, rules, clock)
                report.processed += 1
            except Exception as single:
                failures[event_id] = _describe(single)
    if failures:
        attempts = {event.id: event.attempts for event in batch}
        with transaction(sessions) as session:
            for event_id, error in failures.items():
                parked = _settle_failed(
                    session, event_id, attempts[event_id], error, policy, clock()
                )
                report.parked += parked
                report.failed += not parked
    return report


def _changes_for(event: Claimed, adapters: Mapping[str, TrackerAdapter]) -> _Changes:
    """What one event asks of the store; re-fetches happen here, outside any transaction."""
    adapter = adapters.get(event.source)
    if adapter is None:
        raise RuntimeError(f"{event.source} is not configured, so its events cannot be processed")
    parsed = adapter.parse_webhook(event.headers, event.body)
    changes = _Changes()
    if parsed.kind == "upsert":
        changes.items.append(adapter.normalise(parsed.payload))
    elif parsed.kind == "delete" and parsed.external_id:
        changes.deletions[event.source] = {parsed.external_id}
    elif parsed.kind == "refresh":
        for external_id in filter(None, (parsed.external_id, *parsed.related_ids)):
            raw = adapter.get_item(external_id)
            if raw is None:
                changes.deletions.setdefault(event.source, set()).add(external_id)
            else:
                changes.items.append(adapter.normalise(raw))
    return changes


def _commit(
    sessions: sessionmaker[Session],
    changes: Mapping[int, _Changes],
    rules: MatchRules,
    clock: Clock,
) -> int:
    """Apply the events' changes and mark them processed, in one transaction (run again if
    it lost a deadlock to another writer); how many items changed."""

    def apply_and_settle() -> int:
        with transaction(sessions) as session:
            changed = _apply(session, list(changes.values()), rules)
            _settle_processed(session, list(changes), clock())
            return changed

    return retry_deadlocks(apply_and_settle)


def _apply(session: Session, changes: Sequence[_Changes], rules: MatchRules) -> int:
    """Upsert, mark deletions, re-match what changed; return how many items changed."""
    merged = _Changes()
    for change in changes:
        merged.extend(change)
    changed = set(upsert_items(session, merged.items)) if merged.items else set()
    for source, external_ids in merged.deletions.items():
        changed.update(mark_deleted(session, source, external_ids))
    if changed:
        rematch_items(session, changed, rules)
    return len(changed)


def _settle_processed(session: Session, event_ids: Sequence[int], now: datetime) -> None:
    if event_ids:
        session.execute(
            update(EVENTS)
            .where(EVENTS.c.id.in_(event_ids))
            .values(status="processed", processed_at=now, last_error=None)
        )


def _settle_failed(
    session: Session, event_id: int, attempts: int, error: str, policy: RetryPolicy, now: datetime
) -> bool:
    """Schedule a retry, or park the event once it has used up its attempts."""
    parked = attempts >= policy.max_attempts
    session.execute(
        update(EVENTS)
        .where(EVENTS.c.id == event_id)
        .values(
            status="parked" if parked else "failed",
            last_error=error,
            next_attempt_at=now + policy.delay(attempts),
        )
    )
    log.warning(
        "webhook event parked" if parked else "webhook event failed, will retry",
        extra={"event_id": event_id, "attempts": attempts, "error": error},
    )
    return parked


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


# --- Reading and retrying, for the API -----------------------------------------------------


def list_events(
    session: Session, status: str | None, limit: int, cursor: str | None
) -> tuple[Sequence[InboxRow], str | None]:
    """A page of inbox events, oldest first, optionally of one status."""
    stmt = select(InboxRow)
    if status is not None:
        if status not in STATUSES:
            raise Invalid(f"unknown status {status!r}: use one of {', '.join(STATUSES)}")
        stmt = stmt.where(InboxRow.status == status)
    return paginate(session, stmt, InboxRow.id, limit, cursor)


def retry(session: Session, event_id: int, now: datetime | None = None) -> InboxRow:
    """Make a failed or parked event due again, with a fresh set of attempts."""
    row = session.get(InboxRow, event_id)
    if row is None:
        raise NotFound(f"no webhook event {event_id}")
    if row.status not in {"failed", "parked"}:
        raise Conflict(
            f"webhook event {event_id} is {row.status}; only failed or parked ones retry"
        )
    row.status = "received"
    row.attempts = 0
    row.next_attempt_at = now or utcnow()
    session.flush()
    return row
