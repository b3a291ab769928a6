"""Linear webhooks: every real delivery in the reference corpus parses, and lands, as expected.

The deliveries come from Zulip's Linear integration (2023, and its 2026 fixtures: projects,
project updates, a comment on a document, a sub-issue removal) and Linear's own SLA examples.
Each has an expected (kind, external id) below; then the deliveries are posted, signed, to the
app running against a sandbox Linear, and the store must change as they say.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from realtime_support import (
    ServedJira,
    ServedLinear,
    jira_fixture,  # noqa: F401 — provides `jira`
    linear_fixture,  # noqa: F401 — provides `linear`
    linear_headers,
    linear_now,
    settled,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from support.reference import REFERENCE, present

from integrations.linear import webhooks as linear_webhooks
from service.app import create_app
from service.settings import Settings
from sync.store.models import TrackerItem, WebhookEvent

LINEAR_SAMPLES = REFERENCE / "linear" / "samples" / "webhooks"
ISSUE = "3443a709-f2b5-46f2-a136-a0445fd432be"
SUB_ISSUE = "f9a37fcf-eb52-44be-a52c-0477f70e9952"
COMMENT = "c7cafc52-994d-4984-a217-bff9f9aa9473"
ZULIP_PROJECT = "e65b2421-bad1-4075-bfd4-24be439c83f9"
OTHER_PROJECT = "b0cfc985-0196-4ef5-925f-11c3d7aa8d14"
REMOVED_PROJECT = "af46c665-4220-4be6-9fcc-9460717f8134"
LINEAR_EXPECTED = {
    "zulip/issue_create_complex.json": ("refresh", ISSUE),
    "zulip/issue_update.json": ("refresh", ISSUE),
    "zulip/issue_remove.json": ("delete", ISSUE),
    "zulip/issue_sub_issue_create.json": ("refresh", SUB_ISSUE),
    "zulip/issue_sub_issue_update.json": ("refresh", SUB_ISSUE),
    "zulip/comment_create.json": ("ignored", COMMENT),
    "zulip/comment_update.json": ("ignored", COMMENT),
    "zulip/comment_remove.json": ("ignored", COMMENT),
    "zulip/issue_label_create.json": ("ignored", "521660ac-782f-4dd9-8928-95dbc9cb4c9b"),
    # Projects are items (containers): created or changed → fetched again; removed → deleted.
    "zulip-2026/project_create_complex.json": ("refresh", ZULIP_PROJECT),
    "zulip-2026/project_auto_update_after_create.json": ("refresh", ZULIP_PROJECT),
    "zulip-2026/project_update_lead_set.json": ("refresh", ZULIP_PROJECT),
    "zulip-2026/project_update_status.json": ("refresh", ZULIP_PROJECT),
    "zulip-2026/project_update_target_date_set.json": ("refresh", OTHER_PROJECT),
    "zulip-2026/project_remove.json": ("delete", REMOVED_PROJECT),
    # A project update is a status post: nothing Ladder stores changes.
    "zulip-2026/projectUpdate_create.json": ("ignored", "bd310e45-6cf9-4452-9fa0-6b73d2b3d9b9"),
    "zulip-2026/projectUpdate_update.json": ("ignored", "4a0814c9-2d39-4c2e-8cbb-947c1bfc61cd"),
    "zulip-2026/projectUpdate_remove.json": ("ignored", "c17d574a-1f5f-45d3-ae98-ecd48fac03e5"),
    "zulip-2026/comment_on_document.json": ("ignored", "e3ff103c-53ac-4267-bdfc-cd05f7e49dc7"),
    "zulip-2026/issue_sub_issue_remove.json": ("delete", SUB_ISSUE),
    # Linear's own SLA examples: a label change, an SLA `set`, an update by an admin.
    "linear-solutions/issueUpdate": ("refresh", "issue-123"),
    "linear-solutions/issueSLA": ("ignored", None),
    "linear-solutions/authorizedUser": ("refresh", "issue-789"),
}


def linear_samples() -> dict[str, bytes]:
    """Every delivery in the corpus; the linear-solutions file bundles three."""
    if not present():
        return {}
    samples = {
        str(path.relative_to(LINEAR_SAMPLES)): path.read_bytes()
        for path in sorted(LINEAR_SAMPLES.glob("zulip*/*.json"))
    }
    bundle = LINEAR_SAMPLES / "linear-solutions" / "sla_enforcement_webhook-payloads.json"
    for name, payload in json.loads(bundle.read_bytes()).items():
        samples[f"linear-solutions/{name}"] = json.dumps(payload).encode()
    return samples


def test_every_reference_linear_payload_is_covered() -> None:
    assert set(linear_samples()) == set(LINEAR_EXPECTED)


@pytest.mark.parametrize("name", sorted(LINEAR_EXPECTED))
def test_linear_reference_payloads_parse(name: str) -> None:
    event = linear_webhooks.parse({}, linear_samples()[name])
    assert (event.kind, event.external_id) == LINEAR_EXPECTED[name]
    assert event.source == "linear"


def test_a_real_actor_is_kept() -> None:
    event = linear_webhooks.parse({}, linear_samples()["linear-solutions/issueUpdate"])
    assert event.actor_id == "user-123"


def test_real_deliveries_of_one_entity_have_distinct_ids() -> None:
    samples = linear_samples()
    update = linear_webhooks.parse({}, samples["zulip/comment_update.json"]).delivery_id
    remove = linear_webhooks.parse({}, samples["zulip/comment_remove.json"]).delivery_id
    assert update != remove  # same entity and `updatedAt`, different action


@pytest.fixture
def live(settings: Settings, jira: ServedJira, linear: ServedLinear) -> Iterator[TestClient]:
    """The app with both sandbox trackers configured: events are processed."""
    with TestClient(create_app(linear.settings(jira.settings(settings)))) as client:
        yield client


def post_linear(client: TestClient, body: bytes) -> httpx.Response:
    return client.post("/webhooks/linear", content=body, headers=linear_headers(body))


def item(sessions: sessionmaker[Session], external_id: str) -> TrackerItem | None:
    with sessions() as session:
        return session.scalar(
            select(TrackerItem).where(
                TrackerItem.source == "linear", TrackerItem.external_id == external_id
            )
        )


def deliveries(origins: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """The captured deliveries of `origins`, oldest first, as Linear would send them now."""
    chosen = [(n, raw) for n, raw in linear_samples().items() if n.startswith(origins)]
    chosen.sort(key=lambda sample: json.loads(sample[1])["createdAt"])
    return [(name, linear_now(raw)) for name, raw in chosen]


def test_every_linear_payload_lands_as_the_expected_item_change(
    live: TestClient, sessions: sessionmaker[Session], linear: ServedLinear
) -> None:
    linear.adopt(ISSUE, "WEB", "The November outage")
    linear.adopt(SUB_ISSUE, "WEB", "Impact Analysis", parent_id=ISSUE)
    sent = deliveries(("zulip/", "linear-solutions/"))
    for name, body in sent:
        if name == "zulip/issue_remove.json":
            linear.sandbox.trash(ISSUE)  # what the delivery reports happened in Linear
        response = post_linear(live, body)
        assert response.status_code == 202, (name, response.text)
    rows = settled(sessions)
    assert len(rows) == len(sent)
    assert {row.status for row in rows} == {"processed", "ignored"}
    assert {row.status for row in rows if row.event_type.startswith("Comment.")} == {"ignored"}
    landed_child = item(sessions, SUB_ISSUE)
    assert landed_child is not None and landed_child.parent_ref == ISSUE
    assert landed_child.title == "Impact Analysis" and landed_child.deleted is False
    parent = item(sessions, ISSUE)
    assert parent is not None and parent.deleted is True
    # Linear's own examples name issues no workspace has: they are asked for, found
    # missing, and nothing is stored.
    assert item(sessions, "issue-123") is None


def start_project(linear: ServedLinear, project_id: str, name: str) -> None:
    """Rename a sandbox project and set it In Progress, as the captured updates report."""
    store = linear.sandbox.store
    with store.lock:
        now = store.now_ms()
        stamp = datetime.fromtimestamp(now / 1000, UTC).isoformat(timespec="milliseconds")
        store.projects[project_id].update(
            name=name, statusName="In Progress", statusType="started", updatedAt=stamp[:-6] + "Z"
        )
        store.version += 1


def test_the_2026_project_and_sub_issue_deliveries_land(
    live: TestClient, sessions: sessionmaker[Session], linear: ServedLinear
) -> None:
    linear.adopt(ISSUE, "WEB", "The November outage")
    linear.adopt(SUB_ISSUE, "WEB", "Impact Analysis", parent_id=ISSUE)
    linear.adopt_project(ZULIP_PROJECT, "WEB", "Zulip-Project", "532c1333013b")
    linear.adopt_project(OTHER_PROJECT, "WEB", "Project Zulip", "c65c2156ca87")
    samples = linear_samples()
    posted: list[str] = []

    def deliver(*names: str) -> list[WebhookEvent]:
        for name in names:
            assert post_linear(live, linear_now(samples[name])).status_code == 202, name
            posted.append(name)
        return settled(sessions)

    # The 2023 capture creates the sub-issue the 2026 one removes (Zulip reused its ids).
    rows = deliver(
        "zulip/issue_sub_issue_create.json",
        "zulip-2026/comment_on_document.json",
        "zulip-2026/project_create_complex.json",
        "zulip-2026/project_auto_update_after_create.json",  # `updatedFrom: {}`: asked again
    )
    assert [(row.event_type, row.status) for row in rows] == [
        ("Issue.create", "processed"),
        ("Comment.create", "ignored"),
        ("Project.create", "processed"),
        ("Project.update", "processed"),
    ]
    project = item(sessions, ZULIP_PROJECT)
    assert project is not None
    assert (project.type, project.key, project.title, project.status) == (
        "project",
        "532c1333013b",
        "Zulip-Project",
        "Planned",
    )

    linear.sandbox.trash(SUB_ISSUE)
    start_project(linear, ZULIP_PROJECT, "Zulip-Test-Project")
    rows = deliver(
        "zulip-2026/issue_sub_issue_remove.json",
        "zulip-2026/project_update_status.json",
        "zulip-2026/project_update_lead_set.json",
        "zulip-2026/project_update_target_date_set.json",
        "zulip-2026/projectUpdate_create.json",
        "zulip-2026/projectUpdate_update.json",
        "zulip-2026/projectUpdate_remove.json",
        "zulip-2026/project_remove.json",
    )
    assert len(rows) == len(posted)
    assert {n for n in posted if n.startswith("zulip-2026/")} == {
        n for n in samples if n.startswith("zulip-2026/")
    }
    assert {row.status for row in rows} == {"processed", "ignored"}
    assert {row.event_type for row in rows if row.status == "ignored"} == {
        "ProjectUpdate.create",
        "ProjectUpdate.update",
        "ProjectUpdate.remove",
        "Comment.create",
    }
    removed = item(sessions, SUB_ISSUE)
    assert removed is not None and removed.deleted is True
    project = item(sessions, ZULIP_PROJECT)
    assert project is not None
    assert (project.title, project.status, project.status_category, project.deleted) == (
        "Zulip-Test-Project",
        "In Progress",
        "in_progress",
        False,
    )
    other = item(sessions, OTHER_PROJECT)
    assert other is not None and (other.key, other.type) == ("c65c2156ca87", "project")
    # The removed project was never delivered before (Zulip captured only its removal), so
    # there is nothing stored to mark; the delivery still settles as processed.
    assert item(sessions, REMOVED_PROJECT) is None
