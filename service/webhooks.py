"""Webhook endpoints and the inbox API.

`POST /webhooks/jira` and `POST /webhooks/linear` read at most 1 MiB (413), verify the raw
bytes (401), parse (400), store the delivery in the inbox (503 when the store is down, so the
tracker retries) and answer 202 at once; `service.realtime` processes what they stored.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import SQLAlchemyError

from integrations.base import WebhookEvent, WebhookRejected
from integrations.jira import webhooks as jira_webhooks
from integrations.linear import webhooks as linear_webhooks
from service.deps import Admin, DbSession
from service.realtime import Realtime
from service.settings import Settings
from sync.ingest import inbox

log = logging.getLogger("ladder.webhooks")

MAX_BODY_BYTES = 1 << 20
RETRY_AFTER_SECONDS = "30"

router = APIRouter(tags=["webhooks"])
api = APIRouter(prefix="/api/webhooks", tags=["webhooks"])


class Receipt(BaseModel):
    """The answer to an accepted delivery: its inbox id and status."""

    id: int
    status: str
    duplicate: bool


class InboxEvent(BaseModel):
    """An inbox event as the API shows it (without the body, which can be large)."""

    id: int
    source: str
    delivery_id: str
    event_type: str
    kind: str
    external_id: str | None
    status: str
    attempts: int
    received_at: datetime
    next_attempt_at: datetime
    processed_at: datetime | None
    last_error: str | None


class InboxPage(BaseModel):
    items: list[InboxEvent]
    next_cursor: str | None


REFUSALS: dict[int | str, dict[str, Any]] = {
    400: {"description": "The body is not a JSON object, or an event lacks its ids."},
    401: {"description": "A missing or wrong signature, token or timestamp."},
    413: {"description": "The body exceeds 1 MiB."},
    503: {"description": "The store is unavailable: deliver again later."},
}


# `?token=` is read from the request itself: a declared parameter costs each delivery a
# round of FastAPI's parameter solving, a sizeable share of this hot path.
URL_TOKEN = {
    "name": "token",
    "in": "query",
    "required": False,
    "description": "The URL token, for Jira set-ups that cannot sign.",
    "schema": {"type": "string"},
}


@router.post(
    "/webhooks/jira",
    status_code=202,
    response_model=Receipt,
    responses=REFUSALS,
    openapi_extra={"parameters": [URL_TOKEN]},
)
async def jira_webhook(request: Request) -> JSONResponse:
    """Receive a Jira webhook: signed with `X-Hub-Signature`, or carrying `?token=`."""
    settings: Settings = request.app.state.settings
    body = await _read_body(request)
    try:
        jira_webhooks.verify(
            request.headers,
            body,
            secret=settings.jira_webhook_secret,
            url_token=settings.jira_webhook_token,
            presented_token=request.query_params.get("token"),
        )
        event = jira_webhooks.parse(
            request.headers, body, bot_account_id=settings.jira_bot_account_id
        )
    except WebhookRejected as exc:
        return _rejected(exc)
    return await _store(request, event, body)


@router.post("/webhooks/linear", status_code=202, response_model=Receipt, responses=REFUSALS)
async def linear_webhook(request: Request) -> JSONResponse:
    """Receive a Linear webhook signed with `Linear-Signature`, sent within the last 60 s."""
    settings: Settings = request.app.state.settings
    body = await _read_body(request)
    try:
        linear_webhooks.verify(request.headers, body, secret=settings.linear_webhook_secret)
        event = linear_webhooks.parse(request.headers, body)
    except WebhookRejected as exc:
        return _rejected(exc)
    return await _store(request, event, body)


async def _read_body(request: Request) -> bytes:
    """The raw body, refused with 413 past 1 MiB before more of it is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise HTTPException(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise HTTPException(413, f"the body exceeds {MAX_BODY_BYTES} bytes")
    return bytes(body)


def _rejected(exc: WebhookRejected) -> JSONResponse:
    log.info("webhook rejected", extra={"status": exc.status, "reason": str(exc)})
    return JSONResponse({"detail": str(exc)}, status_code=exc.status)


async def _store(request: Request, event: WebhookEvent, body: bytes) -> JSONResponse:
    realtime: Realtime = request.app.state.realtime
    try:
        accepted = await realtime.intake.store(inbox.Delivery(event, dict(request.headers), body))
    except SQLAlchemyError as exc:
        log.error("webhook not stored: the store is unavailable", extra={"error": str(exc)})
        return JSONResponse(
            {"detail": "the store is unavailable; retry later"},
            status_code=503,
            headers={"Retry-After": RETRY_AFTER_SECONDS},
        )
    if accepted.status == "received" and not accepted.duplicate:
        realtime.wake()
    return JSONResponse(
        Receipt(id=accepted.id, status=accepted.status, duplicate=accepted.duplicate).model_dump(),
        status_code=202,
    )


# --- The inbox API (admin) -----------------------------------------------------------------


@api.get("/events", dependencies=[Admin])
def list_events(
    session: DbSession,
    status: Annotated[str | None, Query(description="received, failed, parked, …")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    cursor: str | None = None,
) -> InboxPage:
    """Inbox events, oldest first; `status=parked` lists those that need a person."""
    rows, next_cursor = inbox.list_events(session, status, limit, cursor)
    return InboxPage(
        items=[InboxEvent.model_validate(row, from_attributes=True) for row in rows],
        next_cursor=next_cursor,
    )


@api.post("/events/{event_id}/retry", dependencies=[Admin])
def retry_event(event_id: int, session: DbSession, request: Request) -> InboxEvent:
    """Make a failed or parked event due again, with a fresh set of attempts."""
    row = inbox.retry(session, event_id)
    event = InboxEvent.model_validate(row, from_attributes=True)
    # If the worker looks before this request commits, its next poll finds the event.
    request.app.state.realtime.wake()
    return event
