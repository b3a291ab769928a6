"""Request dependencies: one database transaction per request, and bearer-token auth."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from service.settings import Settings
from service.tokens import Role, role_of
from sync.store.db import transaction

_bearer = HTTPBearer(auto_error=False, description="A token from `ladder token create`.")


def get_session(request: Request) -> Iterator[Session]:
    """The request's unit of work: committed when the handler returns, rolled back on error."""
    with transaction(request.app.state.sessions) as session:
        yield session


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


DbSession = Annotated[Session, Depends(get_session)]
AppSettings = Annotated[Settings, Depends(get_settings)]


def require(role: Role) -> Callable[..., Role]:
    """A dependency that lets the request through only with a token of `role` or above."""

    def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> Role:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "a bearer token is required",
                headers={"WWW-Authenticate": "Bearer"},
            )
        with request.app.state.sessions() as session:
            granted = role_of(session, credentials.credentials)
        if granted is None:
            raise HTTPException(
                status.HTTP_401_UNAUTHORIZED,
                "unknown or revoked token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if not granted.allows(role):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"this needs the {role} role or higher")
        return granted

    return check


Viewer = Depends(require(Role.viewer))
Editor = Depends(require(Role.editor))
Admin = Depends(require(Role.admin))
