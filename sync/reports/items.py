"""Tracker items as the API shows them: each with its matching state and its matches."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.orm import Session

from sync.errors import NotFound
from sync.store.models import (
    Bet,
    BetKeyResult,
    ItemMatch,
    ItemState,
    KeyResult,
    Objective,
    TrackerItem,
)
from sync.store.pagination import paginate


@dataclass(frozen=True)
class MatchView:
    """One of an item's matches: the bet or KR, the item's share, and why."""

    kind: str
    key: str
    title: str
    weight: float
    origin: str
    detail: str


@dataclass
class ItemView:
    """An item, its state (`matched`, `non_okr`, `orphan`; None before its first match)
    and its matches."""

    item: TrackerItem
    state: str | None
    matches: list[MatchView] = field(default_factory=list)

    @property
    def is_orphan(self) -> bool:
        """No effective match, no non-OKR label, and neither deleted nor canceled."""
        return (
            self.state == "orphan"
            and not self.item.deleted
            and self.item.status_category != "canceled"
        )


def find_item(session: Session, source: str, key: str) -> TrackerItem:
    """The item of `source` with `key` (the live one, should a key have been reused)."""
    item = session.scalar(
        select(TrackerItem)
        .where(TrackerItem.source == source, TrackerItem.key == key)
        .order_by(TrackerItem.deleted, TrackerItem.updated_at.desc(), TrackerItem.id.desc())
        .limit(1)
    )
    if item is None:
        raise NotFound(f"no {source} item with key {key!r}")
    return item


def views(session: Session, items: Sequence[TrackerItem]) -> list[ItemView]:
    """Views of `items`, their states and matches loaded in two queries."""
    ids = [item.id for item in items]
    states = dict(
        session.execute(
            select(ItemState.item_id, ItemState.state).where(ItemState.item_id.in_(ids))
        ).all()
    )
    matches: dict[int, list[MatchView]] = defaultdict(list)
    for kind, model in (("bet", Bet), ("kr", KeyResult)):
        rows = session.execute(
            select(ItemMatch, model.key, model.title)
            .join(model, model.id == ItemMatch.target_id)
            .where(ItemMatch.item_id.in_(ids), ItemMatch.target_kind == kind)
        )
        for match, key, title in rows:
            matches[match.item_id].append(
                MatchView(kind, key, title, match.weight, match.origin, match.detail)
            )
    for found in matches.values():
        found.sort(key=lambda view: (-view.weight, view.kind, view.key))
    return [ItemView(item, states.get(item.id), matches.get(item.id, [])) for item in items]


def orphan_condition() -> Any:
    """SQL for `ItemView.is_orphan`, over TrackerItem joined to its ItemState."""
    return and_(
        ItemState.state == "orphan",
        TrackerItem.deleted.is_(False),
        TrackerItem.status_category != "canceled",
    )


def list_items(
    session: Session,
    *,
    source: str | None = None,
    orphan: bool | None = None,
    bet: str | None = None,
    kr: str | None = None,
    objective: str | None = None,
    q: str | None = None,
    limit: int = 100,
    cursor: str | None = None,
) -> tuple[list[ItemView], str | None]:
    """A page of items, filtered; `bet`, `kr` and `objective` take keys (NotFound if unknown).

    `kr` includes items matched to bets that serve the KR; `objective` those matched to
    its KRs or to bets serving them.
    """
    stmt = select(TrackerItem)
    if source:
        stmt = stmt.where(TrackerItem.source == source)
    if orphan is not None:
        is_orphan = exists().where(ItemState.item_id == TrackerItem.id, orphan_condition())
        stmt = stmt.where(is_orphan if orphan else ~is_orphan)
    if q:
        pattern = f"%{q.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(TrackerItem.title).like(pattern),
                func.lower(TrackerItem.key).like(pattern),
            )
        )
    if bet:
        stmt = stmt.where(_matched_to(_key_ids(session, Bet, bet), []))
    if kr:
        kr_ids = _key_ids(session, KeyResult, kr)
        stmt = stmt.where(_matched_to(_bets_serving(kr_ids), kr_ids))
    if objective:
        objective_ids = _key_ids(session, Objective, objective)
        kr_ids = select(KeyResult.id).where(KeyResult.objective_id.in_(objective_ids))
        stmt = stmt.where(_matched_to(_bets_serving(kr_ids), kr_ids))
    rows, next_cursor = paginate(session, stmt, TrackerItem.id, limit, cursor)
    return views(session, rows), next_cursor


def _key_ids(session: Session, model: type[Bet | KeyResult | Objective], key: str) -> list[int]:
    found = session.scalar(select(model.id).where(model.key == key))
    if found is None:
        noun = {Bet: "bet", KeyResult: "key result", Objective: "objective"}[model]
        raise NotFound(f"no {noun} with key {key!r}")
    return [found]


def _bets_serving(kr_ids: list[int] | Select[Any]) -> Select[Any]:
    return select(BetKeyResult.bet_id).where(BetKeyResult.key_result_id.in_(kr_ids))


def _matched_to(bet_ids: list[int] | Select[Any], kr_ids: list[int] | Select[Any]) -> Any:
    return exists().where(
        ItemMatch.item_id == TrackerItem.id,
        or_(
            and_(ItemMatch.target_kind == "bet", ItemMatch.target_id.in_(bet_ids)),
            and_(ItemMatch.target_kind == "kr", ItemMatch.target_id.in_(kr_ids)),
        ),
    )
