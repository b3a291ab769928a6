"""The sandbox Jira's shapes against real captures: its issues carry the keys real ones carry.

The captures are DevLake's (jira/samples/devlake in the corpus): a Cloud story of
merico.atlassian.net and a Data Center issue. tests/test_jira_sandbox.py makes the same
comparison against our own fixtures.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pytest
from support.reference import REFERENCE

from integrations.sandbox.jira import JiraSandbox
from integrations.sandbox.jira.render import ALL, Renderer

SAMPLES = REFERENCE / "jira" / "samples"


def reference_issue(name: str) -> dict[str, Any]:
    """One of DevLake's single-issue captures."""
    issue: dict[str, Any] = json.loads((SAMPLES / "devlake" / name).read_text(encoding="utf-8"))
    return issue


@pytest.mark.parametrize(
    ("flavour", "reference", "api"),
    [
        ("cloud", "cloud_agile_board_issue_K5-2.json", "3"),
        ("datacenter", "server_agile_board_issue_DZFNK0168-5.json", "2"),
    ],
)
def test_rendered_objects_carry_the_keys_real_ones_carry(
    flavour: str, reference: str, api: str
) -> None:
    real = reference_issue(reference)["fields"]
    sandbox = JiraSandbox(flavour, 200)  # type: ignore[arg-type]
    render = Renderer(sandbox.store, "http://jira.test", api)
    story = next(i for i in sandbox.issues() if i.kind == "story" and i.assignee is not None)
    fields = render.issue(story, [ALL])["fields"]
    for name in ("status", "issuetype", "project", "priority"):
        assert set(real[name]) - {"avatarUrls"} <= set(fields[name]), name
    assert set(real["status"]["statusCategory"]) <= set(fields["status"]["statusCategory"])
    user = "accountId" if flavour == "cloud" else "name"
    assert user in fields["assignee"] and "displayName" in fields["assignee"]
    assert ("hierarchyLevel" in fields["issuetype"]) is (flavour == "cloud")
    description = fields["description"]
    assert isinstance(description, dict if api == "3" else str)
    datetime.strptime(fields["updated"], "%Y-%m-%dT%H:%M:%S.%f%z")  # Jira's own time format
