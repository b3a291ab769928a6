"""Pure webhook verification and parsing, over the real payloads in the reference folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import REFERENCE

from integrations.base import WebhookRejected
from integrations.jira import webhooks as jira
from integrations.linear import webhooks as linear
from integrations.webhooks import sign

SECRET = "s3cret-with-entropy"
JIRA_SAMPLES = REFERENCE / "jira" / "samples" / "webhooks"
LINEAR_SAMPLES = REFERENCE / "linear" / "samples" / "webhooks"
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
    body = (JIRA_SAMPLES / "zulip" / "issue_created.json").read_bytes()
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
    body = (JIRA_SAMPLES / "zulip" / "issue_created.json").read_bytes()
    headers = jira_signed(body)
    with pytest.raises(WebhookRejected):
        jira.verify(headers, body.replace(b"BUG-15", b"BUG-16"), secret=SECRET)


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

JIRA_EXPECTED = {
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
}


def test_every_reference_jira_payload_is_covered() -> None:
    found = {str(p.relative_to(JIRA_SAMPLES)) for p in JIRA_SAMPLES.rglob("*.json")}
    assert found == set(JIRA_EXPECTED)


@pytest.mark.parametrize("name", sorted(JIRA_EXPECTED))
def test_jira_reference_payloads_parse(name: str) -> None:
    body = (JIRA_SAMPLES / name).read_bytes()
    event = jira.parse({}, body)
    kind, external_id, related = JIRA_EXPECTED[name]
    assert (event.kind, event.external_id, event.related_ids) == (kind, external_id, related)
    assert event.source == "jira"
    assert event.event_type == json.loads(body)["webhookEvent"]
    if kind == "upsert":
        assert event.payload["id"] == external_id and "fields" in event.payload


def test_jira_delivery_id_comes_from_the_header_else_from_the_bytes() -> None:
    body = (JIRA_SAMPLES / "zulip" / "issue_created.json").read_bytes()
    headers = {"X-Atlassian-Webhook-Identifier": "delivery-42"}
    assert jira.parse(headers, body).delivery_id == "delivery-42"
    assert jira.parse({}, body).delivery_id == jira.parse({}, body).delivery_id
    assert jira.parse({}, body).delivery_id != jira.parse({}, body + b" ").delivery_id


def test_jira_ignores_comments_by_its_own_account_only() -> None:
    payload = json.loads((JIRA_SAMPLES / "zulip" / "issue_updated__status.json").read_bytes())
    payload["issue_event_type_name"] = "issue_commented"
    payload["comment"] = {"id": "1", "author": {"accountId": "ladder-bot"}, "body": "…"}
    body = json.dumps(payload).encode()
    assert jira.parse({}, body, bot_account_id="ladder-bot").kind == "ignored"
    assert jira.parse({}, body, bot_account_id="someone-else").kind == "upsert"
    assert jira.parse({}, body).kind == "upsert"


def test_jira_partial_issue_bodies_are_refetched() -> None:
    payload = json.loads((JIRA_SAMPLES / "zulip" / "comment_created.json").read_bytes())
    payload["webhookEvent"] = "jira:issue_updated"  # a trimmed issue: no `updated`
    event = jira.parse({}, json.dumps(payload).encode())
    assert (event.kind, event.external_id) == ("refresh", "10000")


def test_jira_worklogs_refresh_their_issue() -> None:
    body = json.dumps({"webhookEvent": "worklog_created", "worklog": {"issueId": 10042}})
    event = jira.parse({}, body.encode())
    assert (event.kind, event.external_id) == ("refresh", "10042")


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
    body = linear_body(LINEAR_SAMPLES / "zulip" / "issue_update.json", sent_at=NOW - 59)
    linear.verify(linear_signed(body), body, secret=SECRET, now=lambda: NOW)
    linear.verify({"linear-signature": sign(SECRET, body)}, body, secret=SECRET, now=lambda: NOW)


@pytest.mark.parametrize("skew", [-61.0, 61.0, -3600.0])
def test_linear_refuses_a_timestamp_outside_the_window(skew: float) -> None:
    body = linear_body(LINEAR_SAMPLES / "zulip" / "issue_update.json", sent_at=NOW + skew)
    with pytest.raises(WebhookRejected, match="more than 60 s") as caught:
        linear.verify(linear_signed(body), body, secret=SECRET, now=lambda: NOW)
    assert caught.value.status == 401


def test_linear_reference_payloads_as_captured_are_stale() -> None:
    body = (LINEAR_SAMPLES / "zulip" / "issue_update.json").read_bytes()
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

ISSUE = "3443a709-f2b5-46f2-a136-a0445fd432be"
SUB_ISSUE = "f9a37fcf-eb52-44be-a52c-0477f70e9952"
COMMENT = "c7cafc52-994d-4984-a217-bff9f9aa9473"
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
    # Linear's own SLA examples: a label change, an SLA `set`, an update by an admin.
    "linear-solutions/issueUpdate": ("refresh", "issue-123"),
    "linear-solutions/issueSLA": ("ignored", None),
    "linear-solutions/authorizedUser": ("refresh", "issue-789"),
}


def linear_samples() -> dict[str, bytes]:
    """Every delivery in the reference folder; the linear-solutions file bundles three."""
    samples = {
        str(path.relative_to(LINEAR_SAMPLES)): path.read_bytes()
        for path in LINEAR_SAMPLES.glob("zulip/*.json")
    }
    bundle = LINEAR_SAMPLES / "linear-solutions" / "sla_enforcement_webhook-payloads.json"
    for name, payload in json.loads(bundle.read_bytes()).items():
        samples[f"linear-solutions/{name}"] = json.dumps(payload).encode()
    return samples


def test_every_reference_linear_payload_is_covered() -> None:
    assert set(linear_samples()) == set(LINEAR_EXPECTED)


@pytest.mark.parametrize("name", sorted(LINEAR_EXPECTED))
def test_linear_reference_payloads_parse(name: str) -> None:
    event = linear.parse({}, linear_samples()[name])
    assert (event.kind, event.external_id) == LINEAR_EXPECTED[name]
    assert event.source == "linear"


def test_linear_actor_is_kept() -> None:
    event = linear.parse({}, linear_samples()["linear-solutions/issueUpdate"])
    assert event.actor_id == "user-123"


def test_linear_updates_to_fields_ladder_does_not_read_cost_nothing() -> None:
    payload = json.loads((LINEAR_SAMPLES / "zulip" / "issue_update.json").read_bytes())
    payload["updatedFrom"] = {"updatedAt": "2023-04-11T10:13:05.980Z", "sortOrder": -2036}
    assert linear.parse({}, json.dumps(payload).encode()).kind == "ignored"
    payload["updatedFrom"]["labelIds"] = []
    assert linear.parse({}, json.dumps(payload).encode()).kind == "refresh"


def test_linear_delivery_id_from_the_header_else_entity_version() -> None:
    body = (LINEAR_SAMPLES / "zulip" / "issue_update.json").read_bytes()
    delivered = linear.parse({"Linear-Delivery": "d-1"}, body)
    assert delivered.delivery_id == "d-1"
    assert linear.parse({}, body).delivery_id == f"Issue:{ISSUE}:update:2023-04-11T10:16:53.022Z"
    samples = linear_samples()
    update = linear.parse({}, samples["zulip/comment_update.json"]).delivery_id
    remove = linear.parse({}, samples["zulip/comment_remove.json"]).delivery_id
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
