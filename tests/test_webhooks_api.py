"""The webhook endpoints: every real payload in, every bad input refused, nothing lost."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from conftest import REFERENCE
from fastapi.testclient import TestClient
from realtime_support import (
    JIRA_SECRET,
    LINEAR_SECRET,
    ServedJira,
    ServedLinear,
    configured,
    jira_fixture,  # noqa: F401 — provides `jira`
    jira_headers,
    linear_fixture,  # noqa: F401 — provides `linear`
    linear_headers,
    linear_now,
    settled,
    stored,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.webhooks import sign
from service.app import create_app
from service.settings import Settings
from sync.db import make_engine, session_factory
from sync.models import TrackerItem, WebhookEvent
from sync.tokens import Role

JIRA_SAMPLES = REFERENCE / "jira" / "samples" / "webhooks"
LINEAR_SAMPLES = REFERENCE / "linear" / "samples" / "webhooks"


@pytest.fixture
def hook_settings(settings: Settings) -> Settings:
    """Webhook secrets set, no tracker: events are stored, their processing fails."""
    return configured(
        settings,
        jira_webhook_secret=JIRA_SECRET,
        jira_webhook_token="url-token",
        linear_webhook_secret=LINEAR_SECRET,
    )


@pytest.fixture
def hooks(hook_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(hook_settings)) as client:
        yield client


@pytest.fixture
def live(settings: Settings, jira: ServedJira, linear: ServedLinear) -> Iterator[TestClient]:
    """The app with both sandbox trackers configured: events are processed."""
    with TestClient(create_app(linear.settings(jira.settings(settings)))) as client:
        yield client


def post_jira(client: TestClient, body: bytes, **headers: str) -> httpx.Response:
    return client.post("/webhooks/jira", content=body, headers=jira_headers(body) | headers)


def post_linear(client: TestClient, body: bytes, **headers: str) -> httpx.Response:
    return client.post("/webhooks/linear", content=body, headers=linear_headers(body) | headers)


def item(sessions: sessionmaker[Session], source: str, external_id: str) -> TrackerItem | None:
    with sessions() as session:
        return session.scalar(
            select(TrackerItem).where(
                TrackerItem.source == source, TrackerItem.external_id == str(external_id)
            )
        )


def test_every_jira_payload_lands_as_the_expected_item_change(
    live: TestClient, sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    paths = sorted(JIRA_SAMPLES.rglob("*.json"))
    for path in paths:
        response = post_jira(live, path.read_bytes())
        assert response.status_code == 202, (path, response.text)
        assert response.json()["duplicate"] is False
    rows = settled(sessions)
    assert len(rows) == len(paths)
    assert {
        (row.event_type, row.status) for row in rows if row.status not in {"processed", "ignored"}
    } == set()
    assert {row.status for row in rows if row.event_type.startswith("comment_")} == {"ignored"}
    for path in paths:
        payload = json.loads(path.read_bytes())
        if payload["webhookEvent"] in {"jira:issue_created", "jira:issue_updated"}:
            issue, fields = payload["issue"], payload["issue"]["fields"]
            landed = item(sessions, "jira", issue["id"])
            assert landed is not None, path
            assert (landed.key, landed.title, landed.status) == (
                issue["key"],
                fields["summary"],
                fields["status"]["name"],
            )
    # Created, then deleted (zulip/issue_created.json, then issue_deleted.json).
    assert item(sessions, "jira", "10400").deleted is True
    # A link event re-fetches both issues; the sandbox has neither, so both count as gone.
    for end in ("11442", "11961"):
        assert jira.sandbox.requests_by_path[f"/rest/api/3/issue/{end}"] == 2
    assert item(sessions, "jira", "11442").deleted is True
    # Comment events change no item: the issue of the jira-to-matrix comment never appears.
    assert item(sessions, "jira", "26313") is None


def linear_deliveries() -> list[tuple[str, bytes]]:
    """Every captured Linear delivery, oldest first, as Linear would send it now."""
    samples = [(path.name, path.read_bytes()) for path in LINEAR_SAMPLES.glob("zulip/*.json")]
    bundle = LINEAR_SAMPLES / "linear-solutions" / "sla_enforcement_webhook-payloads.json"
    for name, payload in json.loads(bundle.read_text()).items():
        samples.append((name, json.dumps(payload).encode()))
    samples.sort(key=lambda sample: json.loads(sample[1])["createdAt"])
    return [(name, linear_now(raw)) for name, raw in samples]


def test_every_linear_payload_lands_as_the_expected_item_change(
    live: TestClient, sessions: sessionmaker[Session], linear: ServedLinear
) -> None:
    parent, child = "3443a709-f2b5-46f2-a136-a0445fd432be", "f9a37fcf-eb52-44be-a52c-0477f70e9952"
    linear.adopt(parent, "WEB", "The November outage")
    linear.adopt(child, "WEB", "Impact Analysis", parent_id=parent)
    deliveries = linear_deliveries()
    for name, body in deliveries:
        if name == "issue_remove.json":
            linear.sandbox.trash(parent)  # what the delivery reports happened in Linear
        response = post_linear(live, body)
        assert response.status_code == 202, (name, response.text)
    rows = settled(sessions)
    assert len(rows) == len(deliveries)
    assert {row.status for row in rows} == {"processed", "ignored"}
    assert {row.status for row in rows if row.event_type.startswith("Comment.")} == {"ignored"}
    landed_child = item(sessions, "linear", child)
    assert landed_child is not None and landed_child.parent_ref == parent
    assert landed_child.title == "Impact Analysis" and landed_child.deleted is False
    assert item(sessions, "linear", parent).deleted is True
    # Linear's own examples name issues no workspace has: they are asked for, found
    # missing, and nothing is stored.
    assert item(sessions, "linear", "issue-123") is None


def test_the_jira_url_token_authenticates_unsigned_deliveries(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = (JIRA_SAMPLES / "zulip" / "issue_created.json").read_bytes()
    assert hooks.post("/webhooks/jira?token=url-token", content=body).status_code == 202
    assert hooks.post("/webhooks/jira?token=guess", content=body).status_code == 401
    assert hooks.post("/webhooks/jira", content=body).status_code == 401
    assert len(stored(sessions)) == 1


def test_forged_signatures_are_401_and_store_nothing(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = (JIRA_SAMPLES / "zulip" / "issue_created.json").read_bytes()
    forged = {"X-Hub-Signature": "sha256=" + sign("not-the-secret", body)}
    assert hooks.post("/webhooks/jira", content=body, headers=forged).status_code == 401
    signed = jira_headers(body)
    tampered = body.replace(b"BUG-15", b"BUG-99")  # signed, then changed on the way
    assert hooks.post("/webhooks/jira", content=tampered, headers=signed).status_code == 401
    linear = linear_now((LINEAR_SAMPLES / "zulip" / "issue_update.json").read_bytes())
    bad = {"Linear-Signature": sign("not-the-secret", linear)}
    response = hooks.post("/webhooks/linear", content=linear, headers=bad)
    assert response.status_code == 401
    assert "Linear-Signature" in response.json()["detail"]
    assert stored(sessions) == []


def test_a_stale_linear_timestamp_is_401(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    as_captured = (LINEAR_SAMPLES / "zulip" / "issue_update.json").read_bytes()  # from 2023
    response = post_linear(hooks, as_captured)
    assert response.status_code == 401
    assert "webhookTimestamp" in response.json()["detail"]
    assert stored(sessions) == []


def test_malformed_json_is_400(hooks: TestClient, sessions: sessionmaker[Session]) -> None:
    assert post_jira(hooks, b'{"webhookEvent": ').status_code == 400
    assert post_jira(hooks, b'{"webhookEvent": "jira:issue_updated"}').status_code == 400
    assert post_linear(hooks, b"[not json").status_code == 400
    assert stored(sessions) == []


def test_a_body_over_one_mebibyte_is_413(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    big = b'{"webhookEvent": "jira:issue_updated", "pad": "' + b"x" * (1 << 20) + b'"}'
    assert post_jira(hooks, big).status_code == 413

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        yield big[: 1 << 19]
        yield big[1 << 19 :]

    signed = linear_headers(big)
    assert hooks.post("/webhooks/linear", content=chunked(), headers=signed).status_code == 413
    assert stored(sessions) == []


def test_unknown_events_are_202_and_ignored(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    response = post_jira(hooks, b'{"webhookEvent": "sprint_started", "sprint": {"id": 3}}')
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    reaction = {"type": "Reaction", "action": "create", "data": {"id": "r1"}}
    assert post_linear(hooks, linear_now(json.dumps(reaction).encode())).status_code == 202
    assert [row.status for row in stored(sessions)] == ["ignored", "ignored"]


def test_an_unavailable_store_is_503_so_the_tracker_retries(
    hook_settings: Settings, tmp_path: Path
) -> None:
    app = create_app(hook_settings)
    unreachable = {
        "sqlite": f"sqlite:///{tmp_path / 'no-such-dir' / 'x.db'}",
        "postgresql": "postgresql://postgres@127.0.0.1:1/postgres",
    }
    body = (JIRA_SAMPLES / "zulip" / "issue_created.json").read_bytes()
    with TestClient(app) as client:
        dialect = app.state.engine.dialect.name
        app.state.sessions = session_factory(make_engine(unreachable[dialect]))
        response = post_jira(client, body)
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_the_same_delivery_five_times_at_once_is_processed_once(
    live: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = (JIRA_SAMPLES / "zulip" / "issue_updated__status.json").read_bytes()
    start = threading.Barrier(5)

    def deliver(_: int) -> dict[str, object]:
        start.wait()
        response = post_jira(live, body, **{"X-Atlassian-Webhook-Identifier": "dup-1"})
        assert response.status_code == 202
        return response.json()

    with ThreadPoolExecutor(5) as pool:
        receipts = list(pool.map(deliver, range(5)))
    assert len({receipt["id"] for receipt in receipts}) == 1
    assert sorted(receipt["duplicate"] for receipt in receipts) == [False] + [True] * 4
    (row,) = settled(sessions)
    assert (row.status, row.attempts) == ("processed", 1)
    assert item(sessions, "jira", "10000") is not None


def test_the_inbox_api_lists_and_retries_parked_events(
    hooks: TestClient, sessions: sessionmaker[Session], headers: dict[Role, dict[str, str]]
) -> None:
    body = (JIRA_SAMPLES / "zulip" / "issue_created.json").read_bytes()
    event_id = post_jira(hooks, body).json()["id"]
    (row,) = settled(sessions)  # no Jira is configured here, so processing fails
    assert row.status == "failed" and "jira is not configured" in (row.last_error or "")
    with sessions.begin() as session:  # as if every attempt had failed
        session.get_one(WebhookEvent, event_id).status = "parked"
    admin = headers[Role.admin]
    assert hooks.get("/api/webhooks/events", headers=headers[Role.editor]).status_code == 403
    page = hooks.get("/api/webhooks/events?status=parked", headers=admin).json()
    assert [(e["id"], e["event_type"]) for e in page["items"]] == [(event_id, "jira:issue_created")]
    assert "jira is not configured" in page["items"][0]["last_error"]
    assert page["next_cursor"] is None
    assert hooks.get("/api/webhooks/events?status=lost", headers=admin).status_code == 422
    retried = hooks.post(f"/api/webhooks/events/{event_id}/retry", headers=admin)
    assert retried.status_code == 200
    assert (retried.json()["status"], retried.json()["attempts"]) == ("received", 0)
    ignored = post_jira(hooks, b'{"webhookEvent": "sprint_started"}').json()["id"]
    assert hooks.post(f"/api/webhooks/events/{ignored}/retry", headers=admin).status_code == 409
    assert hooks.post("/api/webhooks/events/999999/retry", headers=admin).status_code == 404
