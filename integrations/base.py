"""What every tracker adapter offers, and the normalised item they all map to.

integrations/ knows no database: adapters fetch raw payloads over HTTP, map them with pure
functions, verify and parse webhooks, and post comments. The sync engine does the rest.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol

ItemType = Literal["epic", "story", "task", "bug", "subtask", "project", "other"]
StatusCategory = Literal["todo", "in_progress", "done", "canceled"]
CONTAINER_TYPES: frozenset[str] = frozenset({"epic", "project"})
WebhookKind = Literal["upsert", "refresh", "delete", "ignored"]


@dataclass(frozen=True, slots=True)
class NormalisedItem:
    """A tracker object in Ladder's terms. `external_id` is immutable; `key` may change."""

    source: str
    external_id: str
    key: str
    title: str
    type: ItemType
    status: str | None
    status_category: StatusCategory
    updated_at: datetime
    url: str | None = None
    labels: tuple[str, ...] = ()
    parent_ref: str | None = None  # external id of the parent (epic, story, Linear project)
    parent_key: str | None = None
    container_refs: tuple[str, ...] = ()  # e.g. "jira:project:PAY", "linear:initiative:<id>"
    linked_urls: tuple[str, ...] = ()
    linked_keys: tuple[str, ...] = ()
    project: str | None = None  # Jira project key or Linear team key
    estimate: float | None = None
    time_spent_seconds: int | None = None
    assignee: str | None = None
    created_at: datetime | None = None
    resolved_at: datetime | None = None
    deleted: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of raw payloads, and how many HTTP requests it cost."""

    items: list[dict[str, Any]]
    requests: int = 1


@dataclass(frozen=True, slots=True)
class IdPage:
    """One page of a census: the external ids of in-scope items, and its request cost."""

    ids: list[str]
    requests: int = 1


@dataclass(frozen=True, slots=True)
class WebhookEvent:
    """A verified webhook delivery, parsed into what the inbox needs to act on it.

    `kind` says what to do: `upsert` (`payload` is the item's raw representation, complete
    enough for `normalise`), `refresh` (re-fetch `external_id` and `related_ids` with
    `get_item`: a link changed or the payload is partial), `delete` (`external_id` is gone),
    or `ignored` (nothing Ladder tracks changed). `event_type` is the tracker's own name.
    """

    source: str
    delivery_id: str
    kind: WebhookKind
    external_id: str | None
    payload: dict[str, Any]
    actor_id: str | None = None
    related_ids: tuple[str, ...] = ()
    event_type: str = ""


class WebhookRejected(Exception):
    """A webhook that fails verification; `status` is the HTTP answer to give."""

    def __init__(self, message: str, status: int = 401) -> None:
        super().__init__(message)
        self.status = status


class TrackerError(Exception):
    """A tracker call that failed for good, after any retries: the run fails, its cursor stays.

    `retryable` says whether the same call may succeed later (rate limit, outage, timeout)
    or needs a person first (credentials, a rejected query); `status` is the HTTP status.
    """

    def __init__(self, message: str, *, retryable: bool = False, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class TrackerAdapter(Protocol):
    """The small capability interface each tracker implements."""

    source: str

    def partitions(self) -> Sequence[str | None]:
        """Disjoint slices of the scope (projects, teams, creation-time ranges) to fetch
        concurrently; None is the whole scope, unsliced."""
        ...

    def iter_pages(self, since: datetime | None, partition: str | None = None) -> Iterator[Page]:
        """Raw items page by page, oldest update first; `since=None` is the full scope.

        With `partition`, only that slice of the scope.
        """
        ...

    def iter_ids(self) -> Iterator[IdPage]:
        """The ids of every in-scope item, in cheap id-only pages (for finding deletions)."""
        ...

    def get_item(self, external_id: str) -> dict[str, Any] | None:
        """The raw payload of one item, or None when it no longer exists."""
        ...

    def normalise(self, raw: Mapping[str, Any]) -> NormalisedItem:
        """Pure mapping of one raw payload."""
        ...

    def verify_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> None:
        """Raise WebhookRejected unless the delivery is authentic."""
        ...

    def parse_webhook(self, headers: Mapping[str, str], raw_body: bytes) -> WebhookEvent:
        """Parse a verified delivery."""
        ...

    def post_comment(self, external_id: str, text: str) -> str:
        """Post a comment; return the tracker's comment id."""
        ...

    def update_comment(self, external_id: str, comment_id: str, text: str) -> None:
        """Replace the text of a comment posted earlier on item `external_id`."""
        ...

    def find_comment(self, external_id: str, marker: str) -> str | None:
        """The id of a comment on item `external_id` whose text holds `marker`, if any."""
        ...

    def check(self) -> dict[str, Any]:
        """Reach the tracker with the configured credentials; describe what answered."""
        ...

    def close(self) -> None:
        """Release the HTTP connections; whoever built the adapter closes it when done."""
        ...
