"""The FastAPI application: wiring of settings, store, routers and background jobs."""

from __future__ import annotations

import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service import dashboard, realtime, webhooks
from service.api import items, okrs, reports, tokens
from service.api import sync as sync_api
from service.observability import install_metrics
from service.scheduler import build_scheduler
from service.settings import Settings, load_settings
from sync.errors import Conflict, Invalid, LadderError, NotFound
from sync.store.db import check_schema, make_engine, session_factory

log = logging.getLogger("ladder.service")

_STATUS = {NotFound: 404, Conflict: 409, Invalid: 422}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (read from the environment when not given)."""
    settings = settings or load_settings()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        check_schema(engine)
        scheduler = build_scheduler(settings, app.state.sessions) if settings.scheduler else None
        if scheduler is not None:
            scheduler.start()
        app.state.scheduler = scheduler
        running = realtime.start(app)
        # What start-up built lives as long as the process: keep the collector from walking
        # it again and again (each full collection of it stalled every request ~100 ms).
        gc.freeze()
        yield
        gc.unfreeze()
        await running.stop()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        engine.dispose()

    app = FastAPI(
        title="Ladder",
        summary="Backlog traceability: every ticket ladders up to an objective.",
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    install_metrics(app)

    @app.exception_handler(LadderError)
    async def _domain_error(_request: Request, exc: LadderError) -> JSONResponse:
        status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 400)
        body: dict[str, object] = {"detail": exc.message}
        if exc.errors:
            body["errors"] = exc.errors
        return JSONResponse(body, status_code=status)

    @app.get("/healthz", tags=["ops"])
    def healthz(request: Request) -> JSONResponse:
        """200 when the database answers, 503 when it does not."""
        try:
            with request.app.state.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            log.warning("health check failed", extra={"error": str(exc)})
            return JSONResponse({"status": "unavailable", "database": "unreachable"}, 503)
        return JSONResponse({"status": "ok", "database": "ok"})

    for router in ROUTERS:
        app.include_router(router)
    return app


# Routes are matched in this order: the webhook endpoints, the hot path, come first.
ROUTERS = [
    webhooks.router,
    okrs.router,
    tokens.router,
    webhooks.api,
    sync_api.router,
    items.router,
    reports.router,
    dashboard.router,
]
