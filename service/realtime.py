"""The real-time machinery of the service process, and the scheduled jobs that back it up.

* `Intake` stores verified webhook deliveries in batches: deliveries that arrive while one
  batch is being written wait for the next, so under load many share one transaction (one
  INSERT, one commit) and the endpoint still answers each within milliseconds.
* `InboxWorker` drains the inbox in a thread: woken by each new event, it waits a moment so
  that events arriving together are processed together (re-matching a batch of a hundred
  items costs about twice what a batch of ten does), then processes them.
  With LADDER_WEBHOOK_WORKER=off, `ladder worker` runs it instead, in a process of its own.
* The scheduled jobs: the inbox drain (the safety net for retries and for events a dead
  process left behind) and the orphan comments, with their policies from the settings.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker

from integrations.base import TrackerAdapter
from service.settings import Settings
from service.trackers import JobContext, build_adapters, match_rules
from sync.comments import job as comments
from sync.ingest import inbox
from sync.matching.rematch import MatchRules
from sync.store.db import transaction

log = logging.getLogger("ladder.realtime")

INTAKE_BATCH = 500
WORKER_POLL_SECONDS = 5.0
# Processing in another process than the endpoints keeps it off their event loop's GIL.
WORKER_PROCESS_POLL_SECONDS = 0.25
WORKER_LINGER_SECONDS = 0.3

Sessions = Callable[[], sessionmaker[Session]]


class Intake:
    """Writes deliveries to the inbox from the event loop, one batch per transaction."""

    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions
        self._queue: list[tuple[inbox.Delivery, asyncio.Future[inbox.Accepted]]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="webhook-intake")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for _, waiting in self._queue:
            waiting.cancel()

    async def store(self, delivery: inbox.Delivery) -> inbox.Accepted:
        """Where the delivery landed, once its batch is committed; raises what the store
        raised (SQLAlchemyError when it is unavailable)."""
        landed: asyncio.Future[inbox.Accepted] = asyncio.get_running_loop().create_future()
        self._queue.append((delivery, landed))
        self._ready.set()
        return await landed

    async def _run(self) -> None:
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                batch, self._queue = self._queue[:INTAKE_BATCH], self._queue[INTAKE_BATCH:]
                try:
                    answers = await run_in_threadpool(self._write, [d for d, _ in batch])
                except Exception as exc:  # every waiting request answers with it
                    for _, landed in batch:
                        if not landed.done():
                            landed.set_exception(exc)
                    continue
                for (_, landed), answer in zip(batch, answers, strict=True):
                    if not landed.done():
                        landed.set_result(answer)

    def _write(self, deliveries: list[inbox.Delivery]) -> list[inbox.Accepted]:
        with transaction(self._sessions()) as session:
            return inbox.accept_many(session, deliveries)


class InboxWorker:
    """Drains the inbox in a daemon thread: soon after it is woken, and every
    `poll_seconds` regardless, so retries fall due and events a dead process left behind
    are picked up."""

    def __init__(
        self,
        sessions: Sessions,
        adapters: Mapping[str, TrackerAdapter],
        rules: MatchRules,
        policy: inbox.RetryPolicy,
        poll_seconds: float = WORKER_POLL_SECONDS,
    ) -> None:
        self._sessions = sessions
        self._adapters = adapters
        self._rules = rules
        self._policy = policy
        self._poll_seconds = poll_seconds
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="inbox-worker", daemon=True)

    def start(self) -> None:
        """Start, draining at once: a previous process may have left events behind."""
        self._wake.set()
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        backlog = False
        while not self._stopping.is_set():
            if not backlog and self._wake.wait(self._poll_seconds):
                self._stopping.wait(WORKER_LINGER_SECONDS)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                report = inbox.drain(
                    self._sessions(),
                    self._adapters,
                    self._rules,
                    policy=self._policy,
                    max_batches=1,
                )
            except Exception:
                # The store may be down; the events stay in the inbox for the next round.
                log.exception("draining the webhook inbox failed")
                backlog = False
                continue
            # One batch per round: what arrives meanwhile waits for the next round and its
            # linger, so batches stay large under load; a full batch means more is due now.
            backlog = report.full


@dataclass
class Realtime:
    """The running intake of one app, and its inbox worker unless `ladder worker` has it."""

    intake: Intake
    worker: InboxWorker | None

    def wake(self) -> None:
        """Tell the worker that events are due (a worker in another process polls)."""
        if self.worker is not None:
            self.worker.wake()

    async def stop(self) -> None:
        await self.intake.stop()
        if self.worker is not None:
            await run_in_threadpool(self.worker.stop)


def start(app: FastAPI) -> Realtime:
    """Start the app's intake, and its inbox worker unless LADDER_WEBHOOK_WORKER=off (from
    the app's lifespan, on the event loop)."""
    settings: Settings = app.state.settings

    def sessions() -> sessionmaker[Session]:
        return app.state.sessions

    worker = inbox_worker(settings, sessions) if settings.webhook_worker else None
    realtime = Realtime(Intake(sessions), worker)
    realtime.intake.start()
    if worker is not None:
        worker.start()
    app.state.realtime = realtime
    return realtime


def inbox_worker(
    settings: Settings, sessions: Sessions, poll_seconds: float = WORKER_POLL_SECONDS
) -> InboxWorker:
    """An inbox worker (not started). In a process without the endpoints (`ladder worker`)
    nothing wakes it: there it polls every `WORKER_PROCESS_POLL_SECONDS`."""
    return InboxWorker(
        sessions,
        build_adapters(settings),
        match_rules(settings),
        retry_policy(settings),
        poll_seconds,
    )


# --- Policies from the settings, and the scheduled jobs ------------------------------------


def retry_policy(settings: Settings) -> inbox.RetryPolicy:
    """The inbox's retry policy from the settings."""
    return inbox.RetryPolicy(
        base_seconds=settings.webhook_retry_seconds,
        max_attempts=settings.webhook_max_attempts,
        lease_seconds=settings.webhook_lease_seconds,
    )


def comment_policy(settings: Settings) -> comments.CommentPolicy:
    """The orphan comment policy from the settings."""
    return comments.CommentPolicy(
        mode=settings.orphan_comments.value,  # type: ignore[arg-type]
        projects=tuple(settings.orphan_comment_projects),
        grace_seconds=settings.orphan_grace_seconds,
        hourly_cap=settings.orphan_comment_hourly_cap,
        update_on_link=settings.orphan_comment_update_on_link,
        base_url=settings.base_url,
        bet_label_prefix=settings.bet_label_prefix,
        non_okr_label=settings.non_okr_labels[0] if settings.non_okr_labels else None,
    )


def drain_job(context: JobContext) -> inbox.DrainReport:
    """The safety net: process whatever the inbox still holds (retries, a dead worker's)."""
    settings = context.settings
    return inbox.drain(
        context.sessions, context.adapters, match_rules(settings), policy=retry_policy(settings)
    )


def comments_job(context: JobContext) -> comments.CommentReport:
    """Comment on orphans whose grace period is over; update the comments of linked ones."""
    return comments.run(context.sessions, context.adapters, comment_policy(context.settings))
