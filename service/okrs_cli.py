"""`ladder okrs import|export`: the command-line side of OKRs as code."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table
from sqlalchemy.orm import Session, sessionmaker

from service.settings import Settings
from service.trackers import match_rules
from sync.errors import Invalid
from sync.okrs.document import ImportPlan, export_okrs, import_okrs
from sync.store.db import SchemaOutdated, check_schema, make_engine, session_factory, transaction

_STYLE = {"create": "green", "update": "yellow", "delete": "red"}


def plan_table(plan: ImportPlan) -> Table:
    """The plan as a table: one row per change, with the fields an update changes."""
    table = Table(show_edge=False, box=None, pad_edge=False)
    for column in ("action", "kind", "key", "fields"):
        table.add_column(column, overflow="fold")
    for change in plan.changes:
        style = _STYLE[change.action]
        table.add_row(
            f"[{style}]{change.action}[/]", change.kind, change.key, ", ".join(change.fields)
        )
    return table


def _summary(plan: ImportPlan) -> str:
    counts = plan.counts
    numbers = f"{counts['create']} to create, {counts['update']} to update, "
    numbers += f"{counts['delete']} to delete"
    if not plan.changes:
        return "nothing to change: the store already equals the file"
    return numbers + (" (dry run: nothing written)" if plan.dry_run else " (done)")


def _say(console: Console, text: str) -> None:
    """Print as is: no markup, no colouring, no wrapping (paths must stay greppable)."""
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _migrated_sessions(settings: Settings, err: Console) -> sessionmaker[Session] | None:
    engine = make_engine(settings.database_url)
    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        _say(err, str(exc))
        return None
    return session_factory(engine)


def import_file(
    settings: Settings, path: Path, *, dry_run: bool, out: Console, err: Console
) -> int:
    """Import the OKR file at `path` in one transaction; print the plan. Exit code."""
    sessions = _migrated_sessions(settings, err)
    if sessions is None:
        return 1
    try:
        text = path.read_bytes()
    except OSError as exc:
        _say(err, f"cannot read {path}: {exc.strerror}")
        return 1
    try:
        with transaction(sessions) as session:
            plan = import_okrs(session, text, dry_run=dry_run, rules=match_rules(settings))
    except Invalid as exc:
        _say(err, f"{path}: {exc.message}")
        _say(err, "nothing was written")
        return 1
    if plan.changes:
        out.print(plan_table(plan))
    out.print(_summary(plan), highlight=False)
    return 0


def export(settings: Settings, err: Console) -> int:
    """Write the catalogue as an OKR file to stdout. Exit code."""
    sessions = _migrated_sessions(settings, err)
    if sessions is None:
        return 1
    with transaction(sessions) as session:
        sys.stdout.write(export_okrs(session))
    return 0
