"""Linear webhooks: verify a delivery over its raw bytes, then parse it into a `WebhookEvent`.

Pure functions, no API key needed. `Linear-Signature` is the lowercase hex HMAC-SHA256 of the
raw body keyed with the webhook's signing secret; like Linear's own SDK, Ladder also refuses a
delivery whose `webhookTimestamp` (epoch milliseconds) is more than 60 s away from now, so a
captured delivery cannot be replayed later.

Deliveries are deduplicated on the `Linear-Delivery` header, else on the entity id and its
`updatedAt`. Issue bodies are webhook representations, not the shape the adapter queries: they
name a parent only by id and carry no attachments (links that can match a bet). So issues are
re-fetched, but only when an update touched a field Ladder reads (`updatedFrom` lists the
changed ones): reordering and description edits cost no API call. Attachments re-fetch their
issue; initiative changes re-fetch the initiative's projects, whose refs they alter.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from integrations.base import WebhookEvent, WebhookKind, WebhookRejected
from integrations.webhooks import (
    as_id,
    body_digest,
    json_object,
    lower_keys,
    require_signature,
)

SOURCE = "linear"
SIGNATURE_HEADER = "linear-signature"
TIMESTAMP_HEADER = "linear-timestamp"
DELIVERY_HEADER = "linear-delivery"
TOLERANCE_SECONDS = 60.0

# Issue fields whose change can alter the normalised item or its match, by id and by
# relation name (`updatedFrom` has carried both spellings).
ISSUE_FIELDS = frozenset(
    {
        "title",
        "identifier",
        "number",
        "teamId",
        "team",
        "stateId",
        "state",
        "labelIds",
        "labels",
        "parentId",
        "parent",
        "projectId",
        "project",
        "cycleId",
        "cycle",
        "estimate",
        "assigneeId",
        "assignee",
        "startedAt",
        "completedAt",
        "canceledAt",
        "archivedAt",
        "trashed",
    }
)
ACTIONS = frozenset({"create", "update", "remove"})


def verify(
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    secret: str | None,
    now: Callable[[], float] = time.time,
    tolerance: float = TOLERANCE_SECONDS,
) -> None:
    """Raise `WebhookRejected` (401) unless the delivery is signed with `secret` and was sent
    within `tolerance` seconds of `now()`; 400 when the signed body is not JSON."""
    if not secret:
        raise WebhookRejected("LADDER_LINEAR_WEBHOOK_SECRET is not set")
    lowered = lower_keys(headers)
    signature = lowered.get(SIGNATURE_HEADER)
    if not signature:
        raise WebhookRejected("the delivery carries no Linear-Signature")
    require_signature(secret, raw_body, signature, "Linear-Signature")
    sent_ms = json_object(raw_body).get("webhookTimestamp", lowered.get(TIMESTAMP_HEADER))
    try:
        sent = float(sent_ms) / 1000.0  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WebhookRejected("webhookTimestamp is missing or not a number") from None
    if abs(now() - sent) > tolerance:
        raise WebhookRejected(f"webhookTimestamp is more than {tolerance:g} s from now")


def parse(headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
    """Parse a verified delivery. Malformed bodies raise `WebhookRejected` (400); entity
    types and actions Ladder does not act on parse as `ignored`."""
    payload = json_object(raw_body)
    entity_type = str(payload.get("type") or "")
    action = str(payload.get("action") or "")
    data = payload.get("data")
    data = data if isinstance(data, dict) else {}
    entity_id = as_id(data.get("id"))
    delivery_id = lower_keys(headers).get(DELIVERY_HEADER) or _entity_version(
        entity_type, action, entity_id, data, raw_body
    )
    actor = payload.get("actor")
    actor_id = as_id(actor.get("id")) if isinstance(actor, dict) else None

    def event(
        kind: WebhookKind, external_id: str | None = entity_id, related: tuple[str, ...] = ()
    ) -> WebhookEvent:
        return WebhookEvent(
            source=SOURCE,
            delivery_id=delivery_id,
            kind=kind,
            external_id=external_id,
            payload={},
            actor_id=actor_id,
            related_ids=related,
            event_type=f"{entity_type}.{action}" if entity_type else "",
        )

    if action not in ACTIONS:
        return event("ignored")
    if entity_type == "Issue":
        if entity_id is None:
            raise WebhookRejected(f"Issue {action} without data.id", status=400)
        if action == "remove":
            return event("delete")
        changed = payload.get("updatedFrom")
        if action == "update" and isinstance(changed, dict) and not ISSUE_FIELDS & changed.keys():
            return event("ignored")
        return event("refresh")
    if entity_type == "Project":
        if entity_id is None:
            raise WebhookRejected(f"Project {action} without data.id", status=400)
        return event("delete" if action == "remove" else "refresh")
    if entity_type == "Attachment":
        issue_id = as_id(data.get("issueId"))
        return event("refresh", issue_id) if issue_id else event("ignored")
    if entity_type == "Initiative":
        # Projects left by the initiative appear only among the previous values.
        before = payload.get("updatedFrom")
        projects = _ids(data.get("projects"))
        if isinstance(before, dict):
            projects += _ids(before.get("projects"))
        projects = tuple(dict.fromkeys(projects))
        if not projects:
            return event("ignored")
        return event("refresh", projects[0], projects[1:])
    return event("ignored")


def _ids(children: object) -> tuple[str, ...]:
    """The ids of a list of child payloads (`[{"id": …}, …]`) or of plain ids."""
    if not isinstance(children, list):
        return ()
    found = (as_id(c.get("id")) if isinstance(c, dict) else as_id(c) for c in children)
    return tuple(i for i in found if i)


def _entity_version(
    entity_type: str, action: str, entity_id: str | None, data: dict[str, Any], raw_body: bytes
) -> str:
    """Without a delivery header, one version of one entity is one delivery."""
    updated = data.get("updatedAt")
    if entity_id and updated:
        return f"{entity_type}:{entity_id}:{action}:{updated}"
    return body_digest(raw_body)
