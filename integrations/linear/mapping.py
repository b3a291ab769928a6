"""Pure mapping of Linear payloads to normalised items.

Three shapes reach this module, and it reads all of them: the adapter's own GraphQL results
(connections as `{nodes: [...]}`, related objects nested), webhook `data` bodies (related
objects as lists and `…Id` fields, no `identifier` in older deliveries), and the trimmed
samples of Linear's Zapier app (`status` instead of `state`). Decisions:

* Issues are keyed by their immutable `id`; the identifier (`ENG-12`) is the key and
  changes when an issue moves team. Projects are keyed by `id` too, with `slugId` as key.
* Type: an issue with a parent issue is a `subtask`; otherwise one labelled "Bug" is a
  `bug` and any other is a `story`. Projects are `project` items: containers that count no
  effort themselves. Initiatives are not items: each project lists its initiatives (and
  their parents) as refs, which is what bets name.
* Status: triage, backlog and unstarted are `todo`; started is `in_progress`; completed is
  `done`; canceled is `canceled`. An unknown state type is an error, not a guess.
* `parent_ref` is the parent issue's id, else the project's id, so inheritance runs
  sub-issue → parent → project.
* An archived or trashed issue or project is a deleted item. Archiving does not move
  Linear's `updatedAt`, so an item's `updated_at` is the later of its update and its
  archiving: the newer state wins when the store compares versions.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from integrations.base import ItemType, NormalisedItem, StatusCategory

SOURCE = "linear"

STATE_CATEGORIES: dict[str, StatusCategory] = {
    "triage": "todo",
    "backlog": "todo",
    "unstarted": "todo",
    "started": "in_progress",
    "completed": "done",
    "canceled": "canceled",
}
PROJECT_STATUS_CATEGORIES: dict[str, StatusCategory] = {
    "backlog": "todo",
    "planned": "todo",
    "started": "in_progress",
    "paused": "in_progress",
    "completed": "done",
    "canceled": "canceled",
}
BUG_LABELS = frozenset({"bug"})
# The bounded lists a payload may carry only in part; see `is_truncated`.
PAGED_FIELDS = ("labels", "attachments", "teams", "initiatives")

Kind = Literal["Issue", "Project"]


class UnmappablePayload(ValueError):
    """A payload that is not a Linear issue or project, or lacks what the mapping needs."""


def normalise(raw: Mapping[str, Any]) -> NormalisedItem:
    """Map an issue or project payload in any of the shapes above."""
    return normalise_project(raw) if kind(raw) == "Project" else normalise_issue(raw)


def kind(raw: Mapping[str, Any]) -> Kind:
    """Whether `raw` is an issue or a project: by `__typename`, else by its fields."""
    typename = raw.get("__typename")
    if typename in ("Issue", "Project"):
        return typename
    if typename is not None:
        raise UnmappablePayload(f"a Linear {typename} is not an item Ladder syncs")
    # Every issue shape has an identifier or (older webhooks) a number; `teamId` and
    # `parentId` are no sign of one, since team labels, label groups and replies have them too.
    if any(field in raw for field in ("identifier", "number")):
        return "Issue"
    if raw.get("projectId"):
        # What lives inside a project names it by id: a project update (status post), or a
        # comment on the project. A project update also has a `slugId`, as a project does.
        raise UnmappablePayload(
            f"a Linear payload inside project {raw['projectId']} (a project update or a "
            "comment) is not an item Ladder syncs"
        )
    if any(field in raw for field in ("slugId", "teams", "teamIds")):
        return "Project"
    raise UnmappablePayload(
        f"not a Linear issue or project (fields: {', '.join(sorted(raw)) or 'none'})"
    )


def normalise_issue(raw: Mapping[str, Any]) -> NormalisedItem:
    """Map one issue."""
    external_id = _required(raw, "id")
    state = _object(raw, "state") or _object(raw, "status")
    if not state:
        raise UnmappablePayload(f"issue {external_id}: the payload has no workflow state")
    state_type = state.get("type")
    if state_type not in STATE_CATEGORIES:
        raise UnmappablePayload(f"issue {external_id}: unknown workflow state type {state_type!r}")
    category = STATE_CATEGORIES[state_type]
    key = _issue_key(raw, external_id)
    team_key = (_object(raw, "team").get("key") or key.rsplit("-", 1)[0]).upper()
    labels = _names(raw.get("labels"))
    parent = _object(raw, "parent")
    parent_id = parent.get("id") or raw.get("parentId")
    project = _object(raw, "project")
    project_id = project.get("id") or raw.get("projectId")
    cycle_id = _object(raw, "cycle").get("id") or raw.get("cycleId")

    item_type: ItemType = "story"
    if parent_id:
        item_type = "subtask"
    elif any(label.casefold() in BUG_LABELS for label in labels):
        item_type = "bug"

    refs = [*_project_refs(project_id, project.get("slugId"), project.get("name"))]
    if cycle_id:
        refs.append(f"linear:cycle:{cycle_id}")
    refs.append(f"linear:team:{team_key}")

    return NormalisedItem(
        source=SOURCE,
        external_id=external_id,
        key=key,
        title=str(raw.get("title") or ""),
        type=item_type,
        status=state.get("name"),
        status_category=category,
        updated_at=_updated_at(raw, external_id),
        url=raw.get("url"),
        labels=labels,
        parent_ref=parent_id or project_id,
        parent_key=parent.get("identifier") if parent_id else project.get("slugId"),
        container_refs=_unique(refs),
        linked_urls=_unique(str(node["url"]) for node in _nodes(raw.get("attachments"))),
        project=team_key,
        estimate=float(raw["estimate"]) if raw.get("estimate") is not None else None,
        assignee=_object(raw, "assignee").get("name"),
        created_at=_time(raw.get("createdAt"), "createdAt", external_id),
        resolved_at=_resolved_at(raw, category, external_id),
        deleted=bool(raw.get("archivedAt") or raw.get("trashed")),
        raw=raw,
    )


def normalise_project(raw: Mapping[str, Any]) -> NormalisedItem:
    """Map one project: a container whose initiatives and teams become refs."""
    external_id = _required(raw, "id")
    slug_id = raw.get("slugId") or _slug_id_from_url(raw.get("url")) or external_id
    status = _object(raw, "status")
    status_type = status.get("type") or raw.get("state")
    if status_type is None:
        # A `remove` delivery's body holds only the project's ids and name: no status to read,
        # and the delivery itself says what happened (see webhooks.parse).
        raise UnmappablePayload(f"project {external_id}: the payload has no status")
    if status_type not in PROJECT_STATUS_CATEGORIES:
        raise UnmappablePayload(f"project {external_id}: unknown status type {status_type!r}")
    category = PROJECT_STATUS_CATEGORIES[status_type]
    team_keys = [str(node["key"]).upper() for node in _nodes(raw.get("teams")) if "key" in node]

    refs = [*_project_refs(external_id, slug_id, raw.get("name"))]
    for initiative in _nodes(raw.get("initiatives")):
        refs.extend(_initiative_refs(initiative))
        parent = initiative.get("parentInitiative")
        if isinstance(parent, Mapping):
            refs.extend(_initiative_refs(parent))
    refs.extend(f"linear:team:{key}" for key in team_keys)

    return NormalisedItem(
        source=SOURCE,
        external_id=external_id,
        key=slug_id,
        title=str(raw.get("name") or ""),
        type="project",
        status=status.get("name") or status_type,
        status_category=category,
        updated_at=_updated_at(raw, external_id),
        url=raw.get("url"),
        labels=_names(raw.get("labels")),
        container_refs=_unique(refs),
        project=team_keys[0] if team_keys else None,
        assignee=_object(raw, "lead").get("name"),
        created_at=_time(raw.get("createdAt"), "createdAt", external_id),
        resolved_at=_resolved_at(raw, category, external_id),
        deleted=bool(raw.get("archivedAt") or raw.get("trashed")),
        raw=raw,
    )


def is_truncated(raw: Mapping[str, Any]) -> bool:
    """Whether a bounded list in `raw` (labels, attachments…) holds only its first page."""
    for field in PAGED_FIELDS:
        value = raw.get(field)
        if isinstance(value, Mapping) and (value.get("pageInfo") or {}).get("hasNextPage"):
            return True
    return False


def slug(text: str) -> str:
    """`Faster checkout!` → `faster-checkout`: how people write names in refs."""
    return re.sub(r"[\W_]+", "-", text.casefold()).strip("-")


def _project_refs(project_id: Any, slug_id: Any, name: Any) -> list[str]:
    if not project_id:
        return []
    refs = [f"linear:project:{project_id}"]
    if slug_id:
        refs.append(f"linear:project:{slug_id}")
    if name and slug(str(name)):
        refs.append(f"linear:project:{slug(str(name))}")
    return refs


def _initiative_refs(initiative: Mapping[str, Any]) -> list[str]:
    refs = [f"linear:initiative:{initiative['id']}"] if initiative.get("id") else []
    name = str(initiative.get("name") or "").strip()
    if name:
        refs.append(f"linear:initiative:{name}")
        if slug(name) and slug(name) != name:
            refs.append(f"linear:initiative:{slug(name)}")
    return refs


def _issue_key(raw: Mapping[str, Any], external_id: str) -> str:
    if raw.get("identifier"):
        return str(raw["identifier"])
    team_key = _object(raw, "team").get("key")
    if team_key and raw.get("number") is not None:
        return f"{team_key}-{int(raw['number'])}"
    raise UnmappablePayload(f"issue {external_id}: no identifier, nor team key and number")


def _slug_id_from_url(url: Any) -> str | None:
    """Project URLs end in `<name-slug>-<slugId>`."""
    if not url:
        return None
    last = str(url).rstrip("/").rsplit("/", 1)[-1]
    return last.rsplit("-", 1)[-1] or None


def _updated_at(raw: Mapping[str, Any], external_id: str) -> datetime:
    updated = _time(raw.get("updatedAt"), "updatedAt", external_id)
    if updated is None:
        raise UnmappablePayload(f"{external_id}: updatedAt is missing")
    archived = _time(raw.get("archivedAt"), "archivedAt", external_id)
    return max(updated, archived) if archived else updated


def _resolved_at(
    raw: Mapping[str, Any], category: StatusCategory, external_id: str
) -> datetime | None:
    if category == "done":
        return _time(raw.get("completedAt"), "completedAt", external_id)
    if category == "canceled":
        return _time(raw.get("canceledAt"), "canceledAt", external_id)
    return None


def _time(value: Any, field: str, external_id: str) -> datetime | None:
    if value in (None, ""):
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise UnmappablePayload(f"{external_id}: {field} is not a timestamp: {value!r}") from None
    if parsed.tzinfo is None:
        raise UnmappablePayload(f"{external_id}: {field} has no time zone: {value!r}")
    return parsed


def _required(raw: Mapping[str, Any], field: str) -> str:
    value = raw.get(field)
    if not value:
        raise UnmappablePayload(f"the payload has no {field}")
    return str(value)


def _object(raw: Mapping[str, Any], field: str) -> Mapping[str, Any]:
    value = raw.get(field)
    return value if isinstance(value, Mapping) else {}


def _nodes(value: Any) -> list[Mapping[str, Any]]:
    """A connection's nodes, or a webhook's plain list."""
    if isinstance(value, Mapping):
        value = value.get("nodes")
    return [node for node in value or () if isinstance(node, Mapping)]


def _names(value: Any) -> tuple[str, ...]:
    return _unique(str(node["name"]) for node in _nodes(value) if node.get("name"))


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
