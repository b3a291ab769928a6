"""Leases, locks and the schedule: of several processes, exactly one runs each tick."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from integrations.sandbox.jira.app import JiraSandbox
from integrations.sandbox.server import serve_in_thread
from service.app import create_app
from service.scheduler import JOBS, MISFIRE_GRACE_SECONDS, build_scheduler, every
from service.settings import Settings
from sync.ingest.jobs import run_claimed_tick
from sync.store.db import make_engine, session_factory, transaction
from sync.store.leases import claim, exclusive
from sync.store.models import Lease, SyncRun

NOW = datetime(2026, 5, 4, 10, 0, tzinfo=UTC)


def test_of_concurrent_claimers_exactly_one_gets_the_lease(
    sessions: sessionmaker[Session],
) -> None:
    barrier = threading.Barrier(6)
    winners: list[str] = []

    def contend(holder: str) -> None:
        barrier.wait()
        with transaction(sessions) as session:
            if claim(session, "job:x", holder, NOW + timedelta(minutes=5), NOW):
                winners.append(holder)

    threads = [threading.Thread(target=contend, args=(f"p{n}",)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    with sessions() as session:
        assert session.get_one(Lease, "job:x").holder == winners[0]


def test_a_lease_is_free_again_once_it_expires(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        assert claim(session, "job:x", "a", NOW + timedelta(minutes=5), NOW)
    with transaction(sessions) as session:
        assert not claim(session, "job:x", "b", NOW + timedelta(minutes=9), NOW)
        assert not claim(session, "job:x", "b", NOW, NOW + timedelta(minutes=4))
    later = NOW + timedelta(minutes=5)
    with transaction(sessions) as session:
        assert claim(session, "job:x", "b", later + timedelta(minutes=5), later)
        assert session.scalar(select(Lease.holder).where(Lease.name == "job:x")) == "b"


def test_each_tick_runs_once(sessions: sessionmaker[Session]) -> None:
    runs: list[datetime] = []
    next_tick = NOW + timedelta(minutes=10)
    for late in (0, 1, 30, 120):  # the same tick, fired by processes at different moments
        run_claimed_tick(
            sessions,
            "sync",
            next_tick,
            lambda: runs.append(NOW),
            now=NOW + timedelta(seconds=late),
        )
    assert len(runs) == 1
    # The next tick, even fired by a clock running a few seconds early, is free.
    assert run_claimed_tick(
        sessions,
        "sync",
        next_tick + timedelta(minutes=10),
        lambda: runs.append(next_tick),
        now=next_tick - timedelta(seconds=5),
    )
    assert len(runs) == 2


def test_an_exclusive_lock_is_held_until_released(engine: Engine) -> None:
    with exclusive(engine, "sync:jira") as first:
        assert first
        with exclusive(engine, "sync:jira") as second:
            assert not second
        with exclusive(engine, "sync:linear") as other:
            assert other
    with exclusive(engine, "sync:jira") as again:
        assert again


def test_the_lock_of_a_killed_process_is_free_at_once(database_url: str) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time
                from sync.store.db import make_engine
                from sync.store.leases import exclusive
                with exclusive(make_engine({database_url!r}), "sync:jira") as taken:
                    print(taken, flush=True)
                    time.sleep(60)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "True"
        engine = make_engine(database_url)
        with exclusive(engine, "sync:jira") as taken:
            assert not taken
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        # PostgreSQL notices the closed connection a moment later.
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        while True:
            with exclusive(engine, "sync:jira") as taken:
                if taken or datetime.now(UTC) > deadline:
                    break
        assert taken
        engine.dispose()
    finally:
        holder.kill()
        holder.wait()


def test_the_schedule_follows_the_settings() -> None:
    settings = Settings(
        database_url="sqlite://",
        sync_cron="30 2 * * *",
        timezone="Europe/Paris",
        incremental_minutes=15,
        _env_file=None,
    )
    scheduler = build_scheduler(settings, session_factory(make_engine(settings.database_url)))
    scheduler.start(paused=True)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    scheduler.shutdown()
    assert set(jobs) == {job.name for job in JOBS} >= {"sync-full", "sync-incremental"}
    for job in jobs.values():
        assert (job.coalesce, job.max_instances) == (True, 1)
        assert job.misfire_grace_time == MISFIRE_GRACE_SECONDS
    winter = datetime(2026, 1, 10, 12, tzinfo=UTC)
    nightly = jobs["sync-full"].trigger.get_next_fire_time(None, winter)
    assert nightly.astimezone(UTC) == datetime(2026, 1, 11, 1, 30, tzinfo=UTC)  # 02:30 CET
    summer = datetime(2026, 7, 10, 12, tzinfo=UTC)
    nightly = jobs["sync-full"].trigger.get_next_fire_time(None, summer)
    assert nightly.astimezone(UTC) == datetime(2026, 7, 11, 0, 30, tzinfo=UTC)  # 02:30 CEST
    incremental = jobs["sync-incremental"].trigger.get_next_fire_time(
        None, winter + timedelta(minutes=1)
    )
    assert incremental == winter + timedelta(minutes=15)


def test_interval_ticks_are_the_same_in_every_process() -> None:
    settings = Settings(database_url="sqlite://", _env_file=None)
    one, other = every(minutes=10)(settings), every(minutes=10)(settings)
    moment = datetime(2026, 5, 4, 10, 3, 17, tzinfo=UTC)
    expected = datetime(2026, 5, 4, 10, 10, tzinfo=UTC)
    assert one.get_next_fire_time(None, moment) == expected
    assert other.get_next_fire_time(None, moment + timedelta(seconds=41)) == expected


@pytest.mark.parametrize("interval", [timedelta(seconds=1)])
def test_claims_last_nine_tenths_of_the_way_to_the_next_tick(
    sessions: sessionmaker[Session], interval: timedelta
) -> None:
    run_claimed_tick(sessions, "fast", NOW + interval, lambda: None, now=NOW)
    with sessions() as session:
        assert session.get_one(Lease, "job:fast").expires_at == NOW + interval * 9 / 10


SCHEDULER_PROCESS = """
import sys, time
from service.observability import configure_logging
from service.scheduler import ScheduledJob, build_scheduler, every, sync
from service.settings import load_settings
from sync.store.db import make_engine, session_factory

settings = load_settings()
configure_logging("DEBUG")
jobs = [ScheduledJob("sync-incremental", every(seconds=1), sync("incremental"))]
scheduler = build_scheduler(settings, session_factory(make_engine(settings.database_url)), jobs)
scheduler.start()
time.sleep(float(sys.argv[1]))
scheduler.shutdown(wait=True)
"""


def test_two_scheduler_processes_run_one_sync_per_tick(
    database_url: str, sessions: sessionmaker[Session]
) -> None:
    sandbox = JiraSandbox("cloud", issues=200)
    with serve_in_thread(sandbox.app) as url:
        env = {
            **os.environ,
            "LADDER_DATABASE_URL": database_url,
            "LADDER_JIRA_URL": url,
            "LADDER_JIRA_EMAIL": sandbox.email,
            "LADDER_JIRA_API_TOKEN": sandbox.api_token,
        }
        processes = [
            subprocess.Popen(
                [sys.executable, "-c", SCHEDULER_PROCESS, "10"],
                env=env,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        logs = [process.communicate(timeout=60)[1] for process in processes]
    entries = [[json.loads(line) for line in log.splitlines() if line[:1] == "{"] for log in logs]
    outcomes = {"job ran": True, "tick taken by another process": False}
    ticks = [[outcomes[e["msg"]] for e in process if e["msg"] in outcomes] for process in entries]
    with sessions() as session:
        runs = session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
    assert all(run.status == "success" for run in runs), [run.error for run in runs]
    assert len(runs) >= 3
    # Both processes fired the ticks; each lost some to the other. A claimed tick runs one
    # sync, or none if the previous tick's sync is still going (on a very slow machine).
    assert all(False in process for process in ticks), ticks
    assert sum(ran for process in ticks for ran in process) >= len(runs)
    seconds = [run.started_at.replace(microsecond=0) for run in runs]
    assert len(set(seconds)) == len(seconds)
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at is not None and earlier.finished_at <= later.started_at


def test_the_worker_runs_the_schedule_until_told_to_stop(database_url: str, tmp_path) -> None:
    env = {**os.environ, "LADDER_DATABASE_URL": database_url, "LADDER_LOG_LEVEL": "INFO"}
    worker = subprocess.Popen(
        [sys.executable, "-c", "from service.cli import app; app()", "worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    started = next(
        entry for entry in map(json.loads, worker.stderr) if entry["msg"] == "worker started"
    )
    assert {"sync-full", "sync-incremental"} <= set(started["jobs"])
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=30) == 0

    unmigrated = {**env, "LADDER_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}"}
    refused = subprocess.run(
        [sys.executable, "-c", "from service.cli import app; app()", "worker"],
        env=unmigrated,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "ladder migrate" in refused.stderr


def test_the_service_runs_the_schedule_unless_told_not_to(database_url: str) -> None:
    settings = Settings(database_url=database_url, scheduler=True, _env_file=None)
    with TestClient(create_app(settings)) as client:
        scheduler = client.app.state.scheduler  # type: ignore[attr-defined]
        assert scheduler.running
        assert {job.id for job in scheduler.get_jobs()} == {job.name for job in JOBS}
    assert not scheduler.running
    quiet = Settings(database_url=database_url, scheduler=False, _env_file=None)
    with TestClient(create_app(quiet)) as client:
        assert client.app.state.scheduler is None  # type: ignore[attr-defined]
