"""Effort roll-ups: how much of a cycle's work went to each objective, KR, bet or team.

The rules are the design's "Effort" section. Matching has already done the per-item work
(`item_states`: each item's state, bucket, counted points and, for most, its only target),
so a report is one aggregate query reading an index: effort summed per state and target
(or team) and bucket. The few hundred target totals are then spread over key results and
objectives by the bets' KR weights.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any, Literal, get_args

from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from sync.errors import Invalid, NotFound
from sync.matching.states import SEVERAL
from sync.store.models import (
    MATCHES,
    STATES,
    Bet,
    BetKeyResult,
    Cycle,
    KeyResult,
    Objective,
)

Measure = Literal["points", "count", "time"]
GroupBy = Literal["objective", "kr", "bet", "team"]
MEASURES: tuple[Measure, ...] = get_args(Measure)
GROUPINGS: tuple[GroupBy, ...] = get_args(GroupBy)


_NO_GROUP_TITLES = {
    "objective": "Bets that serve no key result yet",
    "kr": "Bets that serve no key result yet",
    "bet": "Matched to a key result directly",
    "team": "No team",
}


def find_cycle(session: Session, key: str | None, today: date) -> Cycle:
    """The cycle with `key`, or without one the cycle `today` falls in."""
    if key:
        cycle = session.scalar(select(Cycle).where(Cycle.key == key))
        if cycle is None:
            raise NotFound(f"no cycle with key {key!r}")
        return cycle
    cycle = session.scalar(
        select(Cycle).where(Cycle.start <= today, Cycle.end >= today).order_by(Cycle.start)
    )
    if cycle is None:
        raise Invalid(f"no cycle covers {today.isoformat()}: name one with cycle=")
    return cycle


def cycle_window(cycle: Cycle, tz: tzinfo = UTC) -> tuple[datetime, datetime]:
    """The cycle's dates (inclusive) as a half-open UTC interval, days starting in `tz`."""
    start = datetime.combine(cycle.start, time(), tz).astimezone(UTC)
    end = datetime.combine(cycle.end + timedelta(days=1), time(), tz).astimezone(UTC)
    return start, end


def open_items() -> ColumnElement[bool]:
    return STATES.c.bucket.in_(("todo", "in_progress"))


def done_within(window: tuple[datetime, datetime]) -> ColumnElement[bool]:
    start, end = window
    return and_(
        STATES.c.bucket == "done", STATES.c.resolved_at >= start, STATES.c.resolved_at < end
    )


def scopes(window: tuple[datetime, datetime]) -> tuple[ColumnElement[bool], ...]:
    """What a cycle's report counts: the open items, and the items done inside the window.

    Two conditions rather than one OR, so that each reads a range of an index.
    """
    return open_items(), done_within(window)


def in_scope(window: tuple[datetime, datetime]) -> ColumnElement[bool]:
    """Whether an item counts in a cycle's report."""
    return or_(*scopes(window))


def effort_of(measure: Measure) -> ColumnElement[float]:
    """One item's effort in `measure`, with the no-double-counting rules applied."""
    if measure == "points":
        return STATES.c.points
    if measure == "count":
        return case((STATES.c.work_item, 1.0), else_=0.0)
    if measure == "time":
        return cast(STATES.c.time_spent, Float)
    raise Invalid(f"unknown measure {measure!r}: use one of {', '.join(MEASURES)}")


def unestimated() -> ColumnElement[int]:
    """1 for a work item with no estimate, neither its own nor one below it."""
    return case(
        (
            and_(STATES.c.work_item, STATES.c.estimate.is_(None), ~STATES.c.estimated_below),
            1,
        ),
        else_=0,
    )


@dataclass
class Totals:
    """Effort by bucket. `share` is of the report's grand total."""

    done: float = 0.0
    in_progress: float = 0.0
    todo: float = 0.0

    @property
    def total(self) -> float:
        return self.done + self.in_progress + self.todo

    def add(self, bucket: str, value: float) -> None:
        setattr(self, bucket, getattr(self, bucket) + value)

    def as_dict(self, grand_total: float) -> dict[str, float]:
        share = self.total / grand_total if grand_total else 0.0
        return {
            "done": _round(self.done),
            "in_progress": _round(self.in_progress),
            "todo": _round(self.todo),
            "total": _round(self.total),
            "share": _round(share),
        }


@dataclass
class EffortRow:
    key: str | None
    title: str
    totals: Totals = field(default_factory=Totals)


@dataclass
class EffortReport:
    """The ★ effort report of one cycle, measure and grouping."""

    cycle: str
    measure: Measure
    by: GroupBy
    rows: list[EffortRow]
    orphan: Totals
    non_okr: Totals
    unestimated: int

    @property
    def aligned(self) -> float:
        return sum(row.totals.total for row in self.rows)

    @property
    def grand_total(self) -> float:
        return self.aligned + self.orphan.total + self.non_okr.total

    @property
    def alignment(self) -> float:
        """Aligned effort / (aligned + orphan + non-OKR effort); 0 when there is none."""
        return self.aligned / self.grand_total if self.grand_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        grand = self.grand_total
        return {
            "cycle": self.cycle,
            "measure": self.measure,
            "by": self.by,
            "rows": [
                {"key": row.key, "title": row.title, **row.totals.as_dict(grand)}
                for row in self.rows
            ],
            "orphan": self.orphan.as_dict(grand),
            "non_okr": self.non_okr.as_dict(grand),
            "unestimated": self.unestimated,
            "alignment": _round(self.alignment),
        }

    def as_csv(self) -> str:
        """The same report as CSV: one line per row, then orphan, non_okr and the summary."""
        data = self.as_dict()
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        numbers = ("done", "in_progress", "todo", "total", "share")
        writer.writerow(["kind", "key", "title", *numbers])
        for row in data["rows"]:
            writer.writerow([self.by, row["key"] or "", row["title"], *(row[n] for n in numbers)])
        for kind in ("orphan", "non_okr"):
            writer.writerow([kind, "", "", *(data[kind][n] for n in numbers)])
        writer.writerow(["unestimated", "", "", "", "", "", data["unestimated"], ""])
        writer.writerow(["alignment", "", "", "", "", "", "", data["alignment"]])
        return out.getvalue()


def _round(value: float) -> float:
    return round(value, 6) + 0.0  # + 0.0 turns -0.0 into 0.0


def effort_report(
    session: Session, cycle: Cycle, measure: Measure, by: GroupBy, tz: tzinfo = UTC
) -> EffortReport:
    """The effort of `cycle` in `measure`, grouped `by` objective, kr, bet or team.

    The SQL sums the effort per target (bet or KR) — or per team — and per state; the few
    hundred target totals are then spread over KRs and objectives by the bets' KR weights.
    """
    if by not in GROUPINGS:
        raise Invalid(f"unknown grouping {by!r}: use one of {', '.join(GROUPINGS)}")
    effort = effort_of(measure)
    # Per part of the scope, one pass sums the effort per state, target (or team) and
    # bucket: most items serve a single target, which their state row names. The others
    # are summed over their matches.
    grouping = [STATES.c.project] if by == "team" else [STATES.c.target_kind, STATES.c.target_id]
    parts = []
    for scope in scopes(cycle_window(cycle, tz)):
        parts.append(
            select(
                STATES.c.state,
                *grouping,
                STATES.c.bucket,
                func.sum(effort),
                func.sum(unestimated()),
            )
            .where(scope)
            .group_by(STATES.c.state, *grouping, STATES.c.bucket)
        )
        if by != "team":
            parts.append(
                select(
                    literal("several"),
                    MATCHES.c.target_kind,
                    MATCHES.c.target_id,
                    STATES.c.bucket,
                    func.sum(effort * MATCHES.c.weight),
                    literal(0),
                )
                .join(MATCHES, MATCHES.c.item_id == STATES.c.item_id)
                .where(scope, STATES.c.state == "matched", STATES.c.target_kind == SEVERAL)
                .group_by(MATCHES.c.target_kind, MATCHES.c.target_id, STATES.c.bucket)
            )

    spread = {} if by == "team" else _allocation(session, by)
    groups: dict[Any, Totals] = {}
    by_kind = {"orphan": Totals(), "non_okr": Totals()}
    missing_estimates = 0
    for state, *group, bucket, value, missing in session.execute(union_all(*parts)):
        value = float(value or 0)
        missing_estimates += int(missing or 0)
        if state in by_kind:
            by_kind[state].add(bucket, value)
        elif by == "team":
            groups.setdefault(group[0], Totals()).add(bucket, value)
        elif state == "several" or group[0] != SEVERAL:
            for row, share in spread.get(tuple(group), {None: 1.0}).items():
                groups.setdefault(row, Totals()).add(bucket, value * share)
    return EffortReport(
        cycle=cycle.key,
        measure=measure,
        by=by,
        rows=_rows(session, cycle, by, groups),
        orphan=by_kind["orphan"],
        non_okr=by_kind["non_okr"],
        unestimated=missing_estimates,
    )


def kr_shares(weights: list[float | None]) -> list[float]:
    """A bet's KR weights as shares adding up to 1: a missing weight counts 1, and
    all-zero weights count equally."""
    values = [1.0 if weight is None else weight for weight in weights]
    total = sum(values)
    if total > 0:
        return [value / total for value in values]
    return [1 / len(values)] * len(values) if values else []


def _allocation(session: Session, by: GroupBy) -> dict[tuple[str, int], dict[int | None, float]]:
    """(target kind, target id) → {group id: share}: how a target's effort spreads out.

    A bet reaches its KRs by its KR weights, and through them their objectives; a KR
    reaches itself and its objective. What reaches no group goes to None.
    """
    objective_of = dict(session.execute(select(KeyResult.id, KeyResult.objective_id)).all())
    spread: dict[tuple[str, int], dict[int | None, float]] = {}
    for kr_id, objective_id in objective_of.items():
        spread[("kr", kr_id)] = (
            {None: 1.0} if by == "bet" else {kr_id if by == "kr" else objective_id: 1.0}
        )
    links: dict[int, list[tuple[int, float | None]]] = {}
    for bet_id, kr_id, weight in session.execute(
        select(BetKeyResult.bet_id, BetKeyResult.key_result_id, BetKeyResult.weight).order_by(
            BetKeyResult.bet_id, BetKeyResult.position
        )
    ):
        links.setdefault(bet_id, []).append((kr_id, weight))
    for (bet_id,) in session.execute(select(Bet.id)):
        if by == "bet":
            spread[("bet", bet_id)] = {bet_id: 1.0}
            continue
        shares: dict[int | None, float] = {}
        krs = links.get(bet_id, [])
        for (kr_id, _), share in zip(krs, kr_shares([w for _, w in krs]), strict=True):
            group = kr_id if by == "kr" else objective_of[kr_id]
            shares[group] = shares.get(group, 0.0) + share
        spread[("bet", bet_id)] = shares or {None: 1.0}
    return spread


def _rows(
    session: Session, cycle: Cycle, by: GroupBy, groups: dict[Any, Totals]
) -> list[EffortRow]:
    """The report's rows: the cycle's objectives, KRs or bets (even without effort) and
    whatever else received effort, in catalogue order; teams by effort."""
    ids = [group for group in groups if group is not None]
    if by == "team":
        rows = [EffortRow(team, team, groups[team]) for team in ids]
        rows.sort(key=lambda row: (-row.totals.total, row.key or ""))
    else:
        rows = [
            EffortRow(key, title, groups.get(group_id, Totals()))
            for group_id, key, title in session.execute(_catalogue_rows(cycle, by, ids))
        ]
    if None in groups and groups[None].total:
        rows.append(EffortRow(None, _NO_GROUP_TITLES[by], groups[None]))
    return rows


def _catalogue_rows(cycle: Cycle, by: GroupBy, ids: list[int]) -> Select[Any]:
    in_cycle = Objective.cycle_id == cycle.id
    if by == "objective":
        return (
            select(Objective.id, Objective.key, Objective.title)
            .where(or_(in_cycle, Objective.id.in_(ids)))
            .order_by(Objective.position, Objective.key)
        )
    if by == "kr":
        return (
            select(KeyResult.id, KeyResult.key, KeyResult.title)
            .join(Objective, Objective.id == KeyResult.objective_id)
            .where(or_(in_cycle, KeyResult.id.in_(ids)))
            .order_by(Objective.position, Objective.key, KeyResult.position, KeyResult.key)
        )
    serving_cycle = (
        select(BetKeyResult.bet_id)
        .join(KeyResult, KeyResult.id == BetKeyResult.key_result_id)
        .join(Objective, Objective.id == KeyResult.objective_id)
        .where(in_cycle)
    )
    return (
        select(Bet.id, Bet.key, Bet.title)
        .where(or_(Bet.id.in_(serving_cycle), Bet.id.in_(ids)))
        .order_by(Bet.position, Bet.key)
    )
