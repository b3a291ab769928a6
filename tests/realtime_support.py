"""What the webhook, inbox and orphan comment tests share: sandboxes, deliveries, signing."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.jira.adapter import JiraAdapter
from integrations.jira.client import RetryPolicy
from integrations.sandbox.jira.app import JiraSandbox
from integrations.sandbox.linear.app import LinearSandbox
from integrations.sandbox.server import serve_in_thread
from integrations.webhooks import sign
from service.settings import Settings
from sync.store.models import WebhookEvent

JIRA_SECRET = "jira-webhook-secret"
BET_LABEL = "bet:one-click-checkout"
LINEAR_SECRET = "linear-webhook-secret"


def configured(base: Settings, **overrides: Any) -> Settings:
    """`base` with `overrides`, validated as settings from the environment would be."""
    return Settings.model_validate(base.model_dump() | overrides)


@dataclass(frozen=True)
class ServedJira:
    """A sandbox Jira served on a loopback port."""

    sandbox: JiraSandbox
    url: str

    def adapter(self, **options: Any) -> JiraAdapter:
        """A real adapter for the sandbox; one attempt per call unless told otherwise."""
        options.setdefault("retry", RetryPolicy(attempts=1))
        options.setdefault("timeout", 5.0)
        return JiraAdapter(
            self.url, email=self.sandbox.email, api_token=self.sandbox.api_token, **options
        )

    def settings(self, base: Settings, **overrides: Any) -> Settings:
        """`base` pointed at this sandbox, with webhook secrets set."""
        return configured(
            base,
            jira_url=self.url,
            jira_email=self.sandbox.email,
            jira_api_token=self.sandbox.api_token,
            jira_webhook_secret=JIRA_SECRET,
            linear_webhook_secret=LINEAR_SECRET,
            **overrides,
        )

    def environment(self, database_url: str, **settings: str) -> dict[str, str]:
        """The environment of a `ladder` process pointed at this sandbox and `database_url`,
        with the webhook secret set and the scheduler off; `settings` add LADDER_ variables
        (`webhook_worker="off"` → LADDER_WEBHOOK_WORKER=off)."""
        return os.environ | {
            "LADDER_DATABASE_URL": database_url,
            "LADDER_JIRA_URL": self.url,
            "LADDER_JIRA_EMAIL": self.sandbox.email,
            "LADDER_JIRA_API_TOKEN": self.sandbox.api_token,
            "LADDER_JIRA_WEBHOOK_SECRET": JIRA_SECRET,
            "LADDER_SCHEDULER": "off",
            **{f"LADDER_{name.upper()}": value for name, value in settings.items()},
        }

    def delivery(self, issue_id: str, event: str = "jira:issue_updated") -> bytes:
        """The body Jira sends for `event` on this issue: the issue in its v2 shape."""
        response = httpx.get(
            f"{self.url}/rest/api/2/issue/{issue_id}",
            auth=(self.sandbox.email, self.sandbox.api_token),
        )
        response.raise_for_status()
        body = {
            "timestamp": int(time.time() * 1000),
            "webhookEvent": event,
            "issue_event_type_name": "issue_generic",
            "user": {"accountId": "5b10ac8d82e05b22cc7d4ef5"},
            "issue": response.json(),
        }
        return json.dumps(body).encode()


@pytest.fixture(name="jira")
def jira_fixture() -> Iterator[ServedJira]:
    """A small sandbox Jira on a free port (import `jira_fixture`, request `jira`)."""
    sandbox = JiraSandbox(issues=20, seed=11)
    with serve_in_thread(sandbox.app) as url:
        yield ServedJira(sandbox, url)


@dataclass(frozen=True)
class ServedLinear:
    """A sandbox Linear served on a loopback port."""

    sandbox: LinearSandbox
    url: str

    def settings(self, base: Settings, **overrides: Any) -> Settings:
        return configured(
            base,
            linear_url=self.url,
            linear_api_key=self.sandbox.api_key,
            linear_webhook_secret=LINEAR_SECRET,
            **overrides,
        )

    def label_id(self, name: str) -> str:
        """The id of a label the sandbox was generated with."""
        (found,) = [i for i, label in self.sandbox.store.labels.items() if label["name"] == name]
        return found

    def delivery(self, issue_id: str, action: str, changed: dict[str, Any]) -> bytes:
        """The body Linear sends when an issue is created or updated (`changed`: the
        previous values, as `updatedFrom`), as of now."""
        with self.sandbox.store.lock:
            issue = dict(self.sandbox.store.issues[issue_id])
        data = {key: issue[key] for key in ("id", "title", "createdAt", "updatedAt", "labelIds")}
        body: dict[str, Any] = {
            "action": action,
            "type": "Issue",
            "createdAt": issue["updatedAt"],
            "data": data,
            "url": issue.get("url"),
            "webhookTimestamp": int(time.time() * 1000),
        }
        if action == "update":
            body["updatedFrom"] = changed
        return json.dumps(body).encode()

    def adopt(self, issue_id: str, team_key: str, title: str, **fields: Any) -> None:
        """Create an issue under a given id, so that a captured delivery naming that id
        refers to an issue the sandbox knows (what Linear would answer when asked)."""
        store = self.sandbox.store
        with store.lock:
            record = store.create(team_key, title, **fields)
            del store.issues[record["id"]]
            record["id"] = issue_id
            store.issues[issue_id] = record

    def adopt_project(self, project_id: str, team_key: str, name: str, slug_id: str) -> None:
        """Give one of the sandbox's generated projects this id and name, planned in
        `team_key`: what Linear answers when asked for the project a delivery names."""
        store = self.sandbox.store
        with store.lock:
            template = next(p for p in store.projects.values() if p["id"] != project_id)
            slug = name.lower().replace(" ", "-")
            store.projects[project_id] = {
                **template,
                "id": project_id,
                "name": name,
                "slugId": slug_id,
                "url": f"https://linear.app/acme/project/{slug}-{slug_id}",
                "statusName": "Planned",
                "statusType": "planned",
                "startedAt": None,
                "completedAt": None,
                "canceledAt": None,
                "archivedAt": None,
                "trashed": None,
                "teamIds": [store.team(team_key)["id"]],
                "initiativeIds": [],
            }
            store.version += 1  # the sandbox caches answers by version


@pytest.fixture(name="linear")
def linear_fixture() -> Iterator[ServedLinear]:
    """A sandbox Linear on a free port (import `linear_fixture`, request `linear`)."""
    sandbox = LinearSandbox(issues=5, seed=3, labels=[BET_LABEL])
    with serve_in_thread(sandbox.app) as url:
        yield ServedLinear(sandbox, f"{url}/graphql")


def jira_headers(body: bytes, delivery_id: str | None = None) -> dict[str, str]:
    """What Jira sends along a signed delivery."""
    headers = {"X-Hub-Signature": "sha256=" + sign(JIRA_SECRET, body)}
    if delivery_id is not None:
        headers["X-Atlassian-Webhook-Identifier"] = delivery_id
    return headers


def linear_now(raw: bytes) -> bytes:
    """A Linear delivery as Linear would send it now: only `webhookTimestamp` changes."""
    payload = json.loads(raw)
    payload["webhookTimestamp"] = int(time.time() * 1000)
    return json.dumps(payload).encode()


def linear_headers(body: bytes, delivery_id: str | None = None) -> dict[str, str]:
    headers = {"Linear-Signature": sign(LINEAR_SECRET, body)}
    if delivery_id is not None:
        headers["Linear-Delivery"] = delivery_id
    return headers


def stored(sessions: sessionmaker[Session]) -> list[WebhookEvent]:
    """Every inbox event, oldest first."""
    with sessions() as session:
        return list(session.scalars(select(WebhookEvent).order_by(WebhookEvent.id)))


# A `ladder` command, as arguments to the Python interpreter.
LADDER = ("-c", "from service.cli import app; app()")


@contextmanager
def killed_at_exit(env: dict[str, str], cwd: Path, *arguments: str) -> Iterator[None]:
    """The Python interpreter with `arguments` in a process of its own, SIGKILLed when the
    block ends: the way a process dies without a chance to tidy up."""
    process = subprocess.Popen(
        [sys.executable, *arguments],
        env=env,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Return once `condition()` holds; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def settled(sessions: sessionmaker[Session], timeout: float = 20.0) -> list[WebhookEvent]:
    """The inbox once the app's worker has dealt with every event (it runs by itself)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = stored(sessions)
        done = all(row.status in {"processed", "ignored", "failed", "parked"} for row in rows)
        if done or time.monotonic() > deadline:
            return rows
        time.sleep(0.05)
