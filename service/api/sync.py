"""The sync API: the record of sync runs, and starting one by hand.

Viewers read the runs; starting a sync needs an admin token. A started sync runs in a
background thread of the service, with adapters of its own that it closes when it ends;
poll `GET /api/sync/runs/{id}` for its outcome.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from integrations.base import TrackerAdapter
from service.api.common import Cursor, ErrorBody, Limit, Page
from service.deps import Admin, DbSession, Viewer
from service.settings import Settings
from service.trackers import build_adapters, close_adapters, match_rules
from sync.errors import Invalid, NotFound
from sync.ingest.engine import StartedRun, start_run
from sync.store.models import SyncRun
from sync.store.pagination import paginate

router = APIRouter(prefix="/api/sync", tags=["sync"])


class SyncRunOut(BaseModel):
    """One sync run: what it did and how it ended."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    source: str
    mode: str = Field(description="full, incremental or census")
    status: str = Field(description="running, success or failed")
    started_at: datetime
    finished_at: datetime | None
    items_seen: int = Field(description="Items (or, for a census, ids) the tracker returned.")
    items_upserted: int = Field(description="Items inserted or changed in the store.")
    items_deleted: int = Field(description="Items marked deleted.")
    requests: int = Field(description="HTTP requests made to the tracker, retries included.")
    error: str | None


class SyncRequest(BaseModel):
    """Which tracker to sync, and how."""

    source: str = Field(description="A configured source: jira or linear.", examples=["jira"])
    mode: Literal["full", "incremental", "census"] = Field(
        default="incremental",
        description="full: everything, and marks unseen items deleted; incremental: what "
        "changed since the last successful run; census: ids only, to find deletions.",
    )


class SyncStarted(BaseModel):
    """A sync that has started; its outcome appears in the runs."""

    run_id: int
    source: str
    mode: str = Field(description="An incremental request runs as full when nothing is synced.")
    status: str = "running"


@router.get("/runs", response_model=Page[SyncRunOut], dependencies=[Viewer])
def list_runs(
    session: DbSession,
    limit: Limit = 50,
    cursor: Cursor = None,
    source: str | None = Query(None, description="Only the runs of this source."),
) -> Any:
    """Sync runs, newest first."""
    stmt = select(SyncRun)
    if source is not None:
        stmt = stmt.where(SyncRun.source == source)
    rows, next_cursor = paginate(session, stmt, SyncRun.id, limit, cursor, descending=True)
    return {"items": rows, "next_cursor": next_cursor}


@router.get(
    "/runs/{run_id}",
    response_model=SyncRunOut,
    dependencies=[Viewer],
    responses={404: {"model": ErrorBody}},
)
def get_run(run_id: int, session: DbSession) -> Any:
    """One sync run."""
    run = session.get(SyncRun, run_id)
    if run is None:
        raise NotFound(f"no sync run {run_id}")
    return run


@router.post(
    "",
    response_model=SyncStarted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Admin],
    responses={409: {"model": ErrorBody}, 422: {"model": ErrorBody}},
)
def start_sync(body: SyncRequest, request: Request) -> Any:
    """Start a sync in the background; 409 while that source is already being synced."""
    settings = request.app.state.settings
    adapters = build_adapters(settings)
    adapter = adapters.get(body.source)
    # Only the asked-for source's adapter is used: by the run, which closes it when it ends.
    close_adapters(other for name, other in adapters.items() if name != body.source)
    if adapter is None:
        configured = ", ".join(sorted(adapters)) or "none"
        raise Invalid(f"source {body.source!r} is not configured (configured: {configured})")
    try:
        started = start_run(request.app.state.sessions, body.source, body.mode)
        _run_in_background(started, adapter, settings)
    except BaseException:
        close_adapters([adapter])  # refused: no run will use it
        raise
    return SyncStarted(run_id=started.run_id, source=body.source, mode=started.mode)


def _run_in_background(started: StartedRun, adapter: TrackerAdapter, settings: Settings) -> None:
    """Execute `started` in a thread of its own, which closes `adapter` once the run ends."""

    def run() -> None:
        try:
            started.execute(
                adapter,
                concurrency=settings.sync_concurrency,
                rules=match_rules(settings),
                tz=settings.tz,
            )
        finally:
            close_adapters([adapter])

    worker = threading.Thread(
        target=run, name=f"sync-{started.source}-{started.run_id}", daemon=True
    )
    try:
        worker.start()
    except RuntimeError:  # no thread to be had: do not leave the run open and the lock held
        started.abandon()
        raise
