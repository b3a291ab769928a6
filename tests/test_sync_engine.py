"""The sync engine and its store helpers, driven by an in-memory tracker on both stores."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from integrations.base import IdPage, NormalisedItem, Page
from sync.ingest.engine import (
    SyncAlreadyRunning,
    SyncProgress,
    run_sync,
    start_run,
)
from sync.store.db import transaction
from sync.store.items import mark_deleted, resolve_parents, upsert_items
from sync.store.leases import exclusive
from sync.store.models import Bet, ItemMatch, SyncCursor, SyncRun, SyncSeen, TrackerItem

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class MemoryTracker:
    """A tracker held in a dict, paged like a real one, that records how it was asked."""

    source = "memory"

    def __init__(self, issues: int = 0, projects: tuple[str, ...] = ("A", "B", "C")) -> None:
        self.issues: dict[str, dict[str, Any]] = {}
        self.page_size = 10
        self.projects = projects
        self.since_asked: list[datetime | None] = []
        self.pages_before_failure: int | None = None  # then every page fails
        self.pages_served = 0
        self.active = 0
        self.most_active = 0
        self.page_delay = 0.0
        self.start_together: threading.Barrier | None = None  # proves partitions overlap
        self.normalise_delay = 0.0
        self.normalised = 0
        self.most_ahead = 0  # pages fetched but not yet normalised, at worst
        self.on_page: Any = None
        self._lock = threading.Lock()
        for n in range(issues):
            self.create(projects[n % len(projects)], T0 + timedelta(seconds=n))

    def create(self, project: str, updated: datetime, **fields: Any) -> str:
        external_id = str(1000 + len(self.issues))
        self.issues[external_id] = {
            "id": external_id,
            "key": f"{project}-{external_id}",
            "project": project,
            "updated": updated,
            "title": f"issue {external_id}",
            **fields,
        }
        return external_id

    def touch(self, external_id: str, updated: datetime, **fields: Any) -> None:
        self.issues[external_id].update(updated=updated, **fields)

    def partitions(self) -> list[str]:
        return list(self.projects)

    def iter_pages(self, since: datetime | None, partition: str | None = None) -> Iterator[Page]:
        self.since_asked.append(since)
        with self._lock:
            self.active += 1
            self.most_active = max(self.most_active, self.active)
        try:
            if self.start_together is not None:
                self.start_together.wait(timeout=10)
            selected = sorted(
                (
                    raw
                    for raw in self.issues.values()
                    if (since is None or raw["updated"] >= since)
                    and (partition is None or raw["project"] == partition)
                ),
                key=lambda raw: (raw["updated"], raw["id"]),
            )
            for start in range(0, len(selected), self.page_size):
                with self._lock:
                    if self.pages_before_failure is not None:
                        if self.pages_before_failure == 0:
                            raise ConnectionError("tracker unreachable")
                        self.pages_before_failure -= 1
                    self.pages_served += 1
                time.sleep(self.page_delay)
                if self.on_page:
                    self.on_page()
                yield Page([dict(raw) for raw in selected[start : start + self.page_size]])
        finally:
            with self._lock:
                self.active -= 1

    def iter_ids(self) -> Iterator[IdPage]:
        ids = sorted(self.issues)
        for start in range(0, len(ids), 25):
            yield IdPage(ids[start : start + 25])

    def normalise(self, raw: Mapping[str, Any]) -> NormalisedItem:
        if raw.get("broken"):
            raise ValueError("no status")
        if self.normalise_delay:
            time.sleep(self.normalise_delay)
            ahead = self.pages_served - self.normalised // self.page_size
            self.most_ahead = max(self.most_ahead, ahead)
        self.normalised += 1
        return NormalisedItem(
            source=self.source,
            external_id=raw["id"],
            key=raw["key"],
            title=raw["title"],
            type="story",
            status="Open",
            status_category="todo",
            updated_at=raw["updated"],
            project=raw["project"],
            labels=tuple(raw.get("labels", ())),
            raw={"id": raw["id"], "title": raw["title"]},
        )


def stored(session: Session) -> dict[str, tuple[str, str, bool]]:
    rows = session.execute(
        select(TrackerItem.external_id, TrackerItem.key, TrackerItem.title, TrackerItem.deleted)
    ).all()
    return {row.external_id: (row.key, row.title, row.deleted) for row in rows}


def expected(tracker: MemoryTracker) -> dict[str, tuple[str, str, bool]]:
    return {i: (raw["key"], raw["title"], False) for i, raw in tracker.issues.items()}


def item(external_id: str, updated: datetime, **fields: Any) -> NormalisedItem:
    values: dict[str, Any] = {
        "source": "memory",
        "external_id": external_id,
        "key": f"K-{external_id}",
        "title": "title",
        "type": "story",
        "status": "Open",
        "status_category": "todo",
        "updated_at": updated,
        "raw": {"id": external_id, "at": updated.isoformat()},
    }
    values.update(fields)
    return NormalisedItem(**values)


# --- store helpers -------------------------------------------------------------------------


def test_upsert_inserts_then_updates_and_returns_the_rows_written(session: Session) -> None:
    first = upsert_items(session, [item("1", T0), item("2", T0, labels=("bet:x",))])
    assert len(first) == 2
    again = upsert_items(session, [item("1", T0 + timedelta(minutes=1), title="renamed")])
    assert again == [first[0]]
    row = session.scalars(select(TrackerItem).where(TrackerItem.external_id == "1")).one()
    assert (row.title, row.updated_at) == ("renamed", T0 + timedelta(minutes=1))
    assert row.raw == {"id": "1", "at": (T0 + timedelta(minutes=1)).isoformat()}
    labelled = session.scalars(select(TrackerItem).where(TrackerItem.external_id == "2")).one()
    assert labelled.labels == ["bet:x"]


def test_an_older_update_never_replaces_a_newer_one(session: Session) -> None:
    (row_id,) = upsert_items(session, [item("1", T0, title="new")])
    session.commit()
    before = session.scalar(select(TrackerItem.synced_at))
    assert upsert_items(session, [item("1", T0 - timedelta(seconds=1), title="old")]) == []
    row = session.get_one(TrackerItem, row_id)
    session.refresh(row)
    assert (row.title, row.updated_at, row.raw["at"]) == ("new", T0, T0.isoformat())
    # Still confirmed as existing, so a full sync does not take it for deleted.
    assert row.synced_at > before


def test_one_batch_keeps_the_newest_version_of_a_repeated_item(session: Session) -> None:
    written = upsert_items(
        session,
        [item("1", T0 + timedelta(2), title="newest"), item("1", T0, title="stale")],
    )
    assert len(written) == 1
    assert session.scalar(select(TrackerItem.title)) == "newest"


def test_deletion_marks_and_reappearance(session: Session) -> None:
    (row_id,) = upsert_items(session, [item("1", T0)])
    assert mark_deleted(session, "memory", ["1", "404"]) == [row_id]
    assert mark_deleted(session, "memory", ["1"]) == []  # already deleted
    row = session.get_one(TrackerItem, row_id)
    session.refresh(row)
    assert row.deleted and row.deleted_at is not None
    assert upsert_items(session, [item("1", T0)]) == [row_id]
    session.refresh(row)
    assert (row.deleted, row.deleted_at) == (False, None)


def test_an_item_the_tracker_reports_deleted_keeps_its_first_deletion_time(
    session: Session,
) -> None:
    (row_id,) = upsert_items(session, [item("1", T0, deleted=True)])
    session.commit()
    first = session.get_one(TrackerItem, row_id).deleted_at
    upsert_items(session, [item("1", T0 + timedelta(1), deleted=True)])
    row = session.get_one(TrackerItem, row_id)
    session.refresh(row)
    assert row.deleted and row.deleted_at == first


def test_a_raw_payload_is_kept_whole_even_beyond_64_bit_numbers(session: Session) -> None:
    raw = {"id": "1", "big": 2**70, "nested": {"list": [1.5, None, "ü"]}}
    (row_id,) = upsert_items(session, [item("1", T0, raw=raw)])
    assert session.get_one(TrackerItem, row_id).raw == raw


def test_naive_times_are_refused(session: Session) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        upsert_items(session, [item("1", T0.replace(tzinfo=None))])


def test_a_parent_named_by_key_only_is_resolved_to_its_id(session: Session) -> None:
    # Jira Data Center's Epic Link names the epic by key; inheritance follows ids.
    (early,) = upsert_items(session, [item("2", T0, parent_key="K-1")])
    assert resolve_parents(session, source="memory") == []  # the epic is not there yet
    upsert_items(session, [item("1", T0, type="epic")])
    assert resolve_parents(session, source="memory") == [early]
    (late,) = upsert_items(session, [item("3", T0, parent_key="K-1")])
    refs = dict(session.execute(select(TrackerItem.id, TrackerItem.parent_ref)).all())
    assert (refs[early], refs[late]) == ("1", "1")


# --- runs ----------------------------------------------------------------------------------


def test_a_full_sync_stores_every_item_and_records_the_run(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=95)
    tracker.start_together = threading.Barrier(3)
    seen: list[SyncProgress] = []
    summary = run_sync(sessions, tracker, "full", concurrency=3, progress=seen.append)

    assert summary.ok, summary.error
    assert (summary.items_seen, summary.items_upserted, summary.items_deleted) == (95, 95, 0)
    assert summary.requests == 12  # 32 + 32 + 31 items in pages of 10
    assert tracker.most_active == 3  # the three projects were fetched at the same time
    with sessions() as session:
        assert stored(session) == expected(tracker)
        run = session.get_one(SyncRun, summary.run_id)
        assert (run.status, run.mode, run.items_seen, run.requests) == ("success", "full", 95, 12)
        cursor = session.get_one(SyncCursor, "memory")
        assert (cursor.cursor, cursor.run_id) == (run.started_at, run.id)
    assert seen and seen[-1].items_seen == 95
    assert [p.items_seen for p in seen] == sorted(p.items_seen for p in seen)


def test_an_incremental_sync_asks_for_changes_since_the_cursor_minus_the_overlap(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=30)
    first = run_sync(sessions, tracker, "incremental")  # no cursor yet: runs as a full sync
    assert (first.mode, first.items_seen) == ("full", 30)

    changed = sorted(tracker.issues)[:3]
    for external_id in changed:
        tracker.touch(external_id, first.started_at + timedelta(minutes=5), title="changed")
    tracker.since_asked.clear()
    summary = run_sync(sessions, tracker, "incremental", overlap=timedelta(minutes=2))

    assert summary.ok and summary.mode == "incremental"
    assert tracker.since_asked == [first.started_at - timedelta(minutes=2)]
    assert (summary.items_seen, summary.items_upserted, summary.requests) == (3, 3, 1)
    with sessions() as session:
        assert stored(session) == expected(tracker)
        assert session.get_one(SyncCursor, "memory").cursor == summary.started_at


def test_a_full_sync_marks_what_it_did_not_see_as_deleted(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=20)
    run_sync(sessions, tracker, "full")
    gone = sorted(tracker.issues)[:2]
    for external_id in gone:
        del tracker.issues[external_id]
    summary = run_sync(sessions, tracker, "full")
    assert summary.items_deleted == 2
    with sessions() as session:
        deleted = {i for i, (_, _, is_deleted) in stored(session).items() if is_deleted}
    assert deleted == set(gone)


def test_an_item_written_by_a_webhook_during_a_full_sync_is_not_taken_for_deleted(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=20)
    run_sync(sessions, tracker, "full")
    # A ticket the full sync's search does not return yet (search is eventually
    # consistent), while a webhook brings it in during the run.
    hidden = tracker.create("A", T0 + timedelta(hours=1))
    raw = tracker.issues.pop(hidden)

    def webhook_arrives() -> None:
        if tracker.pages_served == 5:  # the second page of this run
            with transaction(sessions) as session:
                upsert_items(session, [tracker.normalise(raw)])

    tracker.on_page = webhook_arrives
    summary = run_sync(sessions, tracker, "full", concurrency=1)
    assert summary.ok and summary.items_deleted == 0
    with sessions() as session:
        assert stored(session)[hidden][2] is False


def test_a_failed_run_keeps_its_progress_and_the_cursor_and_the_next_run_converges(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=60)
    first = run_sync(sessions, tracker, "full", concurrency=1)
    for external_id in sorted(tracker.issues)[:40]:
        tracker.touch(external_id, first.started_at + timedelta(minutes=5), title="v2")
    del tracker.issues[sorted(tracker.issues)[-1]]
    tracker.pages_before_failure = 2

    failed = run_sync(sessions, tracker, "full", concurrency=1)

    assert failed.status == "failed"
    assert failed.error == "ConnectionError: tracker unreachable"
    with sessions() as session:
        assert session.get_one(SyncCursor, "memory").cursor == first.started_at
        # What the two pages that came through brought is kept.
        in_a = {i: v for i, v in expected(tracker).items() if v[0].startswith("A-")}
        assert {i: stored(session)[i] for i in in_a} == in_a
        assert "v2" in {title for _, title, _ in in_a.values()}
        # Nothing marked deleted by an incomplete listing.
        assert not any(deleted for _, _, deleted in stored(session).values())
        assert session.scalar(select(func.count()).select_from(SyncSeen)) == 0

    tracker.pages_before_failure = None
    summary = run_sync(sessions, tracker, "full", concurrency=1)
    assert summary.ok and summary.items_deleted == 1
    with sessions() as session:
        live = {i: v for i, v in stored(session).items() if not v[2]}
        assert live == expected(tracker)


def test_what_a_failed_full_run_wrote_is_matched_by_the_next_run(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions) as session:
        session.add(Bet(key="checkout", title="One-click checkout"))
    tracker = MemoryTracker(issues=30)
    # An old ticket that the first full sync's search did not return (search is eventually
    # consistent), labelled for a bet.
    late = tracker.create("A", T0 - timedelta(days=30), labels=["bet:checkout"])
    raw = tracker.issues.pop(late)
    assert run_sync(sessions, tracker, "full", concurrency=1).ok
    tracker.issues[late] = raw
    tracker.pages_before_failure = 1  # the page with the old ticket, then failure

    failed = run_sync(sessions, tracker, "full", concurrency=1)

    assert failed.status == "failed" and failed.items_upserted == 10

    def bets_of_late() -> list[str]:
        with sessions() as session:
            return session.scalars(
                select(Bet.key)
                .join(ItemMatch, ItemMatch.target_id == Bet.id)
                .join(TrackerItem, TrackerItem.id == ItemMatch.item_id)
                .where(ItemMatch.target_kind == "bet", TrackerItem.external_id == late)
            ).all()

    assert bets_of_late() == []  # stored, not matched yet: a full run matches at its end
    tracker.pages_before_failure = None
    # The ticket is older than the cursor, so this run does not fetch it; it re-matches all.
    incremental = run_sync(sessions, tracker, "incremental")
    assert incremental.ok and incremental.items_seen == 0
    assert bets_of_late() == ["checkout"]


def test_a_failing_partition_stops_the_others_and_leaves_no_thread_behind(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=300)
    tracker.page_delay = 0.01
    tracker.pages_before_failure = 4
    threads_before = threading.active_count()
    summary = run_sync(sessions, tracker, "full", concurrency=3)
    assert summary.status == "failed" and "tracker unreachable" in (summary.error or "")
    assert tracker.pages_served < 30  # the other partitions stopped early
    assert threading.active_count() == threads_before


def test_fetchers_never_run_far_ahead_of_the_writer(sessions: sessionmaker[Session]) -> None:
    tracker = MemoryTracker(issues=600, projects=("A", "B", "C", "D"))
    tracker.normalise_delay = 0.001  # a writer slower than the fetchers

    summary = run_sync(sessions, tracker, "full", concurrency=4)

    assert summary.ok
    # Pages in the bounded queue (2 x concurrency), plus one in hand per fetcher and one
    # being normalised, of the 60 pages there are.
    assert 2 * 4 <= tracker.most_ahead <= 3 * 4 + 1


def test_items_that_cannot_be_mapped_fail_the_run_but_the_rest_is_stored(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=12)
    broken = sorted(tracker.issues)[:2]
    for external_id in broken:
        tracker.issues[external_id]["broken"] = True
    summary = run_sync(sessions, tracker, "full")
    assert summary.status == "failed"
    assert summary.error == f"2 items could not be mapped (ids {broken[0]}, {broken[1]})"
    with sessions() as session:
        assert set(stored(session)) == set(tracker.issues) - set(broken)
        assert session.get(SyncCursor, "memory") is None


def test_a_census_marks_unlisted_items_deleted_without_moving_the_cursor(
    sessions: sessionmaker[Session],
) -> None:
    tracker = MemoryTracker(issues=70)
    full = run_sync(sessions, tracker, "full")
    gone = sorted(tracker.issues)[10:13]
    for external_id in gone:
        del tracker.issues[external_id]
    summary = run_sync(sessions, tracker, "census")
    assert summary.ok
    assert (summary.items_seen, summary.items_deleted, summary.requests) == (67, 3, 3)
    with sessions() as session:
        deleted = {i for i, (_, _, is_deleted) in stored(session).items() if is_deleted}
        assert deleted == set(gone)
        assert session.get_one(SyncCursor, "memory").cursor == full.started_at
        assert session.scalar(select(func.count()).select_from(SyncSeen)) == 0


def test_one_source_syncs_once_at_a_time(sessions: sessionmaker[Session]) -> None:
    engine = sessions.kw["bind"]
    with exclusive(engine, "sync:memory") as taken:
        assert taken
        with pytest.raises(SyncAlreadyRunning, match="already running"):
            run_sync(sessions, MemoryTracker(issues=1), "full")
    assert run_sync(sessions, MemoryTracker(issues=1), "full").ok


def test_a_run_left_running_by_a_dead_process_is_closed_by_the_next(
    sessions: sessionmaker[Session],
) -> None:
    with transaction(sessions) as session:
        dead = SyncRun(source="memory", mode="full", status="running")
        session.add(dead)
        session.flush()
        session.add(SyncSeen(run_id=dead.id, external_id="x"))
    started = start_run(sessions, "memory", "incremental")
    with sessions() as session:
        run = session.get_one(SyncRun, dead.id)
        assert run.status == "failed" and "abandoned" in (run.error or "")
        assert session.scalar(select(func.count()).select_from(SyncSeen)) == 0
    started.abandon()
    with sessions() as session:
        assert session.get_one(SyncRun, started.run_id).status == "failed"
    assert run_sync(sessions, MemoryTracker(issues=1), "full").ok


def test_an_unknown_mode_is_refused(sessions: sessionmaker[Session]) -> None:
    with pytest.raises(Exception, match="unknown sync mode 'everything'"):
        run_sync(sessions, MemoryTracker(), "everything")  # type: ignore[arg-type]
