"""OKRs as code: the whole catalogue as one YAML file, in the shape DESIGN.md fixes.

`import_okrs` makes the store equal to the file: objects in the file are created or updated,
objects the file no longer names are deleted. It validates the whole file first and refuses it
with every error and its path, writing nothing; importing the same file twice changes nothing
the second time. `export_okrs` writes the store back in the same shape and order, so that a
file round-trips.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, Literal

import yaml
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.errors import Invalid
from sync.matching.rematch import MatchRules
from sync.okrs.catalogue import (
    BET,
    CYCLE,
    KEY_RESULT,
    KINDS,
    OBJECTIVE,
    STRATEGY,
    Affected,
    Kind,
    Refs,
    delete_rows,
    north_star_spec,
    query,
    write_north_star,
)
from sync.okrs.specs import (
    BetSpec,
    CycleSpec,
    KeyResultFields,
    KeyResultSpec,
    NorthStarSpec,
    ObjectiveSpec,
    Spec,
    StrategySpec,
    describe,
    error_list,
)
from sync.store.models import NorthStar

HEADER = (
    "# Ladder OKRs. `ladder okrs import FILE` makes the store equal to this file;\n"
    "# `ladder okrs export` writes it back.\n"
)


class ObjectiveEntry(ObjectiveSpec):
    """An objective in the file, with its key results nested under it."""

    key_results: list[KeyResultFields] = []


class OkrDocument(Spec):
    """The whole file. Every section is optional; a missing one means "none"."""

    north_star: NorthStarSpec | None = None
    strategies: list[StrategySpec] = []
    cycles: list[CycleSpec] = []
    objectives: list[ObjectiveEntry] = []
    bets: list[BetSpec] = []


# --- reading -------------------------------------------------------------------------------


# libyaml's parser when PyYAML was built with it: several times faster on big files.
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _StrictLoader(_SafeLoader):  # type: ignore[misc,valid-type]
    """A safe loader that refuses a mapping key given twice instead of keeping the last one."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: list[Any] = []
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.append(key)
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _load_yaml(text: str | bytes) -> Any:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _invalid([{"path": "", "message": f"not UTF-8 text ({exc.reason})"}]) from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader: no arbitrary objects
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        message = f"not valid YAML: {exc.problem}"
        raise _invalid([{"path": where, "message": message}]) from None
    except yaml.YAMLError as exc:
        raise _invalid([{"path": "", "message": f"not valid YAML: {exc}"}]) from None


def _invalid(errors: list[dict[str, str]]) -> Invalid:
    count = f"{len(errors)} error" + ("s" if len(errors) > 1 else "")
    return Invalid(f"the OKR file has {count}:\n{describe(errors)}", errors=errors)


def parse(text: str | bytes) -> OkrDocument:
    """Read and validate an OKR file completely.

    Raises Invalid listing every error, each with its path in the file (bad YAML, wrong type,
    missing field, duplicate key, unknown reference), e.g.
    `objectives[1].key_results[0].target: not a number`.
    """
    raw = _load_yaml(text)
    if raw is None:
        raise _invalid([{"path": "", "message": "the file is empty"}])
    if not isinstance(raw, dict):
        message = "the file must be a mapping with north_star, strategies, cycles, objectives, bets"
        raise _invalid([{"path": "", "message": message}])
    errors: list[dict[str, str]] = []
    document = None
    try:
        document = OkrDocument.model_validate(raw)
    except ValidationError as exc:
        errors = error_list(exc)
    errors += _reference_errors(raw)
    if errors or document is None:
        raise _invalid(errors)
    return document


def _entries(value: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    """The mapping entries of a list in the raw file, with their paths (others are skipped)."""
    if not isinstance(value, list):
        return []
    return [(f"{path}[{i}]", entry) for i, entry in enumerate(value) if isinstance(entry, dict)]


def _declared(
    entries: list[tuple[str, dict[str, Any]]], label: str, errors: list[dict[str, str]]
) -> set[str]:
    """The keys the entries declare; a repeated key is an error at its second place."""
    # Bet and KR keys are matched in tracker labels ignoring case: they must differ by more.
    fold = label in {"bet", "key result"}
    first: dict[str, str] = {}
    for path, entry in entries:
        key = entry.get("key")
        if not isinstance(key, str):
            continue
        same = key.casefold() if fold else key
        if same in first:
            message = f"duplicate {label} key {key!r} (first at {first[same]})"
            errors.append({"path": f"{path}.key", "message": message})
        else:
            first[same] = path
    return {entry["key"] for _, entry in entries if isinstance(entry.get("key"), str)}


def _reference_errors(raw: dict[str, Any]) -> list[dict[str, str]]:
    """Duplicate keys and references to objects the file does not declare."""
    errors: list[dict[str, str]] = []
    strategies = _declared(_entries(raw.get("strategies"), "strategies"), "strategy", errors)
    cycles = _declared(_entries(raw.get("cycles"), "cycles"), "cycle", errors)
    objectives = _entries(raw.get("objectives"), "objectives")
    _declared(objectives, "objective", errors)
    kr_entries = [
        kr
        for path, objective in objectives
        for kr in _entries(objective.get("key_results"), f"{path}.key_results")
    ]
    key_results = _declared(kr_entries, "key result", errors)
    bets = _entries(raw.get("bets"), "bets")
    _declared(bets, "bet", errors)

    def check(value: Any, known: set[str], path: str, label: str) -> None:
        if isinstance(value, str) and value not in known:
            errors.append({"path": path, "message": f"unknown {label} {value!r}"})

    for path, objective in objectives:
        check(objective.get("cycle"), cycles, f"{path}.cycle", "cycle")
        check(objective.get("strategy"), strategies, f"{path}.strategy", "strategy")
    for path, bet in bets:
        named = bet.get("key_results")
        if isinstance(named, list):
            for i, kr in enumerate(named):
                check(kr, key_results, f"{path}.key_results[{i}]", "key result")
        elif isinstance(named, dict):
            for kr in named:
                check(kr, key_results, f"{path}.key_results.{kr}", "key result")
    return errors


# --- planning ------------------------------------------------------------------------------

Action = Literal["create", "update", "delete"]


@dataclass(frozen=True, slots=True)
class Change:
    """One step of an import: create, update or delete one object (`fields`: what differs)."""

    action: Action
    kind: str
    key: str
    fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What an import does (or, on a dry run, would do), in the order it does it."""

    changes: list[Change]
    dry_run: bool

    @property
    def counts(self) -> dict[Action, int]:
        counts = Counter(change.action for change in self.changes)
        return {action: counts[action] for action in ("create", "update", "delete")}


Wanted = dict[Kind, dict[str, tuple[Any, int]]]


def _wanted(document: OkrDocument) -> Wanted:
    """Every keyed object the file describes, as (spec, position) by kind and key."""
    objectives = {
        o.key: (ObjectiveSpec.model_construct(**o.model_dump(exclude={"key_results"})), i)
        for i, o in enumerate(document.objectives)
    }
    key_results = {
        kr.key: (KeyResultSpec.model_construct(**kr.model_dump(), objective=o.key), j)
        for o in document.objectives
        for j, kr in enumerate(o.key_results)
    }
    return {
        STRATEGY: {s.key: (s, i) for i, s in enumerate(document.strategies)},
        CYCLE: {c.key: (c, i) for i, c in enumerate(document.cycles)},
        OBJECTIVE: objectives,
        KEY_RESULT: key_results,
        BET: {b.key: (b, i) for i, b in enumerate(document.bets)},
    }


def _comparable(value: Any) -> Any:
    # The order of a bet's key results is part of the file, so it counts as a difference.
    return list(value.items()) if isinstance(value, dict) else value


def _differences(stored: Spec, wanted: Spec) -> tuple[str, ...]:
    return tuple(
        name
        for name in type(wanted).model_fields
        if _comparable(getattr(stored, name)) != _comparable(getattr(wanted, name))
    )


def _plan(
    session: Session, document: OkrDocument, stored: dict[Kind, dict[str, Any]], wanted: Wanted
) -> list[Change]:
    changes: list[Change] = []
    north_star = session.scalar(select(NorthStar))
    if document.north_star and north_star is None:
        changes.append(Change("create", "north_star", document.north_star.name))
    elif document.north_star and north_star is not None:
        fields = _differences(north_star_spec(north_star), document.north_star)
        if fields:
            changes.append(Change("update", "north_star", document.north_star.name, fields))
    elif north_star is not None:
        changes.append(Change("delete", "north_star", north_star.name))
    for kind in KINDS:
        for key, (spec, position) in wanted[kind].items():
            row = stored[kind].get(key)
            if row is None:
                changes.append(Change("create", kind.name, key))
                continue
            fields = _differences(kind.to_spec(row), spec)
            fields += ("position",) if row.position != position else ()
            if fields:
                changes.append(Change("update", kind.name, key, fields))
    for kind in reversed(KINDS):
        changes += [
            Change("delete", kind.name, key) for key in stored[kind] if key not in wanted[kind]
        ]
    return changes


# --- applying ------------------------------------------------------------------------------


def import_okrs(
    session: Session,
    text: str | bytes,
    *,
    dry_run: bool = False,
    rules: MatchRules | None = None,
) -> ImportPlan:
    """Make the store equal to the OKR file `text`, in the caller's transaction.

    Returns the plan of changes; with `dry_run` nothing is written. Invalid (listing every
    error) if the file is not valid, and then nothing is written either. Tickets are
    re-matched by `rules` where bets or key results came, went or changed refs.
    """
    document = parse(text)
    stored = {kind: {row.key: row for row in session.scalars(query(kind))} for kind in KINDS}
    wanted = _wanted(document)
    changes = _plan(session, document, stored, wanted)
    if changes and not dry_run:
        _apply(session, document, stored, wanted, changes, rules)
    return ImportPlan(changes, dry_run)


def _apply(
    session: Session,
    document: OkrDocument,
    stored: dict[Kind, dict[str, Any]],
    wanted: Wanted,
    changes: list[Change],
    rules: MatchRules | None,
) -> None:
    todo = {(change.kind, change.key): change for change in changes}
    north_star = session.scalar(select(NorthStar))
    if document.north_star:
        north_star = north_star or NorthStar()
        write_north_star(north_star, document.north_star)
        session.add(north_star)
    elif north_star is not None:
        session.delete(north_star)

    known = {kind.model: dict(stored[kind]) for kind in KINDS}
    refs = Refs(session, known)
    affected = Affected()
    # Parents before children, flushing in between so that links get their ids.
    for kind in KINDS:
        for key, (spec, position) in wanted[kind].items():
            change = todo.get((kind.name, key))
            if change is None:
                continue
            row = known[kind.model].get(key) or kind.model()
            if change.action == "create" or "key" in change.fields or "refs" in change.fields:
                affected.add(kind, key)
            kind.write(row, spec, refs)
            row.position = position
            session.add(row)
            known[kind.model][key] = row
        session.flush()
    # Dependents before what they depend on: bets, key results, objectives, cycles, strategies.
    for kind in reversed(KINDS):
        gone = [row for key, row in stored[kind].items() if key not in wanted[kind]]
        affected.add(kind, *(row.key for row in gone))
        delete_rows(session, kind, [row.id for row in gone])
    affected.rematch(session, rules)


# --- writing -------------------------------------------------------------------------------


class _Flow(dict[str, Any]):
    """A mapping written on one line, as DESIGN.md writes small ones."""


class _FlowList(list[Any]):
    """A list written on one line."""


class _Dumper(yaml.SafeDumper):
    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        # Indent list items under their key, as people write them.
        return super().increase_indent(flow, False)


_Dumper.add_representer(
    _Flow, lambda dumper, data: dumper.represent_mapping("tag:yaml.org,2002:map", data, True)
)
_Dumper.add_representer(
    _FlowList, lambda dumper, data: dumper.represent_sequence("tag:yaml.org,2002:seq", data, True)
)


def _plain(value: Any) -> Any:
    # Stored numbers are floats; a whole number is written as the file most likely had it.
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _entry(spec: Spec, *, exclude: set[str] | frozenset[str] = frozenset()) -> dict[str, Any]:
    return {
        name: _plain(value)
        for name, value in spec.model_dump(exclude=set(exclude)).items()
        if value is not None
    }


def export_document(session: Session) -> dict[str, Any]:
    """The store as the OKR file's data, ordered as it was imported."""
    rows = {
        kind: session.scalars(query(kind).order_by(kind.model.position, kind.model.id)).all()
        for kind in KINDS
    }
    document: dict[str, Any] = {}
    north_star = session.scalar(select(NorthStar))
    if north_star is not None:
        document["north_star"] = _Flow(_entry(north_star_spec(north_star)))
    document["strategies"] = [_Flow(_entry(STRATEGY.to_spec(row))) for row in rows[STRATEGY]]
    document["cycles"] = [_Flow(_entry(CYCLE.to_spec(row))) for row in rows[CYCLE]]
    document["objectives"] = []
    for row in rows[OBJECTIVE]:
        entry = _entry(OBJECTIVE.to_spec(row))
        if entry["status"] == "active":
            del entry["status"]
        key_results = sorted(row.key_results, key=lambda kr: (kr.position, kr.id))
        if key_results:
            entry["key_results"] = [
                _entry(KEY_RESULT.to_spec(kr), exclude={"objective"}) for kr in key_results
            ]
        document["objectives"].append(entry)
    document["bets"] = []
    for row in rows[BET]:
        entry = _entry(BET.to_spec(row))
        weights = entry["key_results"]
        if all(weight is None for weight in weights.values()):
            entry["key_results"] = _FlowList(weights)
        else:
            entry["key_results"] = _Flow({key: _plain(w) for key, w in weights.items()})
        entry["refs"] = _FlowList(entry["refs"])
        if not entry["refs"]:
            del entry["refs"]
        document["bets"].append(entry)
    return {name: value for name, value in document.items() if value}


def export_okrs(session: Session) -> str:
    """The store as OKR file text, in the shape `import_okrs` reads."""
    body = yaml.dump(
        export_document(session),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    return HEADER + body
