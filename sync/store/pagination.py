"""Keyset pagination: stable pages however many rows are added while a client pages."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import InstrumentedAttribute, Session

from sync.errors import Invalid

MAX_LIMIT = 1000


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Any:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, UnicodeDecodeError):
        raise Invalid(f"invalid cursor {cursor!r}") from None


def paginate(
    session: Session,
    stmt: Select[Any],
    order_column: InstrumentedAttribute[Any],
    limit: int,
    cursor: str | None,
    *,
    descending: bool = False,
) -> tuple[Sequence[Any], str | None]:
    """One page of `stmt` ordered by the unique `order_column`, and the cursor of the next."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be between 1 and {MAX_LIMIT}")
    if cursor is not None:
        after = decode_cursor(cursor)
        stmt = stmt.where(order_column < after if descending else order_column > after)
    order = order_column.desc() if descending else order_column
    rows = session.scalars(stmt.order_by(order).limit(limit + 1)).all()
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode_cursor(getattr(rows[-1], order_column.key))
