"""Linear mapping: every sample in the reference corpus against its golden item.

The golden files under tests/golden/linear/ are the specification, reviewed by hand against
the payloads: a webhook's `data` or a Zapier sample that is an issue or a project maps to an
item, anything else (comments, labels, customers, project updates…) to the error it raises.
`LADDER_UPDATE_GOLDEN=1 pytest tests/conformance/test_linear_mapping_reference.py` rewrites
them after a deliberate change; without it any difference fails.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from support.golden import GOLDEN as GOLDEN_ROOT
from support.golden import UPDATE, as_json, assert_golden
from support.reference import REFERENCE, present

from integrations.linear.mapping import UnmappablePayload, is_truncated, kind, normalise

SAMPLES = REFERENCE / "linear" / "samples"
GOLDEN = GOLDEN_ROOT / "linear"


def reference_payloads() -> Iterator[tuple[str, dict[str, Any]]]:
    """(golden name, payload) for every webhook `data` and Zapier sample in the corpus."""
    if not present():
        return
    for path in sorted((SAMPLES / "webhooks").glob("*/*.json")):
        body = json.loads(path.read_text(encoding="utf-8"))
        origin = path.parent.name
        envelopes = {path.stem: body} if "type" in body else body  # one file holds several
        for name, envelope in envelopes.items():
            label = path.stem if name == path.stem else f"{path.stem}__{name}"
            yield f"webhook-{origin}__{label}", envelope.get("data") or {}
    for path in sorted((SAMPLES / "zapier").glob("*.json")):
        yield f"zapier__{path.stem}", json.loads(path.read_text(encoding="utf-8"))


CASES = list(reference_payloads())


def mapped(payload: dict[str, Any]) -> dict[str, Any]:
    try:
        return as_json(normalise(payload))
    except UnmappablePayload as exc:
        return {"error": str(exc)}


def _payload(name: str) -> dict[str, Any]:
    return copy.deepcopy(dict(CASES)[name])


def test_the_reference_holds_the_expected_payloads() -> None:
    names = [name for name, _ in CASES]
    assert len(names) == len(set(names))
    # 9 Zulip deliveries (2023), 11 more from Zulip's 2026 fixtures, the 3 envelopes of
    # linear-solutions' SLA fixture, 9 Zapier samples.
    assert len(names) == 9 + 11 + 3 + 9
    golden = {p.stem for p in GOLDEN.glob("*.json") if not p.stem.startswith("fixture__")}
    assert golden == set(names) or UPDATE
    items = [name for name, payload in CASES if "error" not in mapped(payload)]
    assert sorted(items) == [
        "webhook-zulip-2026__issue_sub_issue_remove",
        "webhook-zulip-2026__project_auto_update_after_create",
        "webhook-zulip-2026__project_create_complex",
        "webhook-zulip-2026__project_update_lead_set",
        "webhook-zulip-2026__project_update_status",
        "webhook-zulip-2026__project_update_target_date_set",
        "webhook-zulip__issue_create_complex",
        "webhook-zulip__issue_remove",
        "webhook-zulip__issue_sub_issue_create",
        "webhook-zulip__issue_sub_issue_update",
        "webhook-zulip__issue_update",
        "zapier__issue",
        "zapier__project",
    ]


@pytest.mark.parametrize(("name", "payload"), CASES, ids=[c[0] for c in CASES])
def test_golden(name: str, payload: dict[str, Any]) -> None:
    assert_golden(GOLDEN, name, mapped(payload))


def test_real_sub_issues_bugs_and_removals() -> None:
    assert normalise(_payload("webhook-zulip__issue_sub_issue_create")).type == "subtask"
    assert normalise(_payload("webhook-zulip__issue_create_complex")).type == "bug"  # "Bug"
    removed = normalise(_payload("webhook-zulip__issue_remove"))
    assert removed.deleted
    # updatedAt is 10:16:53.023 in the delivery; archivedAt 10:17:17.810 is newer.
    assert removed.updated_at == datetime.fromisoformat("2023-04-11T10:17:17.810+00:00")
    assert normalise(_payload("webhook-zulip-2026__issue_sub_issue_remove")).deleted


def test_a_real_webhook_issue_without_identifier_takes_team_key_and_number() -> None:
    payload = _payload("webhook-zulip__issue_update")
    assert "identifier" not in payload
    assert normalise(payload).key == "WEB-44"
    assert not is_truncated(payload)  # plain lists: complete


def test_a_real_project_is_a_container_with_its_initiatives_as_refs() -> None:
    project = normalise(_payload("zapier__project"))
    assert project.type == "project"
    assert project.key == "bb9746674991"  # the slugId ending the project's URL
    assert "linear:initiative:6d6cbf03-dd67-47c6-ae21-d1b2519454e3" in project.container_refs
    assert "linear:initiative:Product" in project.container_refs
    assert kind(_payload("zapier__issue")) == "Issue"


def test_a_real_project_status_post_is_not_a_project() -> None:
    with pytest.raises(UnmappablePayload, match="project update"):
        normalise(_payload("webhook-zulip-2026__projectUpdate_create"))
