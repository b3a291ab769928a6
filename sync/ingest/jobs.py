"""Periodic jobs: the sync of every tracker, and the rule that one process runs each tick.

Several processes (service replicas, `ladder worker`) may run the same schedule against one
store. Each tick of a job is claimed with a lease held until shortly before the job's next
tick, so the first process to fire takes the tick and the others, firing a moment later,
find it taken, even when the job itself was over in a second.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo

from sqlalchemy.orm import Session, sessionmaker

from integrations.base import TrackerAdapter
from sync.ingest.engine import Mode, SyncAlreadyRunning, SyncRunSummary, run_sync
from sync.matching.rematch import MatchRules
from sync.store.db import transaction
from sync.store.leases import claim
from sync.store.models import utcnow

log = logging.getLogger("ladder.jobs")

HOLDER = f"{socket.gethostname()}:{os.getpid()}"


def sync_all(
    sessions: sessionmaker[Session],
    adapters: Mapping[str, TrackerAdapter],
    mode: Mode,
    *,
    concurrency: int,
    rules: MatchRules,
    tz: tzinfo,
) -> list[SyncRunSummary]:
    """Sync every source in turn; a source that is being synced elsewhere is skipped.

    `tz` is where days begin for the snapshot each successful run ends with.
    """
    summaries = []
    for source, adapter in adapters.items():
        try:
            summaries.append(
                run_sync(sessions, adapter, mode, concurrency=concurrency, rules=rules, tz=tz)
            )
        except SyncAlreadyRunning:
            log.info("sync skipped: already running", extra={"source": source, "mode": mode})
    return summaries


def run_claimed_tick(
    sessions: sessionmaker[Session],
    name: str,
    next_tick: datetime,
    job: Callable[[], object],
    *,
    now: datetime | None = None,
) -> bool:
    """Run `job` for the current tick unless another process claimed it; say whether it ran.

    The claim lasts until nine tenths of the way to `next_tick`: late enough that no
    process firing this tick late can take it again, early enough that clocks a little
    apart still agree that the next tick is free.
    """
    now = now or utcnow()
    until = next_tick - (next_tick - now) / 10
    with transaction(sessions) as session:
        taken = claim(session, f"job:{name}", HOLDER, until, now)
    if not taken:
        return False
    job()
    return True
