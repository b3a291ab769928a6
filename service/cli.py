"""The `ladder` command line."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
import uvicorn

from service.settings import Settings, SettingsError, load_settings
from sync.db import SchemaOutdated, check_schema, make_engine, migrate, session_factory, transaction
from sync.tokens import Role, create_token

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
