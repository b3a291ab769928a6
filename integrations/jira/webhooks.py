"""Jira webhooks: verify a delivery over its raw bytes, then parse it into a `WebhookEvent`.

Pure functions: no Jira client is needed, so the endpoint keeps answering while Jira itself is
unreachable. Two ways to authenticate a delivery:

* admin webhooks saved with a secret are signed: `X-Hub-Signature: sha256=<hex HMAC-SHA256 of
  the raw body>` (Jira Cloud, and Data Center versions that sign);
* set-ups that cannot sign register the URL with `?token=<secret>`, compared in constant time.

Issue bodies in Jira webhooks use the REST v2 representation, the same one the adapter reads,
so a full issue in the payload is normalised without a round trip. Link and worklog events
carry only ids: those items are re-fetched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from integrations.base import WebhookEvent, WebhookKind, WebhookRejected
from integrations.webhooks import (
    as_id,
    body_digest,
    json_object,
    lower_keys,
    require_signature,
    secrets_equal,
)

SOURCE = "jira"
SIGNATURE_HEADER = "x-hub-signature"
DELIVERY_HEADER = "x-atlassian-webhook-identifier"
SIGNATURE_PREFIX = "sha256="

# The fields `normalise` needs; an issue body without them is re-fetched instead.
REQUIRED_FIELDS = ("summary", "issuetype", "status", "project", "updated")
# `jira:issue_updated` subtypes that only say a comment changed.
COMMENT_EVENT_TYPES = frozenset(
    {"issue_commented", "issue_comment_edited", "issue_comment_deleted"}
)
LINK_EVENTS = frozenset({"issuelink_created", "issuelink_deleted"})
WORKLOG_EVENTS = frozenset({"worklog_created", "worklog_updated", "worklog_deleted"})


def verify(
    headers: Mapping[str, str],
    raw_body: bytes,
    *,
    secret: str | None,
    url_token: str | None = None,
    presented_token: str | None = None,
) -> None:
    """Raise `WebhookRejected` (401) unless the delivery is signed with `secret`, or carries
    the configured `url_token` in its query (`presented_token`)."""
    signature = lower_keys(headers).get(SIGNATURE_HEADER)
    if signature is not None:
        if not secret:
            raise WebhookRejected(
                "the delivery is signed but LADDER_JIRA_WEBHOOK_SECRET is not set"
            )
        if not signature.lower().startswith(SIGNATURE_PREFIX):
            raise WebhookRejected("X-Hub-Signature must be sha256=<hex digest>")
        require_signature(secret, raw_body, signature[len(SIGNATURE_PREFIX) :], "X-Hub-Signature")
        return
    if presented_token is not None:
        if not url_token:
            raise WebhookRejected("a URL token was given but LADDER_JIRA_WEBHOOK_TOKEN is not set")
        if not secrets_equal(url_token, presented_token):
            raise WebhookRejected("the URL token is wrong")
        return
    raise WebhookRejected("the delivery carries neither X-Hub-Signature nor a URL token")


def parse(
    headers: Mapping[str, str], raw_body: bytes, *, bot_account_id: str | None = None
) -> WebhookEvent:
    """Parse a verified delivery. Malformed bodies raise `WebhookRejected` (400); events
    Ladder does not act on, and those caused by Ladder's own account, parse as `ignored`."""
    payload = json_object(raw_body)
    delivery_id = lower_keys(headers).get(DELIVERY_HEADER) or body_digest(raw_body)
    event_type = str(payload.get("webhookEvent") or "")
    actor_id = _account_id(payload.get("user"))

    def event(
        kind: WebhookKind,
        external_id: str | None = None,
        body: dict[str, Any] | None = None,
        related: tuple[str, ...] = (),
    ) -> WebhookEvent:
        return WebhookEvent(
            source=SOURCE,
            delivery_id=delivery_id,
            kind=kind,
            external_id=external_id,
            payload=body or {},
            actor_id=actor_id,
            related_ids=related,
            event_type=event_type,
        )

    if event_type in {"jira:issue_created", "jira:issue_updated", "jira:issue_deleted"}:
        issue = _object(payload, "issue")
        issue_id = as_id(issue.get("id"))
        if issue_id is None:
            raise WebhookRejected(f"{event_type} without issue.id", status=400)
        if event_type == "jira:issue_deleted":
            return event("delete", issue_id)
        if _is_own_comment(payload, bot_account_id):
            return event("ignored", issue_id)
        if _is_complete(issue):
            return event("upsert", issue_id, issue)
        return event("refresh", issue_id)
    if event_type in LINK_EVENTS:
        link = _object(payload, "issueLink")
        ends = tuple(
            end
            for end in (as_id(link.get("sourceIssueId")), as_id(link.get("destinationIssueId")))
            if end
        )
        if not ends:
            raise WebhookRejected(f"{event_type} without the linked issue ids", status=400)
        return event("refresh", ends[0], related=ends[1:])
    if event_type in WORKLOG_EVENTS:
        # The worklog changes the issue's time spent, which only a re-fetch tells.
        issue_id = as_id(_object(payload, "worklog").get("issueId"))
        if issue_id is None:
            raise WebhookRejected(f"{event_type} without worklog.issueId", status=400)
        return event("refresh", issue_id)
    # Comment events change nothing Ladder reads; ignoring them also means Ladder's own
    # orphan comments can never loop back. Anything else is an event Ladder does not use.
    return event("ignored", as_id(_object(payload, "issue").get("id")))


def _object(payload: dict[str, Any], name: str) -> dict[str, Any]:
    value = payload.get(name)
    return value if isinstance(value, dict) else {}


def _is_complete(issue: dict[str, Any]) -> bool:
    fields = issue.get("fields")
    return (
        isinstance(fields, dict)
        and bool(issue.get("key"))
        and all(fields.get(name) is not None for name in REQUIRED_FIELDS)
    )


def _is_own_comment(payload: dict[str, Any], bot_account_id: str | None) -> bool:
    """An issue update that only records a comment by Ladder's own account."""
    if not bot_account_id or not _is_comment_only(payload):
        return False
    author = _object(payload, "comment").get("author")
    return bot_account_id in {_account_id(author), _account_id(payload.get("user"))}


def _is_comment_only(payload: dict[str, Any]) -> bool:
    """A `jira:issue_updated` that records a comment and no field change.

    Jira names it in `issue_event_type_name`. Older Server versions leave that out (see the
    Mattermost plugin's captures): there a `comment` and no changelog items mean the same.
    """
    event_type = payload.get("issue_event_type_name")
    if event_type is not None:
        return event_type in COMMENT_EVENT_TYPES
    return bool(_object(payload, "comment")) and not _object(payload, "changelog").get("items")


def _account_id(user: object) -> str | None:
    """Cloud users carry `accountId`; Server and Data Center users a `name` (or `key`)."""
    if not isinstance(user, dict):
        return None
    return as_id(user.get("accountId") or user.get("name") or user.get("key"))
