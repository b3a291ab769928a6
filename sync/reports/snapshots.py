"""Snapshots of the effort roll-up, for trends: one per active cycle, measure and day.

`take_snapshot` runs after every successful sync and once a day; within a day the latest
run replaces the earlier one, so a trend has one point per day however often syncs run.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from sync.reports.effort import MEASURES, EffortReport, Measure, effort_report
from sync.store.db import transaction
from sync.store.items import dialect_insert
from sync.store.models import Cycle, Objective, Snapshot, utcnow


def take_snapshot(session: Session, now: datetime | None = None, tz: tzinfo = UTC) -> int:
    """Store today's roll-up by objective of every cycle `now` falls in, for every measure.

    Days begin in `tz`. Returns the number of snapshots written.
    """
    now = now or utcnow()
    today = now.astimezone(tz).date()
    cycles = session.scalars(select(Cycle).where(Cycle.start <= today, Cycle.end >= today)).all()
    table = Snapshot.__table__
    for cycle in cycles:
        for measure in MEASURES:
            report = effort_report(session, cycle, measure, "objective", tz)
            values = {"taken_at": now, "alignment": report.alignment, "totals": _totals(report)}
            stmt = dialect_insert(session, table).values(
                cycle_id=cycle.id, measure=measure, day=today, **values
            )
            session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[table.c.cycle_id, table.c.measure, table.c.day], set_=values
                )
            )
    return len(cycles) * len(MEASURES)


def snapshot_all(sessions: sessionmaker[Session], tz: tzinfo = UTC) -> int:
    """`take_snapshot` now, in a transaction of its own: the daily job."""
    with transaction(sessions) as session:
        return take_snapshot(session, tz=tz)


def _totals(report: EffortReport) -> dict[str, Any]:
    return {
        "aligned": report.aligned,
        "orphan": report.orphan.total,
        "non_okr": report.non_okr.total,
        "unestimated": report.unestimated,
        "objectives": {row.key: row.totals.total for row in report.rows if row.key is not None},
    }


@dataclass(frozen=True)
class TrendPoint:
    day: date
    taken_at: datetime
    alignment: float
    totals: dict[str, Any]


@dataclass(frozen=True)
class Trend:
    """A cycle's snapshots in one measure, oldest first, and the objectives they name."""

    cycle: str
    measure: Measure
    objectives: list[tuple[str, str]]
    points: list[TrendPoint]


def trend(session: Session, cycle: Cycle, measure: Measure) -> Trend:
    """Alignment and effort per objective over the days of `cycle` snapshotted so far."""
    rows = session.scalars(
        select(Snapshot)
        .where(Snapshot.cycle_id == cycle.id, Snapshot.measure == measure)
        .order_by(Snapshot.day)
    ).all()
    named = {key for row in rows for key in row.totals.get("objectives", {})}
    objectives = session.execute(
        select(Objective.key, Objective.title)
        .where((Objective.cycle_id == cycle.id) | Objective.key.in_(named))
        .order_by(Objective.position, Objective.key)
    ).all()
    return Trend(
        cycle=cycle.key,
        measure=measure,
        objectives=[(key, title) for key, title in objectives],
        points=[TrendPoint(row.day, row.taken_at, row.alignment, row.totals) for row in rows],
    )
