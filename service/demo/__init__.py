"""`ladder demo`: a working Ladder on this machine in one command.

The demo is a short list of named steps over one `Demo` state. Setup steps run in order and
may replace `demo.settings` (e.g. to point them at trackers they start); then the welcome is
printed and the server runs until interrupted. The sandbox trackers the demo starts run in
background threads held by `demo.resources`, until the demo is closed.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import typer
import uvicorn
from sqlalchemy import Engine

from service.demo.trackers import (
    DEFAULT_ISSUES,
    Sandboxes,
    plan_workspace,
    start_sandboxes,
    trace_example,
    tracker_settings,
)
from service.settings import Settings
from service.tokens import Role, create_token
from service.trackers import build_adapters, close_adapters, match_rules
from sync.ingest.engine import SyncRunSummary, run_sync
from sync.okrs.document import import_okrs, parse
from sync.store.db import make_engine, migrate, session_factory, transaction

DEMO_OKRS = Path(__file__).with_name("okrs.yaml")
HOST = "127.0.0.1"
PORT = 8000


class DemoRefused(Exception):
    """The demo would overwrite OKRs that are not the demo's."""


@dataclass
class Demo:
    """What the steps share: the settings (steps may replace them), the store, the token.

    `tracker_issues` is how many issues each sandbox tracker generates. Close the demo (or
    use it as a context manager) to stop the sandbox trackers.
    """

    settings: Settings
    tracker_issues: int = DEFAULT_ISSUES
    engine: Engine = field(init=False)
    token: str = ""
    resources: ExitStack = field(default_factory=ExitStack)
    sandboxes: Sandboxes | None = None
    trace_key: str | None = None  # an item whose trace the welcome shows

    def __post_init__(self) -> None:
        self.engine = make_engine(self.settings.database_url)

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{PORT}"

    def close(self) -> None:
        """Stop the sandbox trackers and release the store."""
        self.resources.close()
        self.engine.dispose()

    def __enter__(self) -> Demo:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def migrate_store(demo: Demo) -> None:
    """Create or upgrade the schema of the demo store (by default the SQLite file ./ladder.db)."""
    migrate(demo.engine)


def load_okrs(demo: Demo) -> None:
    """Import the demo OKRs; refuse to replace OKRs of another origin."""
    text = DEMO_OKRS.read_text(encoding="utf-8")
    with transaction(session_factory(demo.engine)) as session:
        plan = import_okrs(session, text, dry_run=True)
        doomed = [f"{c.kind} {c.key}" for c in plan.changes if c.action == "delete"]
        if doomed:
            raise DemoRefused(
                f"the database {demo.settings.database_url} holds OKRs that are not the demo's "
                f"({', '.join(doomed[:5])}{', ...' if len(doomed) > 5 else ''}); the demo "
                "would delete them. Point LADDER_DATABASE_URL at a new SQLite file."
            )
        import_okrs(session, text, rules=match_rules(demo.settings))


def start_trackers(demo: Demo) -> None:
    """Start a sandbox Jira and Linear filled after the demo OKRs; point the settings at them."""
    document = parse(DEMO_OKRS.read_text(encoding="utf-8"))
    workspace = plan_workspace(document, match_rules(demo.settings))
    sandboxes = start_sandboxes(workspace, demo.tracker_issues, demo.resources)
    demo.sandboxes = sandboxes
    demo.trace_key = trace_example(sandboxes, workspace)
    demo.settings = demo.settings.model_copy(update=tracker_settings(sandboxes))


def sync_trackers(demo: Demo) -> None:
    """Run a full sync of each configured tracker through its real adapter."""
    sessions = session_factory(demo.engine)
    rules = match_rules(demo.settings)
    adapters = build_adapters(demo.settings)
    try:
        for adapter in adapters.values():
            summary = run_sync(
                sessions,
                adapter,
                "full",
                concurrency=demo.settings.sync_concurrency,
                rules=rules,
                tz=demo.settings.tz,
            )
            typer.echo(describe_sync(summary))
    finally:
        close_adapters(adapters.values())


def describe_sync(summary: SyncRunSummary) -> str:
    """One line on how a sync run went."""
    if not summary.ok:
        return f"{summary.source} sync {summary.status}: {summary.error}"
    took = (summary.finished_at - summary.started_at).total_seconds() if summary.finished_at else 0
    return (
        f"{summary.source} synced: {summary.items_seen:,} items in {took:.1f}s "
        f"({summary.requests:,} requests)"
    )


def create_admin_token(demo: Demo) -> None:
    """Create an admin token for the dashboard and the curl examples."""
    with transaction(session_factory(demo.engine)) as session:
        demo.token = create_token(session, Role.admin, "demo")


SETUP_STEPS: list[Callable[[Demo], None]] = [
    migrate_store,
    load_okrs,
    start_trackers,
    sync_trackers,
    create_admin_token,
]


def prepare(settings: Settings, *, tracker_issues: int = DEFAULT_ISSUES) -> Demo:
    """Run the setup steps: afterwards the store holds the demo and `demo.token` works.

    The sandbox trackers keep running until the returned demo is closed.
    """
    demo = Demo(settings, tracker_issues)
    try:
        for step in SETUP_STEPS:
            step(demo)
    except BaseException:
        demo.close()
        raise
    return demo


def welcome(demo: Demo) -> str:
    """What to open and what to paste, with the token filled in."""
    url, token = demo.base_url, demo.token
    auth = '-H "Authorization: Bearer $LADDER_TOKEN"'
    sandboxes = demo.sandboxes
    trackers = ""
    if sandboxes is not None:
        trackers = (
            f"\n  Sandbox Jira    {sandboxes.jira_url}   (Cloud)"
            f"\n  Sandbox Linear  {sandboxes.linear_url}"
        )
    trace = ""
    if demo.trace_key:
        trace = f"\n  curl {auth} {url}/api/items/jira/{demo.trace_key}/trace"
    return f"""
Ladder is ready with the demo OKRs and the sandbox trackers' issues.

  Dashboard    {url}/#token={token}
  API docs     {url}/docs
  Admin token  {token}   (shown only now)
{trackers}

Try the API:
  export LADDER_TOKEN={token}
  curl {auth} {url}/api/objectives
  curl {auth} {url}/api/bets/one-click-checkout
  curl {auth} -X POST -H 'Content-Type: application/json' \\
       -d '{{"value": 66, "confidence": 0.8, "note": "new wallet flow"}}' \\
       {url}/api/key-results/KR-1.1/check-ins
  curl {auth} {url}/api/okrs/export > okrs.yaml
  curl {auth} -X POST -H 'Content-Type: application/yaml' --data-binary @okrs.yaml \\
       '{url}/api/okrs/import?dry_run=true'
  curl {auth} '{url}/api/reports/effort?cycle=2026-Q4&measure=count&by=objective'
  curl {auth} '{url}/api/orphans?cycle=2026-Q4&roots_only=true&limit=10'{trace}
"""


def serve(demo: Demo) -> None:
    """Serve the API and dashboard on 127.0.0.1:8000 until interrupted."""
    from service.app import create_app
    from service.observability import configure_logging

    configure_logging(demo.settings.log_level)
    uvicorn.run(create_app(demo.settings), host=HOST, port=PORT, log_config=None)


def run(settings: Settings) -> None:
    """The whole demo: set up, print the welcome, serve; the sandboxes stop with the server."""
    with prepare(settings) as demo:
        typer.echo(welcome(demo))
        serve(demo)
