"""The OKR catalogue: north star, strategies, cycles, objectives, key results, bets, check-ins.

Everything is addressed by key. Writes work inside the caller's transaction and never commit.
A write that can change which tickets match which bet or key result (creating, renaming or
deleting one, or changing a bet's refs) ends with one call to
`sync.matching.rematch.rematch_for_okr_change`, with the matching rules the caller passes (`rules`,
from the settings; the defaults when None).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session, joinedload, selectinload

from sync.errors import Conflict, Invalid, NotFound
from sync.matching.rematch import MatchRules, rematch_for_okr_change
from sync.okrs.specs import (
    BetSpec,
    CheckInSpec,
    CycleSpec,
    KeyResultFields,
    KeyResultSpec,
    NorthStarSpec,
    ObjectiveSpec,
    Spec,
    StrategySpec,
    validate_spec,
)
from sync.store.models import (
    Base,
    Bet,
    BetKeyResult,
    CheckIn,
    Cycle,
    KeyResult,
    NorthStar,
    Objective,
    Strategy,
)

# --- progress ------------------------------------------------------------------------------


def progress(
    baseline: float | None, target: float | None, current: float | None, direction: str
) -> float | None:
    """How far `current` has come from `baseline` towards `target`, clamped to 0..1.

    None when it cannot be computed: a value is missing, baseline equals target (there is no
    distance to cover), or the target lies on the wrong side of the baseline for `direction`.
    """
    if baseline is None or target is None or current is None or baseline == target:
        return None
    if (target > baseline) != (direction == "increase"):
        return None
    return min(1.0, max(0.0, (current - baseline) / (target - baseline)))


def key_result_progress(kr: KeyResult) -> float | None:
    """The progress of a stored key result (see `progress`)."""
    return progress(kr.baseline, kr.target, kr.current, kr.direction)


def objective_progress(key_results: Iterable[KeyResult]) -> float | None:
    """The mean progress of the key results that have one; None when none has."""
    values = [p for p in map(key_result_progress, key_results) if p is not None]
    return fmean(values) if values else None


# --- rows as specs -------------------------------------------------------------------------
# Stored rows are turned back into specs without validation (`model_construct`): a row left
# behind by a cascade (a bet without key results) must still export and show.


def north_star_spec(row: NorthStar) -> NorthStarSpec:
    return NorthStarSpec.model_construct(name=row.name, metric=row.metric)


def strategy_spec(row: Strategy) -> StrategySpec:
    return StrategySpec.model_construct(key=row.key, title=row.title)


def cycle_spec(row: Cycle) -> CycleSpec:
    return CycleSpec.model_construct(key=row.key, start=row.start, end=row.end)


def objective_spec(row: Objective) -> ObjectiveSpec:
    return ObjectiveSpec.model_construct(
        key=row.key,
        title=row.title,
        cycle=row.cycle.key,
        strategy=row.strategy.key if row.strategy else None,
        owner=row.owner,
        team=row.team,
        status=row.status,
    )


_KR_FIELDS = tuple(KeyResultFields.model_fields)


def key_result_spec(row: KeyResult) -> KeyResultSpec:
    values = {name: getattr(row, name) for name in _KR_FIELDS}
    return KeyResultSpec.model_construct(**values, objective=row.objective.key)


def bet_spec(row: Bet) -> BetSpec:
    links = sorted(row.key_results, key=lambda link: (link.position, link.id or 0))
    return BetSpec.model_construct(
        key=row.key,
        title=row.title,
        hypothesis=row.hypothesis,
        status=row.status,
        team=row.team,
        key_results={link.key_result.key: link.weight for link in links},
        refs=list(row.refs),
    )


# --- resolving references ------------------------------------------------------------------


class Refs:
    """Finds the rows an OKR object names by key, and refuses unknown ones with Invalid.

    Single API writes look keys up in the database; a file import hands in every row it
    knows (`known`) so that resolving costs no query per object.
    """

    def __init__(self, session: Session, known: dict[type[Base], dict[str, Any]] | None = None):
        self.session = session
        self.known = known or {}

    def find_many(
        self, model: type[Any], keys: Iterable[str], path: str, label: str
    ) -> dict[str, Any]:
        """The rows of `model` with `keys`; Invalid naming every unknown one at `path`."""
        keys = list(keys)
        if model in self.known:
            found = {key: self.known[model][key] for key in keys if key in self.known[model]}
        else:
            rows = self.session.scalars(select(model).where(model.key.in_(keys))) if keys else []
            found = {row.key: row for row in rows}
        missing = [key for key in keys if key not in found]
        if missing:
            errors = [
                {"path": path.format(key=key), "message": f"unknown {label} {key!r}"}
                for key in missing
            ]
            raise Invalid("; ".join(error["message"] for error in errors), errors=errors)
        return found

    def find(self, model: type[Any], key: str, path: str, label: str) -> Any:
        return self.find_many(model, [key], path, label)[key]


# --- writing specs onto rows ---------------------------------------------------------------


def _copy(row: Any, spec: Spec, names: Iterable[str]) -> None:
    for name in names:
        setattr(row, name, getattr(spec, name))


def write_north_star(row: NorthStar, spec: NorthStarSpec) -> None:
    _copy(row, spec, ("name", "metric"))


def write_strategy(row: Strategy, spec: StrategySpec, _refs: Refs) -> None:
    _copy(row, spec, ("key", "title"))


def write_cycle(row: Cycle, spec: CycleSpec, _refs: Refs) -> None:
    _copy(row, spec, ("key", "start", "end"))


def write_objective(row: Objective, spec: ObjectiveSpec, refs: Refs) -> None:
    row.cycle = refs.find(Cycle, spec.cycle, "cycle", "cycle")
    row.strategy = (
        refs.find(Strategy, spec.strategy, "strategy", "strategy") if spec.strategy else None
    )
    _copy(row, spec, ("key", "title", "owner", "team", "status"))


def write_key_result(row: KeyResult, spec: KeyResultSpec, refs: Refs) -> None:
    row.objective = refs.find(Objective, spec.objective, "objective", "objective")
    _copy(row, spec, _KR_FIELDS)


def write_bet(row: Bet, spec: BetSpec, refs: Refs) -> None:
    krs = refs.find_many(KeyResult, spec.key_results, "key_results.{key}", "key result")
    _copy(row, spec, ("key", "title", "hypothesis", "status", "team"))
    row.refs = list(spec.refs)
    # Links that stay are updated in place: deleting and re-inserting the same (bet, KR) pair
    # in one flush could trip the unique constraint, as SQLAlchemy inserts before it deletes.
    kept = {link.key_result_id: link for link in row.key_results}
    links = []
    for position, (kr_key, weight) in enumerate(spec.key_results.items()):
        kr = krs[kr_key]
        link = kept.pop(kr.id, None) or BetKeyResult(key_result=kr)
        link.weight, link.position = weight, position
        links.append(link)
    row.key_results = links


# --- the kinds of keyed objects --------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Kind:
    """One kind of keyed OKR object and how to read, write and load it."""

    name: str
    label: str
    model: type[Any]
    spec: type[Spec]
    to_spec: Callable[[Any], Any]
    write: Callable[[Any, Any, Refs], None]
    load: tuple[Any, ...] = ()
    # Tickets name bets and KRs in labels, matched ignoring case: such keys must differ by
    # more than case, and changing them re-matches tickets.
    matched: bool = False


STRATEGY = Kind("strategy", "strategy", Strategy, StrategySpec, strategy_spec, write_strategy)
CYCLE = Kind("cycle", "cycle", Cycle, CycleSpec, cycle_spec, write_cycle)
OBJECTIVE = Kind(
    "objective",
    "objective",
    Objective,
    ObjectiveSpec,
    objective_spec,
    write_objective,
    load=(
        joinedload(Objective.cycle),
        joinedload(Objective.strategy),
        selectinload(Objective.key_results),
    ),
)
KEY_RESULT = Kind(
    "key_result",
    "key result",
    KeyResult,
    KeyResultSpec,
    key_result_spec,
    write_key_result,
    load=(joinedload(KeyResult.objective),),
    matched=True,
)
BET = Kind(
    "bet",
    "bet",
    Bet,
    BetSpec,
    bet_spec,
    write_bet,
    load=(selectinload(Bet.key_results).joinedload(BetKeyResult.key_result),),
    matched=True,
)
KINDS = (STRATEGY, CYCLE, OBJECTIVE, KEY_RESULT, BET)


@dataclass
class Affected:
    """The bet and KR keys a change touched, for re-matching tickets once at its end."""

    bet_keys: set[str] = field(default_factory=set)
    kr_keys: set[str] = field(default_factory=set)

    def add(self, kind: Kind, *keys: str) -> None:
        if kind is BET:
            self.bet_keys.update(keys)
        elif kind is KEY_RESULT:
            self.kr_keys.update(keys)

    def rematch(self, session: Session, rules: MatchRules | None) -> None:
        """Re-match the tickets that name an affected key (nothing to do when none is)."""
        if self.bet_keys or self.kr_keys:
            rematch_for_okr_change(session, self.bet_keys, self.kr_keys, rules)


# --- generic keyed operations --------------------------------------------------------------


def query(kind: Kind) -> Select[Any]:
    """All objects of `kind` with what their responses need loaded; add order and filters."""
    return select(kind.model).options(*kind.load)


def get(session: Session, kind: Kind, key: str) -> Any:
    """The object of `kind` with `key`, or NotFound."""
    row = session.scalar(query(kind).where(kind.model.key == key))
    if row is None:
        raise NotFound(f"no {kind.label} {key!r}")
    return row


def _ensure_free(session: Session, kind: Kind, key: str, own_id: int | None = None) -> None:
    column = kind.model.key
    same = func.lower(column) == key.lower() if kind.matched else column == key
    clash = session.scalar(select(column).where(same, kind.model.id != (own_id or -1)))
    if clash is not None:
        hint = " (these keys are compared ignoring case)" if clash != key else ""
        raise Conflict(f"{kind.label} {clash!r} already exists{hint}")


def create(session: Session, kind: Kind, spec: Spec, *, rules: MatchRules | None = None) -> Any:
    """Create an object of `kind`; Conflict if its key is taken, Invalid if a parent is unknown."""
    key = spec.key  # type: ignore[attr-defined]
    _ensure_free(session, kind, key)
    position = session.scalar(select(func.coalesce(func.max(kind.model.position), -1) + 1))
    row = kind.model(position=position)
    kind.write(row, spec, Refs(session))
    session.add(row)
    session.flush()
    affected = Affected()
    affected.add(kind, key)
    affected.rematch(session, rules)
    return row


def replace(
    session: Session, kind: Kind, key: str, spec: Spec, *, rules: MatchRules | None = None
) -> Any:
    """Overwrite the object `key` with `spec`; a different `spec.key` renames it."""
    return _replace_row(session, kind, get(session, kind, key), spec, rules)


def patch(
    session: Session,
    kind: Kind,
    key: str,
    fields: dict[str, Any],
    *,
    rules: MatchRules | None = None,
) -> Any:
    """Change only `fields` of the object `key` (a `key` field renames it)."""
    row = get(session, kind, key)
    current = kind.to_spec(row).model_dump()
    return _replace_row(session, kind, row, validate_spec(kind.spec, current | fields), rules)


def _replace_row(
    session: Session, kind: Kind, row: Any, spec: Any, rules: MatchRules | None
) -> Any:
    before = kind.to_spec(row)
    if spec.key != before.key:
        _ensure_free(session, kind, spec.key, own_id=row.id)
    kind.write(row, spec, Refs(session))
    session.flush()
    affected = Affected()
    if spec.key != before.key:
        affected.add(kind, before.key, spec.key)
    if kind is BET and spec.refs != before.refs:
        affected.add(kind, spec.key)
    affected.rematch(session, rules)
    return row


def delete_key_results(session: Session, ids: Iterable[int]) -> None:
    """Delete key results with their check-ins and the bets' links to them."""
    ids = list(ids)
    if ids:
        session.execute(delete(BetKeyResult).where(BetKeyResult.key_result_id.in_(ids)))
        session.execute(delete(CheckIn).where(CheckIn.key_result_id.in_(ids)))
        session.execute(delete(KeyResult).where(KeyResult.id.in_(ids)))


def delete_rows(session: Session, kind: Kind, ids: Iterable[int]) -> None:
    """Delete objects of `kind` by id in bulk, with what belongs to them.

    Callers check dependents first; an objective's key results must already be gone.
    """
    ids = list(ids)
    if not ids:
        return
    if kind is KEY_RESULT:
        delete_key_results(session, ids)
        return
    if kind is BET:
        session.execute(delete(BetKeyResult).where(BetKeyResult.bet_id.in_(ids)))
    session.execute(delete(kind.model).where(kind.model.id.in_(ids)))


def _keys(rows: Iterable[Any]) -> str:
    return ", ".join(sorted(row.key for row in rows))


def remove(
    session: Session,
    kind: Kind,
    key: str,
    *,
    cascade: bool = False,
    rules: MatchRules | None = None,
) -> None:
    """Delete the object `key`.

    Refused with Conflict while something depends on it: objectives on a cycle or strategy;
    key results on an objective, and bets on a key result, unless `cascade` (which deletes
    the objective's key results, their check-ins and the bets' links to them).
    """
    row = get(session, kind, key)
    affected = Affected()
    affected.add(kind, key)
    if kind in (CYCLE, STRATEGY):
        column = Objective.cycle_id if kind is CYCLE else Objective.strategy_id
        users = session.scalars(select(Objective).where(column == row.id)).all()
        if users:
            raise Conflict(
                f"{kind.label} {key!r} is used by objectives {_keys(users)}: "
                "move or delete them first"
            )
    elif kind is OBJECTIVE:
        krs = row.key_results
        if krs and not cascade:
            raise Conflict(
                f"objective {key!r} still has key results {_keys(krs)}: delete them first, "
                "or delete with cascade"
            )
        affected.kr_keys.update(kr.key for kr in krs)
        delete_key_results(session, [kr.id for kr in krs])
    elif kind is KEY_RESULT:
        bets = session.scalars(
            select(Bet).join(BetKeyResult).where(BetKeyResult.key_result_id == row.id)
        ).all()
        if bets and not cascade:
            raise Conflict(
                f"key result {key!r} is linked from bets {_keys(bets)}: unlink it first, "
                "or delete with cascade"
            )
    delete_rows(session, kind, [row.id])
    affected.rematch(session, rules)


# --- north star ----------------------------------------------------------------------------


def get_north_star(session: Session) -> NorthStar:
    """The north star, or NotFound while none is set."""
    row = session.scalar(select(NorthStar))
    if row is None:
        raise NotFound("no north star is set")
    return row


def set_north_star(session: Session, spec: NorthStarSpec) -> NorthStar:
    """Set (or replace) the north star."""
    row = session.scalar(select(NorthStar)) or NorthStar()
    write_north_star(row, spec)
    session.add(row)
    session.flush()
    return row


def delete_north_star(session: Session) -> None:
    """Remove the north star (NotFound while none is set)."""
    session.delete(get_north_star(session))
    session.flush()


# --- check-ins -----------------------------------------------------------------------------


def add_check_in(session: Session, kr_key: str, spec: CheckInSpec) -> CheckIn:
    """Record a check-in: the KR's `current` becomes its value (and `confidence`, if given)."""
    kr = get(session, KEY_RESULT, kr_key)
    check_in = CheckIn(
        key_result=kr,
        value=spec.value,
        confidence=spec.confidence,
        note=spec.note,
        author=spec.author,
    )
    kr.current = spec.value
    if spec.confidence is not None:
        kr.confidence = spec.confidence
    session.add(check_in)
    session.flush()
    return check_in


def check_ins_query(session: Session, kr_key: str) -> Select[Any]:
    """The check-ins of the key result `kr_key` (NotFound if there is none), to paginate."""
    kr = get(session, KEY_RESULT, kr_key)
    return select(CheckIn).where(CheckIn.key_result_id == kr.id)
