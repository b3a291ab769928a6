"""Ladder's settings: environment variables prefixed `LADDER_`, or a `.env` file.

Every setting is validated when the process starts, so a typo fails loudly with the
variable's name instead of surfacing hours later in a nightly sync.
"""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_LINEAR_URL = "https://api.linear.app/graphql"


class OrphanComments(StrEnum):
    off = "off"
    dry_run = "dry-run"
    on = "on"


def _split_list(value: object) -> object:
    """Accept `A,B C` from the environment as well as a real list."""
    if isinstance(value, str):
        return [part for part in value.replace(",", " ").split() if part]
    return value


CommaList = Annotated[list[str], NoDecode]


class Settings(BaseSettings):
    """All of Ladder's configuration; see the README's Configuration section."""

    model_config = SettingsConfigDict(
        env_prefix="LADDER_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = "sqlite:///./ladder.db"
    base_url: str = "http://127.0.0.1:8000"
    log_level: str = "INFO"

    jira_url: str | None = None
    jira_email: str | None = None
    jira_api_token: str | None = None
    jira_pat: str | None = None
    jira_jql: str | None = None
    jira_story_points_field: str | None = None
    jira_webhook_secret: str | None = None
    jira_webhook_token: str | None = None  # for Jira set-ups that cannot sign: ?token=
    jira_canceled_resolutions: CommaList = Field(
        default_factory=lambda: ["Won't Do", "Won't Fix", "Duplicate", "Cannot Reproduce"]
    )
    jira_bot_account_id: str | None = None

    linear_api_key: str | None = None
    linear_url: str = DEFAULT_LINEAR_URL
    linear_teams: CommaList = Field(default_factory=list)
    linear_webhook_secret: str | None = None

    sync_cron: str = "0 2 * * *"
    incremental_minutes: int = Field(default=10, ge=1)
    sync_concurrency: int = Field(default=8, ge=1, le=64)
    timezone: str = "UTC"
    scheduler: bool = True

    bet_label_prefix: str = "bet:"
    kr_label_prefix: str = "kr:"
    non_okr_labels: CommaList = Field(default_factory=lambda: ["ktlo", "no-okr"])

    orphan_comments: OrphanComments = OrphanComments.off
    orphan_comment_projects: CommaList = Field(default_factory=list)
    orphan_grace_seconds: int = Field(default=900, ge=0)
    orphan_comment_hourly_cap: int = Field(default=50, ge=0)
    orphan_comment_update_on_link: bool = True

    webhook_worker: bool = True  # off: `ladder worker` processes webhook events, not `serve`
    webhook_retry_seconds: float = Field(default=30.0, gt=0)
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_lease_seconds: float = Field(default=300.0, gt=0)

    _split = field_validator(
        "jira_canceled_resolutions",
        "linear_teams",
        "non_okr_labels",
        "orphan_comment_projects",
        mode="before",
    )(_split_list)

    @field_validator("scheduler", "webhook_worker", mode="before")
    @classmethod
    def _on_off(cls, value: object) -> object:
        if isinstance(value, str) and value.lower() in {"on", "off"}:
            return value.lower() == "on"
        return value

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"not a database URL: {value!r} ({exc})") from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}: use sqlite:/// or postgresql://"
            )
        return value

    @field_validator("sync_cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        try:
            CronTrigger.from_crontab(value)
        except ValueError as exc:
            raise ValueError(f"not a cron expression: {value!r} ({exc})") from None
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone: {value!r}") from None
        return value

    @model_validator(mode="after")
    def _trackers_have_secrets(self) -> Settings:
        if self.jira_url and not (self.jira_pat or (self.jira_email and self.jira_api_token)):
            raise ValueError(
                "LADDER_JIRA_URL is set but no credentials: set LADDER_JIRA_EMAIL and "
                "LADDER_JIRA_API_TOKEN (Cloud) or LADDER_JIRA_PAT (Data Center)"
            )
        if self.linear_teams and not self.linear_api_key:
            raise ValueError("LADDER_LINEAR_TEAMS is set but LADDER_LINEAR_API_KEY is missing")
        return self

    @property
    def jira_enabled(self) -> bool:
        return bool(self.jira_url)

    @property
    def linear_enabled(self) -> bool:
        return bool(self.linear_api_key)

    @cached_property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class SettingsError(Exception):
    """Raised with a readable, one-line-per-problem message when the settings are invalid."""


def load_settings(**overrides: object) -> Settings:
    """Read and validate the settings, turning pydantic's report into a clear message."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"])
            name = f"LADDER_{field.upper()}" if field else "settings"
            message = error["msg"].removeprefix("Value error, ")
            lines.append(f"{name}: {message}")
        raise SettingsError("invalid configuration:\n  " + "\n  ".join(lines)) from None
