"""Orphan comments: the policy, exactly-once posting, retries, and the way back when linked."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from okr_builders import Org
from realtime_support import (
    BET_LABEL,
    ServedJira,
    ServedLinear,
    jira_fixture,  # noqa: F401 — provides `jira`
    jira_headers,
    killed_at_exit,
    linear_fixture,  # noqa: F401 — provides `linear`
    linear_headers,
    settled,
    wait_for,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service import realtime
from service.app import create_app
from service.scheduler import JobContext
from service.settings import Settings, load_settings
from service.tokens import Role
from service.trackers import build_adapters
from sync.comments import job as comments
from sync.comments.job import BetChoice, Candidate, CommentPolicy, choose, orphan_text
from sync.ingest import inbox
from sync.matching.rematch import MatchRules, rematch_items
from sync.store.db import transaction
from sync.store.models import CommentSent, ItemState, TrackerItem, utcnow

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POLICY = CommentPolicy(mode="on", grace_seconds=900, hourly_cap=50, base_url="https://ladder.test")
BET_KEY = BET_LABEL.removeprefix("bet:")


def candidate(item_id: int, parent_id: int | None = None, **changes: object) -> Candidate:
    fields: dict[str, object] = {
        "item_id": item_id,
        "source": "jira",
        "external_id": str(10_000 + item_id),
        "key": f"PAY-{item_id}",
        "project": "PAY",
        "parent_id": parent_id,
        "appeared_at": T0,
    }
    return Candidate(**(fields | changes))  # type: ignore[arg-type]


def chosen_ids(*candidates: Candidate, **options: object) -> list[int]:
    settings: dict[str, object] = {
        "orphan_parents": {},
        "told": (),
        "policy": POLICY,
        "now": T0 + timedelta(minutes=15),
        "room": 50,
    }
    picked, _ = choose(candidates, **(settings | options))  # type: ignore[arg-type]
    return [c.item_id for c in picked]


# --- The policy (pure) ---------------------------------------------------------------------


def test_an_orphan_is_told_only_after_the_grace_period() -> None:
    assert chosen_ids(candidate(1), now=T0 + timedelta(minutes=14, seconds=59)) == []
    assert chosen_ids(candidate(1), now=T0 + timedelta(minutes=15)) == [1]


def test_only_opted_in_projects_are_told() -> None:
    policy = CommentPolicy(mode="on", projects=("pay", "ENG"))
    ops = candidate(2, project="OPS")
    unknown = candidate(3, project=None)
    assert chosen_ids(candidate(1), ops, unknown, policy=policy) == [1]


def test_never_twice_and_never_under_a_told_ancestor() -> None:
    # 1 is an epic that was told; 2 is its story, 3 a sub-task of 2; 4 stands alone.
    story, subtask, alone = candidate(2, parent_id=1), candidate(3, parent_id=2), candidate(4)
    assert chosen_ids(story, subtask, alone, orphan_parents={1: None}, told={1}) == [4]
    assert chosen_ids(alone, told={4}) == []


def test_the_topmost_orphan_of_a_tree_is_told_instead_of_its_children() -> None:
    epic, story, subtask = candidate(1), candidate(2, parent_id=1), candidate(3, parent_id=2)
    assert chosen_ids(subtask, story, epic) == [1]
    # An orphan ancestor that cannot be told itself (not yet loaded as a candidate, e.g.
    # older than the switch-on) does not silence its children.
    assert chosen_ids(subtask, story, orphan_parents={1: None}) == [2]


def test_the_hourly_cap_holds_back_the_rest() -> None:
    picked, held_back = choose(
        [candidate(n, appeared_at=T0 - timedelta(minutes=n)) for n in range(1, 6)],
        orphan_parents={},
        told=(),
        policy=POLICY,
        now=T0 + timedelta(hours=1),
        room=2,
    )
    assert [c.item_id for c in picked] == [5, 4]  # the longest waiting first
    assert held_back == 3


def test_the_comment_names_the_team_bets_their_labels_and_the_trace() -> None:
    bets = [BetChoice("one-click", "One-click checkout"), BetChoice("wallets", "Wallet pay")]
    text = orphan_text(candidate(7), bets, POLICY)
    assert "PAY-7 serves no bet or key result" in text
    assert "- One-click checkout: add the label bet:one-click" in text
    assert "- Wallet pay: add the label bet:wallets" in text
    assert "add the label ktlo" in text
    assert text.endswith("Trace: https://ladder.test/api/items/jira/PAY-7/trace")
    assert "label bet:<bet key>" in orphan_text(candidate(7), [], POLICY)


def test_the_policy_follows_the_settings() -> None:
    custom = load_settings(
        _env_file=None,
        orphan_comments="dry-run",
        orphan_comment_projects="PAY",
        orphan_grace_seconds=60,
        non_okr_labels="chore",
        bet_label_prefix="okr-bet:",
    )
    policy = realtime.comment_policy(custom)
    assert (policy.mode, policy.projects, policy.grace_seconds) == ("dry-run", ("PAY",), 60)
    assert (policy.non_okr_label, policy.bet_label_prefix, policy.kind) == (
        "chore",
        "okr-bet:",
        comments.DRY_RUN,
    )


# --- The job, against the store and the sandbox trackers -----------------------------------

RULES = MatchRules()


def land(sessions: sessionmaker[Session], jira: ServedJira, issue_id: str) -> None:
    """Bring a sandbox issue into the store the way a webhook does."""
    body = jira.delivery(issue_id)
    headers = jira_headers(body, f"{issue_id}:{time.monotonic_ns()}")
    from integrations.jira import webhooks as jira_webhooks

    with transaction(sessions) as session:
        inbox.accept(session, inbox.Delivery(jira_webhooks.parse(headers, body), headers, body))
    inbox.drain(sessions, {"jira": jira.adapter()}, RULES)


def state_of(sessions: sessionmaker[Session], source: str, external_id: str) -> str | None:
    with sessions() as session:
        return session.scalar(
            select(ItemState.state)
            .join(TrackerItem, TrackerItem.id == ItemState.item_id)
            .where(TrackerItem.source == source, TrackerItem.external_id == external_id)
        )


def sent(sessions: sessionmaker[Session]) -> list[CommentSent]:
    with sessions() as session:
        return list(session.scalars(select(CommentSent).order_by(CommentSent.id)))


@pytest.fixture
def bet(sessions: sessionmaker[Session]) -> None:
    with transaction(sessions) as session:
        org = Org(session)
        org.bet(BET_KEY).team = "PAY"
        org.bet("wallet-payments").status = "later"  # not active: never named


def switch_on(sessions: sessionmaker[Session], adapters: dict[str, object], **policy: object):
    """Run the job once now, as the first run after comments were switched on."""
    chosen = CommentPolicy(**({"mode": "on", "grace_seconds": 60} | policy))  # type: ignore[arg-type]
    assert comments.run(sessions, adapters, chosen).posted == 0  # type: ignore[arg-type]
    return chosen


def an_orphan(
    sessions: sessionmaker[Session], jira: ServedJira, **policy: object
) -> tuple[dict[str, object], CommentPolicy, str]:
    """Comments switched on for the sandbox Jira, and a new unlabelled issue in the store:
    the adapters, the policy and the issue's id."""
    adapters: dict[str, object] = {"jira": jira.adapter()}
    chosen = switch_on(sessions, adapters, **policy)
    issue_id = jira.sandbox.create("PAY")
    land(sessions, jira, issue_id)
    return adapters, chosen, issue_id


def after_grace(policy: CommentPolicy) -> datetime:
    return utcnow() + timedelta(seconds=policy.grace_seconds + 1)


@pytest.mark.usefixtures("bet")
def test_one_comment_after_the_grace_period_then_updated_once_linked(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters = {"jira": jira.adapter()}
    policy = switch_on(sessions, adapters)
    issue_id = jira.sandbox.create("PAY", summary="Unlabelled ticket")
    land(sessions, jira, issue_id)
    assert state_of(sessions, "jira", issue_id) == "orphan"
    assert comments.run(sessions, adapters, policy).posted == 0  # still within the grace
    assert jira.sandbox.comments(issue_id) == []

    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).posted == 1
    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).posted == 0
    (comment,) = jira.sandbox.comments(issue_id)
    assert f"add the label {BET_LABEL}" in comment["body"]
    assert "wallet-payments" not in comment["body"]
    assert "/api/items/jira/PAY-" in comment["body"]

    jira.sandbox.set_labels(issue_id, [BET_LABEL])
    land(sessions, jira, issue_id)
    assert state_of(sessions, "jira", issue_id) == "matched"
    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).updated == 1
    (comment,) = jira.sandbox.comments(issue_id)
    assert f'now serves bet "Bet {BET_KEY}"' in comment["body"]
    (row,) = sent(sessions)
    assert (row.status, row.tracker_comment_id) == ("updated", str(comment["id"]))
    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).updated == 0


@pytest.mark.usefixtures("bet")
def test_two_replicas_at_once_post_one_comment(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters, policy, issue_id = an_orphan(sessions, jira)
    jira.sandbox.faults.latency = 0.3  # both replicas are mid-flight at the same time
    start = threading.Barrier(2)
    reports = []

    def replica() -> None:
        start.wait()
        reports.append(comments.run(sessions, adapters, policy, now=after_grace(policy)))

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(report.posted for report in reports) == [0, 1]
    assert len(jira.sandbox.comments(issue_id)) == 1
    assert [row.status for row in sent(sessions)] == ["posted"]


@pytest.mark.parametrize(
    ("fault", "jira_stored_it"),
    [("server_error", False), ("truncated", True)],  # truncated: stored, answer cut short
)
@pytest.mark.usefixtures("bet")
def test_a_failed_post_is_retried_after_its_backoff_and_still_one_comment(
    fault: str, jira_stored_it: bool, sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters, policy, issue_id = an_orphan(sessions, jira, retry_seconds=120)
    jira.sandbox.faults.inject(fault, 1, path="/comment")  # type: ignore[arg-type]
    moment = after_grace(policy)
    report = comments.run(sessions, adapters, policy, now=moment)
    assert (report.posted, report.failed) == (0, 1)
    (row,) = sent(sessions)
    assert row.status == "failed" and row.last_error
    assert len(jira.sandbox.comments(issue_id)) == jira_stored_it
    # Not before the backoff is over; then exactly once, found on the ticket if it got there.
    assert comments.run(sessions, adapters, policy, now=moment + timedelta(seconds=60)).posted == 0
    later = moment + timedelta(seconds=121)
    report = comments.run(sessions, adapters, policy, now=later)
    assert (report.posted, report.found) == ((0, 1) if jira_stored_it else (1, 0))
    assert comments.run(sessions, adapters, policy, now=later).posted == 0
    (comment,) = jira.sandbox.comments(issue_id)
    (row,) = sent(sessions)
    assert (row.status, row.attempts, row.tracker_comment_id) == ("posted", 2, str(comment["id"]))


# Runs one round of the comment job in a process of its own, the way a replica would.
COMMENT_ROUND = """
from service.settings import load_settings
from service.trackers import build_adapters
from sync.comments import job as comments
from sync.store.db import make_engine, session_factory
settings = load_settings()
sessions = session_factory(make_engine(settings.database_url))
comments.run(sessions, build_adapters(settings), comments.CommentPolicy(mode="on", grace_seconds=0))
"""


@pytest.mark.parametrize("landed", [True, False], ids=["post-landed", "post-lost"])
@pytest.mark.usefixtures("bet")
def test_a_round_killed_mid_post_is_finished_once_its_claim_runs_out(
    landed: bool,
    database_url: str,
    sessions: sessionmaker[Session],
    jira: ServedJira,
    tmp_path: Path,
) -> None:
    adapters, policy, issue_id = an_orphan(sessions, jira, grace_seconds=0)
    if landed:
        jira.sandbox.faults.latency = 1.0  # Jira stores the comment after the process died
    else:
        jira.sandbox.faults.hang_seconds = 3
        jira.sandbox.faults.inject("timeout", 1, path="/comment")  # Jira never stores it
    env = jira.environment(database_url)
    comment_path = f"/rest/api/2/issue/{issue_id}/comment"
    with killed_at_exit(env, tmp_path, "-c", COMMENT_ROUND):
        wait_for(lambda: jira.sandbox.requests_by_path[comment_path] == 1)
    jira.sandbox.faults.clear()
    if landed:
        wait_for(lambda: len(jira.sandbox.comments(issue_id)) == 1)
    (row,) = sent(sessions)
    assert row.status == "pending"

    within_lease = comments.run(sessions, adapters, policy)
    assert (within_lease.found, within_lease.posted) == (0, 0)
    report = comments.run(sessions, adapters, policy, now=policy.lease_end(utcnow()))
    assert (report.found, report.posted) == ((1, 0) if landed else (0, 1))
    (comment,) = jira.sandbox.comments(issue_id)
    (row,) = sent(sessions)
    assert (row.status, row.tracker_comment_id) == ("posted", str(comment["id"]))


@pytest.mark.usefixtures("bet")
def test_a_failed_claim_is_dropped_when_the_item_no_longer_needs_it(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters, policy, issue_id = an_orphan(sessions, jira)
    jira.sandbox.faults.inject("server_error", 1, path="/comment")
    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).failed == 1
    jira.sandbox.set_labels(issue_id, [BET_LABEL])
    land(sessions, jira, issue_id)
    later = after_grace(policy) + timedelta(hours=1)
    assert comments.run(sessions, adapters, policy, now=later).posted == 0
    assert sent(sessions) == [] and jira.sandbox.comments(issue_id) == []


@pytest.mark.usefixtures("bet")
def test_never_on_done_canceled_deleted_older_or_opted_out_items(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters = {"jira": jira.adapter()}
    policy = switch_on(sessions, adapters, projects=("PAY",))
    later = utcnow() + timedelta(seconds=1)
    with transaction(sessions) as session:
        org = Org(session)
        for key, facts in {
            "PAY-901": {"status": "done"},
            "PAY-902": {"status": "canceled"},
            "PAY-903": {"deleted": True},
            "OPS-904": {},  # a project that did not opt in
            "PAY-905": {"when": utcnow() - timedelta(days=1)},  # older than the switch-on
        }.items():
            row = org.item(key, **{k: v for k, v in facts.items() if k != "when"})
            row.created_at = facts.get("when", later)  # type: ignore[assignment]
        rematch_items(session, None, RULES)
    control = jira.sandbox.create("PAY")  # an open orphan, to show the job does run
    land(sessions, jira, control)
    report = comments.run(
        sessions, adapters, policy, now=after_grace(policy) + timedelta(seconds=1)
    )
    assert (report.posted, report.failed) == (1, 0)
    with sessions() as session:
        told = session.scalars(
            select(TrackerItem.external_id).join(CommentSent, CommentSent.item_id == TrackerItem.id)
        ).all()
    assert told == [control]


@pytest.mark.usefixtures("bet")
def test_off_posts_nothing_and_a_dry_run_stands_in_for_nothing(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters = {"jira": jira.adapter()}
    assert comments.run(sessions, adapters, CommentPolicy(mode="off")) == comments.CommentReport()
    dry = switch_on(sessions, adapters, mode="dry-run")
    on = switch_on(sessions, adapters)
    issue_id = jira.sandbox.create("PAY")
    land(sessions, jira, issue_id)
    report = comments.run(sessions, adapters, dry, now=after_grace(dry))
    assert (report.dry_run, report.posted) == (1, 0)
    assert comments.run(sessions, adapters, dry, now=after_grace(dry)).dry_run == 0  # once
    assert jira.sandbox.comments(issue_id) == []
    assert [(row.kind, row.status) for row in sent(sessions)] == [(comments.DRY_RUN, "dry-run")]
    # Switched on, the item still gets its one real comment.
    assert comments.run(sessions, adapters, on, now=after_grace(on)).posted == 1
    assert len(jira.sandbox.comments(issue_id)) == 1


@pytest.mark.usefixtures("bet")
def test_the_hourly_cap_counts_across_runs(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters = {"jira": jira.adapter()}
    policy = switch_on(sessions, adapters, hourly_cap=2)
    issues = [jira.sandbox.create("PAY") for _ in range(3)]
    for issue_id in issues:
        land(sessions, jira, issue_id)
    moment = after_grace(policy)
    first = comments.run(sessions, adapters, policy, now=moment)
    assert (first.posted, first.skipped_for_cap) == (2, 1)
    assert comments.run(sessions, adapters, policy, now=moment + timedelta(minutes=59)).posted == 0
    assert comments.run(sessions, adapters, policy, now=moment + timedelta(minutes=61)).posted == 1
    assert sum(len(jira.sandbox.comments(i)) for i in issues) == 3


# --- End to end, over HTTP: tracker → webhook → inbox → matching → comment → link ---------

# Long enough that delivering and processing two webhooks on a loaded CI machine stays inside it.
GRACE_SECONDS = 5


def test_end_to_end_one_comment_per_orphan_then_updated_when_linked(
    settings: Settings,
    sessions: sessionmaker[Session],
    jira: ServedJira,
    linear: ServedLinear,
    headers: dict[Role, dict[str, str]],
) -> None:
    configured = linear.settings(
        jira.settings(settings, orphan_comments="on", orphan_grace_seconds=GRACE_SECONDS)
    )
    with transaction(sessions) as session:
        Org(session).bet(BET_KEY).team = "PAY"
    job = JobContext(configured, sessions, build_adapters(configured))
    with TestClient(create_app(configured)) as app:
        realtime.comments_job(job)  # comments are switched on from this first run
        jira_issue = jira.sandbox.create("PAY", summary="Unlabelled ticket")
        linear_issue = linear.sandbox.create("ENG", "Unlabelled issue")["id"]
        body = jira.delivery(jira_issue, "jira:issue_created")
        assert (
            app.post("/webhooks/jira", content=body, headers=jira_headers(body)).status_code == 202
        )
        body = linear.delivery(linear_issue, "create", {})
        assert (
            app.post("/webhooks/linear", content=body, headers=linear_headers(body)).status_code
            == 202
        )
        assert {row.status for row in settled(sessions)} == {"processed"}
        orphans = app.get("/api/orphans", headers=headers[Role.viewer]).json()["items"]
        assert {(o["source"], o["external_id"]) for o in orphans} >= {
            ("jira", jira_issue),
            ("linear", linear_issue),
        }

        assert realtime.comments_job(job).posted == 0  # within the grace period
        time.sleep(GRACE_SECONDS)
        assert realtime.comments_job(job).posted == 2
        assert realtime.comments_job(job).posted == 0
        (jira_comment,) = jira.sandbox.comments(jira_issue)
        (linear_comment,) = [c for c in linear.sandbox.comments if c["issueId"] == linear_issue]
        for text in (jira_comment["body"], linear_comment["body"]):
            assert f"add the label {BET_LABEL}" in text and "serves no bet or key result" in text

        jira.sandbox.set_labels(jira_issue, [BET_LABEL])
        body = jira.delivery(jira_issue)
        app.post("/webhooks/jira", content=body, headers=jira_headers(body))
        linear.sandbox.update(linear_issue, labelIds=[linear.label_id(BET_LABEL)])
        body = linear.delivery(linear_issue, "update", {"labelIds": []})
        app.post("/webhooks/linear", content=body, headers=linear_headers(body))
        assert {row.status for row in settled(sessions)} == {"processed"}
        orphans = app.get("/api/orphans", headers=headers[Role.viewer]).json()["items"]
        assert not {(o["source"], o["external_id"]) for o in orphans} & {
            ("jira", jira_issue),
            ("linear", linear_issue),
        }

        assert realtime.comments_job(job).updated == 2
        (jira_comment,) = jira.sandbox.comments(jira_issue)
        (linear_comment,) = [c for c in linear.sandbox.comments if c["issueId"] == linear_issue]
        for text in (jira_comment["body"], linear_comment["body"]):
            assert f'now serves bet "Bet {BET_KEY}"' in text


@pytest.mark.usefixtures("bet")
def test_an_orphan_epic_is_told_and_its_stories_are_not(
    sessions: sessionmaker[Session], jira: ServedJira
) -> None:
    adapters = {"jira": jira.adapter()}
    policy = switch_on(sessions, adapters, update_on_link=False)
    epic = jira.sandbox.create("PAY", "epic", summary="Checkout revamp")
    stories = [jira.sandbox.create("PAY", parent=epic) for _ in range(2)]
    for issue_id in (epic, *stories):
        land(sessions, jira, issue_id)
    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).posted == 1
    assert len(jira.sandbox.comments(epic)) == 1
    assert all(jira.sandbox.comments(story) == [] for story in stories)
    # A story created later, under the epic that was told, stays quiet too.
    late = jira.sandbox.create("PAY", parent=epic)
    land(sessions, jira, late)
    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).posted == 0
    # Linked, the epic keeps its comment as it is: updates are switched off here.
    jira.sandbox.set_labels(epic, [BET_LABEL])
    land(sessions, jira, epic)
    assert comments.run(sessions, adapters, policy, now=after_grace(policy)).updated == 0
    assert "serves no bet" in jira.sandbox.comments(epic)[0]["body"]
