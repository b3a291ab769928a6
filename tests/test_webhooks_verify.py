"""Pure webhook verification and parsing, over our own deliveries (tests/fixtures).

The captured real ones are checked by tests/conformance/test_*_webhooks.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from support.reference import FIXTURES

from integrations.base import WebhookRejected
from integrations.jira import webhooks as jira
from integrations.linear import webhooks as linear
from integrations.webhooks import sign

SECRET = "s3cret-with-entropy"
# Our own Jira deliveries (tests/fixtures/jira); the captured ones are checked by
# tests/conformance/test_jira_webhooks.py.
JIRA_FIXTURES = FIXTURES / "jira"
LINEAR_FIXTURES = FIXTURES / "linear"
NOW = 1_700_000_000.0


def jira_signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"X-Hub-Signature": "sha256=" + sign(secret, body)}


def linear_body(path: Path, sent_at: float = NOW) -> bytes:
    """A real Linear payload as Linear would send it now: only `webhookTimestamp` changes."""
    payload = json.loads(path.read_bytes())
    payload["webhookTimestamp"] = int(sent_at * 1000)
    return json.dumps(payload).encode()


def linear_signed(body: bytes, secret: str = SECRET) -> dict[str, str]:
    return {"Linear-Signature": sign(secret, body)}


# --- Jira: verification --------------------------------------------------------------------


def test_jira_accepts_a_valid_signature_whatever_the_header_case() -> None:
    body = (JIRA_FIXTURES / "cloud_webhook_issue_created.json").read_bytes()
    jira.verify(jira_signed(body), body, secret=SECRET)
    lowered = {"x-hub-signature": jira_signed(body)["X-Hub-Signature"].upper()}
    jira.verify(lowered, body, secret=SECRET)


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({"X-Hub-Signature": "sha256=" + sign("other-secret", b"{}")}, "does not match"),
        ({"X-Hub-Signature": "sha256=" + "0" * 64}, "does not match"),
        ({"X-Hub-Signature": "sha1=" + "0" * 40}, "sha256="),
        ({"X-Hub-Signature": "sha256=é"}, "does not match"),
        ({}, "neither X-Hub-Signature nor a URL token"),
    ],
)
def test_jira_refuses_forged_or_missing_signatures(headers: dict[str, str], message: str) -> None:
    with pytest.raises(WebhookRejected, match=message) as caught:
        jira.verify(headers, b"{}", secret=SECRET)
    assert caught.value.status == 401


def test_jira_signature_covers_every_byte() -> None:
    body = (JIRA_FIXTURES / "cloud_webhook_issue_created.json").read_bytes()
    headers = jira_signed(body)
    assert b"PAY-16" in body
    with pytest.raises(WebhookRejected):
        jira.verify(headers, body.replace(b"PAY-16", b"PAY-17"), secret=SECRET)


def test_jira_refuses_a_signed_delivery_when_no_secret_is_configured() -> None:
    with pytest.raises(WebhookRejected, match="LADDER_JIRA_WEBHOOK_SECRET"):
        jira.verify(jira_signed(b"{}"), b"{}", secret=None)


def test_jira_url_token_for_set_ups_that_cannot_sign() -> None:
    jira.verify({}, b"{}", secret=None, url_token="tok-123", presented_token="tok-123")
    with pytest.raises(WebhookRejected, match="URL token is wrong"):
        jira.verify({}, b"{}", secret=None, url_token="tok-123", presented_token="tok-124")
    with pytest.raises(WebhookRejected, match="LADDER_JIRA_WEBHOOK_TOKEN"):
        jira.verify({}, b"{}", secret=SECRET, url_token=None, presented_token="tok-123")


def test_a_bad_signature_is_not_rescued_by_a_good_token() -> None:
    with pytest.raises(WebhookRejected):
        jira.verify(
            {"X-Hub-Signature": "sha256=" + "0" * 64},
            b"{}",
            secret=SECRET,
            url_token="tok",
            presented_token="tok",
        )


# --- Jira: parsing -------------------------------------------------------------------------

# (kind, external id, related ids) of each of our deliveries; the issue ids are PAY-16
# (10115), PAY-12 (10111), PAY-15 (10114) and SRCH-7 (20106).
JIRA_EXPECTED = {
    "cloud_webhook_issue_created.json": ("upsert", "10115", ()),
    "cloud_webhook_issue_updated.json": ("upsert", "10111", ()),
    # Ladder's own comment, but no bot account is configured here: stored like any update.
    "cloud_webhook_issue_commented.json": ("upsert", "10115", ()),
    "cloud_webhook_comment_created.json": ("ignored", "10115", ()),
    "cloud_webhook_issuelink_created.json": ("refresh", "10115", ("10111",)),
    "cloud_webhook_worklog_created.json": ("refresh", "10115", ()),
    "cloud_webhook_issue_deleted.json": ("delete", "10114", ()),
    "cloud_webhook_issuelink_deleted.json": ("refresh", "10111", ("10114",)),
    "dc_webhook_issue_updated.json": ("upsert", "20106", ()),
    "dc_webhook_issue_commented_old.json": ("upsert", "20106", ()),
}


def test_every_jira_delivery_fixture_is_covered() -> None:
    found = {p.name for p in JIRA_FIXTURES.glob("*_webhook_*.json")}
    assert found == set(JIRA_EXPECTED)


@pytest.mark.parametrize("name", sorted(JIRA_EXPECTED))
def test_jira_deliveries_parse(name: str) -> None:
    body = (JIRA_FIXTURES / name).read_bytes()
    event = jira.parse({}, body)
    kind, external_id, related = JIRA_EXPECTED[name]
    assert (event.kind, event.external_id, event.related_ids) == (kind, external_id, related)
    assert event.source == "jira"
    assert event.event_type == json.loads(body)["webhookEvent"]
    if kind == "upsert":
        assert event.payload["id"] == external_id and "fields" in event.payload


def test_jira_delivery_id_comes_from_the_header_else_from_the_bytes() -> None:
    body = (JIRA_FIXTURES / "cloud_webhook_issue_created.json").read_bytes()
    headers = {"X-Atlassian-Webhook-Identifier": "delivery-42"}
    assert jira.parse(headers, body).delivery_id == "delivery-42"
    assert jira.parse({}, body).delivery_id == jira.parse({}, body).delivery_id
    assert jira.parse({}, body).delivery_id != jira.parse({}, body + b" ").delivery_id


LADDER_BOT = "712020:9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"  # the fixtures' Cloud bot account


@pytest.mark.parametrize(
    ("name", "bot", "other"),
    [
        ("cloud_webhook_issue_commented.json", LADDER_BOT, "5d53f3cbc6b9320d9ea5bdc2"),
        # Older Server versions send no issue_event_type_name: a comment and no changelog.
        ("dc_webhook_issue_commented_old.json", "ladder-bot", "mkowalski"),
    ],
)
def test_jira_ignores_comments_by_its_own_account_only(name: str, bot: str, other: str) -> None:
    body = (JIRA_FIXTURES / name).read_bytes()
    assert jira.parse({}, body, bot_account_id=bot).kind == "ignored"
    assert jira.parse({}, body, bot_account_id=other).kind == "upsert"
    assert jira.parse({}, body).kind == "upsert"


def test_jira_field_changes_by_its_own_account_are_not_comments() -> None:
    payload = json.loads((JIRA_FIXTURES / "dc_webhook_issue_updated.json").read_bytes())
    assert payload["changelog"]["items"] and "issue_event_type_name" in payload
    del payload["issue_event_type_name"]  # as older Server versions send it
    payload["comment"] = {"id": "1", "author": {"name": "jchen"}, "body": "Epic set"}
    body = json.dumps(payload).encode()
    assert jira.parse({}, body, bot_account_id="jchen").kind == "upsert"


def test_jira_partial_issue_bodies_are_refetched() -> None:
    payload = json.loads((JIRA_FIXTURES / "cloud_webhook_comment_created.json").read_bytes())
    payload["webhookEvent"] = "jira:issue_updated"  # a trimmed issue: no `updated`
    event = jira.parse({}, json.dumps(payload).encode())
    assert (event.kind, event.external_id) == ("refresh", "10115")


@pytest.mark.parametrize("event_type", ["worklog_created", "worklog_updated", "worklog_deleted"])
def test_jira_worklogs_refresh_their_issue(event_type: str) -> None:
    # A worklog changes the issue's time spent; the body names the issue by id only.
    payload = json.loads((JIRA_FIXTURES / "cloud_webhook_worklog_created.json").read_bytes())
    assert "issue" not in payload and "user" not in payload
    payload["webhookEvent"] = event_type
    event = jira.parse({}, json.dumps(payload).encode())
    assert (event.kind, event.external_id, event.related_ids) == ("refresh", "10115", ())
    assert event.actor_id is None  # worklog bodies carry no `user`


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"webhookEvent": "jira:issue_updated"}', "without issue.id"),
        (b'{"webhookEvent": "jira:issue_deleted", "issue": {"key": "A-1"}}', "without issue.id"),
        (b'{"webhookEvent": "issuelink_created", "issueLink": {}}', "linked issue ids"),
        (b'{"webhookEvent": "worklog_updated"}', "worklog.issueId"),
    ],
)
def test_jira_malformed_bodies_are_400(body: bytes, message: str) -> None:
    with pytest.raises(WebhookRejected, match=message) as caught:
        jira.parse({}, body)
    assert caught.value.status == 400


def test_jira_unknown_events_are_ignored() -> None:
    assert jira.parse({}, b'{"webhookEvent": "sprint_started"}').kind == "ignored"
    assert jira.parse({}, b"{}").kind == "ignored"


# --- Linear: verification ------------------------------------------------------------------


def test_linear_accepts_a_valid_signature_sent_just_now() -> None:
    body = linear_body(ISSUE_UPDATE, sent_at=NOW - 59)
    linear.verify(linear_signed(body), body, secret=SECRET, now=lambda: NOW)
    linear.verify({"linear-signature": sign(SECRET, body)}, body, secret=SECRET, now=lambda: NOW)


@pytest.mark.parametrize("skew", [-61.0, 61.0, -3600.0])
def test_linear_refuses_a_timestamp_outside_the_window(skew: float) -> None:
    body = linear_body(ISSUE_UPDATE, sent_at=NOW + skew)
    with pytest.raises(WebhookRejected, match="more than 60 s") as caught:
        linear.verify(linear_signed(body), body, secret=SECRET, now=lambda: NOW)
    assert caught.value.status == 401


def test_linear_payloads_as_recorded_are_stale() -> None:
    body = ISSUE_UPDATE.read_bytes()
    with pytest.raises(WebhookRejected, match="more than 60 s"):
        linear.verify(linear_signed(body), body, secret=SECRET)


def test_linear_timestamp_header_when_the_body_has_none() -> None:
    body = b'{"type": "Issue", "action": "update", "data": {"id": "x"}}'
    headers = {**linear_signed(body), "Linear-Timestamp": str(int(NOW * 1000))}
    linear.verify(headers, body, secret=SECRET, now=lambda: NOW)
    with pytest.raises(WebhookRejected, match="missing or not a number"):
        linear.verify(linear_signed(body), body, secret=SECRET, now=lambda: NOW)
    body = b'{"webhookTimestamp": "soon"}'
    with pytest.raises(WebhookRejected, match="missing or not a number"):
        linear.verify(linear_signed(body), body, secret=SECRET, now=lambda: NOW)


@pytest.mark.parametrize(
    ("headers", "secret", "message"),
    [
        ({"Linear-Signature": sign("other", b"{}")}, SECRET, "does not match"),
        ({"Linear-Signature": "zz"}, SECRET, "does not match"),
        ({}, SECRET, "no Linear-Signature"),
        ({"Linear-Signature": sign(SECRET, b"{}")}, None, "LADDER_LINEAR_WEBHOOK_SECRET"),
    ],
)
def test_linear_refuses_forged_or_missing_signatures(
    headers: dict[str, str], secret: str | None, message: str
) -> None:
    with pytest.raises(WebhookRejected, match=message) as caught:
        linear.verify(headers, b"{}", secret=secret, now=lambda: NOW)
    assert caught.value.status == 401


def test_linear_signed_but_malformed_body_is_400() -> None:
    body = b'{"type": "Issue",'
    with pytest.raises(WebhookRejected, match="not valid JSON") as caught:
        linear.verify(linear_signed(body), body, secret=SECRET, now=lambda: NOW)
    assert caught.value.status == 400


# --- Linear: parsing -----------------------------------------------------------------------

ISSUE = "a1f0c3d2-5e6f-4a7b-8c9d-0e1f2a3b4c42"
PROJECT = "3c4d5e6f-7a8b-4c9d-8e0f-1a2b3c4d5e6f"
GIFT_CARDS = "4d5e6f70-8b9c-4dae-9f10-2b3c4d5e6f70"
ISSUE_UPDATE = LINEAR_FIXTURES / "webhook_issue_update.json"


LINEAR_EXPECTED = {
    "webhook_issue_update": ("refresh", ISSUE),
    "webhook_issue_create_bug": ("refresh", "b2e1d4c3-6f70-4b8c-9dae-1f2a3b4c5d57"),
    "webhook_sub_issue_create": ("refresh", "c3f2e5d4-7081-4c9d-8ebf-2a3b4c5d6e58"),
    "webhook_issue_remove": ("delete", "b2e1d4c3-6f70-4b8c-9dae-1f2a3b4c5d57"),
    "webhook_comment_create": ("ignored", "d4e5f607-8192-4a3b-9c4d-5e6f708192a3"),
    "webhook_issue_label_create": ("ignored", "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d"),
    # Projects are items: created or changed → fetched again; removed → deleted.
    "webhook_project_create": ("refresh", PROJECT),
    "webhook_project_update": ("refresh", PROJECT),
    "webhook_project_cancel": ("refresh", GIFT_CARDS),
    "webhook_project_remove": ("delete", GIFT_CARDS),
    # A project update is a status post: its health is nothing Ladder stores.
    "webhook_project_update_post": ("ignored", "e5f60718-293a-4b4c-8d5e-6f708192a3b4"),
}


def test_every_linear_delivery_of_ours_has_an_expectation() -> None:
    assert {p.stem for p in LINEAR_FIXTURES.glob("webhook_*.json")} == set(LINEAR_EXPECTED)


@pytest.mark.parametrize("name", sorted(LINEAR_EXPECTED))
def test_linear_deliveries_parse(name: str) -> None:
    body = (LINEAR_FIXTURES / f"{name}.json").read_bytes()
    event = linear.parse({}, body)
    assert (event.kind, event.external_id) == LINEAR_EXPECTED[name]
    assert event.source == "linear"
    payload = json.loads(body)
    assert event.event_type == f"{payload['type']}.{payload['action']}"


def test_linear_actor_is_kept() -> None:
    event = linear.parse({}, ISSUE_UPDATE.read_bytes())
    assert event.actor_id == "2d3e4f50-6172-4839-9a0b-1c2d3e4f5061"


def test_linear_updates_to_fields_ladder_does_not_read_cost_nothing() -> None:
    payload = json.loads(ISSUE_UPDATE.read_bytes())
    payload["updatedFrom"] = {"updatedAt": "2026-10-13T10:00:00.000Z", "sortOrder": -80.25}
    assert linear.parse({}, json.dumps(payload).encode()).kind == "ignored"
    payload["updatedFrom"]["labelIds"] = []
    assert linear.parse({}, json.dumps(payload).encode()).kind == "refresh"


def test_linear_delivery_id_from_the_header_else_entity_version() -> None:
    body = ISSUE_UPDATE.read_bytes()
    delivered = linear.parse({"Linear-Delivery": "d-1"}, body)
    assert delivered.delivery_id == "d-1"
    assert linear.parse({}, body).delivery_id == f"Issue:{ISSUE}:update:2026-10-14T09:30:00.412Z"
    comment = json.loads((LINEAR_FIXTURES / "webhook_comment_create.json").read_bytes())
    update = linear.parse({}, json.dumps({**comment, "action": "update"}).encode()).delivery_id
    remove = linear.parse({}, json.dumps({**comment, "action": "remove"}).encode()).delivery_id
    assert update != remove  # same entity and `updatedAt`, different action


def test_linear_attachments_refresh_their_issue_and_initiatives_their_projects() -> None:
    attachment = {
        "type": "Attachment",
        "action": "create",
        "data": {"id": "att-1", "issueId": ISSUE, "url": "https://ladder.example/bets/x"},
    }
    event = linear.parse({}, json.dumps(attachment).encode())
    assert (event.kind, event.external_id) == ("refresh", ISSUE)
    initiative = {
        "type": "Initiative",
        "action": "update",
        "data": {"id": "ini-1", "name": "Faster checkout", "projects": [{"id": "p-1"}]},
        "updatedFrom": {"projects": [{"id": "p-2"}, {"id": "p-1"}]},
    }
    event = linear.parse({}, json.dumps(initiative).encode())
    assert (event.kind, event.external_id, event.related_ids) == ("refresh", "p-1", ("p-2",))
    initiative["data"]["projects"] = []
    del initiative["updatedFrom"]
    assert linear.parse({}, json.dumps(initiative).encode()).kind == "ignored"


def test_linear_projects_are_refreshed_or_deleted() -> None:
    for action, kind in [("create", "refresh"), ("update", "refresh"), ("remove", "delete")]:
        body = json.dumps({"type": "Project", "action": action, "data": {"id": "p-9"}}).encode()
        event = linear.parse({}, body)
        assert (event.kind, event.external_id) == (kind, "p-9")


@pytest.mark.parametrize(
    "body",
    [
        b'{"type": "Issue", "action": "update", "data": {}}',
        b'{"type": "Project", "action": "remove", "data": {"name": "x"}}',
        b"[]",
        b"nope",
    ],
)
def test_linear_malformed_bodies_are_400(body: bytes) -> None:
    with pytest.raises(WebhookRejected) as caught:
        linear.parse({}, body)
    assert caught.value.status == 400
