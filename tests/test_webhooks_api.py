"""The webhook endpoints: every real payload in, every bad input refused, nothing lost."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
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
from support.reference import FIXTURES

from integrations.webhooks import sign
from service.app import create_app
from service.settings import Settings
from service.tokens import Role
from sync.store.db import make_engine, session_factory
from sync.store.models import TrackerItem, WebhookEvent

JIRA_FIXTURES = FIXTURES / "jira"  # ours; the captured deliveries are conformance tests
LINEAR_ISSUE_UPDATE = FIXTURES / "linear" / "webhook_issue_update.json"


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


def jira_delivery(name: str, **changes: dict[str, object]) -> bytes:
    """One of our Jira deliveries (tests/fixtures/jira), with top-level object keys changed:
    `worklog={"issueId": "7"}` points its worklog at issue 7."""
    payload = json.loads((JIRA_FIXTURES / name).read_bytes())
    for key, value in changes.items():
        payload[key] = {**payload[key], **value}
    return json.dumps(payload).encode()


def test_our_jira_deliveries_land_as_the_expected_item_change(
    live: TestClient, sessions: sessionmaker[Session]
) -> None:
    # The captured deliveries are posted by tests/conformance/test_jira_webhooks.py.
    names = [
        "cloud_webhook_issue_updated.json",  # PAY-12 (10111) moves to "In Arbeit"
        "cloud_webhook_issue_created.json",  # PAY-16 (10115) is created
        "cloud_webhook_comment_created.json",  # Ladder comments on it: ignored
        "cloud_webhook_issue_commented.json",  # the same comment: the whole issue, stored
        "dc_webhook_issue_updated.json",  # SRCH-7 (20106) gets its Epic Link
        "dc_webhook_issue_commented_old.json",  # an old Server body for a comment edit
        "cloud_webhook_issue_deleted.json",  # PAY-15 (10114), never seen: nothing to mark
    ]
    for name in names:
        response = post_jira(live, (JIRA_FIXTURES / name).read_bytes())
        assert response.status_code == 202, (name, response.text)
    rows = settled(sessions)
    assert [(row.kind, row.status) for row in rows] == [
        ("upsert", "processed"),
        ("upsert", "processed"),
        ("ignored", "ignored"),
        ("upsert", "processed"),
        ("upsert", "processed"),
        ("upsert", "processed"),
        ("delete", "processed"),
    ]
    story = item(sessions, "jira", "10111")
    assert story is not None
    assert (story.key, story.status, story.status_category, story.labels) == (
        "PAY-12",
        "In Arbeit",
        "in_progress",
        ["bet:one-click-checkout", "kr:KR-1.1"],
    )
    task = item(sessions, "jira", "10115")  # the commented version, newer than the created one
    assert task is not None and task.updated_at is not None
    assert (task.key, task.status) == ("PAY-16", "Zu erledigen")
    assert task.updated_at == datetime(2025, 3, 5, 9, 5, 47, 902000, UTC)
    dc_story = item(sessions, "jira", "20106")
    assert dc_story is not None and dc_story.updated_at is not None
    assert (dc_story.key, dc_story.time_spent_seconds) == ("SRCH-7", 7200)
    assert dc_story.updated_at == datetime(2025, 3, 6, 7, 12, 9, 310000, UTC)
    assert item(sessions, "jira", "10114") is None


def test_jira_link_and_worklog_deliveries_refresh_their_issues(
    live: TestClient, sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    sandbox = jira.sandbox
    # Issues without sub-tasks, so that deleting one takes nothing else with it.
    leaves = [i for i in sandbox.issues() if i.kind in {"task", "bug"}]
    worked, linked, gone = [i for i in leaves if not sandbox.store.children.get(i.id)][:3]
    for issue in (worked, gone):
        assert post_jira(live, jira.delivery(str(issue.id))).status_code == 202
    settled(sessions)
    before = item(sessions, "jira", str(worked.id))
    assert before is not None
    # An hour is logged in Jira: the issue's time spent changes, and so does `updated`.
    with sandbox.store.lock:
        worked.time_spent = (worked.time_spent or 0) + 3600
        worked.updated = max(int(time.time() * 1000), worked.updated + 1)
    sandbox.delete([gone.id])
    sandbox.reset_counters()
    deliveries = [
        jira_delivery("cloud_webhook_worklog_created.json", worklog={"issueId": str(worked.id)}),
        jira_delivery(
            "cloud_webhook_issuelink_created.json",
            issueLink={"sourceIssueId": worked.id, "destinationIssueId": linked.id},
        ),
        jira_delivery(
            "cloud_webhook_issuelink_deleted.json",
            issueLink={"sourceIssueId": worked.id, "destinationIssueId": gone.id},
        ),
    ]
    for body in deliveries:
        assert post_jira(live, body).status_code == 202
    rows = settled(sessions)
    assert [(row.kind, row.status) for row in rows[-3:]] == [("refresh", "processed")] * 3
    requests = sandbox.requests_by_path
    refetched = {path: count for path, count in requests.items() if "/issue/" in path}
    assert refetched == {
        f"/rest/api/3/issue/{worked.id}": 3,
        f"/rest/api/3/issue/{linked.id}": 1,
        f"/rest/api/3/issue/{gone.id}": 1,
    }
    after = item(sessions, "jira", str(worked.id))
    assert after is not None
    assert after.time_spent_seconds == (before.time_spent_seconds or 0) + 3600
    landed = item(sessions, "jira", str(linked.id))
    assert landed is not None and landed.key == linked.key
    removed = item(sessions, "jira", str(gone.id))
    assert removed is not None and removed.deleted is True


LINEAR_FIXTURES = FIXTURES / "linear"  # ours; the captured deliveries are conformance tests
LINEAR_PROJECT = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"  # Checkout v2
LINEAR_GIFT_CARDS = "4d5e6f70-8b9c-4dae-9f10-2b3c4d5e6f70"
LINEAR_STORY = "a1f0c3d2-5e6f-4a7b-8c9d-0e1f2a3b4c42"  # ENG-42 in our deliveries
LINEAR_BUG = "b2e1d4c3-6f70-4b8c-9dae-1f2a3b4c5d57"  # ENG-57
LINEAR_SUB_ISSUE = "c3f2e5d4-7081-4c9d-8ebf-2a3b4c5d6e58"  # ENG-58, under ENG-42


def _sandbox_now(linear: ServedLinear) -> str:
    return (
        datetime.fromtimestamp(linear.sandbox.store.now_ms() / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def change_project(linear: ServedLinear, project_id: str, **fields: object) -> None:
    """Change a sandbox project as Linear does (its `updatedAt` moves on)."""
    store = linear.sandbox.store
    with store.lock:
        store.projects[project_id].update(fields, updatedAt=_sandbox_now(linear))
        store.version += 1


def test_our_linear_deliveries_land_as_the_expected_item_change(
    live: TestClient, sessions: sessionmaker[Session], linear: ServedLinear
) -> None:
    # The captured deliveries are posted by tests/conformance/test_linear_webhooks.py.
    linear.adopt_project(LINEAR_PROJECT, "ENG", "Checkout v2", "4437c60bc5ec")
    linear.adopt_project(LINEAR_GIFT_CARDS, "ENG", "Gift cards", "9d8c7b6a5f4e")
    linear.adopt(
        LINEAR_STORY,
        "ENG",
        "Save cards for returning buyers",
        state_type="started",
        labels=["bet:one-click-checkout"],
        project_id=LINEAR_PROJECT,
    )
    linear.adopt(LINEAR_BUG, "ENG", "Card form rejects Amex numbers", labels=["Bug"])
    linear.adopt(LINEAR_SUB_ISSUE, "ENG", "Tokenise the card on save", parent_id=LINEAR_STORY)

    def deliver(*names: str) -> None:
        for name in names:
            body = linear_now((LINEAR_FIXTURES / f"{name}.json").read_bytes())
            response = post_linear(live, body)
            assert response.status_code == 202, (name, response.text)

    # First what is created, and what Ladder ignores.
    deliver(
        "webhook_project_create",
        "webhook_issue_label_create",
        "webhook_issue_update",
        "webhook_comment_create",
        "webhook_issue_create_bug",
        "webhook_sub_issue_create",
        "webhook_project_update_post",
    )
    rows = settled(sessions)
    assert [(row.event_type, row.kind, row.status) for row in rows] == [
        ("Project.create", "refresh", "processed"),
        ("IssueLabel.create", "ignored", "ignored"),
        ("Issue.update", "refresh", "processed"),
        ("Comment.create", "ignored", "ignored"),
        ("Issue.create", "refresh", "processed"),
        ("Issue.create", "refresh", "processed"),
        ("ProjectUpdate.create", "ignored", "ignored"),
    ]
    project = item(sessions, "linear", LINEAR_PROJECT)
    assert project is not None
    assert (project.type, project.key, project.title, project.status, project.deleted) == (
        "project",
        "4437c60bc5ec",
        "Checkout v2",
        "Planned",
        False,
    )
    story = item(sessions, "linear", LINEAR_STORY)
    assert story is not None and story.parent_ref == LINEAR_PROJECT
    assert (story.status_category, story.labels) == ("in_progress", ["bet:one-click-checkout"])
    sub_issue = item(sessions, "linear", LINEAR_SUB_ISSUE)
    assert sub_issue is not None and (sub_issue.type, sub_issue.parent_ref) == (
        "subtask",
        LINEAR_STORY,
    )
    bug = item(sessions, "linear", LINEAR_BUG)
    assert bug is not None and (bug.type, bug.deleted) == ("bug", False)
    # Ladder has not heard of Gift cards yet: no delivery named it.
    assert item(sessions, "linear", LINEAR_GIFT_CARDS) is None

    # Then what changes in Linear, each delivery after the change it reports.
    linear.sandbox.trash(LINEAR_BUG)
    deliver("webhook_issue_remove")
    change_project(
        linear,
        LINEAR_PROJECT,
        statusName="Completed",
        statusType="completed",
        completedAt=_sandbox_now(linear),
    )
    deliver("webhook_project_update")
    change_project(
        linear,
        LINEAR_GIFT_CARDS,
        statusName="Canceled",
        statusType="canceled",
        canceledAt=_sandbox_now(linear),
    )
    deliver("webhook_project_cancel")
    change_project(linear, LINEAR_GIFT_CARDS, archivedAt=_sandbox_now(linear), trashed=True)
    deliver("webhook_project_remove")
    rows = settled(sessions)
    assert [(row.event_type, row.kind, row.status) for row in rows[7:]] == [
        ("Issue.remove", "delete", "processed"),
        ("Project.update", "refresh", "processed"),
        ("Project.update", "refresh", "processed"),
        ("Project.remove", "delete", "processed"),
    ]
    bug = item(sessions, "linear", LINEAR_BUG)
    assert bug is not None and bug.deleted is True
    project = item(sessions, "linear", LINEAR_PROJECT)
    assert project is not None and (project.status_category, project.deleted) == ("done", False)
    assert project.resolved_at is not None
    gift_cards = item(sessions, "linear", LINEAR_GIFT_CARDS)
    assert gift_cards is not None
    assert (gift_cards.status_category, gift_cards.deleted) == ("canceled", True)
    # Removing a project deletes the project, not its issues.
    story = item(sessions, "linear", LINEAR_STORY)
    assert story is not None and story.deleted is False


def test_the_jira_url_token_authenticates_unsigned_deliveries(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = (JIRA_FIXTURES / "cloud_webhook_issue_created.json").read_bytes()
    assert hooks.post("/webhooks/jira?token=url-token", content=body).status_code == 202
    assert hooks.post("/webhooks/jira?token=guess", content=body).status_code == 401
    assert hooks.post("/webhooks/jira", content=body).status_code == 401
    assert len(stored(sessions)) == 1


def test_forged_signatures_are_401_and_store_nothing(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = (JIRA_FIXTURES / "cloud_webhook_issue_created.json").read_bytes()
    forged = {"X-Hub-Signature": "sha256=" + sign("not-the-secret", body)}
    assert hooks.post("/webhooks/jira", content=body, headers=forged).status_code == 401
    signed = jira_headers(body)
    tampered = body.replace(b"PAY-16", b"PAY-99")  # signed, then changed on the way
    assert tampered != body
    assert hooks.post("/webhooks/jira", content=tampered, headers=signed).status_code == 401
    linear = linear_now(LINEAR_ISSUE_UPDATE.read_bytes())
    bad = {"Linear-Signature": sign("not-the-secret", linear)}
    response = hooks.post("/webhooks/linear", content=linear, headers=bad)
    assert response.status_code == 401
    assert "Linear-Signature" in response.json()["detail"]
    assert stored(sessions) == []


def test_a_stale_linear_timestamp_is_401(
    hooks: TestClient, sessions: sessionmaker[Session]
) -> None:
    as_captured = LINEAR_ISSUE_UPDATE.read_bytes()  # sent in 2026-10
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
    body = (JIRA_FIXTURES / "cloud_webhook_issue_created.json").read_bytes()
    with TestClient(app) as client:
        dialect = app.state.engine.dialect.name
        app.state.sessions = session_factory(make_engine(unreachable[dialect]))
        response = post_jira(client, body)
    assert response.status_code == 503
    assert response.headers["Retry-After"]


def test_the_same_delivery_five_times_at_once_is_processed_once(
    live: TestClient, sessions: sessionmaker[Session]
) -> None:
    body = (JIRA_FIXTURES / "cloud_webhook_issue_updated.json").read_bytes()
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
    assert item(sessions, "jira", "10111") is not None


def test_the_inbox_api_lists_and_retries_parked_events(
    hooks: TestClient, sessions: sessionmaker[Session], headers: dict[Role, dict[str, str]]
) -> None:
    body = (JIRA_FIXTURES / "cloud_webhook_issue_created.json").read_bytes()
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
