"""API tokens: random bearer secrets of which only the SHA-256 digest is stored.

The tokens carry 256 bits of randomness, so a plain SHA-256 is enough to make a stolen
database useless; a slow password hash would only slow every request down.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sync.errors import Conflict, NotFound
from sync.store.models import ApiToken, utcnow

TOKEN_PREFIX = "ldr_"


class Role(StrEnum):
    """Roles in increasing power: each can do everything the ones before it can."""

    viewer = "viewer"
    editor = "editor"
    admin = "admin"

    def allows(self, needed: Role) -> bool:
        """Whether this role may do what `needed` may."""
        order = list(Role)
        return order.index(self) >= order.index(needed)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(session: Session, role: Role, name: str = "") -> tuple[ApiToken, str]:
    """Store a new token for `role`; return its row and the secret, shown only this once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(name=name or role.name, role=role.value, token_hash=hash_token(token))
    session.add(row)
    session.flush()
    return row, token


def create_token(session: Session, role: Role, name: str = "") -> str:
    """Store a new token for `role` and return the secret, which is shown only this once."""
    return issue_token(session, role, name)[1]


def revoke_token(session: Session, token_id: int) -> ApiToken:
    """Revoke a token for good.

    NotFound for an unknown or already revoked token; Conflict for the last active admin
    token, because without one nobody could manage tokens over HTTP any more.
    """
    row = session.get(ApiToken, token_id)
    if row is None or row.revoked_at is not None:
        raise NotFound(f"no active token with id {token_id}")
    if row.role == Role.admin:
        admins = session.scalar(
            select(func.count())
            .select_from(ApiToken)
            .where(ApiToken.role == Role.admin.value, ApiToken.revoked_at.is_(None))
        )
        if admins == 1:
            raise Conflict(
                "this is the last active admin token: create another one before revoking it"
            )
    row.revoked_at = utcnow()
    session.flush()
    return row


def role_of(session: Session, token: str) -> Role | None:
    """The role a presented token grants, or None if it is unknown or revoked."""
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    return Role(row.role) if row else None
