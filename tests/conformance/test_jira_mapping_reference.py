"""Jira mapping: every real issue payload in the reference corpus against its golden item.

Atlassian's OpenAPI examples, DevLake's Cloud and Server captures, a jira-to-matrix REST
capture, the issues inside the Zulip, jira-to-matrix and Mattermost webhook bodies, and the
Jira 5 Server responses of jira-ruby. The golden files under tests/golden/jira/ (named
`<origin>__<name>.json`) are the specification, reviewed by hand against the payloads;
`LADDER_UPDATE_GOLDEN=1` rewrites them after a deliberate change. The mapping rules tested on
our own fixtures in tests/test_jira_mapping.py are checked here on the real issues as well.

(Not `test_jira_mapping.py`: pytest cannot collect two test modules of the same name from
folders that are not packages.)
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from typing import Any

import pytest
from support.golden import GOLDEN as GOLDEN_ROOT
from support.golden import UPDATE, as_json, assert_golden
from support.reference import REFERENCE, present

from integrations.jira.mapping import UNKNOWN_UPDATED, JiraFieldConfig, normalise

SAMPLES = REFERENCE / "jira" / "samples"
GOLDEN = GOLDEN_ROOT / "jira"
LOGGER_KEYS = ("level", "message", "label")  # added by jira-to-matrix's logger, not by Jira

csv.field_size_limit(2**31 - 1)


@cache
def merico() -> JiraFieldConfig:
    """merico.atlassian.net, where the DevLake captures come from: its issue types are
    Chinese, so their untranslated names come from its `/issuetype` table."""
    path = SAMPLES / "devlake-e2e" / "raw_tables" / "_raw_jira_api_issue_types.csv"
    with path.open(encoding="utf-8") as handle:
        types = [json.loads(row["data"]) for row in csv.DictReader(handle)]
    return JiraFieldConfig(
        # DevLake's e2e scope config names customfield_10024 as the story points field.
        story_points_fields=("customfield_10024", "customfield_10016"),
        epic_link_field="customfield_10014",
        issue_type_names={t["id"]: t["untranslatedName"] for t in types},
    )


# jira-to-matrix's site: the issue_created changelog shows "Epic Link" stored in customfield_10006.
JIRA_TO_MATRIX = JiraFieldConfig(epic_link_field="customfield_10006")
# The Mattermost plugin's Cloud sites (some-instance-test, mmtest): customfield_10014 holds an
# issue key of the same project ("KT-17", "TES-33"), the Epic Link id of company-managed Cloud
# sites (merico's, and IntelDAOS' and Sakai's /field catalogues). Nothing in the captures
# names their story points field, nor any custom field of the Server sites: those map with no
# site fields.
MATTERMOST_CLOUD = JiraFieldConfig(epic_link_field="customfield_10014")
PLAIN = JiraFieldConfig()


def _webhook_issues(origin: str) -> Iterator[tuple[str, dict[str, Any], JiraFieldConfig]]:
    for path in sorted((SAMPLES / "webhooks" / origin).glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        for key in LOGGER_KEYS:
            body.pop(key, None)
        issue = body.get("issue")
        if not isinstance(issue, dict):
            continue  # comment, link and worklog bodies that carry no issue
        config = PLAIN
        if origin == "jira-to-matrix":
            config = JIRA_TO_MATRIX
        elif origin == "mattermost" and ".atlassian.net/" in str(issue.get("self")):
            config = MATTERMOST_CLOUD
        yield f"webhook-{origin}__{path.stem}", issue, config


def reference_issues() -> Iterator[tuple[str, dict[str, Any], JiraFieldConfig]]:
    """(golden name, issue payload, site config) for every Jira issue in the reference;
    nothing when the corpus is absent."""
    if not present():
        return
    examples = SAMPLES / "atlassian-openapi-examples"
    for path in sorted(examples.glob("*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(body, dict) and "fields" in body:
            yield f"openapi__{path.stem}", body, PLAIN
        elif isinstance(body, dict) and isinstance(body.get("issues"), list):
            for index, issue in enumerate(body["issues"]):
                yield f"openapi__{path.stem}__{index}", issue, PLAIN
    for path in sorted((SAMPLES / "devlake").glob("*.json")):
        config = merico() if path.stem.startswith("cloud_") else PLAIN
        yield f"devlake__{path.stem}", json.loads(path.read_text(encoding="utf-8")), config
    raw_issues = SAMPLES / "devlake-e2e" / "raw_tables" / "_raw_jira_api_issues.csv"
    with raw_issues.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            issue = json.loads(row["data"])
            yield f"devlake-e2e__{issue['key']}", issue, merico()
    rest = SAMPLES / "rest" / "jira-to-matrix" / "get_issue_v2.json"
    yield "rest__get_issue_v2", json.loads(rest.read_text(encoding="utf-8")), JIRA_TO_MATRIX
    for origin in ("zulip", "jira-to-matrix", "mattermost"):
        yield from _webhook_issues(origin)
    # Jira 5 Server (localhost:2990, the Atlassian SDK's instance): no custom fields in use.
    # project_SAMPLEPROJECT.issues.json repeats issue.json's issues (see the test below).
    ruby = SAMPLES / "jira-ruby-server"
    for stem in ("issue", "rapidview_SAMPLEPROJECT.issues.full"):
        body = json.loads((ruby / f"{stem}.json").read_text(encoding="utf-8"))
        for issue in body["issues"]:
            yield f"jira-ruby-server__{stem}__{issue['key']}", issue, PLAIN
    single = json.loads((ruby / "issue_10002.json").read_text(encoding="utf-8"))
    yield "jira-ruby-server__issue_10002", single, PLAIN


CASES = list(reference_issues())


def test_the_reference_holds_the_expected_payloads() -> None:
    names = [name for name, _, _ in CASES]
    assert len(names) == len(set(names))
    # 4 OpenAPI examples (bulkfetch has 3 issues), 5 DevLake issues, 33 e2e rows, 1 REST
    # capture; the issue inside 7 Zulip and 6 jira-to-matrix webhook bodies (the other three
    # jira-to-matrix bodies carry a comment or an issue link, no issue) and inside 52 of the
    # 55 Mattermost bodies (its three Server comment_* bodies carry only the comment); and
    # jira-ruby's Jira 5 search (11 issues), RapidView search (2) and single issue (1).
    assert len(names) == 6 + 5 + 33 + 1 + 7 + 6 + 52 + 11 + 2 + 1
    origins = {name.split("__")[0] for name in names}
    ours = {p.stem for p in GOLDEN.glob("*.json") if p.stem.split("__")[0] in origins}
    assert ours == set(names) or UPDATE


def test_jira_ruby_project_search_repeats_the_plain_search() -> None:
    ruby = SAMPLES / "jira-ruby-server"
    plain = json.loads((ruby / "issue.json").read_text(encoding="utf-8"))
    by_project = json.loads((ruby / "project_SAMPLEPROJECT.issues.json").read_text("utf-8"))
    assert by_project["issues"] == plain["issues"]  # only maxResults differs
    assert (plain["maxResults"], by_project["maxResults"]) == (1000, 50)


@pytest.mark.parametrize(("name", "payload", "config"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, payload: dict[str, Any], config: JiraFieldConfig) -> None:
    actual = as_json(normalise(payload, config))
    assert_golden(GOLDEN, name, actual)


def _by_name(name: str) -> tuple[dict[str, Any], JiraFieldConfig]:
    for case_name, payload, config in CASES:
        if case_name == name:
            return json.loads(json.dumps(payload)), config
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


def test_old_servers_without_status_categories_are_done_once_resolved() -> None:
    # Jira 5 sends no statusCategory: a resolution is then the only sign the work is over.
    payload, _ = _by_name("jira-ruby-server__issue__SAMPLEPROJECT-1")
    assert "statusCategory" not in payload["fields"]["status"]
    assert normalise(payload, PLAIN).status_category == "todo"
    payload["fields"]["resolution"] = {"id": "1", "name": "Fixed"}
    assert normalise(payload, PLAIN).status_category == "done"


def test_story_points_come_from_the_first_field_with_a_number() -> None:
    payload, _ = _by_name("devlake-e2e__EE-2")  # customfield_10024 = 2.0
    payload["fields"]["customfield_10016"] = 5
    assert (
        normalise(payload, replace(PLAIN, story_points_fields=("customfield_10016",))).estimate == 5
    )
    config = replace(PLAIN, story_points_fields=("customfield_10016", "customfield_10024"))
    assert normalise(payload, config).estimate == 5
    config = replace(PLAIN, story_points_fields=("customfield_10099", "customfield_10024"))
    assert normalise(payload, config).estimate == 2
    assert normalise(payload, PLAIN).estimate is None


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
    assert (after.key, after.project) == ("NEW-7", "NEW")
    assert after.url == "https://merico.atlassian.net/browse/NEW-7"


def test_nul_characters_are_dropped_from_titles() -> None:
    payload, config = _by_name("devlake-e2e__EE-4")
    assert "\x00" in payload["fields"]["summary"]
    item = normalise(payload, config)
    assert "\x00" not in item.title
    assert "\\u0000" not in json.dumps(item.raw)  # PostgreSQL's jsonb could not store it


def test_a_payload_without_updated_sorts_before_every_dated_one() -> None:
    payload, config = _by_name("openapi__issue_bulkfetch_POST_200__0")
    assert normalise(payload, config).updated_at == UNKNOWN_UPDATED


def test_the_field_list_names_every_field_mapping_reads() -> None:
    payload, _ = _by_name("devlake-e2e__K5-2")
    config = merico()
    trimmed = {
        **payload,
        "fields": {k: v for k, v in payload["fields"].items() if k in config.fields()},
    }
    assert normalise(trimmed, config) == normalise(payload, config)
