"""Matching over the store: effective matches, item states and the effort each item counts.

`rematch_items` runs after every batch of upserts (sync and webhooks) and
`rematch_for_okr_change` after every OKR change that can alter matches. Both work in the
caller's transaction and never commit. The items in scope (the changed ones and their
descendants, or all items) go through two steps:

1. own matches: each item's facts through the pure rules of `sync.matching.item`, with its
   manual links and unlinks, in batches, inserted into `matches`;
2. `sync.matching.states`, in set-based SQL: each item's `item_states` row, the matches it inherits,
   its state (matched, non-OKR or orphan) and the points it counts.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Row,
    Table,
    Text,
    and_,
    cast,
    delete,
    exists,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    text,
    true,
)
from sqlalchemy.orm import Session

from sync.errors import NotFound
from sync.matching.item import (
    Catalogue,
    Decision,
    ItemFacts,
    MatchRules,
    Target,
    TargetKind,
    apply_decisions,
    is_url,
    match_item,
    normalise_ref,
)
from sync.matching.states import (
    chunks,
    escape_like,
    json_has,
    refresh_points,
    settle,
    write_states,
)
from sync.store.items import dialect_insert
from sync.store.models import (
    ITEMS,
    LINKS,
    MATCHES,
    STATES,
    Bet,
    KeyResult,
    MatchedRefs,
    utcnow,
)

REFS: Table = MatchedRefs.__table__  # type: ignore[assignment]

# Items per batch of a full re-match.
BATCH_SIZE = 2000
# OR terms per scan when looking for the items an OKR change names.
MAX_TERMS = 200

_FACTS = select(
    ITEMS.c.id,
    ITEMS.c.source,
    ITEMS.c.key,
    ITEMS.c.url,
    # The four JSON lists as one document: parsed once per item instead of four times.
    (
        literal("[")
        + cast(ITEMS.c.labels, Text)
        + literal(",")
        + cast(ITEMS.c.linked_keys, Text)
        + literal(",")
        + cast(ITEMS.c.linked_urls, Text)
        + literal(",")
        + cast(ITEMS.c.container_refs, Text)
        + literal("]")
    ).label("lists"),
)


def load_catalogue(session: Session, rules: MatchRules) -> Catalogue:
    """The bets and key results as matching needs them."""
    return Catalogue.build(
        rules,
        session.execute(select(Bet.id, Bet.key, Bet.refs).order_by(Bet.id)).all(),
        session.execute(select(KeyResult.id, KeyResult.key).order_by(KeyResult.id)).all(),
    )


def find_target(session: Session, kind: TargetKind, key: str) -> Target:
    """The bet or key result with this key; NotFound names what is missing."""
    model = Bet if kind == "bet" else KeyResult
    row = session.execute(select(model.id, model.key).where(model.key == key)).first()
    if row is None:
        raise NotFound(f"no {'bet' if kind == 'bet' else 'key result'} with key {key!r}")
    return Target(kind, row.id, row.key)


def item_facts(row: Any) -> ItemFacts:
    """The facts matching reads, from a row of `_FACTS`."""
    labels, linked_keys, linked_urls, container_refs = json.loads(row.lists)
    return ItemFacts(
        source=row.source,
        key=row.key,
        url=row.url,
        labels=labels or (),
        linked_keys=linked_keys or (),
        linked_urls=linked_urls or (),
        container_refs=container_refs or (),
    )


# --- entry points --------------------------------------------------------------------------


def rematch_items(session: Session, item_ids: Collection[int] | None, rules: MatchRules) -> int:
    """Re-match the given items and their descendants (all items when None).

    Descendants that match on their own are left alone, with their subtrees: nothing above
    them changes what they serve. Returns how many items were re-matched.
    """
    catalogue = load_catalogue(session, rules)
    if item_ids is None:
        return _rematch_all(session, catalogue)
    return _rematch_scope(session, catalogue, set(item_ids))


def rematch_for_okr_change(
    session: Session,
    bet_keys: Collection[str],
    kr_keys: Collection[str],
    rules: MatchRules | None = None,
) -> int:
    """Bring matches up to date after an OKR change, in the caller's transaction.

    Called once at the end of every OKR mutation (API request or file import) that creates,
    renames or deletes a bet or key result, or changes a bet's refs. `bet_keys` and
    `kr_keys` name the keys affected, old and new names alike. Exactly the items whose own
    matches change are re-matched, with their descendants: those matched to these bets
    and KRs (or to deleted ones), and those whose labels, links or refs name them now.
    `rules` must be the ones the sync uses (the defaults otherwise). Returns how many
    items were re-matched.
    """
    catalogue = load_catalogue(session, rules or MatchRules())
    missing = any(key.lower() not in catalogue.bets for key in bet_keys) or any(
        key.lower() not in catalogue.krs for key in kr_keys
    )
    if missing:
        # A deleted bet or KR takes its manual links with it.
        session.execute(delete(LINKS).where(_dangling(LINKS)))
    bet_ids = [catalogue.bets[key.lower()].id for key in bet_keys if key.lower() in catalogue.bets]
    candidates = _matched_to(session, catalogue, bet_keys, kr_keys, dangling=missing)
    candidates |= _naming(session, catalogue, bet_keys, kr_keys, _new_refs(session, bet_ids))
    changed = _own_matches_changed(session, catalogue, candidates)
    _remember_refs(session, bet_ids)
    return _rematch_scope(session, catalogue, changed) if changed else 0


def set_decision(
    session: Session,
    item_id: int,
    target: Target,
    action: Literal["link", "unlink"],
    rules: MatchRules,
    *,
    weight: float | None = None,
    author: str | None = None,
) -> None:
    """Record a manual link or unlink (replacing an earlier one) and re-match the item.

    The decision is kept in `manual_links` and applied on every later re-match, so it
    survives syncs; an unlink also overrides labels, links and inheritance.
    """
    values = {"action": action, "weight": weight, "author": author, "created_at": utcnow()}
    stmt = dialect_insert(session, LINKS).values(
        item_id=item_id, target_kind=target.kind, target_id=target.id, **values
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[LINKS.c.item_id, LINKS.c.target_kind, LINKS.c.target_id],
            set_=values,
        )
    )
    rematch_items(session, [item_id], rules)


# --- step 1: own matches --------------------------------------------------------------------


def _rematch_all(session: Session, catalogue: Catalogue) -> int:
    session.execute(delete(MATCHES))
    session.execute(delete(STATES))
    # Manual decisions are people's work: few enough to hold, and read once.
    decisions = _decisions(session, catalogue, None)
    last = 0
    while rows := session.execute(
        _FACTS.where(ITEMS.c.id > last).order_by(ITEMS.c.id).limit(BATCH_SIZE)
    ).all():
        _write_own(session, catalogue, rows, decisions)
        last = rows[-1].id
    _analyze(session)
    write_states(session, None, catalogue.rules.non_okr_labels)
    settle(session, None)
    _remember_refs(session, None)
    _analyze(session)
    return session.scalar(select(func.count()).select_from(STATES)) or 0


def _analyze(session: Session) -> None:
    """Refresh PostgreSQL's statistics of the tables a full re-match rewrites.

    Without them the planner takes the tables for what it last saw (empty, or every item
    pending) and walks the trees, or lists orphans, with nested scans.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("ANALYZE item_states, matches"))


def _rematch_scope(session: Session, catalogue: Catalogue, seeds: set[int]) -> int:
    scope = _closure(session, seeds)
    # A webhook and a sync may re-match the same item at once: the second waits for the
    # first to commit (PostgreSQL; SQLite has one writer anyway), then rewrites its rows.
    # In id order (chunks are sorted), so that writers lock in one order.
    for chunk in chunks(scope):
        locked = select(ITEMS.c.id).where(ITEMS.c.id.in_(chunk)).order_by(ITEMS.c.id)
        session.execute(locked.with_for_update())
    former_parents = _parents_of(session, scope)
    for chunk in chunks(scope):
        session.execute(delete(MATCHES).where(MATCHES.c.item_id.in_(chunk)))
        rows = session.execute(_FACTS.where(ITEMS.c.id.in_(chunk))).all()
        _write_own(session, catalogue, rows, _decisions(session, catalogue, chunk))
        write_states(session, chunk, catalogue.rules.non_okr_labels)
    settle(session, scope)
    refresh_points(session, scope | _ancestors(session, scope, former_parents))
    return len(scope)


def _write_own(
    session: Session,
    catalogue: Catalogue,
    rows: Sequence[Row[Any]],
    decisions: dict[int, list[Decision]],
) -> None:
    """Insert the own matches of a batch of items."""
    matches = [
        {
            "item_id": row.id,
            "target_kind": match.target.kind,
            "target_id": match.target.id,
            "weight": match.weight,
            "origin": match.origin,
            "detail": match.detail,
            "inherited_from_id": None,
        }
        for row in rows
        for match in apply_decisions(
            match_item(item_facts(row), catalogue), decisions.get(row.id, ())
        )
    ]
    if matches:
        session.execute(insert(MATCHES), matches)


def _decisions(
    session: Session, catalogue: Catalogue, item_ids: list[int] | None
) -> dict[int, list[Decision]]:
    """The manual decisions on these items (on all items when None)."""
    stmt = select(LINKS).order_by(LINKS.c.id)
    if item_ids is not None:
        stmt = stmt.where(LINKS.c.item_id.in_(item_ids))
    decisions: dict[int, list[Decision]] = defaultdict(list)
    for row in session.execute(stmt):
        target = catalogue.by_id.get((row.target_kind, row.target_id))
        if target is not None:
            decisions[row.item_id].append(Decision(target, row.action, row.weight, row.author))
    return decisions


def _closure(session: Session, seeds: set[int]) -> set[int]:
    """The existing seeds and their descendants, except subtrees that match on their own."""
    scope: set[int] = set()
    for chunk in chunks(seeds):
        scope.update(session.scalars(select(ITEMS.c.id).where(ITEMS.c.id.in_(chunk))))
    parent, child = ITEMS.alias("p"), ITEMS.alias("c")
    matches_on_its_own = exists().where(
        MATCHES.c.item_id == child.c.id, MATCHES.c.origin != "inherited"
    )
    already_under_parent = exists().where(
        STATES.c.item_id == child.c.id, STATES.c.parent_id == parent.c.id
    )
    children = select(child.c.id).select_from(
        parent.join(
            child,
            and_(child.c.source == parent.c.source, child.c.parent_ref == parent.c.external_id),
        )
    )
    frontier = set(scope)
    while frontier:
        found: set[int] = set()
        for chunk in chunks(frontier):
            found.update(
                session.scalars(
                    children.where(
                        parent.c.id.in_(chunk), not_(and_(matches_on_its_own, already_under_parent))
                    )
                )
            )
        frontier = found - scope
        scope |= frontier
    return scope


def _parents_of(session: Session, item_ids: Collection[int]) -> set[int]:
    parents: set[int] = set()
    for chunk in chunks(item_ids):
        parents.update(
            session.scalars(
                select(STATES.c.parent_id).where(
                    STATES.c.item_id.in_(chunk), STATES.c.parent_id.is_not(None)
                )
            )
        )
    return parents


def _ancestors(session: Session, scope: set[int], former_parents: set[int]) -> set[int]:
    """Ancestors of the scope, including those of the parents items moved away from."""
    found: set[int] = set()
    frontier = (_parents_of(session, scope) | former_parents) - scope
    while frontier:
        found |= frontier
        frontier = _parents_of(session, frontier) - found - scope
    return found


# --- finding what an OKR change affects ----------------------------------------------------


def _dangling(table: Table) -> ColumnElement[bool]:
    return or_(
        and_(table.c.target_kind == "bet", table.c.target_id.not_in(select(Bet.id))),
        and_(table.c.target_kind == "kr", table.c.target_id.not_in(select(KeyResult.id))),
    )


def _matched_to(
    session: Session,
    catalogue: Catalogue,
    bet_keys: Collection[str],
    kr_keys: Collection[str],
    *,
    dangling: bool,
) -> set[int]:
    """Items matched on their own to these bets and KRs, or to deleted ones."""
    conditions: list[ColumnElement[bool]] = []
    for kind, keys, known in (("bet", bet_keys, catalogue.bets), ("kr", kr_keys, catalogue.krs)):
        ids = [known[key.lower()].id for key in keys if key.lower() in known]
        if ids:
            conditions.append(and_(MATCHES.c.target_kind == kind, MATCHES.c.target_id.in_(ids)))
    if dangling:
        conditions.append(_dangling(MATCHES))
    if not conditions:
        return set()
    return set(
        session.scalars(
            select(MATCHES.c.item_id)
            .where(MATCHES.c.origin != "inherited", or_(*conditions))
            .distinct()
        )
    )


def _naming(
    session: Session,
    catalogue: Catalogue,
    bet_keys: Collection[str],
    kr_keys: Collection[str],
    refs: Sequence[str],
) -> set[int]:
    """Items whose labels or links name these keys, or that name these refs: a scan."""
    rules = catalogue.rules
    conditions = [json_has(ITEMS.c.labels, rules.bet_label_prefix + key) for key in bet_keys]
    conditions += [json_has(ITEMS.c.labels, rules.kr_label_prefix + key) for key in kr_keys]
    conditions += [
        json_has(ITEMS.c.linked_urls, rules.bet_url(key), prefix=True) for key in bet_keys
    ]
    conditions += _naming_refs(refs)
    found: set[int] = set()
    # A few hundred terms per scan: SQLite refuses expressions nested 1,000 deep.
    for start in range(0, len(conditions), MAX_TERMS):
        terms = conditions[start : start + MAX_TERMS]
        found.update(session.scalars(select(ITEMS.c.id).where(or_(*terms))))
    return found


def _new_refs(session: Session, bet_ids: list[int]) -> list[str]:
    """The refs of these bets that the stored matches do not reflect yet."""
    seen = {
        bet_id: {normalise_ref(ref) for ref in refs}
        for bet_id, refs in session.execute(
            select(REFS.c.bet_id, REFS.c.refs).where(REFS.c.bet_id.in_(bet_ids))
        )
    }
    return [
        ref
        for bet_id, refs in session.execute(select(Bet.id, Bet.refs).where(Bet.id.in_(bet_ids)))
        for ref in refs
        if normalise_ref(ref) not in seen.get(bet_id, set())
    ]


def _remember_refs(session: Session, bet_ids: list[int] | None) -> None:
    """Record the current refs of these bets (all when None) as the matches' own."""
    stmt = dialect_insert(session, REFS).from_select(
        ["bet_id", "refs"],
        select(Bet.id, Bet.refs).where(true() if bet_ids is None else Bet.id.in_(bet_ids)),
    )
    session.execute(
        stmt.on_conflict_do_update(
            index_elements=[REFS.c.bet_id], set_={"refs": stmt.excluded.refs}
        )
    )


def _naming_refs(refs: Sequence[str]) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    own_keys: list[str] = []
    for ref in refs:
        token = normalise_ref(ref)
        if is_url(ref):
            conditions.append(json_has(ITEMS.c.linked_urls, token, prefix=True))
            conditions.append(func.lower(ITEMS.c.url).like(escape_like(token) + "%", escape="!"))
            continue
        conditions.append(json_has(ITEMS.c.container_refs, token))
        own_keys.append(token)
        if token.startswith("jira:"):
            conditions.append(json_has(ITEMS.c.linked_keys, token.removeprefix("jira:")))
    if own_keys:
        conditions.append(func.lower(ITEMS.c.source + literal(":") + ITEMS.c.key).in_(own_keys))
    return conditions


def _own_matches_changed(session: Session, catalogue: Catalogue, candidates: set[int]) -> set[int]:
    """The candidates whose own matches (or missing state) differ from what is stored."""
    changed: set[int] = set()
    for chunk in chunks(candidates):
        stored: dict[int, set[tuple[Any, ...]]] = defaultdict(set)
        for row in session.execute(
            select(MATCHES).where(MATCHES.c.item_id.in_(chunk), MATCHES.c.origin != "inherited")
        ):
            stored[row.item_id].add(
                (row.target_kind, row.target_id, round(row.weight, 9), row.origin, row.detail)
            )
        settled = set(session.scalars(select(STATES.c.item_id).where(STATES.c.item_id.in_(chunk))))
        decisions = _decisions(session, catalogue, chunk)
        for row in session.execute(_FACTS.where(ITEMS.c.id.in_(chunk))):
            own = apply_decisions(match_item(item_facts(row), catalogue), decisions.get(row.id, ()))
            fresh = {
                (m.target.kind, m.target.id, round(m.weight, 9), m.origin, m.detail) for m in own
            }
            if row.id not in settled or fresh != stored[row.id]:
                changed.add(row.id)
    return changed
