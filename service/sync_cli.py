"""`ladder sync` and `ladder worker`: syncing from a terminal, and the scheduler on its own."""

from __future__ import annotations

import gc
import logging

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from integrations.base import TrackerAdapter
from service.scheduler import run_worker
from service.settings import Settings
from service.trackers import build_adapters, close_adapters, match_rules
from sync.ingest.engine import Mode, SyncAlreadyRunning, SyncProgress, SyncRunSummary, run_sync
from sync.store.db import SchemaOutdated, check_schema, make_engine, session_factory

NO_TRACKER = (
    "no tracker is configured: set LADDER_JIRA_URL (with LADDER_JIRA_EMAIL and "
    "LADDER_JIRA_API_TOKEN, or LADDER_JIRA_PAT) or LADDER_LINEAR_API_KEY"
)


def sync_sources(settings: Settings, mode: Mode, source: str | None, console: Console) -> int:
    """Sync `source` (every configured tracker when None) with a progress bar; the exit code.

    0 when every run succeeded, 1 when one failed or could not start, 2 for a usage error.
    """
    engine = make_engine(settings.database_url)
    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        console.print(f"[red]{exc}[/red]")
        return 1
    adapters = build_adapters(settings)
    gc.freeze()  # start-up's objects outlive the sync: collections need not walk them (~10%)
    try:
        return _sync_adapters(session_factory(engine), adapters, mode, source, settings, console)
    finally:
        close_adapters(adapters.values())  # those not asked for too
        engine.dispose()


def _sync_adapters(
    sessions: sessionmaker[Session],
    adapters: dict[str, TrackerAdapter],
    mode: Mode,
    source: str | None,
    settings: Settings,
    console: Console,
) -> int:
    if not adapters:
        console.print(f"[red]{NO_TRACKER}[/red]")
        return 2
    if source is not None:
        if source not in adapters:
            configured = ", ".join(sorted(adapters))
            console.print(f"[red]{source!r} is not configured (configured: {configured})[/red]")
            return 2
        adapters = {source: adapters[source]}
    # The progress bar and the summary tell how each run went; keep only errors in the logs.
    logging.getLogger("ladder.sync").setLevel(logging.ERROR)
    summaries: list[SyncRunSummary] = []
    exit_code = 0
    for name, adapter in adapters.items():
        try:
            summary = _sync_with_progress(sessions, adapter, mode, settings, console)
        except SyncAlreadyRunning as exc:
            console.print(f"[red]{name}: {exc}[/red]")
            exit_code = 1
            continue
        summaries.append(summary)
        if not summary.ok:
            exit_code = 1
    if summaries:
        console.print(_summary_table(summaries))
    for run in summaries:
        if run.error:
            console.print(f"[red]{run.source} {run.mode} sync failed: {run.error}[/red]")
    return exit_code


def _sync_with_progress(
    sessions: sessionmaker[Session],
    adapter: TrackerAdapter,
    mode: Mode,
    settings: Settings,
    console: Console,
) -> SyncRunSummary:
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[items]:,} items"),
        TextColumn("{task.fields[requests]:,} requests"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(f"{adapter.source} ({mode})", items=0, requests=0, total=None)

        def advance(progress: SyncProgress) -> None:
            bar.update(task, items=progress.items_seen, requests=progress.requests)

        return run_sync(
            sessions,
            adapter,
            mode,
            concurrency=settings.sync_concurrency,
            rules=match_rules(settings),
            progress=advance,
            tz=settings.tz,
        )


def _summary_table(summaries: list[SyncRunSummary]) -> Table:
    table = Table(title="Sync")
    for heading in ("source", "mode", "status", "items", "changed", "deleted", "requests"):
        table.add_column(heading, justify="left" if heading in {"source", "mode"} else "right")
    table.add_column("time", justify="right")
    for run in summaries:
        took = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
        status = "[green]success[/green]" if run.ok else f"[red]{run.status}[/red]"
        table.add_row(
            run.source,
            run.mode,
            status,
            f"{run.items_seen:,}",
            f"{run.items_upserted:,}",
            f"{run.items_deleted:,}",
            f"{run.requests:,}",
            f"{took:.1f}s",
        )
    return table


def worker(settings: Settings, console: Console) -> int:
    """Run only the scheduler, until SIGINT or SIGTERM; the exit code."""
    engine = make_engine(settings.database_url)
    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        console.print(f"[red]refusing to start: {exc}[/red]")
        return 1
    run_worker(settings, session_factory(engine))
    engine.dispose()
    return 0
