"""Jira mapping: every issue payload in the reference material against its golden item.

The golden files under tests/golden/jira/ are the specification, reviewed by hand against the
payloads. `LADDER_UPDATE_GOLDEN=1 pytest tests/test_jira_mapping.py` rewrites them after a
deliberate change; without it any difference fails.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from conftest import REFERENCE
from golden import GOLDEN as GOLDEN_ROOT
from golden import UPDATE, as_json, assert_golden

from integrations.base import TrackerError
from integrations.jira.mapping import (
    SYSTEM_FIELDS,
    UNKNOWN_UPDATED,
    JiraFieldConfig,
    normalise,
    parse_time,
)

SAMPLES = REFERENCE / "jira" / "samples"
GOLDEN = GOLDEN_ROOT / "jira"
LOGGER_KEYS = ("level", "message", "label")  # added by jira-to-matrix's logger, not by Jira

csv.field_size_limit(2**31 - 1)


def _merico_issue_types() -> dict[str, str]:
    """The merico.atlassian.net issue types (Chinese names → untranslated), from `/issuetype`."""
    path = SAMPLES / "devlake-e2e" / "raw_tables" / "_raw_jira_api_issue_types.csv"
    with path.open(encoding="utf-8") as handle:
        types = [json.loads(row["data"]) for row in csv.DictReader(handle)]
    return {t["id"]: t["untranslatedName"] for t in types}


# The field configuration of each site the samples come from, as its /field list would give.
MERICO = JiraFieldConfig(
    # DevLake's e2e scope config names customfield_10024 as the story points field.
    story_points_fields=("customfield_10024", "customfield_10016"),
    epic_link_field="customfield_10014",
    issue_type_names=_merico_issue_types(),
)
# jira-to-matrix's site: the issue_created changelog shows "Epic Link" stored in customfield_10006.
JIRA_TO_MATRIX = JiraFieldConfig(epic_link_field="customfield_10006")
PLAIN = JiraFieldConfig()


def reference_issues() -> Iterator[tuple[str, dict[str, Any], JiraFieldConfig]]:
    """(golden name, issue payload, site config) for every Jira issue in the reference."""
    examples = SAMPLES / "atlassian-openapi-examples"
    for path in sorted(examples.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(body, dict) and "fields" in body:
            yield f"openapi__{path.stem}", body, PLAIN
        elif isinstance(body, dict) and isinstance(body.get("issues"), list):
            for index, issue in enumerate(body["issues"]):
                yield f"openapi__{path.stem}__{index}", issue, PLAIN
    for path in sorted((SAMPLES / "devlake").glob("*.json")):
        config = MERICO if path.stem.startswith("cloud_") else PLAIN
        yield f"devlake__{path.stem}", json.loads(path.read_text(encoding="utf-8")), config
    raw_issues = SAMPLES / "devlake-e2e" / "raw_tables" / "_raw_jira_api_issues.csv"
    with raw_issues.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            issue = json.loads(row["data"])
            yield f"devlake-e2e__{issue['key']}", issue, MERICO
    rest = SAMPLES / "rest" / "jira-to-matrix" / "get_issue_v2.json"
    yield "rest__get_issue_v2", json.loads(rest.read_text(encoding="utf-8")), JIRA_TO_MATRIX
    for origin, config in (("zulip", PLAIN), ("jira-to-matrix", JIRA_TO_MATRIX)):
        for path in sorted((SAMPLES / "webhooks" / origin).glob("*.json")):
            body = json.loads(path.read_text(encoding="utf-8"))
            for key in LOGGER_KEYS:
                body.pop(key, None)
            if isinstance(body.get("issue"), dict):
                yield f"webhook-{origin}__{path.stem}", body["issue"], config


CASES = list(reference_issues())


def test_the_reference_holds_the_expected_payloads() -> None:
    names = [name for name, _, _ in CASES]
    assert len(names) == len(set(names))
    # 4 OpenAPI examples (bulkfetch has 3 issues), 5 DevLake issues, 33 e2e rows, 1 REST
    # capture, and the issue inside 7 Zulip and 6 jira-to-matrix webhook bodies (the other
    # three jira-to-matrix bodies carry a comment or an issue link, no issue).
    assert len(names) == 6 + 5 + 33 + 1 + 7 + 6
    assert {p.stem for p in GOLDEN.glob("*.json")} == set(names) or UPDATE


@pytest.mark.parametrize(("name", "payload", "config"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, payload: dict[str, Any], config: JiraFieldConfig) -> None:
    actual = as_json(normalise(payload, config))
    assert_golden(GOLDEN, name, actual)


def _by_name(name: str) -> tuple[dict[str, Any], JiraFieldConfig]:
    for case_name, payload, config in CASES:
        if case_name == name:
            return payload, config
    raise KeyError(name)


def test_a_webhook_body_maps_like_the_issue_inside_it() -> None:
    path = SAMPLES / "webhooks" / "zulip" / "issue_updated__status.json"
    body = json.loads(path.read_text(encoding="utf-8"))
    assert normalise(body, PLAIN) == normalise(body["issue"], PLAIN)
    assert normalise(body, PLAIN).raw == body["issue"]


def test_v2_and_v3_representations_map_alike() -> None:
    v3, _ = _by_name("openapi__issue_GET_200")
    v2 = json.loads(json.dumps(v3))
    v2["fields"]["description"] = "Main order flow broken"  # v2 sends wiki text, not ADF
    assert normalise(v2, PLAIN) == normalise(v3, PLAIN)


def test_canceled_resolutions_are_configurable() -> None:
    payload, config = _by_name("devlake-e2e__EE-20")  # done, resolution "Won't Do"
    assert normalise(payload, config).status_category == "canceled"
    assert normalise(payload, replace(config, canceled_resolutions=())).status_category == "done"
    typographic = replace(config, canceled_resolutions=("WON\u2019T DO",))
    assert normalise(payload, typographic).status_category == "canceled"


def test_a_stale_canceled_resolution_on_an_open_issue_is_ignored() -> None:
    payload, config = _by_name("devlake-e2e__EE-35")  # category "new", resolution "Won't Do"
    assert normalise(payload, config).status_category == "todo"


def test_story_points_come_from_the_first_field_with_a_number() -> None:
    payload, _ = _by_name("devlake-e2e__EE-2")  # customfield_10024 = 2.0
    both = json.loads(json.dumps(payload))
    both["fields"]["customfield_10016"] = 5
    assert normalise(both, replace(PLAIN, story_points_fields=("customfield_10016",))).estimate == 5
    config = replace(PLAIN, story_points_fields=("customfield_10016", "customfield_10024"))
    assert normalise(both, config).estimate == 5
    config = replace(PLAIN, story_points_fields=("customfield_10099", "customfield_10024"))
    assert normalise(both, config).estimate == 2
    assert normalise(both, PLAIN).estimate is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [(3, 3.0), ("2.5", 2.5), ("-1", None), (-2, None), (0, 0.0), ("soon", None), (True, None)],
)
def test_story_point_values(value: Any, expected: float | None) -> None:
    payload, _ = _by_name("devlake-e2e__EE-2")
    payload = json.loads(json.dumps(payload))
    payload["fields"]["customfield_10024"] = value
    config = replace(PLAIN, story_points_fields=("customfield_10024",))
    assert normalise(payload, config).estimate == expected


def test_time_spent_is_the_issues_own_not_its_sub_tasks() -> None:
    payload, config = _by_name("devlake-e2e__EE-8")  # aggregatetimespent 2220, timespent null
    assert payload["fields"]["aggregatetimespent"] == 2220
    assert normalise(payload, config).time_spent_seconds is None


def test_localised_types_need_the_site_issue_types() -> None:
    payload, config = _by_name("devlake-e2e__EE-5")  # 任务, hierarchy level 0
    assert normalise(payload, config).type == "task"
    assert normalise(payload, PLAIN).type == "other"


def test_a_moved_issue_keeps_its_id() -> None:
    payload, config = _by_name("devlake-e2e__K5-3")
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
    assert after.url == "https://merico.atlassian.net/browse/NEW-7"


def test_nul_characters_are_dropped_from_titles() -> None:
    payload, config = _by_name("devlake-e2e__EE-4")
    assert "\x00" in payload["fields"]["summary"]
    assert "\x00" not in normalise(payload, config).title


def test_base_url_overrides_the_self_link() -> None:
    payload, config = _by_name("devlake-e2e__EE-1")
    item = normalise(payload, replace(config, base_url="https://jira.example.com/"))
    assert item.url == "https://jira.example.com/browse/EE-1"


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
    payload, config = _by_name("openapi__issue_bulkfetch_POST_200__0")
    assert normalise(payload, config).updated_at == UNKNOWN_UPDATED


def test_the_field_list_names_every_field_mapping_reads() -> None:
    config = replace(MERICO, story_points_fields=("customfield_1", "summary"))
    assert config.fields() == [*SYSTEM_FIELDS, "customfield_1", "customfield_10014"]
    payload, _ = _by_name("devlake-e2e__K5-2")
    trimmed = {
        **payload,
        "fields": {k: v for k, v in payload["fields"].items() if k in MERICO.fields()},
    }
    assert normalise(trimmed, MERICO) == normalise(payload, MERICO)
