"""The sync engine: bring a tracker's items into the store, page by page.

A run is recorded in `sync_runs` from its first moment, so a crash leaves a trace. Pages are
streamed: fetched (concurrently, one thread per partition, for a full run), normalised,
upserted and re-matched in batches that are committed one by one (a full run, which rewrites
nearly everything, re-matches all items once at its end instead, and if it stops before, the
next run does). Memory therefore stays flat however many items there are, and a killed
process keeps what it wrote; upserts are idempotent, so running again converges. Only a run
that finishes advances the source's cursor, to the time the run started; the next incremental
run asks for what changed since then, minus an overlap for the tracker's coarse `updated`
resolution.

Modes: `full` fetches the whole scope and marks items it did not see as deleted;
`incremental` fetches what changed since the cursor; `census` lists only ids (cheap pages)
and marks the items that are no longer listed as deleted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Literal, Protocol, get_args, runtime_checkable

from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from integrations.base import NormalisedItem, Page, TrackerAdapter, TrackerError
from sync.errors import Conflict, Invalid
from sync.matching.rematch import MatchRules, rematch_items
from sync.reports.snapshots import take_snapshot
from sync.store.db import retry_deadlocks, transaction
from sync.store.items import (
    forget_seen,
    mark_missing_deleted,
    record_seen,
    resolve_parents,
    upsert_items,
)
from sync.store.leases import exclusive
from sync.store.models import SyncCursor, SyncRun, utcnow

log = logging.getLogger("ladder.sync")

Mode = Literal["full", "incremental", "census"]
MODES: tuple[str, ...] = get_args(Mode)
DEFAULT_OVERLAP = timedelta(minutes=2)
DEFAULT_CONCURRENCY = 8
# Items per upsert and commit: big enough for bulk SQL to pay off, small enough that a
# killed process loses little and memory stays low.
WRITE_BATCH = 1000
# How many unmappable items a failed run names in its error.
_NAMED_FAILURES = 5


class SyncAlreadyRunning(Conflict):
    """Another thread or process is syncing this source right now."""


@dataclass(frozen=True, slots=True)
class SyncProgress:
    """How far a running sync has come; passed to the `progress` callback after each batch."""

    run_id: int
    source: str
    mode: str
    items_seen: int
    items_upserted: int
    requests: int
    elapsed_seconds: float


@dataclass(frozen=True, slots=True)
class SyncRunSummary:
    """What a finished run did, as recorded in `sync_runs`."""

    run_id: int
    source: str
    mode: str
    status: str
    items_seen: int
    items_upserted: int
    items_deleted: int
    requests: int
    error: str | None
    started_at: datetime
    finished_at: datetime | None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @classmethod
    def of(cls, run: SyncRun) -> SyncRunSummary:
        return cls(
            run_id=run.id,
            source=run.source,
            mode=run.mode,
            status=run.status,
            items_seen=run.items_seen,
            items_upserted=run.items_upserted,
            items_deleted=run.items_deleted,
            requests=run.requests,
            error=run.error,
            started_at=run.started_at,
            finished_at=run.finished_at,
        )


class _Unmapped(Exception):
    """Some raw items could not be normalised; the others were stored."""


@runtime_checkable
class MetersListings(Protocol):
    """An adapter that counts the HTTP requests of its own listings (`partitions`,
    `iter_pages`, `iter_ids`), retries included, as the Jira adapter does.

    Pages report what they cost, but some requests reach no page a run stores: planning the
    partitions when that fails, the attempts of a listing that fails, the pages of other
    partitions dropped when a run stops. A run of such an adapter is measured by the growth
    of its count instead, which also leaves out what the adapter did before the run.
    """

    @property
    def listing_requests(self) -> int:
        """The requests made so far by the adapter's listings."""
        ...


def run_sync(
    sessions: sessionmaker[Session],
    adapter: TrackerAdapter,
    mode: Mode = "full",
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    overlap: timedelta = DEFAULT_OVERLAP,
    rules: MatchRules | None = None,
    progress: Callable[[SyncProgress], None] | None = None,
    tz: tzinfo = UTC,
) -> SyncRunSummary:
    """Sync `adapter`'s source in `mode` and return the recorded run.

    A run that fails returns with status `failed` and its error; it never raises for a
    tracker or mapping problem. Raises `SyncAlreadyRunning` when the source is being synced
    elsewhere. An incremental run of a source that has no cursor yet runs as a full one.
    A successful run ends with a snapshot of the effort roll-up (days begin in `tz`).
    """
    started = start_run(sessions, adapter.source, mode)
    return started.execute(
        adapter, concurrency=concurrency, overlap=overlap, rules=rules, progress=progress, tz=tz
    )


def start_run(sessions: sessionmaker[Session], source: str, mode: Mode) -> StartedRun:
    """Take the source's lock and open its run, so a caller can report the run id at once.

    Call `execute` on the result (from any thread) to do the work and release the lock.
    """
    if mode not in MODES:
        raise Invalid(f"unknown sync mode {mode!r}: use one of {', '.join(MODES)}")
    engine: Engine = sessions.kw["bind"]
    stack = ExitStack()
    if not stack.enter_context(exclusive(engine, f"sync:{source}")):
        raise SyncAlreadyRunning(f"a sync of {source} is already running")
    try:
        with transaction(sessions) as session:
            _close_abandoned_runs(session, source)
            cursor = session.scalar(select(SyncCursor.cursor).where(SyncCursor.source == source))
            if mode == "incremental" and cursor is None:
                mode = "full"
            run = SyncRun(source=source, mode=mode, status="running", started_at=utcnow())
            session.add(run)
            session.flush()
            started = StartedRun(sessions, run.id, source, mode, run.started_at, cursor, stack)
    except BaseException:
        stack.close()
        raise
    log.info("sync started", extra={"run_id": run.id, "source": source, "mode": mode})
    return started


def _close_abandoned_runs(session: Session, source: str) -> None:
    """Runs still marked running while we hold the lock belong to a process that died."""
    abandoned = session.scalars(
        select(SyncRun.id).where(SyncRun.source == source, SyncRun.status == "running")
    ).all()
    if abandoned:
        session.execute(
            update(SyncRun)
            .where(SyncRun.id.in_(abandoned))
            .values(
                status="failed",
                finished_at=utcnow(),
                error="abandoned: the process running it stopped before it finished",
            )
        )
        forget_seen(session, abandoned)


class StartedRun:
    """An open run that holds its source's lock until `execute` ends."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        run_id: int,
        source: str,
        mode: Mode,
        started_at: datetime,
        cursor: datetime | None,
        lock: ExitStack,
    ) -> None:
        self.sessions = sessions
        self.run_id = run_id
        self.source = source
        self.mode = mode
        self.started_at = started_at
        self._cursor = cursor
        self._lock = lock
        self._seen = 0
        self._upserted = 0
        self._paged_requests = 0  # what the pages reported
        self._meter: MetersListings | None = None
        self._metered_from = 0
        self._clock = time.monotonic()

    def execute(
        self,
        adapter: TrackerAdapter,
        *,
        concurrency: int = DEFAULT_CONCURRENCY,
        overlap: timedelta = DEFAULT_OVERLAP,
        rules: MatchRules | None = None,
        progress: Callable[[SyncProgress], None] | None = None,
        tz: tzinfo = UTC,
    ) -> SyncRunSummary:
        """Do the run, record how it ended, release the lock, and return the summary."""
        rules = rules or MatchRules()
        if isinstance(adapter, MetersListings):
            self._meter, self._metered_from = adapter, adapter.listing_requests
        with self._lock:
            try:
                deleted = self._work(adapter, concurrency, overlap, rules, progress)
            except (TrackerError, _Unmapped) as exc:  # expected: said in the run's error
                return self._finish("failed", error=_describe(exc))
            except Exception as exc:
                log.exception("sync failed", extra={"run_id": self.run_id})
                return self._finish("failed", error=_describe(exc))
            except BaseException:
                self._finish("failed", error="interrupted")
                raise
            summary = self._finish("success", deleted=deleted)
        _snapshot(self.sessions, tz)
        return summary

    def abandon(self) -> None:
        """Give up a run that will not be executed: record it failed and release the lock."""
        with self._lock:
            self._finish("failed", error="not started")

    # --- the work --------------------------------------------------------------------------

    def _work(
        self,
        adapter: TrackerAdapter,
        concurrency: int,
        overlap: timedelta,
        rules: MatchRules,
        progress: Callable[[SyncProgress], None] | None,
    ) -> int:
        if self.mode == "census":
            return self._census(adapter, rules, progress)
        if self.mode == "incremental":
            # One cursor: a few changes fit in a page or two, fewer requests than partitions.
            assert self._cursor is not None
            pages = _fetch(adapter, self._cursor - overlap, [None], concurrency)
        else:
            pages = _fetch(adapter, None, adapter.partitions(), concurrency)
        with closing(pages):
            self._store(adapter, pages, rules, progress)
        with transaction(self.sessions) as session:
            # Children that arrived before the parent they name by key only.
            resolved = resolve_parents(session, source=self.source)
            if self.mode == "full":
                deleted = mark_missing_deleted(
                    session, self.source, not_synced_since=self.started_at
                )
                # Nearly every item was written: one pass over all of them costs a fraction
                # of re-matching batch by batch, and settles inheritance across batches.
                rematch_items(session, None, rules)
                return len(deleted)
            if _full_rematch_owed(session, self.source, self.run_id):
                rematch_items(session, None, rules)
            else:
                _rematch(session, resolved, rules)
            return 0

    def _store(
        self,
        adapter: TrackerAdapter,
        pages: Iterator[Page],
        rules: MatchRules,
        progress: Callable[[SyncProgress], None] | None,
    ) -> None:
        pending: list[NormalisedItem] = []
        unmapped: list[str] = []
        try:
            for page in pages:
                self._paged_requests += page.requests
                self._seen += len(page.items)
                for raw in page.items:
                    try:
                        pending.append(adapter.normalise(raw))
                    except Exception as exc:
                        log.warning("unmappable item", extra={"item": raw.get("id"), "error": exc})
                        unmapped.append(str(raw.get("id", "?")))
                if len(pending) >= WRITE_BATCH:
                    batch, pending = pending, []
                    self._write(batch, rules, progress)
        except Exception:
            # Keep what was fetched before the tracker failed: the next run starts from it.
            if pending:
                self._write(pending, rules, progress)
            raise
        self._write(pending, rules, progress)
        if unmapped:
            # Partitions arrive in any order: sorted, the message is the same run after run.
            unmapped.sort(key=lambda external_id: (len(external_id), external_id))
            named = ", ".join(unmapped[:_NAMED_FAILURES])
            rest = len(unmapped) - _NAMED_FAILURES
            more = f" and {rest} more" if rest > 0 else ""
            raise _Unmapped(f"{len(unmapped)} items could not be mapped (ids {named}{more})")

    def _write(
        self,
        batch: Sequence[NormalisedItem],
        rules: MatchRules,
        progress: Callable[[SyncProgress], None] | None,
    ) -> None:
        """Upsert one batch (re-matched here, or all at the end of a full run), with the
        run's counters, in one transaction."""

        def write() -> int:
            with transaction(self.sessions) as session:
                changed = upsert_items(session, batch)
                if self.mode != "full":
                    _rematch(session, changed, rules)
                self._save_counters(session, upserted_now=len(changed))
            return len(changed)

        # A webhook batch may re-match the same items at once (see `retry_deadlocks`).
        self._upserted += retry_deadlocks(write)
        self._report(progress)

    def _census(
        self,
        adapter: TrackerAdapter,
        rules: MatchRules,
        progress: Callable[[SyncProgress], None] | None,
    ) -> int:
        for id_page in adapter.iter_ids():
            self._paged_requests += id_page.requests
            self._seen += len(id_page.ids)
            with transaction(self.sessions) as session:
                record_seen(session, self.run_id, id_page.ids)
                self._save_counters(session)
            self._report(progress)
        with transaction(self.sessions) as session:
            deleted = mark_missing_deleted(
                session, self.source, not_synced_since=self.started_at, seen_in_run=self.run_id
            )
            _rematch(session, deleted, rules)
            forget_seen(session, [self.run_id])
            return len(deleted)

    # --- bookkeeping -----------------------------------------------------------------------

    @property
    def _requests(self) -> int:
        """The HTTP requests the run has made so far (see `MetersListings`)."""
        if self._meter is None:
            return self._paged_requests
        return self._meter.listing_requests - self._metered_from

    def _save_counters(self, session: Session, upserted_now: int = 0) -> None:
        """Record the run's counters, with `upserted_now` items this transaction wrote."""
        session.execute(
            update(SyncRun)
            .where(SyncRun.id == self.run_id)
            .values(
                items_seen=self._seen,
                items_upserted=self._upserted + upserted_now,
                requests=self._requests,
            )
        )

    def _report(self, progress: Callable[[SyncProgress], None] | None) -> None:
        if progress is not None:
            progress(
                SyncProgress(
                    run_id=self.run_id,
                    source=self.source,
                    mode=self.mode,
                    items_seen=self._seen,
                    items_upserted=self._upserted,
                    requests=self._requests,
                    elapsed_seconds=time.monotonic() - self._clock,
                )
            )

    def _finish(self, status: str, *, deleted: int = 0, error: str | None = None) -> SyncRunSummary:
        with transaction(self.sessions) as session:
            run = session.get_one(SyncRun, self.run_id)
            run.status = status
            run.finished_at = utcnow()
            run.items_seen = self._seen
            run.items_upserted = self._upserted
            run.items_deleted = deleted
            run.requests = self._requests
            run.error = error
            if status != "success":
                forget_seen(session, [self.run_id])
            elif self.mode != "census":
                # The census fetches no changes, so it must not move the incremental cursor.
                session.merge(
                    SyncCursor(source=self.source, cursor=self.started_at, run_id=self.run_id)
                )
            summary = SyncRunSummary.of(run)
        log.log(
            logging.INFO if status == "success" else logging.WARNING,
            "sync finished",
            extra={"run_id": self.run_id, "status": status, "items": self._seen, "error": error},
        )
        return summary


def _snapshot(sessions: sessionmaker[Session], tz: tzinfo) -> None:
    """The roll-up as this sync left it, for trends; its failure does not undo the sync."""
    try:
        with transaction(sessions) as session:
            take_snapshot(session, tz=tz)
    except Exception:
        log.exception("snapshot after sync failed")


def _full_rematch_owed(session: Session, source: str, run_id: int) -> bool:
    """Whether a full run wrote items and stopped before re-matching them all, with no
    full or incremental run finished since (the first to finish pays the debt).

    Its items are stored but may be matched as they were before; an incremental run only
    re-matches what it fetches, so it re-matches everything instead.
    """
    last_complete = (
        select(func.coalesce(func.max(SyncRun.id), 0))
        .where(SyncRun.source == source, SyncRun.mode != "census", SyncRun.status == "success")
        .scalar_subquery()
    )
    interrupted = select(SyncRun.id).where(
        SyncRun.source == source,
        SyncRun.mode == "full",
        SyncRun.status == "failed",
        SyncRun.items_upserted > 0,
        SyncRun.id > last_complete,
        SyncRun.id < run_id,
    )
    return session.scalar(select(interrupted.exists())) or False


def _rematch(session: Session, item_ids: list[int], rules: MatchRules) -> None:
    if item_ids:
        rematch_items(session, item_ids, rules)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _Unmapped):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


# --- concurrent fetching -------------------------------------------------------------------


_DONE = object()


def _fetch(
    adapter: TrackerAdapter,
    since: datetime | None,
    partitions: Sequence[str | None],
    concurrency: int,
) -> Iterator[Page]:
    """The pages of every partition, fetched by up to `concurrency` threads at a time.

    The pages travel through a bounded queue, so fetchers wait for the single writer
    instead of piling pages up in memory. The first error stops every fetcher, and so does
    closing the iterator.
    """
    if len(partitions) <= 1 or concurrency <= 1:
        for partition in partitions or [None]:
            yield from adapter.iter_pages(since, partition)
        return
    pages: queue.Queue[object] = queue.Queue(maxsize=2 * concurrency)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                pages.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def fetch(partition: str | None) -> None:
        try:
            for page in adapter.iter_pages(since, partition):
                if not put(page):
                    return
        except BaseException as exc:
            put(exc)
        else:
            put(_DONE)

    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="sync-fetch")
    try:
        for partition in partitions:
            pool.submit(fetch, partition)
        remaining = len(partitions)
        while remaining:
            item = pages.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, BaseException):
                raise item
            else:
                assert isinstance(item, Page)
                yield item
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
