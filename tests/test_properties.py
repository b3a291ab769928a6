"""Invariants of matching and effort, on random backlogs (hypothesis).

Each example is a random forest of items (epics, stories, sub-tasks, projects…) with random
labels, statuses, estimates and time, over a fixed catalogue: bet A serves KR1, bet B
serves KR1 and KR2 equally, bet C serves none. A plain recursive reference model says
what the store should conclude; the properties compare the two.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from okr_builders import Org
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from sync.matching.item import MatchRules
from sync.matching.rematch import rematch_items
from sync.reports.effort import GROUPINGS, MEASURES, EffortReport, Measure, effort_report
from sync.reports.items import list_items
from sync.store.db import transaction
from sync.store.models import Base, ItemMatch, ItemState, ManualLink, TrackerItem

RULES = MatchRules()
TYPES = ["epic", "project", "story", "task", "bug", "subtask", "other"]
STATUSES = ["todo", "in_progress", "done", "canceled"]
LABELS = ["bet:A", "BET:b", "bet:C", "kr:KR2", "bet:missing", "ktlo", "No-OKR", "frontend"]
TARGETS = {"bet:a": "A", "bet:b": "B", "bet:c": "C", "kr:kr2": "KR2"}
CYCLE = (date(2026, 10, 1), date(2026, 12, 31))
EXAMPLES = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@dataclass(frozen=True)
class Spec:
    parent: int | None
    type: str
    status: str
    deleted: bool
    done_in_cycle: bool
    labels: tuple[str, ...]
    estimate: float | None
    time: int | None
    links: tuple[str, ...] = ()  # bets linked by hand
    unlinks: tuple[str, ...] = ()  # bets unlinked by hand


@st.composite
def backlogs(draw: st.DrawFn) -> list[Spec]:
    specs = []
    for index in range(draw(st.integers(1, 14))):
        specs.append(
            Spec(
                parent=draw(st.none() | st.integers(0, index - 1)) if index else None,
                type=draw(st.sampled_from(TYPES)),
                status=draw(st.sampled_from(STATUSES)),
                deleted=draw(st.booleans()) and draw(st.booleans()),
                done_in_cycle=draw(st.booleans()),
                labels=tuple(draw(st.lists(st.sampled_from(LABELS), max_size=3, unique=True))),
                estimate=draw(st.none() | st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0])),
                time=draw(st.none() | st.integers(0, 8 * 3600)),
                links=(link := tuple(draw(st.lists(st.sampled_from("ABC"), max_size=1)))),
                unlinks=tuple(
                    bet
                    for bet in draw(st.lists(st.sampled_from("AB"), max_size=2, unique=True))
                    if bet not in link
                ),
            )
        )
    return specs


# --- the reference model -------------------------------------------------------------------


@dataclass
class Expected:
    state: list[str]  # matched | non_okr | orphan, lifecycle aside
    targets: list[list[str]]
    in_scope: list[bool]
    effort: dict[str, list[float]]
    unestimated: int


def reference(specs: list[Spec]) -> Expected:
    n = len(specs)
    children: list[list[int]] = [[] for _ in range(n)]
    for index, spec in enumerate(specs):
        if spec.parent is not None:
            children[spec.parent].append(index)
    targets: list[list[str]] = []
    state: list[str] = []
    for spec in specs:  # parents come first
        labelled = [TARGETS[x.lower()] for x in spec.labels if x.lower() in TARGETS]
        own = [t for t in dict.fromkeys(labelled + list(spec.links)) if t not in spec.unlinks]
        inherited = targets[spec.parent] if spec.parent is not None else []
        targets.append(own or [t for t in inherited if t not in spec.unlinks])
        marked = any(label.lower() in ("ktlo", "no-okr") for label in spec.labels)
        parent_non_okr = spec.parent is not None and state[spec.parent] == "non_okr"
        if targets[-1]:
            state.append("matched")
        else:
            state.append("non_okr" if marked or parent_non_okr else "orphan")

    def live(i: int) -> bool:
        return not specs[i].deleted and specs[i].status != "canceled"

    below = [False] * n
    for i in reversed(range(n)):  # children come after their parents
        below[i] = any(live(c) and (specs[c].estimate is not None or below[c]) for c in children[i])
    in_scope = [
        not s.deleted
        and (s.status in ("todo", "in_progress") or (s.status == "done" and s.done_in_cycle))
        for s in specs
    ]
    work = [s.type in ("story", "task", "bug", "other") for s in specs]
    points = [
        0.0 if s.type in ("epic", "project") or below[i] else s.estimate or 0.0
        for i, s in enumerate(specs)
    ]
    effort = {
        "points": points,
        "count": [1.0 if w else 0.0 for w in work],
        "time": [float(s.time or 0) for s in specs],
    }
    unestimated = sum(
        1
        for i, s in enumerate(specs)
        if in_scope[i] and work[i] and s.estimate is None and not below[i]
    )
    return Expected(state, targets, in_scope, effort, unestimated)


def by_bet(expected: Expected, measure: Measure) -> dict[str | None, float]:
    """The report by bet the model predicts: each item's effort split over its targets."""
    rows: dict[str | None, float] = {}
    for i, targets in enumerate(expected.targets):
        if expected.in_scope[i] and expected.state[i] == "matched":
            for target in targets:
                row = None if target == "KR2" else target
                rows[row] = rows.get(row, 0.0) + expected.effort[measure][i] / len(targets)
    return rows


# --- the store -----------------------------------------------------------------------------


@contextmanager
def store(sessions: sessionmaker[Session], specs: list[Spec]) -> Iterator[tuple[Session, Org]]:
    """The catalogue and `specs` in an emptied store, matched."""
    with transaction(sessions) as session:
        for table in reversed(Base.metadata.sorted_tables):
            session.execute(delete(table))
        org = Org(session)
        org.cycle("Q4", *CYCLE)
        org.objective("O1", "Q4")
        org.kr("KR1", "O1")
        org.kr("KR2", "O1")
        org.bet("A", ["KR1"])
        org.bet("B", ["KR1", "KR2"])
        org.bet("C")
        for index, spec in enumerate(specs):
            put(org, index, spec)
        rematch_items(session, None, RULES)
        yield session, org


def put(org: Org, index: int, spec: Spec) -> None:
    resolved = (
        datetime(2026, 11, 1, tzinfo=UTC)
        if spec.done_in_cycle
        else datetime(2026, 5, 1, tzinfo=UTC)
    )
    item = org.item(
        f"T-{index}",
        type=spec.type,
        status=spec.status,
        parent=f"T-{spec.parent}" if spec.parent is not None else None,
        labels=spec.labels,
        estimate=spec.estimate,
        time_spent=spec.time,
        resolved=resolved if spec.status == "done" else None,
        deleted=spec.deleted,
    )
    for action, bets in (("link", spec.links), ("unlink", spec.unlinks)):
        for bet in bets:
            target_id = org.bets[bet].id
            org.session.add(
                ManualLink(item_id=item.id, target_kind="bet", target_id=target_id, action=action)
            )


def totals(report: EffortReport) -> dict[str | None, float]:
    return {row.key: row.totals.total for row in report.rows if row.totals.total}


# --- the properties ------------------------------------------------------------------------


@EXAMPLES
@given(specs=backlogs())
def test_no_effort_is_counted_twice_and_shares_add_up(
    sessions: sessionmaker[Session], specs: list[Spec]
) -> None:
    expected = reference(specs)
    with store(sessions, specs) as (session, org):
        for measure in MEASURES:
            in_scope = sum(
                value
                for value, counted in zip(expected.effort[measure], expected.in_scope, strict=True)
                if counted
            )
            for by in GROUPINGS:
                report = effort_report(session, org.cycles["Q4"], measure, by)
                # Every counted item's effort exactly once: never twice, never lost.
                assert report.grand_total == pytest.approx(in_scope)
                shares = report.as_dict()
                parts = [row["share"] for row in shares["rows"]]
                parts += [shares["orphan"]["share"], shares["non_okr"]["share"]]
                if report.grand_total:
                    assert sum(parts) == pytest.approx(1, abs=1e-5)
                else:
                    assert sum(parts) == 0 and report.alignment == 0
                assert report.unestimated == expected.unestimated
            bets = effort_report(session, org.cycles["Q4"], measure, "bet")
            assert totals(bets) == pytest.approx(
                {k: v for k, v in by_bet(expected, measure).items() if v}
            )


@EXAMPLES
@given(specs=backlogs())
def test_an_item_is_an_orphan_exactly_when_the_rules_say(
    sessions: sessionmaker[Session], specs: list[Spec]
) -> None:
    expected = reference(specs)
    with store(sessions, specs) as (session, _):
        found, _ = list_items(session, orphan=True, limit=100)
        orphans = {view.item.key for view in found}
    assert orphans == {
        f"T-{i}"
        for i, spec in enumerate(specs)
        if expected.state[i] == "orphan" and not spec.deleted and spec.status != "canceled"
    }


@EXAMPLES
@given(specs=backlogs(), data=st.data(), measure=st.sampled_from(MEASURES))
def test_moving_an_item_between_bets_moves_exactly_its_effort(
    sessions: sessionmaker[Session], specs: list[Spec], data: st.DataObject, measure: Measure
) -> None:
    # Without manual decisions, which would make some descendants follow other rules.
    specs = [replace(spec, links=(), unlinks=()) for spec in specs]
    mover = data.draw(st.integers(0, len(specs) - 1))
    specs[mover] = replace(specs[mover], labels=("bet:A",))
    moved = [*specs]
    moved[mover] = replace(specs[mover], labels=("bet:C",))
    before, after = reference(specs), reference(moved)
    with store(sessions, specs) as (session, org):
        first = totals(effort_report(session, org.cycles["Q4"], measure, "bet"))
        item = org.items[f"T-{mover}"]
        item.labels = ["bet:C"]
        session.flush()
        rematch_items(session, [item.id], RULES)  # the incremental path
        second = totals(effort_report(session, org.cycles["Q4"], measure, "bet"))
    # What the mover carries: itself and the descendants that inherit from it.
    carried = sum(
        before.effort[measure][i]
        for i in range(len(specs))
        if before.in_scope[i] and before.targets[i] != after.targets[i]
    )
    assert first.get("A", 0) - second.get("A", 0) == pytest.approx(carried)
    assert second.get("C", 0) - first.get("C", 0) == pytest.approx(carried)
    for row in (set(first) | set(second)) - {"A", "C"}:
        assert first.get(row, 0) == pytest.approx(second.get(row, 0))


def derived(session: Session) -> dict[str, tuple[object, ...]]:
    """Everything matching derives, per item key, comparable across re-matches."""
    keys = dict(session.execute(select(TrackerItem.id, TrackerItem.key)).all())
    matches: dict[int, list[tuple[object, ...]]] = {}
    for m in session.scalars(select(ItemMatch)):
        origin = keys.get(m.inherited_from_id)
        matches.setdefault(m.item_id, []).append(
            (m.target_kind, m.target_id, round(m.weight, 9), m.origin, m.detail, origin)
        )
    return {
        keys[s.item_id]: (
            s.state,
            keys.get(s.parent_id),
            s.bucket,
            s.points,
            s.estimated_below,
            (s.target_kind, s.target_id),
            sorted(matches.get(s.item_id, [])),
        )
        for s in session.scalars(select(ItemState))
    }


@EXAMPLES
@given(specs=backlogs(), data=st.data())
def test_incremental_rematch_agrees_with_a_full_one(
    sessions: sessionmaker[Session], specs: list[Spec], data: st.DataObject
) -> None:
    with store(sessions, specs) as (session, org):
        changed = data.draw(st.sets(st.integers(0, len(specs) - 1), min_size=1))
        for index in sorted(changed):
            item = org.items[f"T-{index}"]
            item.labels = data.draw(st.lists(st.sampled_from(LABELS), max_size=2, unique=True))
            item.status_category = data.draw(st.sampled_from(STATUSES))
            item.estimate = data.draw(st.none() | st.sampled_from([1.0, 2.0]))
            parent = data.draw(st.none() | st.integers(0, index - 1)) if index else None
            item.parent_ref = f"id-T-{parent}" if parent is not None else None
        session.flush()
        rematch_items(session, [org.items[f"T-{i}"].id for i in changed], RULES)
        incremental = derived(session)
        rematch_items(session, None, RULES)
        assert incremental == derived(session)
