"""Pure mapping of a Jira issue payload to Ladder's normalised item.

One function reads every shape Jira sends an issue in: REST v3 (Cloud search and issue GET,
rich text as ADF), REST v2 (Data Center, and Cloud's v2 endpoints) and webhook bodies, which
wrap a v2 issue in `issue`. Only structured fields are read, so ADF versus wiki text does not
matter. Site-specific facts (custom field ids, localised issue type names) come in through
`JiraFieldConfig`; nothing here performs I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from integrations.base import ItemType, NormalisedItem, StatusCategory, TrackerError

SOURCE = "jira"
DEFAULT_CANCELED_RESOLUTIONS: tuple[str, ...] = (
    "Won't Do",
    "Won't Fix",
    "Duplicate",
    "Cannot Reproduce",
)
# A payload without `updated` (trimmed webhook issues, Atlassian's examples) sorts before any
# dated version, so it can never overwrite one.
UNKNOWN_UPDATED = datetime(1970, 1, 1, tzinfo=UTC)

# The fields `normalise` reads besides the configured custom fields: the explicit field list
# every search sends (Cloud's new search returns only `id` unless told otherwise).
SYSTEM_FIELDS: tuple[str, ...] = (
    "summary",
    "issuetype",
    "status",
    "resolution",
    "resolutiondate",
    "labels",
    "parent",
    "project",
    "issuelinks",
    "assignee",
    "created",
    "updated",
    "timespent",
)

_TYPE_NAMES: dict[str, ItemType] = {
    "epic": "epic",
    "story": "story",
    "task": "task",
    "bug": "bug",
    "sub-task": "subtask",
    "subtask": "subtask",
}
_CATEGORIES: dict[str, StatusCategory] = {
    "new": "todo",
    "indeterminate": "in_progress",
    "done": "done",
}


@dataclass(frozen=True, slots=True)
class JiraFieldConfig:
    """What a Jira site names differently from the next one.

    `story_points_fields` are read in order and the first number wins: company-managed
    projects fill "Story Points", team-managed ones "Story point estimate". `epic_link_field`
    holds the epic's key on Data Center (Cloud uses `parent`). `issue_type_names` maps issue
    type ids to their untranslated names (from `/issuetype`), for sites in other languages.
    `base_url` builds browse links; without it, the payload's own `self` link is used.
    """

    base_url: str | None = None
    story_points_fields: tuple[str, ...] = ()
    epic_link_field: str | None = None
    canceled_resolutions: tuple[str, ...] = DEFAULT_CANCELED_RESOLUTIONS
    issue_type_names: Mapping[str, str] = field(default_factory=dict)

    def fields(self) -> list[str]:
        """The explicit field list a search must ask for so `normalise` has what it reads."""
        extra = [
            *self.story_points_fields,
            *([self.epic_link_field] if self.epic_link_field else []),
        ]
        return [*SYSTEM_FIELDS, *dict.fromkeys(f for f in extra if f not in SYSTEM_FIELDS)]


def normalise(raw: Mapping[str, Any], config: JiraFieldConfig) -> NormalisedItem:
    """Map one Jira issue (or a webhook body carrying one in `issue`) to a normalised item.

    Raises `TrackerError` when the payload is not an issue at all (no id, key or fields
    object) or carries a date Jira would never send.
    """
    issue = _unwrap(raw)
    fields = issue["fields"]
    key = str(issue["key"])
    resolution = _name(fields.get("resolution"))
    parent_ref, parent_key = _parent(fields, config.epic_link_field)
    project = _text(_get(fields, "project", "key"))
    base_url = (config.base_url or _site_url(issue.get("self")) or "").rstrip("/")
    return NormalisedItem(
        source=SOURCE,
        external_id=str(issue["id"]),
        key=key,
        title=_text(fields.get("summary")) or "",
        type=_item_type(fields.get("issuetype"), config.issue_type_names),
        status=_name(fields.get("status")),
        status_category=_status_category(fields, resolution, config.canceled_resolutions),
        updated_at=_time(fields, "updated") or UNKNOWN_UPDATED,
        url=f"{base_url}/browse/{key}" if base_url else None,
        labels=tuple(dict.fromkeys(str(_text(label)) for label in fields.get("labels") or ())),
        parent_ref=parent_ref,
        parent_key=parent_key,
        container_refs=(f"jira:project:{project}",) if project else (),
        linked_urls=_remote_link_urls(issue.get("remotelinks")),
        linked_keys=_linked_keys(fields.get("issuelinks"), key),
        project=project,
        estimate=_estimate(fields, config.story_points_fields),
        time_spent_seconds=_time_spent(fields),
        assignee=_person(fields.get("assignee")),
        created_at=_time(fields, "created"),
        resolved_at=_time(fields, "resolutiondate"),
        raw=_without_nul(issue),
    )


def parse_time(value: Any) -> datetime | None:
    """Jira's `2019-02-15T19:05:50.567+0300` (or epoch milliseconds) as an aware UTC time."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    parsed = datetime.fromisoformat(str(value))
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _unwrap(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    if "fields" not in raw and isinstance(raw.get("issue"), Mapping):
        raw = raw["issue"]  # a webhook body
    missing = [name for name in ("id", "key") if not raw.get(name)]
    if missing or not isinstance(raw.get("fields"), Mapping):
        what = ", ".join(missing) if missing else "a fields object"
        raise TrackerError(f"not a Jira issue payload: it has no {what}")
    return raw


def _without_nul(value: Any) -> Any:
    """`value` with NUL characters dropped from every string in it (the same object when it
    holds none). PostgreSQL's jsonb cannot store `\\u0000`, and a NUL in one summary reaches
    other payloads too: every issue linked to it embeds that summary."""
    if not _has_nul(value):
        return value
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, Mapping):
        return {_without_nul(k): _without_nul(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value


def _has_nul(value: Any) -> bool:
    # One pass that allocates nothing: the payloads without NUL, nearly all, stay as they are.
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, Mapping):
        for key, item in value.items():
            if (isinstance(key, str) and "\x00" in key) or _has_nul(item):
                return True
    elif isinstance(value, list):
        for item in value:
            if _has_nul(item):
                return True
    return False


def _get(mapping: Any, *path: str) -> Any:
    for step in path:
        if not isinstance(mapping, Mapping):
            return None
        mapping = mapping.get(step)
    return mapping


def _text(value: Any) -> str | None:
    # PostgreSQL text cannot hold NUL, and real summaries do contain it (DevLake's EE-4).
    return None if value is None else str(value).replace("\x00", "")


def _name(value: Any) -> str | None:
    return _text(_get(value, "name"))


def _site_url(self_link: Any) -> str | None:
    """`https://x.atlassian.net/rest/api/3/issue/1` → `https://x.atlassian.net`."""
    if not isinstance(self_link, str) or "/rest/" not in self_link:
        return None
    return self_link.split("/rest/", 1)[0]


def _item_type(issuetype: Any, names: Mapping[str, str]) -> ItemType:
    if not isinstance(issuetype, Mapping):
        return "other"
    # The hierarchy level is language-independent: -1 is a sub-task, 1 and above hold work.
    level = issuetype.get("hierarchyLevel")
    if issuetype.get("subtask") is True or level == -1:
        return "subtask"
    if isinstance(level, int) and level >= 1:
        return "epic"
    name = (
        names.get(str(issuetype.get("id")))
        or issuetype.get("untranslatedName")
        or issuetype.get("name")
        or ""
    )
    return _TYPE_NAMES.get(str(name).strip().casefold(), "other")


def _status_category(
    fields: Mapping[str, Any], resolution: str | None, canceled: Sequence[str]
) -> StatusCategory:
    key = _get(fields, "status", "statusCategory", "key")
    # Old servers send no category: a resolution is then the only sign the work is over.
    category = _CATEGORIES.get(str(key)) if key else None
    if category is None:
        category = "done" if resolution else "todo"
    # The resolution says how finished work ended; a stale one on a reopened issue is ignored.
    if category == "done" and resolution and _fold(resolution) in {_fold(c) for c in canceled}:
        return "canceled"
    return category


def _fold(name: str) -> str:
    return name.replace("\u2019", "'").strip().casefold()


def _parent(
    fields: Mapping[str, Any], epic_link_field: str | None
) -> tuple[str | None, str | None]:
    parent = fields.get("parent")
    if isinstance(parent, Mapping) and (parent.get("id") or parent.get("key")):
        return _text(parent.get("id")), _text(parent.get("key"))
    link = fields.get(epic_link_field) if epic_link_field else None
    if isinstance(link, Mapping):  # some apps expand the Epic Link into an issue object
        return _text(link.get("id")), _text(link.get("key"))
    if isinstance(link, str) and link:
        return None, link  # Data Center stores the epic's key only
    # Jira Software's Agile API (/rest/agile/1.0/...) names the epic in a field of its own.
    epic = fields.get("epic")
    if isinstance(epic, Mapping) and (epic.get("id") or epic.get("key")):
        return _text(epic.get("id")), _text(epic.get("key"))
    return None, None


def _linked_keys(links: Any, own_key: str) -> tuple[str, ...]:
    keys: dict[str, None] = {}
    for link in links or ():
        other = _get(link, "outwardIssue", "key") or _get(link, "inwardIssue", "key")
        if other and other != own_key:
            keys[str(other)] = None
    return tuple(keys)


def _remote_link_urls(remote_links: Any) -> tuple[str, ...]:
    urls = (_get(link, "object", "url") for link in remote_links or ())
    return tuple(dict.fromkeys(str(url) for url in urls if url))


def _estimate(fields: Mapping[str, Any], field_ids: Sequence[str]) -> float | None:
    for field_id in field_ids:
        value = fields.get(field_id)
        if isinstance(value, bool) or value is None:
            continue
        try:
            points = float(value)
        except (TypeError, ValueError):
            continue  # not a number field on this site
        # Jira accepts any number; a negative estimate is a placeholder, not work.
        return points if points >= 0 else None
    return None


def _time_spent(fields: Mapping[str, Any]) -> int | None:
    # `timespent` is the issue's own logged time; `aggregatetimespent` adds its sub-tasks',
    # which they report themselves, so reading it would count their time twice.
    for value in (fields.get("timespent"), _get(fields, "timetracking", "timeSpentSeconds")):
        if isinstance(value, int | float) and not isinstance(value, bool):
            return int(value)
    return None


def _person(user: Any) -> str | None:
    if not isinstance(user, Mapping):
        return None
    for attribute in ("displayName", "accountId", "name", "key"):
        if user.get(attribute):
            return str(user[attribute])
    return None


def _time(fields: Mapping[str, Any], name: str) -> datetime | None:
    try:
        return parse_time(fields.get(name))
    except (TypeError, ValueError):
        raise TrackerError(f"Jira field {name!r} is not a time: {fields.get(name)!r}") from None
