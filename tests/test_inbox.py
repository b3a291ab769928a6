"""The webhook inbox: processing through the sync pipeline, backoff, parking, leases."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from realtime_support import (
    LADDER,
    ServedJira,
    jira_fixture,  # noqa: F401 — provides `jira`
    jira_headers,
    killed_at_exit,
    wait_for,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from integrations.jira import webhooks as jira_webhooks
from integrations.sandbox.server import free_port
from sync.ingest import inbox
from sync.matching.rematch import MatchRules
from sync.store.db import transaction
from sync.store.models import TrackerItem, WebhookEvent, utcnow

RULES = MatchRules()
POLICY = inbox.RetryPolicy(base_seconds=30, max_attempts=3, lease_seconds=300)


def deliver(sessions: sessionmaker[Session], body: bytes, delivery_id: str) -> int:
    """Accept a delivery as the endpoint would (after verification)."""
    headers = {"X-Atlassian-Webhook-Identifier": delivery_id}
    event = jira_webhooks.parse(headers, body)
    with transaction(sessions) as session:
        return inbox.accept(session, inbox.Delivery(event, headers, body)).id


def item(sessions: sessionmaker[Session], external_id: str) -> TrackerItem | None:
    with sessions() as session:
        return session.scalar(
            select(TrackerItem).where(
                TrackerItem.source == "jira", TrackerItem.external_id == external_id
            )
        )


def event(sessions: sessionmaker[Session], event_id: int) -> WebhookEvent:
    with sessions() as session:
        return session.get_one(WebhookEvent, event_id)


def test_a_batch_stores_each_delivery_once(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    body = jira.delivery(jira.sandbox.create("PAY"))

    def copy_of(delivery_id: str) -> inbox.Delivery:
        headers = {"X-Atlassian-Webhook-Identifier": delivery_id}
        return inbox.Delivery(jira_webhooks.parse(headers, body), headers, body)

    with transaction(sessions) as session:
        first = inbox.accept_many(session, [copy_of("a"), copy_of("a"), copy_of("b")])
    assert [answer.duplicate for answer in first] == [False, True, False]
    assert first[0].id == first[1].id != first[2].id
    with transaction(sessions) as session:
        again = inbox.accept_many(session, [copy_of("b"), copy_of("c")])
    assert [(a.id, a.duplicate) for a in again[:1]] == [(first[2].id, True)]
    assert again[1].duplicate is False and again[1].status == "received"


def test_an_event_brings_its_item_up_to_date_and_older_data_never_wins(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    issue_id = jira.sandbox.create("PAY", summary="Saved cards")
    older = jira.delivery(issue_id, "jira:issue_created")
    jira.sandbox.set_labels(issue_id, ["bet:one-click"])
    newer = jira.delivery(issue_id)
    adapters = {"jira": jira.adapter()}

    first = deliver(sessions, newer, "d-new")
    report = inbox.drain(sessions, adapters, RULES, policy=POLICY)
    assert (report.processed, report.items_changed) == (1, 1)
    stored = item(sessions, issue_id)
    assert stored is not None and stored.labels == ["bet:one-click"]
    assert stored.title == "Saved cards" and stored.project == "PAY"

    late = deliver(sessions, older, "d-old")  # Jira's retry of an earlier event
    report = inbox.drain(sessions, adapters, RULES, policy=POLICY)
    assert (report.processed, report.items_changed) == (1, 0)
    assert item(sessions, issue_id).labels == ["bet:one-click"]
    assert {event(sessions, i).status for i in (first, late)} == {"processed"}


def test_deletions_and_links_go_through_the_same_pipeline(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    source, target = jira.sandbox.create("PAY"), jira.sandbox.create("OPS")
    link = {
        "timestamp": "2018-12-18 11:57:24,746",
        "webhookEvent": "issuelink_created",
        "issueLink": {"id": 1, "sourceIssueId": int(source), "destinationIssueId": int(target)},
    }
    adapters = {"jira": jira.adapter()}
    deliver(sessions, json.dumps(link).encode(), "link-1")
    assert inbox.drain(sessions, adapters, RULES, policy=POLICY).items_changed == 2
    assert item(sessions, source) is not None and item(sessions, target) is not None

    deleted = json.loads(jira.delivery(source))
    deleted["webhookEvent"] = "jira:issue_deleted"
    jira.sandbox.delete([source])
    deliver(sessions, json.dumps(deleted).encode(), "delete-1")
    inbox.drain(sessions, adapters, RULES, policy=POLICY)
    assert item(sessions, source).deleted is True

    # A link whose issue is gone by the time it is fetched marks that issue deleted too.
    deliver(sessions, json.dumps(link | {"webhookEvent": "issuelink_deleted"}).encode(), "l-2")
    assert inbox.drain(sessions, adapters, RULES, policy=POLICY).failed == 0
    assert item(sessions, target).deleted is False


def test_failures_back_off_then_park_and_a_retry_revives_them(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    issue_id = jira.sandbox.create("PAY")
    body = json.dumps({"webhookEvent": "worklog_created", "worklog": {"issueId": issue_id}})
    event_id = deliver(sessions, body.encode(), "worklog-1")
    adapters = {"jira": jira.adapter()}
    jira.sandbox.faults.rate("server_error", 1.0, path=f"/issue/{issue_id}")
    moments = [utcnow()]

    def drain_at_moment() -> inbox.DrainReport:
        return inbox.drain(sessions, adapters, RULES, policy=POLICY, clock=lambda: moments[-1])

    waits = []
    for attempt in range(1, POLICY.max_attempts + 1):
        report = drain_at_moment()
        row = event(sessions, event_id)
        assert row.attempts == attempt and "500" in (row.last_error or "")
        waits.append(row.next_attempt_at - moments[-1])
        assert drain_at_moment().failed == 0  # not due again before its backoff is over
        moments.append(row.next_attempt_at)
    assert report.parked == 1 and row.status == "parked"
    assert waits[:2] == [timedelta(seconds=30), timedelta(seconds=60)]
    assert drain_at_moment().processed == 0

    jira.sandbox.faults.clear()
    with transaction(sessions) as session:
        inbox.retry(session, event_id)
    assert inbox.drain(sessions, adapters, RULES, policy=POLICY).processed == 1
    assert event(sessions, event_id).status == "processed"
    assert item(sessions, issue_id) is not None


def test_one_bad_event_does_not_hold_back_its_batch(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    good_id, bad_id = jira.sandbox.create("PAY"), jira.sandbox.create("PAY")
    bad = json.loads(jira.delivery(bad_id))
    bad["issue"]["fields"]["created"] = "the day before yesterday"
    good_event = deliver(sessions, jira.delivery(good_id), "good")
    bad_event = deliver(sessions, json.dumps(bad).encode(), "bad")
    report = inbox.drain(sessions, {"jira": jira.adapter()}, RULES, policy=POLICY)
    assert (report.processed, report.failed) == (1, 1)
    assert event(sessions, good_event).status == "processed"
    assert event(sessions, bad_event).status == "failed"
    assert item(sessions, good_id) is not None and item(sessions, bad_id) is None


def test_an_unconfigured_source_fails_visibly(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    event_id = deliver(sessions, jira.delivery(jira.sandbox.create("PAY")), "no-adapter")
    assert inbox.drain(sessions, {}, RULES, policy=POLICY).failed == 1
    assert "jira is not configured" in (event(sessions, event_id).last_error or "")


def test_a_claim_is_a_lease_that_expires(sessions: sessionmaker[Session], jira: ServedJira) -> None:
    event_id = deliver(sessions, jira.delivery(jira.sandbox.create("PAY")), "leased")
    now = utcnow()
    with transaction(sessions) as session:
        assert [c.id for c in inbox.claim(session, 10, POLICY, now)] == [event_id]
    # The claimer dies here. Until its lease runs out, nobody else takes the event...
    with transaction(sessions) as session:
        assert inbox.claim(session, 10, POLICY, now + timedelta(seconds=299)) == []
    # ...and then the next drain does.
    later = now + timedelta(seconds=POLICY.lease_seconds)
    report = inbox.drain(
        sessions, {"jira": jira.adapter()}, RULES, policy=POLICY, clock=lambda: later
    )
    assert report.processed == 1
    assert (event(sessions, event_id).status, event(sessions, event_id).attempts) == (
        "processed",
        2,
    )


@pytest.mark.parametrize("batch_size", [1, 50])
def test_many_events_for_one_item_settle_on_the_newest(
    sessions: sessionmaker[Session], jira: ServedJira, batch_size: int
) -> None:
    issue_id = jira.sandbox.create("PAY")
    bodies = []
    for n in range(5):
        jira.sandbox.set_labels(issue_id, [f"label-{n}"])
        bodies.append(jira.delivery(issue_id))
    for n, body in reversed(list(enumerate(bodies))):  # delivered newest first
        deliver(sessions, body, f"v{n}")
    report = inbox.drain(
        sessions, {"jira": jira.adapter()}, RULES, batch_size=batch_size, policy=POLICY
    )
    assert report.processed == 5
    assert item(sessions, issue_id).labels == ["label-4"]


def test_a_process_killed_after_accepting_loses_nothing(
    database_url: str, sessions: sessionmaker[Session], jira: ServedJira, tmp_path: Path
) -> None:
    """SIGKILL the service while it processes an accepted event; the next one finishes it."""
    source, target = jira.sandbox.create("PAY"), jira.sandbox.create("OPS")
    body = json.dumps(
        {
            "webhookEvent": "issuelink_created",
            "issueLink": {"id": 7, "sourceIssueId": int(source), "destinationIssueId": int(target)},
        }
    ).encode()
    env = jira.environment(database_url, webhook_lease_seconds="1")
    # The first request to Jira hangs: the event is accepted and claimed, never finished.
    jira.sandbox.faults.hang_seconds = 3
    jira.sandbox.faults.inject("timeout", 1)
    with ladder_serve(env, tmp_path) as url:
        response = httpx.post(f"{url}/webhooks/jira", content=body, headers=jira_headers(body))
        assert response.status_code == 202
        event_id = response.json()["id"]
        wait_for(lambda: event(sessions, event_id).attempts == 1)
        # ladder_serve SIGKILLs the process on leaving the block.
    assert event(sessions, event_id).status == "received"
    assert item(sessions, source) is None

    with ladder_serve(env, tmp_path):
        wait_for(lambda: event(sessions, event_id).status == "processed")
    assert item(sessions, source) is not None and item(sessions, target) is not None


def test_with_the_worker_off_in_serve_ladder_worker_processes_the_events(
    database_url: str, sessions: sessionmaker[Session], jira: ServedJira, tmp_path: Path
) -> None:
    issue_id = jira.sandbox.create("PAY")
    body = jira.delivery(issue_id)
    env = jira.environment(database_url, webhook_worker="off")
    with ladder_serve(env, tmp_path) as url:
        response = httpx.post(f"{url}/webhooks/jira", content=body, headers=jira_headers(body))
        event_id = response.json()["id"]
        time.sleep(1)
        assert event(sessions, event_id).status == "received"  # serve only stores it
        with killed_at_exit(env, tmp_path, *LADDER, "worker"):
            wait_for(lambda: event(sessions, event_id).status == "processed")
    assert item(sessions, issue_id) is not None


@contextmanager
def ladder_serve(env: dict[str, str], cwd: Path) -> Iterator[str]:
    """`ladder serve` in a process of its own, SIGKILLed when the block ends."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with killed_at_exit(env, cwd, *LADDER, "serve", "--port", str(port)):
        wait_for(lambda: _answers(url), timeout=30)
        yield url


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
