"""The store: every table Ladder keeps, as SQLAlchemy 2 typed models.

The schema itself is owned by the Alembic migrations in `sync/migrations`; a test compares
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
    String,
    Text,
    UniqueConstraint,
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


class Cycle(Base):
    """A planning period such as `2026-Q4`; dates are inclusive."""

    __tablename__ = "cycles"
    id: Mapped[int] = mapped_column(primary_key=True)
    key: Mapped[str] = mapped_column(String(50), unique=True)
    start: Mapped[date] = mapped_column(Date)
    end: Mapped[date] = mapped_column(Date)


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
