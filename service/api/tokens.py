"""Token management over HTTP, for admins: list, create (the secret is shown once), revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, status
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy import select

from service.api.common import Cursor, ErrorBody, Limit, Page
from service.deps import Admin, DbSession
from service.tokens import Role, issue_token, revoke_token
from sync.store.models import ApiToken
from sync.store.pagination import paginate

router = APIRouter(prefix="/api/tokens", tags=["tokens"], dependencies=[Admin])


class TokenIn(BaseModel):
    """A token to create."""

    role: Role = Field(description="viewer reads; editor writes OKRs; admin manages tokens.")
    name: Annotated[str, StringConstraints(max_length=200)] = Field(
        default="", description="Who or what uses it (defaults to the role)."
    )


class TokenOut(BaseModel):
    """A token as listed: never its secret or its hash."""

    id: int
    name: str
    role: Role
    created_at: datetime
    revoked_at: datetime | None


class NewTokenOut(TokenOut):
    """A token just created, with its secret: keep it now, it is never shown again."""

    token: str


def _token_out(row: ApiToken) -> TokenOut:
    return TokenOut(
        id=row.id,
        name=row.name,
        role=Role(row.role),
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


@router.get("", response_model=Page[TokenOut])
def list_tokens(session: DbSession, limit: Limit = 100, cursor: Cursor = None) -> Any:
    """Every token, revoked ones included, oldest first."""
    rows, next_cursor = paginate(session, select(ApiToken), ApiToken.id, limit, cursor)
    return {"items": [_token_out(row) for row in rows], "next_cursor": next_cursor}


@router.post("", response_model=NewTokenOut, status_code=status.HTTP_201_CREATED)
def create_token(body: TokenIn, session: DbSession) -> Any:
    """Create a token; the answer carries its secret, which is shown only this once."""
    row, token = issue_token(session, body.role, body.name)
    return NewTokenOut(**_token_out(row).model_dump(), token=token)


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses={404: {"model": ErrorBody}, 409: {"model": ErrorBody}},
)
def revoke(token_id: int, session: DbSession) -> None:
    """Revoke a token at once. The last active admin token cannot be revoked (409)."""
    revoke_token(session, token_id)
