"""The set-based half of matching: item states, inheritance and counted points, in SQL.

`sync.matching.rematch` inserts each item's own matches, then `write_states` derives each
`item_states` row from the item's columns and own matches: *pending* (state NULL) unless
the item matched on its own. Pending rows are exactly the items being re-matched, and
`settle` settles them. For all items at once, `write_states` settles them itself, in the
statement that writes them, so that a full re-match writes each row once.

Inheritance walks down the trees with one recursive query: from each pending item whose
parent is settled, through pending children, carrying the *source* (the nearest ancestor
with matches of its own, whose match rows the walked items copy) and whether a non-OKR
label was seen on the way. An item with a manual unlink stops the walk: what it inherits
depends on what it unlinks, so it is settled on its own, and the walk resumes below it.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from itertools import islice
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Table,
    Text,
    and_,
    case,
    cast,
    exists,
    false,
    func,
    insert,
    literal,
    not_,
    null,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.selectable import CTE, Select

from integrations.base import CONTAINER_TYPES
from sync.store.items import dialect_insert
from sync.store.models import ITEMS, LINKS, MATCHES, STATES

# Ids per IN list: far below both backends' bind parameter limits.
BATCH_SIZE = 1000
# Bounds the rounds of settling; only malformed data (a cycle of parents) comes close.
MAX_PASSES = 64
DEAD = ("canceled", "deleted")
_MATCH_COLUMNS = [
    "item_id",
    "target_kind",
    "target_id",
    "weight",
    "origin",
    "detail",
    "inherited_from_id",
]

# What `count` counts: containers (epics, projects) and sub-tasks count nothing.
WORK_ITEM_TYPES = frozenset({"story", "task", "bug", "other"})
# The `target_kind` of an item state that serves several targets: read its matches.
SEVERAL = "*"


# Taken as they are from an item's own facts when its state is restated.
_CARRIED = (
    "non_okr_label",
    "bucket",
    "resolved_at",
    "project",
    "container",
    "work_item",
    "estimate",
)
# Replaced when an item is matched again; `estimated_below` and `points` are left to
# `refresh_points`, which writes them only where they change.
_RESTATED = (
    "parent_id",
    "state",
    "source_id",
    "target_kind",
    "target_id",
    *_CARRIED,
    "time_spent",
)


def chunks(values: Collection[int], size: int = BATCH_SIZE) -> Iterator[list[int]]:
    iterator = iter(sorted(values))
    while chunk := list(islice(iterator, size)):
        yield chunk


def write_states(
    session: Session, item_ids: list[int] | None, non_okr_labels: Sequence[str]
) -> None:
    """Write the state rows of these items, whose own matches are in.

    For some items (`item_ids`), the rows are pending unless the item matched on its own,
    and points are counted as if nothing below carried an estimate: `settle` and
    `refresh_points` finish them. For all items (None), inheritance and counted points
    are derived in the same statement, so that each row is written once; only items
    below a manual unlink are left pending.
    """
    base = _derived(non_okr_labels, item_ids)
    if item_ids is not None:
        rows = base.where(ITEMS.c.id.in_(item_ids))
    else:
        # Joins rather than IN or EXISTS tests: the planner cannot size recursive queries,
        # and would otherwise run them once per row.
        nodes = base.cte("base")
        walk = _walk(nodes)
        up = _estimated_below(nodes)
        unlinking = select(LINKS.c.item_id).where(LINKS.c.action == "unlink").distinct().subquery()
        inherits = and_(walk.c.item_id.is_not(None), unlinking.c.item_id.is_(None))
        below = up.c.item_id.is_not(None)
        rows = (
            select(
                nodes.c.item_id,
                nodes.c.parent_id,
                case(
                    (nodes.c.state.is_not(None), nodes.c.state),
                    (inherits, _walked_state(walk)),
                ).label("state"),
                case((inherits, walk.c.source_id)).label("source_id"),
                case((inherits, walk.c.target_kind), else_=nodes.c.target_kind).label(
                    "target_kind"
                ),
                case((inherits, walk.c.target_id), else_=nodes.c.target_id).label("target_id"),
                *[nodes.c[name] for name in _CARRIED],
                below.label("estimated_below"),
                case((or_(nodes.c.container, below), 0.0), else_=nodes.c.points).label("points"),
                nodes.c.time_spent,
            )
            .select_from(
                nodes.outerjoin(walk, walk.c.item_id == nodes.c.item_id)
                .outerjoin(up, up.c.item_id == nodes.c.item_id)
                .outerjoin(unlinking, unlinking.c.item_id == nodes.c.item_id)
            )
            .where(true())  # SQLite needs a WHERE in an INSERT … SELECT with ON CONFLICT
        )
    stmt = dialect_insert(session, STATES).from_select(
        [column.name for column in rows.selected_columns], rows
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[STATES.c.item_id],
            set_={name: stmt.excluded[name] for name in _RESTATED},
        )
    )


def _derived(non_okr_labels: Sequence[str], item_ids: list[int] | None) -> Select[Any]:
    """Each item's state row as its own columns and own matches say it (pending if none)."""
    parent = ITEMS.alias("parent")
    own = (
        select(
            MATCHES.c.item_id,
            func.count().label("n"),
            func.min(MATCHES.c.target_kind).label("kind"),
            func.min(MATCHES.c.target_id).label("target"),
        )
        .where(true() if item_ids is None else MATCHES.c.item_id.in_(item_ids))
        .group_by(MATCHES.c.item_id)
        .subquery("own")
    )
    single = own.c.n == 1
    container = ITEMS.c.type.in_(CONTAINER_TYPES)
    labelled = or_(false(), *(json_has(ITEMS.c.labels, label) for label in non_okr_labels))
    return select(
        ITEMS.c.id.label("item_id"),
        parent.c.id.label("parent_id"),
        case((own.c.n.is_not(None), "matched")).label("state"),
        cast(null(), Integer).label("source_id"),
        case((single, own.c.kind), (own.c.n > 1, SEVERAL)).label("target_kind"),
        case((single, own.c.target)).label("target_id"),
        labelled.label("non_okr_label"),
        case((ITEMS.c.deleted, "deleted"), else_=ITEMS.c.status_category).label("bucket"),
        ITEMS.c.resolved_at,
        ITEMS.c.project,
        container.label("container"),
        ITEMS.c.type.in_(WORK_ITEM_TYPES).label("work_item"),
        ITEMS.c.estimate,
        false().label("estimated_below"),
        case((container, 0.0), else_=func.coalesce(ITEMS.c.estimate, 0.0)).label("points"),
        func.coalesce(ITEMS.c.time_spent_seconds, 0).label("time_spent"),
    ).select_from(
        ITEMS.outerjoin(
            parent,
            and_(
                parent.c.source == ITEMS.c.source,
                parent.c.external_id == ITEMS.c.parent_ref,
                parent.c.id != ITEMS.c.id,
            ),
        ).outerjoin(own, own.c.item_id == ITEMS.c.id)
    )


def json_has(column: Any, value: str, *, prefix: bool = False) -> ColumnElement[bool]:
    """Whether a JSON list column holds `value`, ignoring (ASCII) case, as a text search.

    With `prefix`, whether it holds a string starting with `value`.
    """
    encoded = json.dumps(value.lower())
    if prefix:
        encoded = encoded[:-1]
    return func.lower(cast(column, Text)).like(f"%{escape_like(encoded)}%", escape="!")


def escape_like(text: str) -> str:
    return text.replace("!", "!!").replace("%", "!%").replace("_", "!_")


def _unlinks(item_id: ColumnElement[int]) -> ColumnElement[bool]:
    return exists().where(LINKS.c.item_id == item_id, LINKS.c.action == "unlink")


def _walk(nodes: Any) -> CTE:
    """Every pending item reachable from a settled parent, with what it inherits.

    `nodes` is `item_states`, or a query with its columns.
    `source_id` is NULL when nothing above passes a match down; `labelled` then says
    whether the item or an unmatched ancestor carries a non-OKR label. `target_kind` and
    `target_id` are what the source's state row says of its targets.
    """
    child, parent = nodes.alias("c"), nodes.alias("p")
    matched = parent.c.state == "matched"
    seeds = (
        select(
            child.c.item_id,
            case((matched, func.coalesce(parent.c.source_id, parent.c.item_id))).label("source_id"),
            case((matched, parent.c.target_kind)).label("target_kind"),
            case((matched, parent.c.target_id)).label("target_id"),
            or_(child.c.non_okr_label, func.coalesce(parent.c.state == "non_okr", False)).label(
                "labelled"
            ),
        )
        .select_from(child.outerjoin(parent, parent.c.item_id == child.c.parent_id))
        .where(
            child.c.state.is_(None),
            or_(parent.c.item_id.is_(None), parent.c.state.is_not(None)),
        )
        .cte("walk", recursive=True)
    )
    below = nodes.alias("b")
    return seeds.union_all(
        select(
            below.c.item_id,
            seeds.c.source_id,
            seeds.c.target_kind,
            seeds.c.target_id,
            or_(below.c.non_okr_label, and_(seeds.c.source_id.is_(None), seeds.c.labelled)),
        )
        .join(below, below.c.parent_id == seeds.c.item_id)
        .where(below.c.state.is_(None), not_(_unlinks(seeds.c.item_id)))
    )


def settle(session: Session, item_ids: Collection[int] | None) -> None:
    """Settle every pending item (`item_ids` are all of them; None: every item is).

    First the states, round after round down the trees; then, in one statement, the
    matches of everything that inherits.
    """
    # Progress is counted, not taken from rowcounts: SQLite reports none for statements
    # that begin with WITH.
    pending = _pending(session)
    for _ in range(MAX_PASSES if pending else 0):
        walk = _walk(STATES)
        session.execute(
            update(STATES)
            .where(STATES.c.item_id == walk.c.item_id, not_(_unlinks(STATES.c.item_id)))
            .values(
                state=_walked_state(walk),
                source_id=walk.c.source_id,
                target_kind=walk.c.target_kind,
                target_id=walk.c.target_id,
            )
        )
        _settle_unlinking(session)
        pending, before = _pending(session), pending
        if pending in (0, before):
            break
    # Whatever is still pending sits in (or under) a cycle of parents: settle it on its
    # own facts.
    session.execute(
        update(STATES)
        .where(STATES.c.state.is_(None))
        .values(state=case((STATES.c.non_okr_label, "non_okr"), else_="orphan"), source_id=None)
    )
    inheriting = STATES.c.source_id.is_not(None)
    scopes = (
        [true()]
        if item_ids is None
        else [STATES.c.item_id.in_(chunk) for chunk in chunks(item_ids)]
    )
    for scope in scopes:
        session.execute(
            insert(MATCHES).from_select(_MATCH_COLUMNS, _copied_matches(inheriting, scope))
        )


def _copied_matches(*conditions: ColumnElement[bool]) -> Select[Any]:
    """The match rows of the items selected, copied from each one's source."""
    source_match, source_item = MATCHES.alias("sm"), ITEMS.alias("si")
    return (
        select(
            STATES.c.item_id,
            source_match.c.target_kind,
            source_match.c.target_id,
            source_match.c.weight,
            literal("inherited"),
            _inherited_detail(source_match, source_item),
            func.coalesce(source_match.c.inherited_from_id, STATES.c.source_id),
        )
        .join(source_match, source_match.c.item_id == STATES.c.source_id)
        .join(source_item, source_item.c.id == STATES.c.source_id)
        .where(*conditions)
    )


def _walked_state(walk: CTE) -> ColumnElement[str]:
    return case(
        (walk.c.source_id.is_not(None), "matched"),
        (walk.c.labelled, "non_okr"),
        else_="orphan",
    )


def _pending(session: Session) -> int:
    return session.scalar(select(func.count()).where(STATES.c.state.is_(None))) or 0


def _inherited_detail(source_match: Table, source_item: Table) -> ColumnElement[str]:
    return case(
        (source_match.c.origin == "inherited", source_match.c.detail),
        else_=literal("inherited from ")
        + source_item.c.key
        + literal(", which has ")
        + source_match.c.detail,
    )


def _settle_unlinking(session: Session) -> None:
    """Settle the pending items with manual unlinks whose parent is settled.

    Such an item takes its parent's matches less those it unlinks, renormalised, and
    becomes the source of what its own children inherit. The parent's matches are read
    from the parent's source: an inheriting parent's own rows are copied only at the end.
    """
    child, parent = STATES.alias("c"), STATES.alias("p")
    parent_match, parent_item = MATCHES.alias("pm"), ITEMS.alias("pi")
    parent_source = func.coalesce(parent.c.source_id, parent.c.item_id)
    unlinked = exists().where(
        LINKS.c.item_id == child.c.item_id,
        LINKS.c.target_kind == parent_match.c.target_kind,
        LINKS.c.target_id == parent_match.c.target_id,
        LINKS.c.action == "unlink",
    )
    # Outer-joined to the parent: an item without one (or whose parent is unknown) is
    # ready too, with nothing to inherit.
    ready = and_(
        child.c.state.is_(None),
        _unlinks(child.c.item_id),
        or_(parent.c.item_id.is_(None), parent.c.state.is_not(None)),
    )
    session.execute(
        insert(MATCHES).from_select(
            _MATCH_COLUMNS,
            select(
                child.c.item_id,
                parent_match.c.target_kind,
                parent_match.c.target_id,
                parent_match.c.weight
                / func.sum(parent_match.c.weight).over(partition_by=child.c.item_id),
                literal("inherited"),
                _inherited_detail(parent_match, parent_item),
                func.coalesce(parent_match.c.inherited_from_id, parent_source),
            )
            .select_from(
                child.join(parent, parent.c.item_id == child.c.parent_id)
                .join(parent_match, parent_match.c.item_id == parent_source)
                .join(parent_item, parent_item.c.id == parent_source)
            )
            .where(ready, parent.c.state == "matched", not_(unlinked)),
        )
    )
    inherited = (
        select(
            MATCHES.c.item_id,
            func.count().label("n"),
            func.min(MATCHES.c.target_kind).label("kind"),
            func.min(MATCHES.c.target_id).label("target"),
        )
        .where(MATCHES.c.item_id.in_(select(LINKS.c.item_id).where(LINKS.c.action == "unlink")))
        .group_by(MATCHES.c.item_id)
        .subquery("inherited")
    )
    single = inherited.c.n == 1
    decided = (
        select(
            child.c.item_id,
            case((single, inherited.c.kind), (inherited.c.n > 1, SEVERAL)).label("target_kind"),
            case((single, inherited.c.target)).label("target_id"),
            case(
                (inherited.c.n.is_not(None), "matched"),
                (
                    or_(child.c.non_okr_label, func.coalesce(parent.c.state == "non_okr", False)),
                    "non_okr",
                ),
                else_="orphan",
            ).label("state"),
        )
        .select_from(
            child.outerjoin(parent, parent.c.item_id == child.c.parent_id).outerjoin(
                inherited, inherited.c.item_id == child.c.item_id
            )
        )
        .where(ready)
        .subquery()
    )
    session.execute(
        update(STATES)
        .where(STATES.c.item_id == decided.c.item_id)
        .values(
            state=decided.c.state,
            source_id=None,
            target_kind=decided.c.target_kind,
            target_id=decided.c.target_id,
        )
    )


# --- counted points ------------------------------------------------------------------------


def _estimated_below(nodes: Any) -> CTE:
    """The items with a live descendant carrying an estimate: they count no own points."""
    live_child = nodes.alias("s")
    up = (
        select(live_child.c.parent_id.label("item_id"))
        .where(
            live_child.c.parent_id.is_not(None),
            live_child.c.bucket.not_in(DEAD),
            live_child.c.estimate.is_not(None),
        )
        .cte("up", recursive=True)
    )
    above = nodes.alias("a")
    return up.union(
        select(above.c.parent_id)
        .join(up, above.c.item_id == up.c.item_id)
        .where(above.c.parent_id.is_not(None), above.c.bucket.not_in(DEAD))
    )


def refresh_points(session: Session, item_ids: Collection[int]) -> None:
    """Recompute `estimated_below` and `points` of these items until they hold."""
    child = STATES.alias("child")
    below = exists().where(
        child.c.parent_id == STATES.c.item_id,
        child.c.bucket.not_in(DEAD),
        or_(child.c.estimate.is_not(None), child.c.estimated_below),
    )
    points = case(
        (or_(STATES.c.container, below), 0.0), else_=func.coalesce(STATES.c.estimate, 0.0)
    )
    refresh = (
        update(STATES)
        .where(or_(STATES.c.estimated_below != below, STATES.c.points != points))
        .values(estimated_below=below, points=points)
    )
    scopes = [STATES.c.item_id.in_(chunk) for chunk in chunks(item_ids)]
    for _ in range(MAX_PASSES if scopes else 0):
        if not sum(session.execute(refresh.where(scope)).rowcount for scope in scopes):
            break
