"""The store: every table Ladder keeps, as SQLAlchemy 2 typed models.

The schema itself is owned by the Alembic migrations in `sync/store/migrations`; a test compares
the two so they cannot drift. Unique keys use non-null columns only, because NULLs are
distinct in UNIQUE constraints.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Ladder stores aware UTC times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON}


# --- OKR catalogue -------------------------------------------------------------------------


class NorthStar(Base):
    """The one metric the whole org moves; a single row."""

    __tablename__ = "north_star"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    metric: Mapped[str | None] = mapped_column(String(200))


class Strategy(Base):
    __tablename__ = "strategies"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    position: Mapped[int] = mapped_column(Integer, default=0)


class Cycle(Base):
    """A planning period such as `2026-Q4`; dates are inclusive."""

    __tablename__ = "cycles"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(50), unique=True)
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date] = mapped_column(Date)
    position: Mapped[int] = mapped_column(Integer, default=0)


class Objective(Base):
    __tablename__ = "objectives"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id"), index=True)
    strategy_id: Mapped[int | None] = mapped_column(ForeignKey("strategies.id"), index=True)
    owner: Mapped[str | None] = mapped_column(String(200))
    team: Mapped[str | None] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), default="active")
    position: Mapped[int] = mapped_column(Integer, default=0)

    cycle: Mapped[Cycle] = relationship()
    strategy: Mapped[Strategy | None] = relationship()
    key_results: Mapped[list[KeyResult]] = relationship(
        back_populates="objective", order_by="KeyResult.position"
    )


class KeyResult(Base):
    __tablename__ = "key_results"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    objective_id: Mapped[int] = mapped_column(ForeignKey("objectives.id"), index=True)
    title: Mapped[str] = mapped_column(String(500))
    metric: Mapped[str | None] = mapped_column(String(200))
    unit: Mapped[str | None] = mapped_column(String(50))
    baseline: Mapped[float | None] = mapped_column(Float)
    target: Mapped[float | None] = mapped_column(Float)
    current: Mapped[float | None] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(10), default="increase")
    owner: Mapped[str | None] = mapped_column(String(200))
    due: Mapped[date | None] = mapped_column(Date)
    confidence: Mapped[float | None] = mapped_column(Float)
    position: Mapped[int] = mapped_column(Integer, default=0)

    objective: Mapped[Objective] = relationship(back_populates="key_results")
    check_ins: Mapped[list[CheckIn]] = relationship(
        back_populates="key_result", order_by="CheckIn.id", cascade="all, delete-orphan"
    )


class CheckIn(Base):
    """One progress update of a key result: the value then, and how confident its owner is."""

    __tablename__ = "check_ins"
    id: Mapped[int] = mapped_column(primary_key=True)
    key_result_id: Mapped[int] = mapped_column(
        ForeignKey("key_results.id", ondelete="CASCADE"), index=True
    )
    value: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float | None] = mapped_column(Float)
    note: Mapped[str | None] = mapped_column(Text)
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    key_result: Mapped[KeyResult] = relationship(back_populates="check_ins")


class Bet(Base):
    """A piece of work the org places to move one or more key results."""

    __tablename__ = "bets"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(500))
    hypothesis: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="now")
    team: Mapped[str | None] = mapped_column(String(100))
    refs: Mapped[list[str]] = mapped_column(default=list)
    position: Mapped[int] = mapped_column(Integer, default=0)

    key_results: Mapped[list[BetKeyResult]] = relationship(
        back_populates="bet", cascade="all, delete-orphan", order_by="BetKeyResult.position"
    )


class BetKeyResult(Base):
    __tablename__ = "bet_key_results"
    __table_args__ = (UniqueConstraint("bet_id", "key_result_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    bet_id: Mapped[int] = mapped_column(ForeignKey("bets.id", ondelete="CASCADE"), index=True)
    key_result_id: Mapped[int] = mapped_column(ForeignKey("key_results.id"), index=True)
    weight: Mapped[float | None] = mapped_column(Float)
    position: Mapped[int] = mapped_column(Integer, default=0)

    bet: Mapped[Bet] = relationship(back_populates="key_results")
    key_result: Mapped[KeyResult] = relationship()


class ApiToken(Base):
    """A bearer token; only its SHA-256 is stored, so a database leak reveals no token."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column()


# --- Tracker items -------------------------------------------------------------------------


class TrackerItem(Base):
    """One ticket, epic or project from a tracker, normalised, with its last raw payload.

    Keyed by (source, external_id): the external id never changes, while keys do when a
    ticket moves to another project or team.
    """

    __tablename__ = "tracker_items"
    __table_args__ = (
        UniqueConstraint("source", "external_id"),
        Index("ix_tracker_items_source_key", "source", "key"),
        Index("ix_tracker_items_source_parent", "source", "parent_ref"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str] = mapped_column(String(100))
    key: Mapped[str] = mapped_column(String(100))
    url: Mapped[str | None] = mapped_column(String(1000))
    title: Mapped[str] = mapped_column(Text, default="")
    type: Mapped[str] = mapped_column(String(20))
    status: Mapped[str | None] = mapped_column(String(100))
    status_category: Mapped[str] = mapped_column(String(20))
    labels: Mapped[list[str]] = mapped_column(default=list)
    parent_ref: Mapped[str | None] = mapped_column(String(100))
    parent_key: Mapped[str | None] = mapped_column(String(100))
    container_refs: Mapped[list[str]] = mapped_column(default=list)
    linked_urls: Mapped[list[str]] = mapped_column(default=list)
    linked_keys: Mapped[list[str]] = mapped_column(default=list)
    project: Mapped[str | None] = mapped_column(String(100), index=True)
    estimate: Mapped[float | None] = mapped_column(Float)
    time_spent_seconds: Mapped[int | None] = mapped_column(BigInteger)
    assignee: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime | None] = mapped_column()
    resolved_at: Mapped[datetime | None] = mapped_column()
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    deleted_at: Mapped[datetime | None] = mapped_column()
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)
    raw: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- Traceability --------------------------------------------------------------------------


# What an effort report reads of an item's state, beyond its bucket and resolution time.
REPORTED = [
    "item_id",
    "parent_id",
    "state",
    "target_kind",
    "target_id",
    "project",
    "work_item",
    "estimate",
    "estimated_below",
    "points",
    "time_spent",
]


class ItemState(Base):
    """What matching derived for one item: its state and the effort it counts, ready to sum.

    Rewritten by `sync.matching.rematch` whenever the item, an ancestor, a descendant or the OKR
    catalogue changes, so that reports are one aggregate query over this narrow table.
    `state` is `matched`, `non_okr` or `orphan` (lifecycle aside: `bucket` says whether
    the item is todo, in_progress, done, canceled or deleted).
    """

    __tablename__ = "item_states"
    __table_args__ = (
        # Covering on PostgreSQL: a report reads the index alone, never the table.
        Index(
            "ix_item_states_scope",
            "bucket",
            "resolved_at",
            postgresql_include=REPORTED,
        ),
        # The items being re-matched: a handful, or none outside a re-match.
        Index(
            "ix_item_states_pending",
            "item_id",
            postgresql_where=text("state IS NULL"),
            sqlite_where=text("state IS NULL"),
        ),
    )
    item_id: Mapped[int] = mapped_column(
        ForeignKey("tracker_items.id", ondelete="CASCADE"), primary_key=True
    )
    # The parent item (derived from `parent_ref`, so no foreign key to check on every write).
    parent_id: Mapped[int | None] = mapped_column(Integer, index=True)
    state: Mapped[str | None] = mapped_column(String(10))
    # The item whose matches this one copies: its nearest ancestor with matches of its own.
    source_id: Mapped[int | None] = mapped_column(Integer)
    # The item's bet or KR when it serves exactly one (reports then need no join); "*"
    # when it serves several; NULL when none.
    target_kind: Mapped[str | None] = mapped_column(String(3))
    target_id: Mapped[int | None] = mapped_column(Integer)
    non_okr_label: Mapped[bool] = mapped_column(Boolean, default=False)
    bucket: Mapped[str] = mapped_column(String(12))
    resolved_at: Mapped[datetime | None] = mapped_column()
    project: Mapped[str | None] = mapped_column(String(100))
    container: Mapped[bool] = mapped_column(Boolean, default=False)
    work_item: Mapped[bool] = mapped_column(Boolean, default=False)
    estimate: Mapped[float | None] = mapped_column(Float)
    estimated_below: Mapped[bool] = mapped_column(Boolean, default=False)
    points: Mapped[float] = mapped_column(Float, default=0.0)
    time_spent: Mapped[int] = mapped_column(BigInteger, default=0)


class ItemMatch(Base):
    """An effective match of an item to a bet or a key result, and where it came from.

    `weight` is the item's share for this target: the weights of one item add up to 1.
    The target has no foreign key on purpose: when a bet is deleted its matches stay until
    re-matching finds them dangling, which is how it knows which items were affected.
    """

    __tablename__ = "matches"
    __table_args__ = (
        UniqueConstraint("item_id", "target_kind", "target_id"),
        Index("ix_matches_target", "target_kind", "target_id"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("tracker_items.id", ondelete="CASCADE"))
    target_kind: Mapped[str] = mapped_column(String(3))  # "bet" or "kr"
    target_id: Mapped[int] = mapped_column(Integer)
    weight: Mapped[float] = mapped_column(Float)
    origin: Mapped[str] = mapped_column(String(10))  # label, link, ref, manual, inherited
    detail: Mapped[str] = mapped_column(Text)
    inherited_from_id: Mapped[int | None] = mapped_column(Integer)


class ManualLink(Base):
    """A person's standing decision that an item does (link) or does not (unlink) serve a
    bet or key result. Applied on every re-match, so it survives later syncs."""

    __tablename__ = "manual_links"
    __table_args__ = (UniqueConstraint("item_id", "target_kind", "target_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("tracker_items.id", ondelete="CASCADE"))
    target_kind: Mapped[str] = mapped_column(String(3))
    target_id: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(10))  # "link" or "unlink"
    weight: Mapped[float | None] = mapped_column(Float)
    author: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class MatchedRefs(Base):
    """A bet's refs as the stored matches reflect them.

    When the bet changes, re-matching compares its refs with these and looks for the items
    that name the new ones only, instead of searching every item for every ref again.
    """

    __tablename__ = "matched_refs"
    bet_id: Mapped[int] = mapped_column(ForeignKey("bets.id", ondelete="CASCADE"), primary_key=True)
    refs: Mapped[list[str]] = mapped_column(default=list)


class Snapshot(Base):
    """The effort roll-up of one cycle and measure on one day (the day's latest wins)."""

    __tablename__ = "snapshots"
    __table_args__ = (UniqueConstraint("cycle_id", "measure", "day"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    cycle_id: Mapped[int] = mapped_column(ForeignKey("cycles.id", ondelete="CASCADE"))
    measure: Mapped[str] = mapped_column(String(10))
    day: Mapped[date] = mapped_column(Date)
    taken_at: Mapped[datetime] = mapped_column(default=utcnow)
    alignment: Mapped[float] = mapped_column(Float)
    totals: Mapped[dict[str, Any]] = mapped_column(default=dict)


# --- Sync runs -----------------------------------------------------------------------------


class SyncRun(Base):
    """One sync of one source: what it did, how many requests it took, and how it ended."""

    __tablename__ = "sync_runs"
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20), index=True)
    mode: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    items_seen: Mapped[int] = mapped_column(Integer, default=0)
    items_upserted: Mapped[int] = mapped_column(Integer, default=0)
    items_deleted: Mapped[int] = mapped_column(Integer, default=0)
    requests: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


class SyncSeen(Base):
    """The ids a census listed, kept in the store so memory stays flat however big the scope."""

    __tablename__ = "sync_seen"
    run_id: Mapped[int] = mapped_column(
        ForeignKey("sync_runs.id", ondelete="CASCADE"), primary_key=True
    )
    external_id: Mapped[str] = mapped_column(String(100), primary_key=True)


class SyncCursor(Base):
    """Where the next incremental sync of a source starts."""

    __tablename__ = "sync_cursors"
    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    cursor: Mapped[datetime] = mapped_column()
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_runs.id"))


class Lease(Base):
    """A named lease so that, of several processes, exactly one runs a given job."""

    __tablename__ = "leases"
    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    holder: Mapped[str] = mapped_column(String(200))
    expires_at: Mapped[datetime] = mapped_column()


# --- Webhooks and comments -----------------------------------------------------------------


class WebhookEvent(Base):
    """A verified webhook delivery, kept until processed: the inbox.

    (source, delivery_id) is unique, so a tracker's retries and concurrent duplicates are
    stored once. `status`: received → processed | ignored, or failed (retried after
    `next_attempt_at`) → parked after too many attempts.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        UniqueConstraint("source", "delivery_id"),
        Index("ix_webhook_events_due", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    delivery_id: Mapped[str] = mapped_column(String(200))
    event_type: Mapped[str] = mapped_column(String(100), default="")
    kind: Mapped[str] = mapped_column(String(20))
    external_id: Mapped[str | None] = mapped_column(String(100))
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    headers: Mapped[dict[str, Any]] = mapped_column(default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column()


class CommentSent(Base):
    """A comment Ladder placed (or is placing) on a tracker item; one per item and kind.

    The row is claimed before the tracker is called, so two replicas never both post.
    `status`: pending → posted → (updating →) updated, or failed (retried after
    `next_attempt_at`). While pending or updating, `next_attempt_at` is the end of the
    claim's lease: past it, the claiming process is taken to have died.
    """

    __tablename__ = "comments_sent"
    __table_args__ = (UniqueConstraint("item_id", "kind"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("tracker_items.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(30))
    status: Mapped[str] = mapped_column(String(20))
    tracker_comment_id: Mapped[str | None] = mapped_column(String(100))
    text: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    posted_at: Mapped[datetime | None] = mapped_column()
    updated_at: Mapped[datetime | None] = mapped_column()


class AppState(Base):
    """Small facts the process must remember across restarts, e.g. when comments went on."""

    __tablename__ = "app_state"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- Core table handles --------------------------------------------------------------------
# The bulk SQL of matching, reports and sync works on tables rather than mapped objects.

ITEMS: Table = TrackerItem.__table__  # type: ignore[assignment]
STATES: Table = ItemState.__table__  # type: ignore[assignment]
MATCHES: Table = ItemMatch.__table__  # type: ignore[assignment]
LINKS: Table = ManualLink.__table__  # type: ignore[assignment]
