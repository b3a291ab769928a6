"""Resolvers that answer Linear's schema from a `LinearStore`.

Root connections (`issues`, `projects`…) filter and sort their records once per distinct
query and data version, then page by bisecting that sorted list with the Relay cursor (the
sort key of the last node), so paging through 50,000 issues costs one sort, not one per
page. Like Linear, lists come most recent first, by `createdAt` unless `orderBy: updatedAt`.

Filters implement the part of Linear's filter language a sync uses: `and`/`or`, the
comparators (`eq`, `neq`, `in`, `nin`, `gt`, `gte`, `lt`, `lte`, `null`, and the string
ones), relations (`team`, `project`, `parent`, `state`…) and collections (`labels`,
`accessibleTeams`… with `some`/`every`/`none`). A filter outside that part is refused with
an error naming it, never ignored.
"""

from __future__ import annotations

import base64
import bisect
import json
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from graphql import GraphQLError, GraphQLResolveInfo, default_field_resolver

from integrations.sandbox.linear.store import LinearStore, Record, iso

MAX_PAGE = 250
DEFAULT_PAGE = 50
TIME_FIELDS = frozenset(
    {"createdAt", "updatedAt", "archivedAt", "completedAt", "canceledAt", "startedAt"}
)


def input_error(message: str) -> GraphQLError:
    """An error in Linear's shape for a request it cannot serve as asked."""
    return GraphQLError(
        message,
        extensions={
            "type": "invalid input",
            "code": "INPUT_ERROR",
            "statusCode": 400,
            "userError": True,
            "userPresentableMessage": message,
        },
    )


# --- relations: how one record points at others ------------------------------------------


def _one(table: str, field: str) -> Callable[[LinearStore, Record], Record | None]:
    def follow(store: LinearStore, record: Record) -> Record | None:
        key = record.get(field)
        return getattr(store, table).get(key) if key else None

    return follow


def _many(table: str, field: str) -> Callable[[LinearStore, Record], list[Record]]:
    def follow(store: LinearStore, record: Record) -> list[Record]:
        rows = getattr(store, table)
        return [rows[key] for key in record.get(field) or () if key in rows]

    return follow


def _project_status(store: LinearStore, project: Record) -> Record:
    return {
        "id": f"status-{project['statusType']}",
        "name": project["statusName"],
        "type": project["statusType"],
        "color": "#bec2c8",
        "position": 0.0,
        "indefinite": False,
    }


def _project_labels(store: LinearStore, project: Record) -> list[Record]:
    return [{"id": f"project-label-{n}", "name": n} for n in project["labelNames"]]


def _child_initiatives(store: LinearStore, initiative: Record) -> list[Record]:
    return [i for i in store.initiatives.values() if i["parentId"] == initiative["id"]]


def _initiative_projects(store: LinearStore, initiative: Record) -> list[Record]:
    return [p for p in store.projects.values() if initiative["id"] in p["initiativeIds"]]


def _issue_comments(store: LinearStore, issue: Record) -> list[Record]:
    return [c for c in store.comments.values() if c["issueId"] == issue["id"]]


def _comment_issue(store: LinearStore, comment: Record) -> Record | None:
    return store.issues.get(comment["issueId"])


# (type, field) → (target type, follow); single relations and collections alike.
RELATIONS: dict[tuple[str, str], tuple[str, Callable[[LinearStore, Record], Any]]] = {
    ("Issue", "team"): ("Team", _one("teams", "teamId")),
    ("Issue", "state"): ("WorkflowState", _one("states", "stateId")),
    ("Issue", "parent"): ("Issue", _one("issues", "parentId")),
    ("Issue", "project"): ("Project", _one("projects", "projectId")),
    ("Issue", "cycle"): ("Cycle", _one("cycles", "cycleId")),
    ("Issue", "assignee"): ("User", _one("users", "assigneeId")),
    ("Issue", "labels"): ("IssueLabel", _many("labels", "labelIds")),
    ("Issue", "attachments"): ("Attachment", lambda store, issue: issue["attachments"]),
    ("Issue", "comments"): ("Comment", _issue_comments),
    ("Project", "teams"): ("Team", _many("teams", "teamIds")),
    ("Project", "accessibleTeams"): ("Team", _many("teams", "teamIds")),
    ("Project", "initiatives"): ("Initiative", _many("initiatives", "initiativeIds")),
    ("Project", "lead"): ("User", _one("users", "leadId")),
    ("Project", "status"): ("ProjectStatus", _project_status),
    ("Project", "labels"): ("ProjectLabel", _project_labels),
    ("Initiative", "parentInitiative"): ("Initiative", _one("initiatives", "parentId")),
    ("Initiative", "subInitiatives"): ("Initiative", _child_initiatives),
    ("Initiative", "projects"): ("Project", _initiative_projects),
    ("WorkflowState", "team"): ("Team", _one("teams", "teamId")),
    ("Cycle", "team"): ("Team", _one("teams", "teamId")),
    ("Comment", "issue"): ("Issue", _comment_issue),
    ("Comment", "user"): ("User", _one("users", "userId")),
}


# --- filters -------------------------------------------------------------------------------


def matches(store: LinearStore, type_name: str, record: Record, filter_: Mapping[str, Any]) -> bool:
    """Whether `record` (of `type_name`) passes a Linear filter object."""
    for field, condition in filter_.items():
        if condition is None:
            continue
        if field == "and":
            if not all(matches(store, type_name, record, f) for f in condition):
                return False
        elif field == "or":
            if not any(matches(store, type_name, record, f) for f in condition):
                return False
        elif (type_name, field) in RELATIONS:
            target, follow = RELATIONS[(type_name, field)]
            if not _relation_matches(store, target, follow(store, record), condition):
                return False
        elif field in record and not field.endswith("Id"):
            if not compare(record[field], condition, field):
                return False
        else:
            raise input_error(f"the sandbox cannot filter {type_name} on `{field}`")
    return True


def _relation_matches(
    store: LinearStore, target: str, related: Any, condition: Mapping[str, Any]
) -> bool:
    if isinstance(related, list):  # a collection: some / every / none / length

        def each(f: Mapping[str, Any]) -> list[bool]:
            return [matches(store, target, r, f) for r in related]

        for operator, operand in condition.items():
            if operand is None:
                continue
            if operator == "some" and not any(each(operand)):
                return False
            if operator == "every" and not all(each(operand)):
                return False
            if operator == "none" and any(each(operand)):
                return False
            if operator == "length" and not compare(float(len(related)), operand, "length"):
                return False
            if operator not in {"some", "every", "none", "length"}:
                raise input_error(f"the sandbox cannot filter a {target} collection on {operator}")
        return True
    if related is None:  # a nullable relation: only `null: true` matches
        return condition.get("null") is True
    rest = {k: v for k, v in condition.items() if k != "null"}
    if condition.get("null") is True:
        return False
    return matches(store, target, related, rest)


def compare(value: Any, condition: Mapping[str, Any], field: str) -> bool:
    """Apply a comparator object (`{gte: …}`, `{in: […]}`…) to one value."""
    for operator, operand in condition.items():
        if operand is None and operator != "null":
            continue
        if field in TIME_FIELDS and operator != "null":
            operand = [_time(o) for o in operand] if isinstance(operand, list) else _time(operand)
        if not _apply(operator, value, operand):
            return False
    return True


def _apply(operator: str, value: Any, operand: Any) -> bool:
    text = str(value).casefold() if value is not None else None
    match operator:
        case "null":
            return (value is None) == bool(operand)
        case "eq":
            return value == operand
        case "neq":
            return value != operand
        case "in":
            return value in operand
        case "nin":
            return value not in operand
        case "gt" | "gte" | "lt" | "lte":
            if value is None:
                return False
            return {
                "gt": value > operand,
                "gte": value >= operand,
                "lt": value < operand,
                "lte": value <= operand,
            }[operator]
        case "eqIgnoreCase":
            return text == str(operand).casefold()
        case "contains":
            return value is not None and str(operand) in str(value)
        case "containsIgnoreCase":
            return text is not None and str(operand).casefold() in text
        case "startsWith":
            return value is not None and str(value).startswith(str(operand))
    raise input_error(f"the sandbox does not support the comparator `{operator}`")


def _time(value: Any) -> str:
    """A filter's date-time in the store's own text format (durations are not supported)."""
    try:
        moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise input_error(
            f"the sandbox takes ISO 8601 date-times in filters, not {value!r}"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return iso(int(moment.timestamp() * 1000))


# --- Relay connections ---------------------------------------------------------------------


def encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        sort_value, record_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, TypeError):
        raise input_error(f"invalid pagination cursor {cursor!r}") from None
    return str(sort_value), str(record_id)


def _page_arguments(args: Mapping[str, Any]) -> tuple[int | None, int | None]:
    first, last = args.get("first"), args.get("last")
    for name, value in (("first", first), ("last", last)):
        if value is not None and not 0 <= value <= MAX_PAGE:
            raise input_error(f"`{name}` must be between 0 and {MAX_PAGE}, not {value}")
    if first is None and last is None:
        first = DEFAULT_PAGE
    return first, last


def connection(
    records: list[Record], keys: list[tuple[str, str]], args: Mapping[str, Any]
) -> Record:
    """A Relay page of `records`, sorted descending; `keys` are their sort keys, ascending.

    `records[i]` has key `keys[-1 - i]`: the list is presented most recent first.
    """
    first, last = _page_arguments(args)
    low, high = 0, len(keys)  # the window, as indices into the ascending `keys`
    if args.get("after"):
        high = bisect.bisect_left(keys, decode_cursor(args["after"]))
    if args.get("before"):
        low = bisect.bisect_right(keys, decode_cursor(args["before"]))
    window = max(0, high - low)
    has_next = has_previous = False
    if first is not None and window > first:
        low, has_next = high - first, True
    if last is not None and max(0, high - low) > last:
        high, has_previous = low + last, True
    total = len(keys)
    nodes = records[total - high : total - low] if high > low else []
    page_keys = keys[low:high][::-1]
    edges = [{"node": n, "cursor": encode_cursor(k)} for n, k in zip(nodes, page_keys, strict=True)]
    return {
        "nodes": nodes,
        "edges": edges,
        "pageInfo": {
            "hasNextPage": has_next,
            "hasPreviousPage": has_previous,
            "startCursor": edges[0]["cursor"] if edges else None,
            "endCursor": edges[-1]["cursor"] if edges else None,
        },
    }


def list_connection(records: list[Record], args: Mapping[str, Any]) -> Record:
    """A Relay page over a short related list (labels, teams…), kept in its own order."""
    total = len(records)
    keys = [(f"{n:08d}", str(records[total - 1 - n].get("id"))) for n in range(total)]
    return connection(records, keys, args)


class ResultCache:
    """Sorted query results by (query shape, data version), so pages reuse one sort."""

    def __init__(self, size: int = 16) -> None:
        self.size = size
        self._entries: OrderedDict[str, tuple[list[Record], list[tuple[str, str]]]] = OrderedDict()

    def sorted_records(
        self, store: LinearStore, type_name: str, table: dict[str, Record], args: Mapping[str, Any]
    ) -> tuple[list[Record], list[tuple[str, str]]]:
        order = args.get("orderBy") or "createdAt"
        include_archived = bool(args.get("includeArchived"))
        filter_ = args.get("filter") or {}
        shape = json.dumps(
            [type_name, order, include_archived, filter_, store.version], sort_keys=True
        )
        if shape in self._entries:
            self._entries.move_to_end(shape)
            return self._entries[shape]
        rows = [
            r
            for r in table.values()
            if (include_archived or not r.get("archivedAt"))
            and (not filter_ or matches(store, type_name, r, filter_))
        ]
        rows.sort(key=lambda r: (r[order], r["id"]))
        keys = [(r[order], r["id"]) for r in rows]
        entry = (rows[::-1], keys)
        self._entries[shape] = entry
        if len(self._entries) > self.size:
            self._entries.popitem(last=False)
        return entry


# --- the resolvers ------------------------------------------------------------------------


class Context:
    """What each resolver sees: the store and the result cache."""

    def __init__(self, store: LinearStore, cache: ResultCache) -> None:
        self.store = store
        self.cache = cache


def _root_list(type_name: str, table: str) -> Callable[..., Record]:
    def resolve(_: Any, info: GraphQLResolveInfo, **args: Any) -> Record:
        context: Context = info.context
        rows = getattr(context.store, table)
        records, keys = context.cache.sorted_records(context.store, type_name, rows, args)
        return connection(records, keys, args)

    return resolve


def _root_one(type_name: str, table: str) -> Callable[..., Record]:
    def resolve(_: Any, info: GraphQLResolveInfo, id: str) -> Record:
        store: LinearStore = info.context.store
        rows = getattr(store, table)
        if id in rows:
            return rows[id]
        if type_name == "Team":
            try:
                return store.team(id)
            except KeyError:
                pass
        raise input_error(f"Entity not found: {type_name} - Could not find referenced {type_name}.")

    return resolve


def _comment_create(_: Any, info: GraphQLResolveInfo, input: Mapping[str, Any]) -> Record:
    store: LinearStore = info.context.store
    if not input.get("issueId") or not input.get("body"):
        raise input_error("commentCreate needs an issueId and a body")
    try:
        comment = store.add_comment(input["issueId"], input["body"])
    except KeyError:
        raise input_error("Entity not found: Issue - Could not find referenced Issue.") from None
    return {"success": True, "lastSyncId": float(store.version), "comment": comment}


def _comment_update(
    _: Any,
    info: GraphQLResolveInfo,
    id: str,
    input: Mapping[str, Any],
    **__: Any,
) -> Record:
    store: LinearStore = info.context.store
    if id not in store.comments:
        raise input_error("Entity not found: Comment - Could not find referenced Comment.")
    comment = store.edit_comment(id, input.get("body") or "")
    return {"success": True, "lastSyncId": float(store.version), "comment": comment}


ROOT_RESOLVERS: dict[tuple[str, str], Callable[..., Any]] = {
    ("Query", "issues"): _root_list("Issue", "issues"),
    ("Query", "projects"): _root_list("Project", "projects"),
    ("Query", "initiatives"): _root_list("Initiative", "initiatives"),
    ("Query", "teams"): _root_list("Team", "teams"),
    ("Query", "issueLabels"): _root_list("IssueLabel", "labels"),
    ("Query", "issue"): _root_one("Issue", "issues"),
    ("Query", "project"): _root_one("Project", "projects"),
    ("Query", "initiative"): _root_one("Initiative", "initiatives"),
    ("Query", "team"): _root_one("Team", "teams"),
    ("Query", "viewer"): lambda _, info: info.context.store.viewer,
    ("Query", "organization"): lambda _, info: info.context.store.organization,
    ("Mutation", "commentCreate"): _comment_create,
    ("Mutation", "commentUpdate"): _comment_update,
}


def field_resolver(source: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
    """Dispatch to a resolver above, to a relation, or to the record's own field."""
    key = (info.parent_type.name, info.field_name)
    if key in ROOT_RESOLVERS:
        return ROOT_RESOLVERS[key](source, info, **args)
    if key in RELATIONS and isinstance(source, dict):
        target, follow = RELATIONS[key]
        related = follow(info.context.store, source)
        if not isinstance(related, list):
            return related
        if filter_ := args.get("filter"):
            related = [r for r in related if matches(info.context.store, target, r, filter_)]
        return list_connection(related, args)
    if info.parent_type.name == "Project" and info.field_name == "state":
        return source["statusType"]  # the deprecated string form of the status
    return default_field_resolver(source, info, **args)
