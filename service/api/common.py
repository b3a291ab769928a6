"""Pieces every API router shares: the page of a list, and its query parameters."""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from sync.store.pagination import MAX_LIMIT

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Items per page.")]
Cursor = Annotated[
    str | None, Query(description="The `next_cursor` of the previous page; omit for the first.")
]


class Page(BaseModel, Generic[T]):
    """One page of a list. Pass `next_cursor` as `cursor` for the next; null on the last page."""

    items: list[T]
    next_cursor: str | None = Field(description="Cursor of the next page, or null.")


class ErrorBody(BaseModel):
    """A refused request: what went wrong, and for invalid input each error with its path."""

    detail: str
    errors: list[dict[str, str]] = Field(
        default_factory=list, description='[{"path": "...", "message": "..."}]'
    )
