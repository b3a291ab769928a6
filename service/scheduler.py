"""The schedule: APScheduler 3 jobs in the service process or in `ladder worker`.

Every job runs in a thread of the scheduler, at most one instance at a time, with missed
runs coalesced into one. Each tick is claimed in the store first (see `sync.ingest.jobs`), so any
number of processes can run this schedule against one database and each tick runs once.

Adding a job is one line in `JOBS`: a name, a trigger built from the settings, and what
to run given the `JobContext`.
"""

from __future__ import annotations

import gc
import logging
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.orm import Session, sessionmaker

from service import realtime
from service.settings import Settings
from service.trackers import JobContext, build_adapters, match_rules
from sync.ingest.engine import Mode
from sync.ingest.jobs import run_claimed_tick, sync_all
from sync.reports.snapshots import snapshot_all
from sync.store.models import utcnow

log = logging.getLogger("ladder.scheduler")

# How late a job may still start after its tick (a busy or sleeping host), before the tick
# is skipped; missed ticks are coalesced into one run either way.
MISFIRE_GRACE_SECONDS = 300
# Interval ticks count from this instant, so every process fires on the same ticks.
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class ScheduledJob:
    """A job: its name, when it runs (from the settings) and what it does."""

    name: str
    trigger: Callable[[Settings], BaseTrigger]
    run: Callable[[JobContext], object]


def nightly(settings: Settings) -> BaseTrigger:
    """`LADDER_SYNC_CRON` in `LADDER_TIMEZONE`."""
    return CronTrigger.from_crontab(settings.sync_cron, timezone=settings.tz)


def every(**interval: float) -> Callable[[Settings], BaseTrigger]:
    """A fixed interval (`every(minutes=5)`), on the same ticks in every process."""
    return lambda settings: IntervalTrigger(**interval, start_date=_EPOCH, timezone=UTC)


def every_incremental(settings: Settings) -> BaseTrigger:
    """Every `LADDER_INCREMENTAL_MINUTES`."""
    return every(minutes=settings.incremental_minutes)(settings)


def sync(mode: Mode) -> Callable[[JobContext], object]:
    """A job syncing every configured tracker in `mode`."""

    def run(context: JobContext) -> object:
        settings = context.settings
        return sync_all(
            context.sessions,
            context.adapters,
            mode,
            concurrency=settings.sync_concurrency,
            rules=match_rules(settings),
            tz=settings.tz,
        )

    return run


JOBS: list[ScheduledJob] = [
    ScheduledJob("sync-full", nightly, sync("full")),
    ScheduledJob("sync-incremental", every_incremental, sync("incremental")),
    ScheduledJob("webhook-drain", every(minutes=1), realtime.drain_job),
    ScheduledJob("orphan-comments", every(minutes=1), realtime.comments_job),
    ScheduledJob("snapshot", every(hours=24), lambda c: snapshot_all(c.sessions, c.settings.tz)),
]


def build_scheduler(
    settings: Settings, sessions: sessionmaker[Session], jobs: list[ScheduledJob] | None = None
) -> BackgroundScheduler:
    """A scheduler (not started) with `jobs` (by default `JOBS`)."""
    scheduler = BackgroundScheduler(
        timezone=settings.tz,
        job_defaults={
            "coalesce": True,
            "max_instances": 1,
            "misfire_grace_time": MISFIRE_GRACE_SECONDS,
        },
    )
    context = JobContext(settings, sessions, build_adapters(settings))
    for job in JOBS if jobs is None else jobs:
        trigger = job.trigger(settings)
        scheduler.add_job(_tick, trigger, args=(job, trigger, context), id=job.name, name=job.name)
    return scheduler


def _tick(job: ScheduledJob, trigger: BaseTrigger, context: JobContext) -> None:
    now = utcnow()
    next_tick = trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
    if next_tick is None:  # a trigger that never fires again: hold the claim for a day
        next_tick = now + timedelta(days=1)
    try:
        ran = run_claimed_tick(
            context.sessions, job.name, next_tick, lambda: job.run(context), now=now
        )
    except Exception:
        log.exception("job failed", extra={"job": job.name})
        return
    if ran:
        log.info("job ran", extra={"job": job.name})
    else:
        log.debug("tick taken by another process", extra={"job": job.name})


def run_worker(settings: Settings, sessions: sessionmaker[Session]) -> None:
    """Run the schedule, and a webhook inbox worker, in the foreground until SIGINT or SIGTERM."""
    scheduler = build_scheduler(settings, sessions)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    inbox = realtime.inbox_worker(settings, lambda: sessions, realtime.WORKER_PROCESS_POLL_SECONDS)
    scheduler.start()
    inbox.start()
    gc.freeze()  # start-up's objects live as long as the process: not worth collecting
    log.info("worker started", extra={"jobs": [job.id for job in scheduler.get_jobs()]})
    stop.wait()
    log.info("worker stopping: waiting for running jobs")
    inbox.stop()
    scheduler.shutdown(wait=True)
