"""API tokens: random bearer secrets of which only the SHA-256 digest is stored.

The tokens carry 256 bits of randomness, so a plain SHA-256 is enough to make a stolen
database useless; a slow password hash would only slow every request down.
"""

from __future__ import annotations

import hashlib
import secrets
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from sync.models import ApiToken

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


def create_token(session: Session, role: Role, name: str = "") -> str:
    """Store a new token for `role` and return the secret, which is shown only this once."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    session.add(ApiToken(name=name or role.name, role=role.value, token_hash=hash_token(token)))
    session.flush()
    return token


def role_of(session: Session, token: str) -> Role | None:
    """The role a presented token grants, or None if it is unknown or revoked."""
    row = session.scalar(
        select(ApiToken).where(
            ApiToken.token_hash == hash_token(token), ApiToken.revoked_at.is_(None)
        )
    )
    return Role(row.role) if row else None
