"""The ladder from one ticket up to the north star, each rung saying how it climbs.

A matched item has one ladder per path: per bet or KR it serves, and per KR of each bet,
weighted by the item's share of effort that takes that path (the weights add up to 1).
Each step's `origin` and `detail` say how it connects to the step above it: the ticket by
its label, link, ref, manual link or inheritance (then its ancestors, up to the one whose
own match it inherits), the bet by serving a KR, the KR by belonging to an objective, and
so on. An item without a ladder gets an explanation instead: why it is an orphan or
non-OKR work, and how to link it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.matching.item import ItemFacts, MatchRules, has_non_okr_label, unknown_labels
from sync.matching.rematch import load_catalogue
from sync.reports.effort import kr_shares
from sync.reports.items import ItemView, views
from sync.store.models import (
    Bet,
    BetKeyResult,
    ItemMatch,
    ItemState,
    KeyResult,
    ManualLink,
    NorthStar,
    Objective,
    TrackerItem,
)

# How far up a parent chain a trace walks: far beyond any real hierarchy, short of a cycle.
MAX_DEPTH = 50


@dataclass(frozen=True)
class Step:
    """One rung: an item, bet, key_result, objective, strategy or north_star."""

    level: str
    key: str | None
    title: str
    origin: str
    detail: str
    url: str | None = None


@dataclass
class Ladder:
    """One path up, and the share of the item's effort that takes it."""

    weight: float
    steps: list[Step] = field(default_factory=list)


@dataclass
class Trace:
    view: ItemView
    ladders: list[Ladder]
    explanation: str


def trace_item(session: Session, item: TrackerItem, rules: MatchRules) -> Trace:
    """How `item` ladders up, or why it does not."""
    view = views(session, [item])[0]
    matches = session.scalars(
        select(ItemMatch)
        .where(ItemMatch.item_id == item.id)
        .order_by(ItemMatch.weight.desc(), ItemMatch.target_kind, ItemMatch.target_id)
    ).all()
    if not matches:
        return Trace(view, [], _why_unmatched(session, item, view.state, rules))
    north_star = session.scalar(select(NorthStar).order_by(NorthStar.id).limit(1))
    ladders = [
        Ladder(match.weight * share, _item_steps(session, item, match) + upper)
        for match in matches
        for share, upper in _target_steps(session, match, north_star)
    ]
    serves = ", ".join(
        f"{view_match.kind} {view_match.key} ({_percent(view_match.weight)})"
        for view_match in view.matches
    )
    return Trace(view, ladders, f"{item.key} serves {serves}.{_lifecycle(item)}")


def _item_steps(session: Session, item: TrackerItem, match: ItemMatch) -> list[Step]:
    steps = [_item_step(item, match.origin, match.detail)]
    if match.origin != "inherited":
        return steps
    current = item
    for _ in range(MAX_DEPTH):
        parent = _parent(session, current)
        if parent is None:
            break
        if parent.id == match.inherited_from_id:
            own = session.scalar(
                select(ItemMatch).where(
                    ItemMatch.item_id == parent.id,
                    ItemMatch.target_kind == match.target_kind,
                    ItemMatch.target_id == match.target_id,
                )
            )
            if own is not None:
                steps.append(_item_step(parent, own.origin, own.detail))
            break
        steps.append(_item_step(parent, "parent", f"the parent of {current.key} passes it down"))
        current = parent
    return steps


def _item_step(item: TrackerItem, origin: str, detail: str) -> Step:
    return Step("item", item.key, item.title, origin, detail, item.url)


def _parent(session: Session, item: TrackerItem) -> TrackerItem | None:
    parent_id = session.scalar(select(ItemState.parent_id).where(ItemState.item_id == item.id))
    return session.get(TrackerItem, parent_id) if parent_id is not None else None


def _target_steps(
    session: Session, match: ItemMatch, north_star: NorthStar | None
) -> list[tuple[float, list[Step]]]:
    """(share, steps from the bet or KR up) for each path the matched target opens."""
    if match.target_kind == "kr":
        kr = session.get(KeyResult, match.target_id)
        return [(1.0, _kr_steps(session, kr, north_star))] if kr else []
    bet = session.get(Bet, match.target_id)
    if bet is None:
        return []
    links = session.scalars(
        select(BetKeyResult).where(BetKeyResult.bet_id == bet.id).order_by(BetKeyResult.position)
    ).all()
    if not links:
        return [
            (1.0, [Step("bet", bet.key, bet.title, "no_key_result", "serves no key result yet")])
        ]
    paths = []
    for link, share in zip(links, kr_shares([link.weight for link in links]), strict=True):
        kr = session.get(KeyResult, link.key_result_id)
        if kr is not None:
            serves = f"serves {kr.key} with {_percent(share)} of its weight"
            bet_step = Step("bet", bet.key, bet.title, "key_result", serves)
            paths.append((share, [bet_step, *_kr_steps(session, kr, north_star)]))
    return paths


def _kr_steps(session: Session, kr: KeyResult, north_star: NorthStar | None) -> list[Step]:
    objective = session.get(Objective, kr.objective_id)
    assert objective is not None  # a key result's objective is a foreign key
    steps = [Step("key_result", kr.key, kr.title, "objective", f"a key result of {objective.key}")]
    top = (
        Step("north_star", None, north_star.name, "north_star", "the metric the whole org moves")
        if north_star
        else None
    )
    strategy = objective.strategy
    if strategy is not None:
        steps.append(
            Step("objective", objective.key, objective.title, "strategy", f"pursues {strategy.key}")
        )
        serves = "serves the north star" if top else "no north star is set"
        steps.append(Step("strategy", strategy.key, strategy.title, "north_star", serves))
    elif top is not None:
        steps.append(
            Step("objective", objective.key, objective.title, "north_star", "no strategy set")
        )
    else:
        steps.append(
            Step("objective", objective.key, objective.title, "top", "no strategy or north star")
        )
    if top is not None:
        steps.append(top)
    return steps


def _why_unmatched(
    session: Session, item: TrackerItem, state: str | None, rules: MatchRules
) -> str:
    if state is None:
        return f"{item.key} has not been matched yet; it will be after its next sync."
    if state == "non_okr":
        return _why_non_okr(session, item, rules) + _lifecycle(item)
    facts = ItemFacts(item.source, item.key, labels=item.labels or ())
    reasons = [
        f"{item.key} is an orphan: no label {rules.bet_label_prefix}<bet> or "
        f"{rules.kr_label_prefix}<key result>, no link to a bet's Ladder page or refs, "
        "and no matched ancestor."
    ]
    reasons += [
        f"Label {label} names no bet or key result."
        for label in unknown_labels(facts, load_catalogue(session, rules))
    ]
    unlinked = _unlinked(session, item)
    if unlinked:
        reasons.append(f"Manual unlinks removed: {', '.join(unlinked)}.")
    parent = _parent(session, item)
    if parent is not None:
        parent_state = session.scalar(select(ItemState.state).where(ItemState.item_id == parent.id))
        if parent_state == "orphan":
            reasons.append(f"Its parent {parent.key} is an orphan too: linking it links both.")
    reasons.append(
        f"Link it with a label such as {rules.bet_label_prefix}<bet key>, or mark deliberate "
        f"non-OKR work with {' or '.join(rules.non_okr_labels) or 'a non-OKR label'}."
    )
    return " ".join(reasons) + _lifecycle(item)


def _why_non_okr(session: Session, item: TrackerItem, rules: MatchRules) -> str:
    current: TrackerItem | None = item
    for _ in range(MAX_DEPTH):
        if current is None:
            break
        label = has_non_okr_label(current.labels or (), rules)
        if label is not None:
            if current.id == item.id:
                return f"{item.key} is deliberate non-OKR work: label {label}."
            return f"{item.key} is non-OKR work: its ancestor {current.key} has label {label}."
        current = _parent(session, current)
    return f"{item.key} is non-OKR work."


def _unlinked(session: Session, item: TrackerItem) -> list[str]:
    names = []
    for kind, model in (("bet", Bet), ("kr", KeyResult)):
        names += [
            f"{'bet' if kind == 'bet' else 'key result'} {key}"
            for key in session.scalars(
                select(model.key)
                .join(ManualLink, ManualLink.target_id == model.id)
                .where(
                    ManualLink.item_id == item.id,
                    ManualLink.target_kind == kind,
                    ManualLink.action == "unlink",
                )
            )
        ]
    return names


def _lifecycle(item: TrackerItem) -> str:
    if item.deleted:
        return " It is deleted in the tracker, so it counts no effort."
    if item.status_category == "canceled":
        return " It is canceled, so it counts no effort."
    return ""


def _percent(share: float) -> str:
    return f"{share:.0%}"
