"""The `ladder` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from service.settings import Settings, SettingsError, load_settings
from service.tokens import Role, create_token
from sync.store.db import (
    SchemaOutdated,
    check_schema,
    make_engine,
    migrate,
    session_factory,
    transaction,
)

app = typer.Typer(
    help="Ladder: every ticket ladders up to an objective.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def settings_or_exit() -> Settings:
    try:
        return load_settings()
    except SettingsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from None


@app.command("migrate")
def migrate_command() -> None:
    """Create or upgrade the database schema to this version."""
    settings = settings_or_exit()
    migrate(make_engine(settings.database_url))
    typer.echo("database is up to date")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
) -> None:
    """Serve the API, webhooks and dashboard (and the scheduler unless LADDER_SCHEDULER=off)."""
    from service.app import create_app
    from service.observability import configure_logging

    settings = settings_or_exit()
    try:
        check_schema(make_engine(settings.database_url))
    except SchemaOutdated as exc:
        typer.echo(f"refusing to start: {exc}", err=True)
        raise typer.Exit(1) from None
    configure_logging(settings.log_level)
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None)


@app.command("sync")
def sync_command(
    full: Annotated[
        bool, typer.Option("--full", help="Fetch everything and mark unseen items deleted.")
    ] = False,
    census: Annotated[
        bool, typer.Option("--census", help="List ids only, to find deleted items cheaply.")
    ] = False,
    source: Annotated[
        str | None, typer.Option(help="jira or linear (default: every configured tracker).")
    ] = None,
) -> None:
    """Sync the trackers now: incremental by default; exits 1 if a run fails."""
    from rich.console import Console

    from service.sync_cli import sync_sources

    mode = "census" if census else "full" if full else "incremental"
    raise typer.Exit(sync_sources(settings_or_exit(), mode, source, Console(stderr=True)))


@app.command()
def worker() -> None:
    """Run only the scheduler (nightly full and periodic incremental syncs, other jobs)."""
    from rich.console import Console

    from service.observability import configure_logging
    from service.sync_cli import worker as run_worker

    settings = settings_or_exit()
    configure_logging(settings.log_level)
    raise typer.Exit(run_worker(settings, Console(stderr=True)))


@app.command()
def demo() -> None:
    """Load the demo OKRs into ./ladder.db (or LADDER_DATABASE_URL), print an admin token with
    curl examples, and serve on http://127.0.0.1:8000."""
    from service import demo as demo_steps

    try:
        demo_steps.run(settings_or_exit())
    except demo_steps.DemoRefused as exc:
        typer.echo(f"refusing to run the demo: {exc}", err=True)
        raise typer.Exit(1) from None


okrs_app = typer.Typer(
    help="OKRs as code: the whole catalogue as one YAML file.", no_args_is_help=True
)
app.add_typer(okrs_app, name="okrs")


@okrs_app.command("import")
def okrs_import(
    file: Annotated[Path, typer.Argument(help="The OKR file (YAML).")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only show what would change.")
    ] = False,
) -> None:
    """Make the store equal to FILE: what it lacks is deleted. Invalid files change nothing."""
    from rich.console import Console

    from service.okrs_cli import import_file

    code = import_file(
        settings_or_exit(), file, dry_run=dry_run, out=Console(), err=Console(stderr=True)
    )
    raise typer.Exit(code)


@okrs_app.command("export")
def okrs_export() -> None:
    """Write the catalogue to stdout as an OKR file that `okrs import` reads back."""
    from rich.console import Console

    from service.okrs_cli import export

    raise typer.Exit(export(settings_or_exit(), Console(stderr=True)))


token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    role: Annotated[
        Role, typer.Option(help="viewer reads; editor writes OKRs; admin manages tokens and sync.")
    ],
    name: Annotated[str, typer.Option(help="A note saying who or what uses it.")] = "",
) -> None:
    """Create a token and print it (it is shown only once)."""
    settings = settings_or_exit()
    engine = make_engine(settings.database_url)
    try:
        check_schema(engine)
    except SchemaOutdated as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    with transaction(session_factory(engine)) as session:
        token = create_token(session, role, name)
    sys.stdout.write(token + "\n")
