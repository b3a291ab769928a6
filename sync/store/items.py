"""Store helpers for tracker items: bulk upsert guarded against older data, and deletions.

Used by the sync engine and by webhook processing alike. They never commit: the caller owns
the transaction. Every write is one bulk statement per batch, never one query per item.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from itertools import islice
from typing import Any

import orjson
from sqlalchemy import (
    JSON,
    Insert,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    column,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningInsert

from integrations.base import NormalisedItem
from sync.store.models import ITEMS, SyncSeen, utcnow

SEEN: Table = SyncSeen.__table__  # type: ignore[assignment]
_INSERTED = [c for c in ITEMS.c if c.name != "id"]
_JSON_COLUMNS = frozenset(c.name for c in _INSERTED if isinstance(c.type, JSON))

# Rows per statement: 1,000 rows of 26 columns stay under SQLite's 32,766 bind parameters
# (PostgreSQL gets a batch as one JSON document).
BATCH_SIZE = 1000

# What a newer payload replaces; `id` and `first_seen_at` belong to the row for ever.
_REPLACED = (
    "key",
    "url",
    "title",
    "type",
    "status",
    "status_category",
    "labels",
    "parent_ref",
    "parent_key",
    "container_refs",
    "linked_urls",
    "linked_keys",
    "project",
    "estimate",
    "time_spent_seconds",
    "assignee",
    "created_at",
    "updated_at",
    "resolved_at",
    "deleted",
    "synced_at",
    "raw",
)


def dialect_insert(session: Session, table: Table) -> Insert:
    """An INSERT for the session's backend, so that `on_conflict_*` is available."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def _chunks(values: Sequence[Any] | Collection[Any], size: int = BATCH_SIZE) -> Iterator[list[Any]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _row(item: NormalisedItem, now: datetime) -> dict[str, Any]:
    for moment in (item.created_at, item.updated_at, item.resolved_at):
        if moment is not None and moment.tzinfo is None:
            raise ValueError(
                f"naive datetime {moment!r} on {item.source} item {item.external_id}: "
                "Ladder stores aware UTC times"
            )
    return {
        "source": item.source,
        "external_id": item.external_id,
        "key": item.key,
        "url": item.url,
        "title": item.title,
        "type": item.type,
        "status": item.status,
        "status_category": item.status_category,
        "labels": list(item.labels),
        "parent_ref": item.parent_ref,
        "parent_key": item.parent_key,
        "container_refs": list(item.container_refs),
        "linked_urls": list(item.linked_urls),
        "linked_keys": list(item.linked_keys),
        "project": item.project,
        "estimate": None if item.estimate is None else float(item.estimate),
        "time_spent_seconds": item.time_spent_seconds,
        "assignee": item.assignee,
        "created_at": item.created_at,
        "updated_at": item.updated_at,
        "resolved_at": item.resolved_at,
        "deleted": item.deleted,
        "deleted_at": now if item.deleted else None,
        "first_seen_at": now,
        "synced_at": now,
        "raw": dict(item.raw),
    }


def _newest_per_item(items: Sequence[NormalisedItem]) -> list[NormalisedItem]:
    """One version per item, in key order.

    The same item twice in one statement is an error on PostgreSQL; it happens when an item
    changes while a search pages past it. Key order: writers that lock the rows they upsert
    in one order never wait on each other in a circle (a deadlock).
    """
    newest: dict[tuple[str, str], NormalisedItem] = {}
    for item in items:
        key = (item.source, item.external_id)
        kept = newest.get(key)
        if kept is None or kept.updated_at <= item.updated_at:
            newest[key] = item
    return [newest[key] for key in sorted(newest)]


def upsert_items(session: Session, items: Sequence[NormalisedItem]) -> list[int]:
    """Insert or update `items`; return the ids of the rows actually inserted or changed.

    One `INSERT … ON CONFLICT (source, external_id) DO UPDATE` per batch. A stored row whose
    `updated_at` is newer than the incoming one is left alone (a slow sync page never undoes
    a webhook), but still counts as confirmed in the tracker (`synced_at`), so a full sync
    does not mistake it for deleted. An item that reappears loses its `deleted` mark. An
    item naming its parent by key only gets the parent's id if the parent is stored.
    """
    postgres = session.get_bind().dialect.name == "postgresql"
    stmt = _upsert_statement(postgres)
    changed: list[int] = []
    for batch in _chunks(_newest_per_item(items)):
        now = utcnow()
        rows = [_row(item, now) for item in batch]
        if postgres:
            written = session.execute(stmt, {"batch": _dumps(rows)}).all()
        else:
            written = session.execute(stmt, [_json_encoded(row) for row in rows]).all()
        changed.extend(row.id for row in written)
        if len(written) < len(batch):
            _confirm_skipped(session, batch, {row.external_id for row in written}, now)
        keyed_only = {i.external_id for i in batch if i.parent_key and not i.parent_ref}
        if keyed_only:
            resolve_parents(session, ids=[r.id for r in written if r.external_id in keyed_only])
    return changed


def _upsert_statement(postgres: bool) -> ReturningInsert[tuple[int, str]]:
    if postgres:
        # The whole batch as one JSON document, turned back into rows by the server: one
        # bind parameter instead of 26 per row, which psycopg would parse and escape one by
        # one.
        document = cast(bindparam("batch", type_=Text), postgresql.JSON)
        batch = (
            func.json_to_recordset(document)
            .table_valued(*[column(c.name, c.type) for c in _INSERTED])
            .render_derived(name="batch", with_types=True)
        )
        insert = postgresql.insert(ITEMS).from_select([c.name for c in _INSERTED], select(*batch.c))
    else:
        # JSON columns arrive encoded already (see `_json_encoded`).
        insert = sqlite.insert(ITEMS).values(
            {name: bindparam(f"{name}_json", type_=Text) for name in _JSON_COLUMNS}
        )
    excluded = insert.excluded
    replaced: dict[str, Any] = {name: excluded[name] for name in _REPLACED}
    # Keep the first deletion time while an item stays deleted.
    replaced["deleted_at"] = case(
        (excluded.deleted, func.coalesce(ITEMS.c.deleted_at, excluded.deleted_at)),
        else_=None,
    )
    return insert.on_conflict_do_update(
        index_elements=[ITEMS.c.source, ITEMS.c.external_id],
        set_=replaced,
        where=or_(ITEMS.c.updated_at.is_(None), ITEMS.c.updated_at <= excluded.updated_at),
    ).returning(ITEMS.c.id, ITEMS.c.external_id)


def _dumps(value: Any) -> str:
    # orjson: the raw payloads make JSON encoding a large share of a sync's CPU time.
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
    except orjson.JSONEncodeError:  # e.g. an integer beyond 64 bits: slower, but whole
        return json.dumps(value, default=datetime.isoformat)


def _json_encoded(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with its JSON values encoded, under the names the SQLite statement binds."""
    encoded = {name: value for name, value in row.items() if name not in _JSON_COLUMNS}
    encoded.update({f"{name}_json": _dumps(row[name]) for name in _JSON_COLUMNS})
    return encoded


def resolve_parents(
    session: Session, *, ids: Collection[int] | None = None, source: str | None = None
) -> list[int]:
    """Fill `parent_ref` of items that name their parent by key only; return those filled.

    Jira Data Center's Epic Link holds the epic's key, not its id, while `parent_ref` is
    what inheritance follows. Restricted to the rows `ids`, or to every row of `source`
    (after a sync, for children stored before their parent arrived).
    """
    parent = ITEMS.alias("parent")
    # LIMIT rather than an aggregate, which would lead SQLite to walk the wrong index.
    parent_id = (
        select(parent.c.external_id)
        .where(
            parent.c.source == ITEMS.c.source,
            parent.c.key == ITEMS.c.parent_key,
            parent.c.id != ITEMS.c.id,
        )
        .limit(1)
        .scalar_subquery()
    )
    scope = []
    if ids is not None:
        scope.append(ITEMS.c.id.in_(list(ids)))
    if source is not None:
        scope.append(ITEMS.c.source == source)
    result = session.execute(
        update(ITEMS)
        .where(
            *scope,
            ITEMS.c.parent_ref.is_(None),
            ITEMS.c.parent_key.is_not(None),
            parent_id.is_not(None),
        )
        .values(parent_ref=parent_id)
        .returning(ITEMS.c.id)
    )
    return list(result.scalars())


def _confirm_skipped(
    session: Session, batch: list[NormalisedItem], written: set[str], now: datetime
) -> None:
    """Stamp `synced_at` on rows the older-data guard kept: they exist in the tracker."""
    skipped_by_source: dict[str, list[str]] = {}
    for item in batch:
        if item.external_id not in written:
            skipped_by_source.setdefault(item.source, []).append(item.external_id)
    for source, external_ids in skipped_by_source.items():
        session.execute(
            update(ITEMS)
            .where(ITEMS.c.source == source, ITEMS.c.external_id.in_(external_ids))
            .values(synced_at=now)
        )


def mark_deleted(session: Session, source: str, external_ids: Collection[str]) -> list[int]:
    """Mark these items of `source` deleted (they stay stored); return the ids newly marked."""
    marked: list[int] = []
    now = utcnow()
    for chunk in _chunks(external_ids):
        result = session.execute(
            update(ITEMS)
            .where(
                ITEMS.c.source == source,
                ITEMS.c.external_id.in_(chunk),
                ITEMS.c.deleted.is_(False),
            )
            .values(deleted=True, deleted_at=now)
            .returning(ITEMS.c.id)
        )
        marked.extend(result.scalars())
    return marked


def record_seen(session: Session, run_id: int, external_ids: Collection[str]) -> None:
    """Remember, in the store, that run `run_id` saw these ids (see `mark_missing_deleted`)."""
    for chunk in _chunks(external_ids):
        stmt = dialect_insert(session, SEEN).on_conflict_do_nothing()
        session.execute(stmt, [{"run_id": run_id, "external_id": eid} for eid in chunk])


def forget_seen(session: Session, run_ids: Collection[int]) -> None:
    """Drop the ids recorded for these runs."""
    if run_ids:
        session.execute(SEEN.delete().where(SEEN.c.run_id.in_(list(run_ids))))


def mark_missing_deleted(
    session: Session, source: str, *, not_synced_since: datetime, seen_in_run: int | None = None
) -> list[int]:
    """Mark deleted the live items of `source` a complete listing did not contain.

    An item counts as missing when it was not written or confirmed since `not_synced_since`
    (the start of the listing: anything a webhook brought in meanwhile is kept) and, with
    `seen_in_run`, when that run did not record its id either. Returns the ids marked.
    """
    conditions = [
        ITEMS.c.source == source,
        ITEMS.c.deleted.is_(False),
        ITEMS.c.synced_at < not_synced_since,
    ]
    if seen_in_run is not None:
        listed = exists().where(
            and_(SEEN.c.run_id == seen_in_run, SEEN.c.external_id == ITEMS.c.external_id)
        )
        conditions.append(~listed)
    result = session.execute(
        update(ITEMS)
        .where(*conditions)
        .values(deleted=True, deleted_at=utcnow())
        .returning(ITEMS.c.id)
    )
    return list(result.scalars())
