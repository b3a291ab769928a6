"""Jira webhooks: every real delivery in the reference corpus parses, and lands, as expected.

The bodies come from Zulip, jira-to-matrix and the Mattermost plugin (Cloud and Server, 2013
to 2026) and from Zulip's Cloud worklog captures. Each has an expected (kind, external id,
related ids) below; then every delivery of a capture set is posted, signed, to the app
running against a sandbox Jira, and the store must end up as its own rules say.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from realtime_support import (
    ServedJira,
    jira_fixture,  # noqa: F401 — provides `jira`
    jira_headers,
    settled,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.reference import REFERENCE, present

from integrations.jira import webhooks as jira_webhooks
from integrations.jira.mapping import parse_time
from integrations.sandbox.jira.app import JiraSandbox
from integrations.sandbox.jira.data import STATUSES
from service.app import create_app
from service.settings import Settings
from sync.store.models import TrackerItem

JIRA_SAMPLES = REFERENCE / "jira" / "samples" / "webhooks"
FOLDERS = ("jira-to-matrix", "mattermost", "zulip", "zulip-worklog")
TES_41 = "10040"  # the Mattermost plugin's Cloud story, captured in 28 bodies
PRJX_14 = "10013"  # its Server story with comments, in 8

# (kind, external id, related ids) of every delivery. Comment events are ignored: they change
# nothing Ladder reads (a `jira:issue_updated` that records a comment still carries the whole
# issue, so it is stored). A body whose issue lacks fields the mapping needs, a link and a
# worklog (which changes the issue's time spent) make Ladder re-fetch the issues they name.
JIRA_EXPECTED: dict[str, tuple[str, str | None, tuple[str, ...]]] = {
    "jira-to-matrix/comment_created.json": ("ignored", None, ()),
    "jira-to-matrix/comment_deleted.json": ("ignored", "11961", ()),
    "jira-to-matrix/comment_updated.json": ("ignored", "11961", ()),
    "jira-to-matrix/issue_created.json": ("upsert", "30369", ()),
    "jira-to-matrix/issue_updated_generic.json": ("upsert", "28661", ()),
    "jira-to-matrix/issue_updated_issue-assigned.json": ("upsert", "19435", ()),
    "jira-to-matrix/issue_updated_status-changed.json": ("upsert", "11442", ()),
    "jira-to-matrix/issuelink_created.json": ("refresh", "11442", ("11961",)),
    "jira-to-matrix/issuelink_deleted.json": ("refresh", "11442", ("11961",)),
    "zulip/comment_created.json": ("ignored", "10000", ()),
    "zulip/comment_deleted.json": ("ignored", "10000", ()),
    "zulip/comment_updated.json": ("ignored", "10000", ()),
    "zulip/issue_created.json": ("upsert", "10400", ()),
    "zulip/issue_created_with_custom_fields.json": ("upsert", "10033", ()),
    "zulip/issue_deleted.json": ("delete", "10400", ()),
    "zulip/issue_updated__status.json": ("upsert", "10000", ()),
    # Cloud comment events carry a trimmed issue: its id is known, nothing else is needed.
    "mattermost/webhook-cloud-comment-created-mention-user.json": ("ignored", TES_41, ()),
    "mattermost/webhook-cloud-comment-created.json": ("ignored", TES_41, ()),
    "mattermost/webhook-cloud-comment-deleted.json": ("ignored", "10357", ()),
    "mattermost/webhook-cloud-comment-updated.json": ("ignored", TES_41, ()),
    "mattermost/webhook-cloud-issue-created-many-fields.json": ("upsert", "10509", ()),
    "mattermost/webhook-cloud-issue-updated-custom-field.json": ("upsert", "10368", ()),
    # Cloud, 2024: an assignment whose issue has 7 fields and no `updated`.
    "mattermost/webhook-issue-assigned-empty-changelog.json": ("refresh", "10001", ()),
    # `issue_commented`, whole issue, by someone else than Ladder: stored like any update.
    "mattermost/webhook-issue-comment-created-indentation.json": ("upsert", "10101", ()),
    "mattermost/webhook-issue-created-no-description-nor-relevant-fields.json": (
        "upsert",
        TES_41,
        (),
    ),
    "mattermost/webhook-issue-created-no-description.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-created-no-relevant-fields.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-created-with-security-level.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-created.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-deleted.json": ("delete", "10303", ()),
    "mattermost/webhook-issue-updated-assigned-nobody.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-assigned-on-server.json": ("upsert", "10226", ()),
    "mattermost/webhook-issue-updated-assigned.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-attachments.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-components.json": ("upsert", "10360", ()),
    "mattermost/webhook-issue-updated-edited.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-fix-version.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-issue-type.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-labels.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-lowered-priority.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-multiple-custom-fields.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-multiple-values.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-raised-priority.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-rank.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-renamed.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-reopened-one-changelog.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-reopened.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-resolved-one-changelog.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-resolved.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-sprint.json": ("upsert", TES_41, ()),
    "mattermost/webhook-issue-updated-started-working.json": ("upsert", TES_41, ()),
    # Server comment events carry the comment alone, no issue.
    "mattermost/webhook-server-comment-created.json": ("ignored", None, ()),
    "mattermost/webhook-server-comment-deleted.json": ("ignored", None, ()),
    "mattermost/webhook-server-comment-updated.json": ("ignored", None, ()),
    "mattermost/webhook-server-issue-updated-closed.json": ("upsert", "10300", ()),
    "mattermost/webhook-server-issue-updated-comment-deleted.json": ("upsert", PRJX_14, ()),
    "mattermost/webhook-server-issue-updated-comment-edited.json": ("upsert", PRJX_14, ()),
    "mattermost/webhook-server-issue-updated-commented-1.json": ("upsert", PRJX_14, ()),
    "mattermost/webhook-server-issue-updated-commented-2.json": ("upsert", "10231", ()),
    "mattermost/webhook-server-issue-updated-commented-3.json": ("upsert", "10231", ()),
    "mattermost/webhook-server-issue-updated-commented-mention-user.json": ("upsert", PRJX_14, ()),
    "mattermost/webhook-server-issue-updated-in-progress.json": ("upsert", "10300", ()),
    "mattermost/webhook-server-issue-updated-many-fields.json": ("upsert", "10400", ()),
    "mattermost/webhook-server-issue-updated-reopened.json": ("upsert", "10300", ()),
    "mattermost/webhook-server-issue-updated-resolved.json": ("upsert", "10300", ()),
    # Old Server bodies: no `issue_event_type_name`, the whole issue all the same.
    "mattermost/webhook-server-old-issue-updated-no-event-type-assigned.json": (
        "upsert",
        TES_41,
        (),
    ),
    "mattermost/webhook-server-old-issue-updated-no-event-type-comment-deleted.json": (
        "upsert",
        PRJX_14,
        (),
    ),
    "mattermost/webhook-server-old-issue-updated-no-event-type-comment-edited.json": (
        "upsert",
        PRJX_14,
        (),
    ),
    "mattermost/webhook-server-old-issue-updated-no-event-type-commented.json": (
        "upsert",
        PRJX_14,
        (),
    ),
    "mattermost/webhook-server-old-issue-updated-no-event-type-edited.json": ("upsert", TES_41, ()),
    "mattermost/webhook-server-updated-custom-field.json": ("upsert", "10106", ()),
    # Worklogs name their issue by `worklog.issueId` only.
    "zulip-worklog/worklog_created.json": ("refresh", "10014", ()),
    "zulip-worklog/worklog_deleted.json": ("refresh", "10014", ()),
    "zulip-worklog/worklog_updated.json": ("refresh", "10014", ()),
}


def deliveries(folder: str | None = None) -> list[Path]:
    """The captured bodies (of one folder), in name order; none without the corpus."""
    if not present():
        return []
    root = JIRA_SAMPLES / folder if folder else JIRA_SAMPLES
    return sorted(root.rglob("*.json"))


def name_of(path: Path) -> str:
    return str(path.relative_to(JIRA_SAMPLES))


def test_every_reference_jira_payload_is_covered() -> None:
    assert {name_of(p) for p in deliveries()} == set(JIRA_EXPECTED)
    assert {p.name for p in JIRA_SAMPLES.iterdir() if p.is_dir()} == set(FOLDERS)


@pytest.mark.parametrize("name", sorted(JIRA_EXPECTED))
def test_jira_reference_payloads_parse(name: str) -> None:
    body = (JIRA_SAMPLES / name).read_bytes()
    event = jira_webhooks.parse({}, body)
    kind, external_id, related = JIRA_EXPECTED[name]
    assert (event.kind, event.external_id, event.related_ids) == (kind, external_id, related)
    assert event.source == "jira"
    assert event.event_type == json.loads(body)["webhookEvent"]
    if kind == "upsert":
        assert event.payload["id"] == external_id and "fields" in event.payload


@pytest.mark.parametrize(
    ("name", "bot", "kind"),
    [
        # Server 8 names the comment event; old Server leaves it out (a comment, no changelog).
        ("webhook-server-issue-updated-commented-1.json", "levbrouk", "ignored"),
        ("webhook-server-old-issue-updated-no-event-type-commented.json", "levbrouk", "ignored"),
        (
            "webhook-server-old-issue-updated-no-event-type-comment-edited.json",
            "levbrouk",
            "ignored",
        ),
        ("webhook-server-old-issue-updated-no-event-type-commented.json", "admin", "upsert"),
        # An assignment is a field change, whoever makes it.
        ("webhook-server-old-issue-updated-no-event-type-assigned.json", "admin", "upsert"),
        ("webhook-issue-comment-created-indentation.json", "test", "ignored"),
    ],
)
def test_comments_by_ladders_own_account_are_ignored_on_every_server(
    name: str, bot: str, kind: str
) -> None:
    body = (JIRA_SAMPLES / "mattermost" / name).read_bytes()
    assert jira_webhooks.parse({}, body, bot_account_id=bot).kind == kind


def test_a_worklog_names_its_issue_only() -> None:
    for path in deliveries("zulip-worklog"):
        payload = json.loads(path.read_bytes())
        assert "issue" not in payload
        assert payload["worklog"]["issueId"] == "10014"


# --- the endpoint ---------------------------------------------------------------------------


@pytest.fixture
def live(settings: Settings, jira: ServedJira) -> Iterator[TestClient]:
    """The app with the sandbox Jira configured: events are processed."""
    with TestClient(create_app(jira.settings(settings))) as client:
        yield client


def post_jira(client: TestClient, body: bytes) -> httpx.Response:
    return client.post("/webhooks/jira", content=body, headers=jira_headers(body))


@dataclass
class Stored:
    """What the store keeps of an issue."""

    key: str
    title: str
    status: str
    updated: datetime
    deleted: bool = False


def expected_store(paths: list[Path], sandbox: JiraSandbox) -> dict[str, Stored]:
    """The items these deliveries leave in an empty store, by the store's rules: the newest
    version of an issue wins (on a tie, the later delivery), a deletion marks the stored
    item, a re-fetch stores what Jira answers or marks the item deleted when Jira has none."""
    store: dict[str, Stored] = {}

    def offer(external_id: str, version: Stored) -> None:
        kept = store.get(external_id)
        # Within one batch the worker applies deletions after upserts, across batches in
        # order: an issue stored again after its deletion would make the outcome timing's.
        assert kept is None or not kept.deleted, f"{external_id} comes back after its deletion"
        if kept is None or kept.updated <= version.updated:
            store[external_id] = version

    for path in paths:
        kind, external_id, related = JIRA_EXPECTED[name_of(path)]
        if kind == "upsert":
            issue = json.loads(path.read_bytes())["issue"]
            fields = issue["fields"]
            updated = parse_time(fields["updated"])
            assert external_id is not None and updated is not None
            offer(
                external_id,
                Stored(issue["key"], fields["summary"], fields["status"]["name"], updated),
            )
        elif kind == "delete" and external_id in store:
            store[external_id].deleted = True
        elif kind == "refresh":
            for wanted in filter(None, (external_id, *related)):
                truth = sandbox.issue(wanted)
                if truth is None:
                    if wanted in store:
                        store[wanted].deleted = True
                    continue
                answered = datetime.fromtimestamp(truth.updated / 1000, tz=UTC)
                offer(wanted, Stored(truth.key, truth.summary, STATUSES[truth.status][1], answered))
    return store


def stored_item(sessions: sessionmaker[Session], external_id: str) -> TrackerItem | None:
    with sessions() as session:
        return session.scalar(
            select(TrackerItem).where(
                TrackerItem.source == "jira", TrackerItem.external_id == external_id
            )
        )


@pytest.mark.parametrize("folder", FOLDERS)
def test_every_jira_payload_lands_as_the_expected_item_change(
    live: TestClient, sessions: sessionmaker[Session], jira: ServedJira, folder: str
) -> None:
    # Each capture set comes from sites of its own, whose issue ids overlap other sets':
    # each goes into a store of its own.
    paths = deliveries(folder)
    assert paths
    for path in paths:
        response = post_jira(live, path.read_bytes())
        assert response.status_code == 202, (path, response.text)
        assert response.json()["duplicate"] is False
    rows = settled(sessions)
    assert [(row.kind, row.external_id) for row in rows] == [
        JIRA_EXPECTED[name_of(path)][:2] for path in paths
    ]
    assert {row.status for row in rows} <= {"processed", "ignored"}, [
        (row.event_type, row.last_error) for row in rows if row.status != "processed"
    ]
    assert {row.status for row in rows if row.event_type.startswith("comment_")} <= {"ignored"}
    expected = expected_store(paths, jira.sandbox)
    for external_id, version in expected.items():
        landed = stored_item(sessions, external_id)
        assert landed is not None, external_id
        actual = (landed.key, landed.title, landed.status, landed.updated_at, landed.deleted)
        assert actual == (
            version.key,
            version.title,
            version.status,
            version.updated,
            version.deleted,
        ), external_id
    with sessions() as session:
        assert set(session.scalars(select(TrackerItem.external_id))) == set(expected)
    requests = jira.sandbox.requests_by_path
    if folder == "jira-to-matrix":
        # Each link event re-fetches both ends; the sandbox has neither, so both count as
        # gone, and 11442, stored from its status change, is marked deleted.
        assert (requests["/rest/api/3/issue/11442"], requests["/rest/api/3/issue/11961"]) == (2, 2)
        assert expected["11442"].deleted and "11961" not in expected
        assert "26313" not in expected  # comments change no item
    elif folder == "zulip":
        assert expected["10400"].deleted  # created, then deleted
    elif folder == "mattermost":
        # The newest of the 28 TES-41 versions wins, whatever order they arrive in.
        assert (expected[TES_41].title, expected[TES_41].status) == ("Unit test summary 1", "To Do")
        assert expected[TES_41].updated == datetime(2019, 2, 16, 21, 15, 16, 37000, tzinfo=UTC)
        assert "10303" not in expected  # deleted before Ladder had seen it
        # The trimmed assignment body is re-fetched: the sandbox's issue 10001 stands in.
        assert requests["/rest/api/3/issue/10001"] == 1
        assert expected["10001"].key == jira.sandbox.issue("10001").key  # type: ignore[union-attr]
    else:
        # Each worklog event re-fetches its issue: the sandbox's issue 10014 stands in.
        assert requests["/rest/api/3/issue/10014"] == 3
        assert set(expected) == {"10014"}
