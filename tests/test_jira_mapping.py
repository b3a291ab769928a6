"""Jira mapping: every issue in our own fixtures (tests/fixtures/jira) against its golden item.

The fixtures are written by us in the shapes Jira answers in (see their README); the golden
files `tests/golden/jira/fixture__*.json` are the specification, reviewed by hand against them.
`LADDER_UPDATE_GOLDEN=1 pytest tests/test_jira_mapping.py` rewrites them after a deliberate
change; without it any difference fails. The same rules are checked on real captures by
tests/conformance/test_jira_mapping_reference.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from support.golden import GOLDEN as GOLDEN_ROOT
from support.golden import UPDATE, as_json, assert_golden
from support.reference import FIXTURES

from integrations.base import TrackerError
from integrations.jira.mapping import (
    SYSTEM_FIELDS,
    UNKNOWN_UPDATED,
    JiraFieldConfig,
    normalise,
    parse_time,
)

JIRA = FIXTURES / "jira"
GOLDEN = GOLDEN_ROOT / "jira"
PREFIX = "fixture__"


def load(name: str) -> Any:
    """One fixture file, parsed."""
    return json.loads((JIRA / name).read_text(encoding="utf-8"))


def field_id(fields: list[dict[str, Any]], name: str) -> str:
    """The id of the one field called `name` in a `/field` list."""
    (found,) = [f["id"] for f in fields if f.get("untranslatedName", f["name"]) == name]
    return str(found)


# The sites' configurations, read from their /field and /issuetype lists the way the adapter's
# discovery does (Story Points first, then the team-managed estimate).
_CLOUD_FIELDS = load("cloud_field.json")
CLOUD = JiraFieldConfig(
    story_points_fields=(
        field_id(_CLOUD_FIELDS, "Story Points"),
        field_id(_CLOUD_FIELDS, "Story point estimate"),
    ),
    epic_link_field=field_id(_CLOUD_FIELDS, "Epic Link"),
    issue_type_names={t["id"]: t["untranslatedName"] for t in load("cloud_issuetype.json")},
)
_DC_FIELDS = load("dc_field.json")
DC = JiraFieldConfig(
    story_points_fields=(field_id(_DC_FIELDS, "Story Points"),),
    epic_link_field=field_id(_DC_FIELDS, "Epic Link"),
)
PLAIN = JiraFieldConfig()


def fixture_issues() -> Iterator[tuple[str, dict[str, Any], JiraFieldConfig]]:
    """(golden name, issue payload, site config) for every issue in our fixtures."""
    for path in sorted(JIRA.glob("*.json")):
        config = CLOUD if path.stem.startswith("cloud_") else DC
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body, dict):
            continue  # /field, /issuetype and /remotelink answer lists
        if "fields" in body:
            yield f"{PREFIX}{path.stem}", body, config
        elif isinstance(body.get("issues"), list):
            for issue in body["issues"]:
                yield f"{PREFIX}{path.stem}__{issue['key']}", issue, config
        elif isinstance(body.get("issue"), dict):
            yield f"{PREFIX}{path.stem}", body["issue"], config


CASES = list(fixture_issues())


def issue(name: str) -> tuple[dict[str, Any], JiraFieldConfig]:
    """A fixture issue by golden name without the prefix, e.g. `cloud_search_jql_page__PAY-14`;
    a deep copy, so tests may change it."""
    for case_name, payload, config in CASES:
        if case_name == PREFIX + name:
            return json.loads(json.dumps(payload)), config
    raise KeyError(name)


def test_the_fixtures_hold_the_expected_payloads() -> None:
    names = [name for name, _, _ in CASES]
    assert len(names) == len(set(names))
    # Cloud: 1 issue GET, 6 search results, the issue in 5 webhook bodies (the link and
    # worklog bodies carry ids only). Data Center: 1 GET, 5 search results, 2 webhooks.
    assert len(names) == 1 + 6 + 5 + 1 + 5 + 2
    goldens = {p.stem for p in GOLDEN.glob(f"{PREFIX}*.json")}
    assert goldens == set(names) or UPDATE


@pytest.mark.parametrize(("name", "payload", "config"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, payload: dict[str, Any], config: JiraFieldConfig) -> None:
    actual = as_json(normalise(payload, config))
    assert_golden(GOLDEN, name, actual)


def test_the_site_configs_name_the_fields_of_their_field_lists() -> None:
    assert CLOUD.story_points_fields == ("customfield_10024", "customfield_10016")
    assert CLOUD.epic_link_field == "customfield_10014"
    assert CLOUD.issue_type_names["10002"] == "Task"
    assert (DC.story_points_fields, DC.epic_link_field) == (
        ("customfield_10106",),
        "customfield_10101",
    )


def test_a_cloud_search_answers_exactly_the_fields_the_mapping_asks_for() -> None:
    page = load("cloud_search_jql_page.json")
    for result in page["issues"]:
        asked = set(CLOUD.fields())
        # Cloud leaves `parent` out when an issue has none.
        assert set(result["fields"]) | {"parent"} == asked, result["key"]


def test_a_webhook_body_maps_like_the_issue_inside_it() -> None:
    body = load("cloud_webhook_issue_updated.json")
    assert normalise(body, CLOUD) == normalise(body["issue"], CLOUD)
    assert normalise(body, CLOUD).raw == body["issue"]


def test_v2_and_v3_representations_map_alike() -> None:
    # The webhook carries PAY-12 in REST v2 (wiki text), the GET right after it in v3 (ADF).
    v2 = load("cloud_webhook_issue_updated.json")["issue"]
    v3 = load("cloud_issue_PAY-12.json")
    assert isinstance(v2["fields"]["description"], str)
    assert v3["fields"]["description"]["type"] == "doc"
    assert normalise(v2, CLOUD) == normalise(v3, CLOUD)
    # Data Center answers v2 everywhere: its webhook and its GET agree too.
    dc_hook = load("dc_webhook_issue_updated.json")["issue"]
    assert normalise(dc_hook, DC) == normalise(load("dc_issue_SRCH-7.json"), DC)


def test_canceled_resolutions_are_configurable() -> None:
    payload, config = issue("cloud_search_jql_page__PAY-14")  # done, resolution "Won't Do"
    assert normalise(payload, config).status_category == "canceled"
    assert normalise(payload, replace(config, canceled_resolutions=())).status_category == "done"
    typographic = replace(config, canceled_resolutions=("WON\u2019T DO",))
    assert normalise(payload, typographic).status_category == "canceled"
    payload, config = issue("dc_search_page__SRCH-9")  # done, resolution "Duplicate"
    assert normalise(payload, config).status_category == "canceled"
    payload, config = issue("cloud_search_jql_page__PAY-13")  # done, resolution "Fertig"
    assert normalise(payload, config).status_category == "done"


def test_a_stale_canceled_resolution_on_an_open_issue_is_ignored() -> None:
    payload, config = issue("cloud_search_jql_page__PAY-15")  # category "new", "Won't Do"
    assert payload["fields"]["resolution"]["name"] == "Won't Do"
    assert normalise(payload, config).status_category == "todo"


def test_story_points_come_from_the_first_field_with_a_number() -> None:
    both, _ = issue("cloud_search_jql_page__PAY-12")  # customfield_10024 = 5.0
    both["fields"]["customfield_10016"] = 8
    assert normalise(both, replace(PLAIN, story_points_fields=("customfield_10016",))).estimate == 8
    config = replace(PLAIN, story_points_fields=("customfield_10016", "customfield_10024"))
    assert normalise(both, config).estimate == 8
    config = replace(PLAIN, story_points_fields=("customfield_10099", "customfield_10024"))
    assert normalise(both, config).estimate == 5
    assert normalise(both, PLAIN).estimate is None
    # PAY-16 has no Story Points, only a "Story point estimate": the second field answers.
    estimated, config = issue("cloud_search_jql_page__PAY-16")
    assert estimated["fields"]["customfield_10024"] is None
    assert normalise(estimated, config).estimate == 3


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), ("2.5", 2.5), ("-1", None), (-2, None), (0, 0.0), ("soon", None), (True, None)],
)
def test_story_point_values(value: Any, expected: float | None) -> None:
    payload, _ = issue("dc_search_page__SRCH-7")
    payload["fields"]["customfield_10106"] = value
    config = replace(PLAIN, story_points_fields=("customfield_10106",))
    assert normalise(payload, config).estimate == expected


def test_time_spent_is_the_issues_own_not_its_sub_tasks() -> None:
    story, config = issue("cloud_search_jql_page__PAY-12")
    assert story["fields"]["timespent"] is None  # only its sub-task PAY-13 logged time
    assert normalise(story, config).time_spent_seconds is None
    full, config = issue("cloud_issue_PAY-12")
    assert full["fields"]["aggregatetimespent"] == 5400
    assert normalise(full, config).time_spent_seconds is None
    subtask, config = issue("cloud_search_jql_page__PAY-13")
    assert normalise(subtask, config).time_spent_seconds == 5400
    dc_story, config = issue("dc_issue_SRCH-7")  # 2 h of its own, 3 h with SRCH-8
    assert dc_story["fields"]["aggregatetimespent"] == 10800
    assert normalise(dc_story, config).time_spent_seconds == 7200


def test_localised_types_need_the_site_issue_types() -> None:
    payload, config = issue("cloud_search_jql_page__PAY-16")  # "Aufgabe", hierarchy level 0
    assert payload["fields"]["issuetype"]["name"] == "Aufgabe"
    assert normalise(payload, config).type == "task"
    assert normalise(payload, PLAIN).type == "other"
    # Sub-tasks and epics are told apart by hierarchy level, in any language.
    for name, kind in (("PAY-13", "subtask"), ("PAY-1", "epic")):
        payload, _ = issue(f"cloud_search_jql_page__{name}")
        assert normalise(payload, PLAIN).type == kind


def test_epics_are_the_parent_on_cloud_and_the_epic_link_on_data_center() -> None:
    cloud, config = issue("cloud_issue_PAY-12")
    item = normalise(cloud, config)
    assert (item.parent_ref, item.parent_key) == ("10100", "PAY-1")
    dc_story, config = issue("dc_issue_SRCH-7")
    item = normalise(dc_story, config)
    assert (item.parent_ref, item.parent_key) == (None, "SRCH-1")
    assert normalise(dc_story, PLAIN).parent_key is None  # without the site's field id
    subtask, config = issue("dc_search_page__SRCH-8")
    item = normalise(subtask, config)
    assert (item.parent_ref, item.parent_key) == ("20106", "SRCH-7")


def test_links_name_the_other_issue_in_either_direction() -> None:
    payload, config = issue("cloud_search_jql_page__PAY-12")
    assert normalise(payload, config).linked_keys == ("PAY-15", "PAY-16")
    payload, config = issue("dc_search_page__SRCH-9")
    assert normalise(payload, config).linked_keys == ("SRCH-7", "SRCH-4")


def test_remote_links_become_linked_urls() -> None:
    payload, config = issue("cloud_issue_PAY-12")
    payload["remotelinks"] = load("cloud_remotelink_PAY-12.json")
    assert normalise(payload, config).linked_urls == (
        "https://git.example.com/payments/checkout/-/merge_requests/482",
        "https://wiki.example.com/display/PAY/One-click+checkout",
    )


def test_a_moved_issue_keeps_its_id() -> None:
    payload, config = issue("cloud_search_jql_page__PAY-14")
    moved = json.loads(json.dumps(payload))
    moved["key"] = "NEW-7"
    moved["fields"]["project"]["key"] = "NEW"
    before, after = normalise(payload, config), normalise(moved, config)
    assert after.external_id == before.external_id
    assert (after.key, after.project, after.container_refs) == (
        "NEW-7",
        "NEW",
        ("jira:project:NEW",),
    )
    assert after.url == "https://example.atlassian.net/browse/NEW-7"


def test_nul_characters_are_dropped_from_titles() -> None:
    payload, config = issue("dc_search_page__SRCH-9")
    assert "\x00" in payload["fields"]["summary"]
    assert normalise(payload, config).title == "Search fails for queries containing a  byte"


def test_nul_characters_are_dropped_from_the_stored_payload_too() -> None:
    # PostgreSQL's jsonb refuses \u0000: SRCH-7 embeds the summary of SRCH-9, which it blocks.
    payload, config = issue("dc_search_page__SRCH-7")
    assert "\\u0000" in json.dumps(payload)
    raw = normalise(payload, config).raw
    assert "\\u0000" not in json.dumps(raw)
    assert raw["fields"]["issuelinks"][0]["outwardIssue"]["key"] == "SRCH-9"
    clean, config = issue("dc_search_page__SRCH-8")  # nothing to drop: the payload as it came
    assert normalise(clean, config).raw is clean


def test_base_url_overrides_the_self_link() -> None:
    payload, config = issue("dc_issue_SRCH-7")
    assert normalise(payload, config).url == "https://jira.example.com/browse/SRCH-7"
    item = normalise(payload, replace(config, base_url="https://jira.example.com/jira/"))
    assert item.url == "https://jira.example.com/jira/browse/SRCH-7"


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        ({"key": "A-1", "fields": {}}, "no id"),
        ({"id": "1", "fields": {}}, "no key"),
        ({"id": "1", "key": "A-1"}, "no a fields object"),
        ({"webhookEvent": "jira:issue_updated"}, "no id, key"),
    ],
)
def test_payloads_that_are_not_issues_are_rejected_clearly(
    payload: dict[str, Any], message: str
) -> None:
    with pytest.raises(TrackerError, match=message) as raised:
        normalise(payload, PLAIN)
    assert not raised.value.retryable


def test_link_and_worklog_bodies_are_not_issues() -> None:
    for name in ("cloud_webhook_issuelink_created.json", "cloud_webhook_worklog_created.json"):
        with pytest.raises(TrackerError, match="not a Jira issue payload"):
            normalise(load(name), CLOUD)


def test_a_malformed_time_names_the_field() -> None:
    payload = {"id": "1", "key": "A-1", "fields": {"updated": "yesterday"}}
    with pytest.raises(TrackerError, match="'updated' is not a time: 'yesterday'"):
        normalise(payload, PLAIN)


def test_times_are_aware_utc() -> None:
    assert parse_time("2019-02-15T19:05:50.567+0300") == datetime(
        2019, 2, 15, 16, 5, 50, 567000, tzinfo=UTC
    )
    assert parse_time(1_550_000_000_000) == datetime(2019, 2, 12, 19, 33, 20, tzinfo=UTC)
    assert parse_time("2020-01-01T00:00:00") == datetime(2020, 1, 1, tzinfo=UTC)
    assert parse_time(None) is None


def test_a_payload_without_updated_sorts_before_every_dated_one() -> None:
    payload, config = issue("cloud_webhook_comment_created")  # the trimmed issue of a comment
    assert "updated" not in payload["fields"]
    assert normalise(payload, config).updated_at == UNKNOWN_UPDATED


def test_the_field_list_names_every_field_mapping_reads() -> None:
    config = replace(CLOUD, story_points_fields=("customfield_1", "summary"))
    assert config.fields() == [*SYSTEM_FIELDS, "customfield_1", "customfield_10014"]
    for name in ("cloud_issue_PAY-12", "dc_issue_SRCH-7"):
        payload, config = issue(name)
        trimmed = {
            **payload,
            "fields": {k: v for k, v in payload["fields"].items() if k in config.fields()},
        }
        assert normalise(trimmed, config) == normalise(payload, config)
