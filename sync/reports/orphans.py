"""Orphans: open (or recently done) items that serve no objective, biggest first.

An item is listed when its state is `orphan` and it is open, or done inside the cycle
asked for. Deleted and canceled items never are. With `roots_only`, only the topmost
orphans are listed (those whose parent is not listed), each with the effort of its whole
orphan subtree, since linking an epic links everything under it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    false,
    func,
    or_,
    select,
    union_all,
)
from sqlalchemy.orm import Session

from sync.errors import Invalid
from sync.reports.effort import Measure, done_within, effort_of, in_scope, open_items
from sync.reports.items import ItemView, views
from sync.store.models import ITEMS, STATES, TrackerItem
from sync.store.pagination import MAX_LIMIT, decode_cursor, encode_cursor

Window = tuple[datetime, datetime]


@dataclass
class OrphanView:
    """A listed orphan and its effort (with `roots_only`, that of its orphan subtree)."""

    view: ItemView
    effort: float


def listed(states: Any, window: Window | None) -> ColumnElement[bool]:
    """Whether an item (its `item_states` row, possibly aliased) is a listed orphan: an
    orphan open now or, with a window, done inside it."""
    done = (
        and_(
            states.c.bucket == "done",
            states.c.resolved_at >= window[0],
            states.c.resolved_at < window[1],
        )
        if window
        else false()
    )
    return and_(states.c.state == "orphan", or_(states.c.bucket.in_(("todo", "in_progress")), done))


def list_orphans(
    session: Session,
    *,
    window: Window | None = None,
    measure: Measure = "points",
    source: str | None = None,
    project: str | None = None,
    assignee: str | None = None,
    status_category: str | None = None,
    roots_only: bool = False,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[OrphanView], str | None]:
    """A page of orphans by effort (largest first), filtered; the cursor of the next."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}")
    # The listed orphans, read once (a range of an index per part of the scope): the roots
    # and their subtrees are found among them.
    ranges = [open_items()] + ([done_within(window)] if window else [])
    orphans = union_all(
        *(
            select(
                STATES.c.item_id,
                STATES.c.parent_id,
                STATES.c.project,
                STATES.c.bucket,
                cast(effort_of(measure), Float).label("effort"),
            ).where(STATES.c.state == "orphan", part)
            for part in ranges
        )
    ).cte("orphans")
    shown = select(orphans.c.item_id, orphans.c.effort)
    if roots_only:
        # A root's parent is not listed: the orphans anti-joined to themselves.
        listed_parent = orphans.alias("listed_parent")
        shown = (
            select(orphans.c.item_id.label("root"), orphans.c.item_id, orphans.c.effort)
            .outerjoin(listed_parent, listed_parent.c.item_id == orphans.c.parent_id)
            .where(listed_parent.c.item_id.is_(None))
        )
    if source or assignee:
        shown = shown.join(ITEMS, ITEMS.c.id == orphans.c.item_id)
    for column, value in (
        (ITEMS.c.source, source),
        (ITEMS.c.assignee, assignee),
        (orphans.c.project, project),
        (orphans.c.bucket, status_category),
    ):
        if value:
            shown = shown.where(column == value)
    ranked = _subtree_effort(shown, orphans) if roots_only else shown
    ranked = ranked.subquery("ranked")
    stmt = select(ranked.c.item_id, ranked.c.effort)
    if cursor is not None:
        try:
            effort, item_id = decode_cursor(cursor)
            effort, item_id = float(effort), int(item_id)
        except (TypeError, ValueError):
            raise Invalid(f"invalid cursor {cursor!r}") from None
        stmt = stmt.where(
            or_(
                ranked.c.effort < effort,
                and_(ranked.c.effort == effort, ranked.c.item_id > item_id),
            )
        )
    page = session.execute(
        stmt.order_by(ranked.c.effort.desc(), ranked.c.item_id).limit(limit + 1)
    ).all()
    next_cursor = None
    if len(page) > limit:
        page = page[:limit]
        next_cursor = encode_cursor([page[-1].effort, page[-1].item_id])
    items = {
        item.id: item
        for item in session.scalars(
            select(TrackerItem).where(TrackerItem.id.in_([row.item_id for row in page]))
        )
    }
    found = views(session, [items[row.item_id] for row in page])
    return [OrphanView(view, float(row.effort)) for view, row in zip(found, page, strict=True)], (
        next_cursor
    )


def _subtree_effort(roots: Any, orphans: Any) -> Any:
    """Each root with the summed effort of itself and its listed descendants."""
    tree = roots.cte("tree", recursive=True)
    child = orphans.alias("child")
    tree = tree.union_all(
        select(tree.c.root, child.c.item_id, child.c.effort).join(
            child, child.c.parent_id == tree.c.item_id
        )
    )
    return select(tree.c.root.label("item_id"), func.sum(tree.c.effort).label("effort")).group_by(
        tree.c.root
    )


@dataclass
class TeamRate:
    """A team's effort in a cycle, how much of it is orphaned, and how many items are."""

    team: str | None
    effort: float
    orphan_effort: float
    items: int
    orphans: int

    @property
    def rate(self) -> float:
        """Orphan effort / all effort (aligned, orphan and non-OKR); 0 without effort."""
        return self.orphan_effort / self.effort if self.effort else 0.0


def orphan_rates(session: Session, window: Window, measure: Measure) -> list[TeamRate]:
    """Per team (Jira project / Linear team), the orphaned share of the cycle's effort."""
    effort = cast(effort_of(measure), Float)
    orphan = STATES.c.state == "orphan"
    rows = session.execute(
        select(
            STATES.c.project,
            func.sum(effort),
            func.sum(case((orphan, effort), else_=0.0)),
            func.count(),
            func.sum(case((orphan, 1), else_=0)),
        )
        .where(in_scope(window))
        .group_by(STATES.c.project)
    )
    rates = [
        TeamRate(team, float(total or 0), float(lost or 0), int(count), int(orphans or 0))
        for team, total, lost, count, orphans in rows
    ]
    rates.sort(key=lambda rate: (-rate.rate, -rate.orphan_effort, rate.team or ""))
    return rates
