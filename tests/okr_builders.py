"""Small builders that write OKRs and tracker items straight into the store, for tests."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy.orm import Session

from sync.store.models import (
    Bet,
    BetKeyResult,
    Cycle,
    KeyResult,
    NorthStar,
    Objective,
    Strategy,
    TrackerItem,
)

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Org:
    """Adds OKR objects and items to `session` (flushed, not committed)."""

    session: Session
    cycles: dict[str, Cycle] = field(default_factory=dict)
    objectives: dict[str, Objective] = field(default_factory=dict)
    krs: dict[str, KeyResult] = field(default_factory=dict)
    bets: dict[str, Bet] = field(default_factory=dict)
    items: dict[str, TrackerItem] = field(default_factory=dict)

    def _add(self, row: Any) -> Any:
        self.session.add(row)
        self.session.flush()
        return row

    def north_star(self, name: str = "Weekly active teams") -> NorthStar:
        return self._add(NorthStar(name=name, metric="weekly_active_teams"))

    def strategy(self, key: str, title: str = "") -> Strategy:
        return self._add(Strategy(key=key, title=title or key))

    def cycle(self, key: str, start: date, end: date) -> Cycle:
        self.cycles[key] = self._add(Cycle(key=key, start=start, end=end))
        return self.cycles[key]

    def objective(
        self, key: str, cycle: str, *, strategy: Strategy | None = None, team: str | None = None
    ) -> Objective:
        row = Objective(
            key=key,
            title=f"Objective {key}",
            cycle_id=self.cycles[cycle].id,
            strategy_id=strategy.id if strategy else None,
            team=team,
            position=len(self.objectives),
        )
        self.objectives[key] = self._add(row)
        return row

    def kr(self, key: str, objective: str) -> KeyResult:
        row = KeyResult(
            key=key,
            title=f"Key result {key}",
            objective_id=self.objectives[objective].id,
            position=len(self.krs),
        )
        self.krs[key] = self._add(row)
        return row

    def bet(
        self,
        key: str,
        krs: Mapping[str, float | None] | Sequence[str] = (),
        refs: Sequence[str] = (),
    ) -> Bet:
        row = self._add(Bet(key=key, title=f"Bet {key}", refs=list(refs), position=len(self.bets)))
        weights = krs if isinstance(krs, Mapping) else dict.fromkeys(krs)
        for position, (kr, weight) in enumerate(weights.items()):
            self._add(
                BetKeyResult(
                    bet_id=row.id,
                    key_result_id=self.krs[kr].id,
                    weight=weight,
                    position=position,
                )
            )
        self.bets[key] = row
        return row

    def item(
        self,
        key: str,
        *,
        source: str = "jira",
        type: str = "story",
        status: str = "todo",
        parent: str | None = None,
        parent_ref: str | None = None,
        labels: Sequence[str] = (),
        estimate: float | None = None,
        time_spent: int | None = None,
        resolved: datetime | None = None,
        deleted: bool = False,
        project: str | None = None,
        title: str | None = None,
        **facts: Any,
    ) -> TrackerItem:
        parent_row = self.items[parent] if parent else None
        row = TrackerItem(
            source=source,
            external_id=f"id-{key}",
            key=key,
            url=f"https://{source}.example/{key}",
            title=title or f"Ticket {key}",
            type=type,
            status=status,
            status_category=status,
            labels=list(labels),
            parent_ref=parent_row.external_id if parent_row else parent_ref,
            parent_key=parent_row.key if parent_row else None,
            container_refs=list(facts.pop("container_refs", ())),
            linked_urls=list(facts.pop("linked_urls", ())),
            linked_keys=list(facts.pop("linked_keys", ())),
            project=project or key.split("-")[0],
            estimate=estimate,
            time_spent_seconds=time_spent,
            created_at=EPOCH,
            updated_at=EPOCH,
            resolved_at=resolved,
            deleted=deleted,
            **facts,
        )
        self.items[key] = self._add(row)
        return row
