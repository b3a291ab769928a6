"""Domain errors: the store's way to say no, which the service turns into HTTP answers."""

from __future__ import annotations


class LadderError(Exception):
    """Base of the errors a caller can show to a user as they are."""

    def __init__(self, message: str, *, errors: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors or []


class NotFound(LadderError):
    """The thing asked for does not exist (HTTP 404)."""


class Conflict(LadderError):
    """The change clashes with what is stored, e.g. a duplicate key (HTTP 409)."""


class Invalid(LadderError):
    """The input is wrong, e.g. it names an unknown parent (HTTP 422)."""
