"""The data of `benchmarks/traceability.py`: a realistic OKR tree and a generated backlog.

Four cycles with 12 objectives and 36 key results each, and 150 bets whose refs claim 75% of
the Jira epics, 80% of the Linear projects, a Product Discovery idea each and, for some, a
Linear initiative. The backlog, loaded with COPY: Jira projects of epics, stories, tasks,
bugs and sub-tasks (70% of the items), then Linear teams of projects, issues and
sub-issues, created over three years, with labels (bet and KR labels, non-OKR labels, a
typo), links to ideas, estimates and time spent. Deterministic for a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

CYCLES = [
    ("2026-Q1", date(2026, 1, 1), date(2026, 3, 31)),
    ("2026-Q2", date(2026, 4, 1), date(2026, 6, 30)),
    ("2026-Q3", date(2026, 7, 1), date(2026, 9, 30)),
    ("2026-Q4", date(2026, 10, 1), date(2026, 12, 31)),
]
CURRENT = "2026-Q4"
HISTORY_START = datetime(2024, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 11, 20, tzinfo=UTC)
ITEM_COLUMNS = [
    *("source", "external_id", "key", "url", "title", "type", "status", "status_category"),
    *("labels", "parent_ref", "parent_key", "container_refs", "linked_urls", "linked_keys"),
    *("project", "estimate", "time_spent_seconds", "assignee", "created_at", "updated_at"),
    *("resolved_at", "deleted", "first_seen_at", "synced_at", "raw"),
]
NOISE_LABELS = ["frontend", "backend", "tech-debt", "customer", "security", "mobile-app"]


def catalogue(
    cursor: psycopg.Cursor[Any],
    rng: random.Random,
    epics: list[str],
    projects: list[tuple[str, str]],
    initiatives: list[str],
) -> list[str]:
    """Cycles, objectives, KRs and 150 bets; returns the bet keys."""
    cursor.execute("INSERT INTO north_star (name, metric) VALUES ('Weekly active teams', 'wat')")
    for i in range(3):
        cursor.execute(
            "INSERT INTO strategies (key, title, position) VALUES (%s, %s, %s)",
            (f"S{i + 1}", f"Strategy {i + 1}", i),
        )
    kr_ids: dict[str, list[int]] = {}
    for position, (key, start, end) in enumerate(CYCLES):
        cursor.execute(
            'INSERT INTO cycles (key, start, "end", position) VALUES (%s, %s, %s, %s) RETURNING id',
            (key, start, end, position),
        )
        (cycle_id,) = cursor.fetchone()  # type: ignore[misc]
        kr_ids[key] = []
        for o in range(12):
            cursor.execute(
                "INSERT INTO objectives (key, title, cycle_id, strategy_id, team, status, position)"
                " VALUES (%s, %s, %s, (SELECT id FROM strategies WHERE key = %s), %s, 'active', %s)"
                " RETURNING id",
                (
                    f"{key}-O{o + 1}",
                    f"Objective {o + 1} of {key}",
                    cycle_id,
                    f"S{o % 3 + 1}",
                    f"team-{o % 6}",
                    o,
                ),
            )
            (objective_id,) = cursor.fetchone()  # type: ignore[misc]
            for k in range(3):
                cursor.execute(
                    "INSERT INTO key_results (key, objective_id, title, direction, position)"
                    " VALUES (%s, %s, %s, 'increase', %s) RETURNING id",
                    (f"{key}-KR-{o + 1}.{k + 1}", objective_id, f"Key result {o + 1}.{k + 1}", k),
                )
                kr_ids[key].append(cursor.fetchone()[0])  # type: ignore[index]
    # 75% of the epics and 80% of the Linear projects belong to a bet; the rest of the work
    # is aligned through labels, inheritance or not at all.
    claimed_epics = rng.sample(epics, int(len(epics) * 0.75))
    claimed_projects = rng.sample(projects, int(len(projects) * 0.8))
    bets = []
    for b in range(150):
        key = f"bet-{b:03d}"
        refs = [f"jira:{epic}" for epic in claimed_epics[b::150]] + [f"jira:PD-{b}"]
        refs += [f"linear:project:{slug}" for _, slug in claimed_projects[b::150]]
        if b % 10 == 0:
            refs.append(f"linear:initiative:{initiatives[b // 10 % len(initiatives)]}")
        cursor.execute(
            "INSERT INTO bets (key, title, status, refs, position) VALUES (%s, %s, 'now', %s, %s)"
            " RETURNING id",
            (key, f"Bet {b}", json.dumps(refs), b),
        )
        (bet_id,) = cursor.fetchone()  # type: ignore[misc]
        cycle = CURRENT if b < 120 else CYCLES[2][0]
        for position, kr in enumerate(rng.sample(kr_ids[cycle], rng.choice([1, 1, 2]))):
            cursor.execute(
                "INSERT INTO bet_key_results (bet_id, key_result_id, weight, position)"
                " VALUES (%s, %s, %s, %s)",
                (bet_id, kr, rng.choice([None, 1.0, 2.0]), position),
            )
        bets.append(key)
    return bets


def lifecycle(rng: random.Random) -> tuple[str, datetime, datetime | None, bool]:
    """(status category, created, resolved, deleted) over three years of history."""
    created = HISTORY_START + timedelta(
        seconds=rng.random() * (NOW - HISTORY_START).total_seconds()
    )
    recent = created > NOW - timedelta(days=120)
    roll = rng.random()
    if recent:
        status = (
            "done"
            if roll < 0.4
            else "in_progress"
            if roll < 0.6
            else "todo"
            if roll < 0.95
            else "canceled"
        )
    else:
        status = (
            "done"
            if roll < 0.82
            else "canceled"
            if roll < 0.9
            else "todo"
            if roll < 0.97
            else "in_progress"
        )
    resolved = None
    if status in ("done", "canceled"):
        resolved = min(created + timedelta(days=rng.uniform(1, 60)), NOW)
    return status, created, resolved, rng.random() < 0.01


class Backlog:
    """Generates rows for COPY: Jira projects first, then Linear teams."""

    def __init__(self, items: int, rng: random.Random) -> None:
        self.rng = rng
        self.total = items
        self.jira_projects = [f"{a}{b}" for a in "PQRSTUVW" for b in "ABCDE"]  # 40
        self.teams = ["ENG", "OPS", "WEB", "APP", "DATA", "INFRA", "CORE", "GROW", "PAY", "ML"]
        jira_items = int(items * 0.7)
        self.per_project = jira_items // len(self.jira_projects)
        self.per_team = (items - self.per_project * len(self.jira_projects)) // len(self.teams)
        # Epics and Linear projects are known up front: bets name them in their refs.
        self.epics_per_project = max(1, self.per_project // 50)
        self.epics = [
            f"{p}-{n + 1}" for p in self.jira_projects for n in range(self.epics_per_project)
        ]
        self.projects_per_team = max(1, self.per_team // 300)
        self.linear_projects = [
            (f"lp-{t}-{n}", f"{t.lower()}-project-{n}")
            for t in self.teams
            for n in range(self.projects_per_team)
        ]
        self.initiatives = [f"Initiative {n}" for n in range(8)]
        self.bets: list[str] = []

    def labels(self) -> list[str]:
        rng, labels = self.rng, []
        roll = rng.random()
        if roll < 0.06:
            labels.append(f"bet:{rng.choice(self.bets)}")
        elif roll < 0.08:
            labels.append(f"kr:{CURRENT}-KR-{rng.randint(1, 12)}.{rng.randint(1, 3)}")
        elif roll < 0.13:
            labels.append(rng.choice(["ktlo", "no-okr"]))
        elif roll < 0.135:
            labels.append("bet:no-such-bet")
        if rng.random() < 0.3:
            labels.append(rng.choice(NOISE_LABELS))
        return labels

    def row(
        self,
        source: str,
        external_id: str,
        key: str,
        type_: str,
        project: str,
        *,
        parent: tuple[str, str] | None = None,
        labels: list[str] | None = None,
        containers: list[str] | None = None,
        linked_keys: list[str] | None = None,
        estimate: float | None = None,
    ) -> tuple[Any, ...]:
        status, created, resolved, deleted = lifecycle(self.rng)
        spent = int(self.rng.uniform(0.5, 40) * 3600) if self.rng.random() < 0.6 else None
        return (
            source,
            external_id,
            key,
            f"https://{source}.example.com/browse/{key}",
            f"{type_.title()} {key}",
            type_,
            status.replace("_", " ").title(),
            status,
            json.dumps(labels or []),
            parent[0] if parent else None,
            parent[1] if parent else None,
            json.dumps(containers or []),
            json.dumps([]),
            json.dumps(linked_keys or []),
            project,
            estimate,
            spent,
            f"user{self.rng.randint(1, 400)}@example.com",
            created,
            resolved or created,
            resolved if status == "done" else None,
            deleted,
            created,
            NOW,
            "{}",
        )

    def rows(self) -> Iterator[tuple[Any, ...]]:
        rng = self.rng
        points = [1, 2, 3, 5, 8, 13]
        for project in self.jira_projects:
            container = [f"jira:project:{project}"]
            epics = [
                (f"j-{project}-{n + 1}", f"{project}-{n + 1}")
                for n in range(self.epics_per_project)
            ]
            for ref, key in epics:
                yield self.row(
                    "jira",
                    ref,
                    key,
                    "epic",
                    project,
                    labels=self.labels() if rng.random() < 0.2 else [],
                    containers=container,
                )
            stories: list[tuple[str, str]] = []
            for n in range(len(epics), self.per_project):
                key = f"{project}-{n + 1}"
                ref = f"j-{key}"
                if stories and rng.random() < 0.33:
                    parent = rng.choice(stories[-200:])
                    yield self.row(
                        "jira",
                        ref,
                        key,
                        "subtask",
                        project,
                        parent=parent,
                        containers=container,
                        labels=self.labels() if rng.random() < 0.1 else [],
                        estimate=rng.choice([0.5, 1, 2, 3]) if rng.random() < 0.4 else None,
                    )
                    continue
                type_ = rng.choices(["story", "task", "bug"], [0.75, 0.15, 0.10])[0]
                parent = rng.choice(epics) if rng.random() < 0.8 else None
                linked = [f"PD-{rng.randrange(150)}"] if rng.random() < 0.02 else []
                yield self.row(
                    "jira",
                    ref,
                    key,
                    type_,
                    project,
                    parent=parent,
                    labels=self.labels(),
                    containers=container,
                    linked_keys=linked,
                    estimate=rng.choice(points) if rng.random() < 0.75 else None,
                )
                stories.append((ref, key))
        for team in self.teams:
            team_projects = [p for p in self.linear_projects if p[0].startswith(f"lp-{team}-")]
            for n, (ref, slug) in enumerate(team_projects):
                initiative = self.initiatives[(n + len(team)) % len(self.initiatives)]
                yield self.row(
                    "linear",
                    ref,
                    slug,
                    "project",
                    team,
                    containers=[
                        f"linear:project:{ref}",
                        f"linear:project:{slug}",
                        f"linear:initiative:{initiative}",
                        f"linear:team:{team}",
                    ],
                )
            issues: list[tuple[str, str]] = []
            for n in range(len(team_projects), self.per_team):
                key = f"{team}-{n + 1}"
                ref = f"l-{key}"
                if issues and rng.random() < 0.25:
                    parent = rng.choice(issues[-200:])
                    yield self.row(
                        "linear",
                        ref,
                        key,
                        "subtask",
                        team,
                        parent=parent,
                        estimate=rng.choice([1, 2]) if rng.random() < 0.3 else None,
                    )
                    continue
                project = rng.choice(team_projects) if rng.random() < 0.8 else None
                containers = (
                    [f"linear:project:{project[0]}", f"linear:project:{project[1]}"]
                    if project
                    else []
                )
                type_ = "bug" if rng.random() < 0.12 else "story"
                yield self.row(
                    "linear",
                    ref,
                    key,
                    type_,
                    team,
                    parent=project,
                    labels=self.labels(),
                    containers=[*containers, f"linear:team:{team}"],
                    estimate=rng.choice(points) if rng.random() < 0.6 else None,
                )
                issues.append((ref, key))


def build(url: str, items: int, seed: int) -> None:
    rng = random.Random(seed)
    backlog = Backlog(items, rng)
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        backlog.bets = catalogue(
            cursor, rng, backlog.epics, backlog.linear_projects, backlog.initiatives
        )
        with cursor.copy(f"COPY tracker_items ({', '.join(ITEM_COLUMNS)}) FROM STDIN") as copy:
            for row in backlog.rows():
                copy.write_row(row)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
