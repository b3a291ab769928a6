"""Helpers every tracker's webhook verification and parsing share.

Signatures are checked over the raw request bytes before anything parses them: re-encoding
parsed JSON would not reproduce the bytes the tracker signed. Every comparison of a secret
runs in constant time so response timing reveals nothing about it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from integrations.base import WebhookRejected


def lower_keys(headers: Mapping[str, str]) -> dict[str, str]:
    """HTTP header names are case-insensitive; plain dicts are not."""
    return {name.lower(): value for name, value in headers.items()}


def sign(secret: str, raw_body: bytes) -> str:
    """The lowercase hex HMAC-SHA256 of `raw_body` keyed with `secret`."""
    return hmac.new(secret.encode(), raw_body, hashlib.sha256).hexdigest()


def secrets_equal(expected: str, presented: str) -> bool:
    """Constant-time comparison that also accepts non-ASCII input (which never matches)."""
    return hmac.compare_digest(expected.encode(), presented.encode())


def require_signature(secret: str, raw_body: bytes, presented: str, header: str) -> None:
    """Raise 401 unless `presented` is the hex HMAC-SHA256 of `raw_body` under `secret`."""
    if not secrets_equal(sign(secret, raw_body), presented.strip().lower()):
        raise WebhookRejected(f"{header} does not match the request body")


def body_digest(raw_body: bytes) -> str:
    """A stable id for a delivery that carries none: the same bytes are the same delivery."""
    return "sha256:" + hashlib.sha256(raw_body).hexdigest()


def json_object(raw_body: bytes) -> dict[str, Any]:
    """Decode a delivery's body, which must be a JSON object (400 otherwise)."""
    try:
        payload = json.loads(raw_body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise WebhookRejected(f"the body is not valid JSON: {exc}", status=400) from None
    if not isinstance(payload, dict):
        raise WebhookRejected("the body is not a JSON object", status=400)
    return payload


def as_id(value: object) -> str | None:
    """Tracker ids arrive as strings or numbers; Ladder keeps them as strings."""
    if value is None or value == "" or isinstance(value, bool | dict | list):
        return None
    return str(value)
