"""The reports API: effort per objective, KR, bet or team; orphan rates; trends.

Every report is for one cycle (by key; by default the cycle today falls in, in
`LADDER_TIMEZONE`) and one measure: `points`, `count` or `time` (seconds).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from service.deps import AppSettings, DbSession, Viewer
from service.settings import Settings
from sync.reports.effort import GroupBy, Measure, cycle_window, effort_report, find_cycle
from sync.reports.orphans import orphan_rates
from sync.reports.snapshots import trend
from sync.store.models import Cycle

router = APIRouter(prefix="/api/reports", tags=["reports"])

CycleKey = Annotated[
    str | None, Query(description="Cycle key, e.g. 2026-Q4; default: the current cycle.")
]


def _cycle(session: Session, settings: Settings, key: str | None) -> Cycle:
    return find_cycle(session, key, datetime.now(settings.tz).date())


class TotalsOut(BaseModel):
    done: float = Field(description="Done with a resolution time inside the cycle.")
    in_progress: float
    todo: float
    total: float
    share: float = Field(description="Of the grand total: rows + orphan + non_okr.")


class RowOut(TotalsOut):
    key: str | None = Field(description="null for effort that reaches no row of this grouping.")
    title: str


class EffortOut(BaseModel):
    """Where the cycle's effort went. No item's effort is counted twice."""

    cycle: str
    measure: Measure
    by: GroupBy
    rows: list[RowOut]
    orphan: TotalsOut
    non_okr: TotalsOut
    unestimated: int = Field(description="Work items counted here that carry no estimate.")
    alignment: float = Field(description="Aligned / (aligned + orphan + non_okr), 0..1.")


@router.get(
    "/effort",
    response_model=EffortOut,
    dependencies=[Viewer],
    responses={200: {"content": {"text/csv": {}}, "description": "JSON, or CSV with format=csv"}},
)
def get_effort(
    session: DbSession,
    settings: AppSettings,
    cycle: CycleKey = None,
    measure: Measure = "points",
    by: GroupBy = "objective",
    format: Literal["json", "csv"] = "json",
) -> Any:
    """Effort of the cycle per objective, key result, bet or team, with orphan and non-OKR
    effort, unestimated work items, and alignment."""
    report = effort_report(session, _cycle(session, settings, cycle), measure, by, settings.tz)
    if format == "csv":
        filename = f"effort-{report.cycle}-{measure}-by-{by}.csv"
        return Response(
            report.as_csv(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="{filename}"'},
        )
    return report.as_dict()


class TeamRateOut(BaseModel):
    team: str | None = Field(description="Jira project key or Linear team key.")
    effort: float = Field(description="All the team's effort in the cycle.")
    orphan_effort: float
    rate: float = Field(description="orphan_effort / effort, 0..1.")
    items: int = Field(description="Items counted in the cycle.")
    orphans: int


class OrphanRatesOut(BaseModel):
    """The orphaned share of each team's effort in the cycle, highest first."""

    cycle: str
    measure: Measure
    teams: list[TeamRateOut]


@router.get("/orphans", response_model=OrphanRatesOut, dependencies=[Viewer])
def get_orphan_rates(
    session: DbSession, settings: AppSettings, cycle: CycleKey = None, measure: Measure = "points"
) -> OrphanRatesOut:
    """Orphan rate per team: how much of each team's effort serves no objective."""
    found = _cycle(session, settings, cycle)
    rates = orphan_rates(session, cycle_window(found, settings.tz), measure)
    return OrphanRatesOut(
        cycle=found.key,
        measure=measure,
        teams=[TeamRateOut(**vars(rate), rate=rate.rate) for rate in rates],
    )


class ObjectiveRefOut(BaseModel):
    key: str
    title: str


class TrendPointOut(BaseModel):
    day: date
    taken_at: datetime
    alignment: float
    aligned: float
    orphan: float
    non_okr: float
    unestimated: int
    objectives: dict[str, float] = Field(description="Effort per objective key.")


class TrendOut(BaseModel):
    """Alignment and effort per objective over the cycle, one point per day."""

    cycle: str
    measure: Measure
    objectives: list[ObjectiveRefOut]
    points: list[TrendPointOut]


@router.get("/trend", response_model=TrendOut, dependencies=[Viewer])
def get_trend(
    session: DbSession, settings: AppSettings, cycle: CycleKey = None, measure: Measure = "points"
) -> TrendOut:
    """The cycle's daily snapshots: taken after every sync and once a day."""
    found = trend(session, _cycle(session, settings, cycle), measure)
    return TrendOut(
        cycle=found.cycle,
        measure=found.measure,
        objectives=[ObjectiveRefOut(key=key, title=title) for key, title in found.objectives],
        points=[
            TrendPointOut(
                day=point.day, taken_at=point.taken_at, alignment=point.alignment, **point.totals
            )
            for point in found.points
        ],
    )
