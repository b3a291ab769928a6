"""The items API: tickets with their matches, their traces, manual links, and orphans.

Readers need a viewer token; manual links need an editor token. The rules live in sync/
(listing, matching, orphans, trace); this module translates HTTP to calls and back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field, model_validator

from service.api.common import Cursor, Limit, Page
from service.deps import AppSettings, DbSession, Editor, Viewer
from service.trackers import match_rules
from sync.matching.item import TargetKind
from sync.matching.rematch import find_target, set_decision
from sync.reports.effort import Measure, cycle_window, find_cycle
from sync.reports.items import ItemView, find_item, list_items, views
from sync.reports.orphans import list_orphans
from sync.reports.trace import trace_item

router = APIRouter(prefix="/api", tags=["items"])

Source = Literal["jira", "linear"]


class MatchOut(BaseModel):
    """A bet or key result the item serves, its share of the item's effort, and why."""

    kind: Literal["bet", "kr"]
    key: str
    title: str
    weight: float = Field(description="Share of the item's effort; an item's weights add to 1.")
    origin: str = Field(description="label, link, ref, manual or inherited.")
    detail: str = Field(description='e.g. "inherited from ABC-12, which has label bet:x".')


class ItemOut(BaseModel):
    """A tracker item as Ladder stores it, with its matching state and matches."""

    source: str
    external_id: str
    key: str
    url: str | None
    type: str
    title: str
    status: str | None
    status_category: str
    labels: list[str]
    parent_key: str | None
    project: str | None = Field(description="Jira project key or Linear team key.")
    assignee: str | None
    estimate: float | None
    time_spent_seconds: int | None
    created_at: datetime | None
    updated_at: datetime | None
    resolved_at: datetime | None
    deleted: bool
    state: Literal["matched", "non_okr", "orphan"] | None = Field(
        description="null until the item is first matched."
    )
    orphan: bool = Field(description="No match, no non-OKR label, not deleted or canceled.")
    matches: list[MatchOut]


def item_out(view: ItemView) -> ItemOut:
    item = view.item
    return ItemOut(
        source=item.source,
        external_id=item.external_id,
        key=item.key,
        url=item.url,
        type=item.type,
        title=item.title,
        status=item.status,
        status_category=item.status_category,
        labels=list(item.labels or ()),
        parent_key=item.parent_key,
        project=item.project,
        assignee=item.assignee,
        estimate=item.estimate,
        time_spent_seconds=item.time_spent_seconds,
        created_at=item.created_at,
        updated_at=item.updated_at,
        resolved_at=item.resolved_at,
        deleted=item.deleted,
        state=view.state,
        orphan=view.is_orphan,
        matches=[MatchOut(**vars(match)) for match in view.matches],
    )


@router.get("/items", response_model=Page[ItemOut], dependencies=[Viewer])
def get_items(
    session: DbSession,
    source: Source | None = None,
    orphan: bool | None = None,
    bet: Annotated[str | None, Query(description="Items serving this bet (key).")] = None,
    kr: Annotated[str | None, Query(description="Items serving this KR (key).")] = None,
    objective: Annotated[str | None, Query(description="Items serving it (key).")] = None,
    q: Annotated[str | None, Query(description="Text in the title or key.")] = None,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[ItemOut]:
    """Tracker items with their matches, filtered; cursor-paginated."""
    found, next_cursor = list_items(
        session,
        source=source,
        orphan=orphan,
        bet=bet,
        kr=kr,
        objective=objective,
        q=q,
        limit=limit,
        cursor=cursor,
    )
    return Page(items=[item_out(view) for view in found], next_cursor=next_cursor)


class StepOut(BaseModel):
    """A rung of the ladder; `origin` and `detail` say how it connects to the next rung."""

    level: Literal["item", "bet", "key_result", "objective", "strategy", "north_star"]
    key: str | None
    title: str
    origin: str
    detail: str
    url: str | None


class LadderOut(BaseModel):
    weight: float = Field(description="Share of the item's effort that takes this path.")
    steps: list[StepOut]


class TraceOut(BaseModel):
    """How an item ladders up to the north star (one ladder per path), or why it does not."""

    item: ItemOut
    ladders: list[LadderOut]
    explanation: str


@router.get("/items/{source}/{key}/trace", response_model=TraceOut, dependencies=[Viewer])
def get_trace(source: Source, key: str, session: DbSession, settings: AppSettings) -> TraceOut:
    """The ladder from the item up to the north star, each step with its origin."""
    found = trace_item(session, find_item(session, source, key), match_rules(settings))
    return TraceOut(
        item=item_out(found.view),
        ladders=[
            LadderOut(weight=ladder.weight, steps=[StepOut(**vars(s)) for s in ladder.steps])
            for ladder in found.ladders
        ],
        explanation=found.explanation,
    )


class LinkIn(BaseModel):
    """A bet or a key result, by key (exactly one)."""

    bet: str | None = None
    kr: str | None = None
    weight: float | None = Field(
        default=None, gt=0, description="Relative weight when the item serves several (links)."
    )
    author: str | None = Field(default=None, max_length=200, description="Who decided.")

    @model_validator(mode="after")
    def _one_target(self) -> LinkIn:
        if (self.bet is None) == (self.kr is None):
            raise ValueError("give exactly one of 'bet' and 'kr'")
        return self

    def target(self) -> tuple[TargetKind, str]:
        return ("bet", self.bet) if self.bet is not None else ("kr", self.kr or "")


def _decide(
    source: Source,
    key: str,
    body: LinkIn,
    action: Literal["link", "unlink"],
    session: DbSession,
    settings: AppSettings,
) -> ItemOut:
    item = find_item(session, source, key)
    target = find_target(session, *body.target())
    weight = body.weight if action == "link" else None
    rules = match_rules(settings)
    set_decision(session, item.id, target, action, rules, weight=weight, author=body.author)
    return item_out(views(session, [item])[0])


@router.post("/items/{source}/{key}/links", response_model=ItemOut, dependencies=[Editor])
def link_item(
    source: Source, key: str, body: LinkIn, session: DbSession, settings: AppSettings
) -> ItemOut:
    """Link the item to a bet or KR by hand; the link survives later syncs.

    With `weight`, the item's effort splits between its bets and KRs by weight.
    """
    return _decide(source, key, body, "link", session, settings)


@router.delete("/items/{source}/{key}/links", response_model=ItemOut, dependencies=[Editor])
def unlink_item(
    source: Source, key: str, body: LinkIn, session: DbSession, settings: AppSettings
) -> ItemOut:
    """Unlink the item from a bet or KR: overrides labels, links and inheritance, and
    survives later syncs. Link it again to undo."""
    return _decide(source, key, body, "unlink", session, settings)


class OrphanOut(ItemOut):
    effort: float = Field(
        description="Its effort in the measure; with roots_only, that of its orphan subtree."
    )


@router.get("/orphans", response_model=Page[OrphanOut], dependencies=[Viewer])
def get_orphans(
    session: DbSession,
    settings: AppSettings,
    cycle: Annotated[
        str | None, Query(description="Also list orphans done inside this cycle (key).")
    ] = None,
    measure: Measure = "points",
    source: Source | None = None,
    project: Annotated[
        str | None, Query(description="Jira project key or Linear team key.")
    ] = None,
    assignee: str | None = None,
    status_category: Literal["todo", "in_progress", "done"] | None = None,
    roots_only: Annotated[
        bool, Query(description="Only the topmost orphans, with their subtree's effort.")
    ] = False,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Page[OrphanOut]:
    """Open orphan items (and, with `cycle`, those done inside it), largest effort first."""
    window = None
    if cycle is not None:
        window = cycle_window(
            find_cycle(session, cycle, datetime.now(settings.tz).date()), settings.tz
        )
    found, next_cursor = list_orphans(
        session,
        window=window,
        measure=measure,
        source=source,
        project=project,
        assignee=assignee,
        status_category=status_category,
        roots_only=roots_only,
        limit=limit,
        cursor=cursor,
    )
    return Page(
        items=[
            OrphanOut(**item_out(orphan.view).model_dump(), effort=orphan.effort)
            for orphan in found
        ],
        next_cursor=next_cursor,
    )
