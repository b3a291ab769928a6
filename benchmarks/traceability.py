"""Traceability at scale: 1,000,000 items in PostgreSQL, matched, reported, re-matched.

    .venv/bin/python benchmarks/traceability.py                 # 1,000,000 items
    .venv/bin/python benchmarks/traceability.py --items 100000 --runs 20

Builds a database of its own (`ladder_bench` by default, dropped and recreated) with a
realistic OKR tree (4 cycles, 12 objectives and 36 key results per cycle, 150 bets with
Jira epics, Product Discovery ideas, Linear projects and initiatives as refs) and a
generated backlog loaded with COPY: Jira projects of epics, stories, tasks, bugs and
sub-tasks, Linear teams of projects, issues and sub-issues, three years of history, with
labels, links, estimates and time spent. Then, through the real code:

1. a full re-match of every item (`rematch_items(session, None, rules)`);
2. the effort report and the orphan listing through the HTTP API (FastAPI app, bearer
   token, JSON), p50 and p95 over `--runs` calls per variant, after one warm-up call;
3. a one-bet change (a new ref and a renamed key) with `rematch_for_okr_change`, counting
   the rows it writes against the items it should affect, computed independently in SQL;
4. a single-item re-match, as a webhook triggers it, p50 and p95.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from sync.db import make_engine, migrate, session_factory, transaction  # noqa: E402
from sync.matchers import MatchRules  # noqa: E402
from sync.matching import rematch_for_okr_change, rematch_items  # noqa: E402
from sync.tokens import Role, create_token  # noqa: E402

RULES = MatchRules()
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


# --- the catalogue and the backlog ---------------------------------------------------------


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
    # 60% of the epics and 70% of the Linear projects belong to a bet; the rest of the work
    # is aligned through labels, inheritance or not at all.
    claimed_epics = rng.sample(epics, int(len(epics) * 0.6))
    claimed_projects = rng.sample(projects, int(len(projects) * 0.7))
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
                parent = rng.choice(epics) if rng.random() < 0.7 else None
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


# --- measuring -----------------------------------------------------------------------------


def timed(action: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


def written_rows(session: Any, table: str) -> int:
    """Rows this transaction inserted or updated in `table` (their xmin is our id)."""
    return session.execute(
        text(
            f"SELECT count(*) FROM {table}"
            " WHERE xmin::text::bigint = txid_current() % (2^32)::bigint"
        )
    ).scalar_one()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=40, help="calls per API variant")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="ladder_bench")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()

    admin_url = args.postgres
    url = admin_url.rsplit("/", 1)[0] + "/" + args.database
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{args.database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{args.database}"')
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    print(f"machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}")

    seconds, _ = timed(lambda: build(url, args.items, args.seed))
    with sessions() as session:
        count = session.execute(text("SELECT count(*) FROM tracker_items")).scalar_one()
    print(f"generated {count:,} items with COPY in {seconds:.1f} s")

    def full() -> int:
        with transaction(sessions) as session:
            return rematch_items(session, None, RULES)

    seconds, matched = timed(full)
    print(f"full re-match of {matched:,} items: {seconds:.1f} s")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")
    with sessions() as session:
        summary = session.execute(
            text("SELECT state, count(*) FROM item_states GROUP BY state ORDER BY state")
        ).all()
        matches = session.execute(text("SELECT count(*) FROM matches")).scalar_one()
    print("states:", ", ".join(f"{state} {n:,}" for state, n in summary), f"| matches {matches:,}")
    seconds, _ = timed(full)
    print(f"full re-match again (nothing changed): {seconds:.1f} s")
    # What autovacuum does after such a rewrite, done now so that every run starts alike.
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")

    settings = Settings(database_url=url, scheduler=False, _env_file=None)
    with transaction(sessions) as session:
        token = create_token(session, Role.viewer, "benchmark")
    headers = {"Authorization": f"Bearer {token}"}
    variants = {
        "effort by objective, points": ("/api/reports/effort", {"cycle": CURRENT}),
        "effort by objective, count": (
            "/api/reports/effort",
            {"cycle": CURRENT, "measure": "count"},
        ),
        "effort by kr, time": (
            "/api/reports/effort",
            {"cycle": CURRENT, "measure": "time", "by": "kr"},
        ),
        "effort by team, points": ("/api/reports/effort", {"cycle": CURRENT, "by": "team"}),
        "effort by objective, CSV": ("/api/reports/effort", {"cycle": CURRENT, "format": "csv"}),
        "orphans, open, first page": ("/api/orphans", {"limit": 50}),
        "orphans in cycle, roots only": (
            "/api/orphans",
            {"cycle": CURRENT, "roots_only": "true", "limit": 50},
        ),
        "orphans, one project": ("/api/orphans", {"cycle": CURRENT, "project": "PA", "limit": 50}),
        "orphan rate per team": ("/api/reports/orphans", {"cycle": CURRENT}),
    }
    with TestClient(create_app(settings)) as client:
        print(f"\n{'API call':34} {'p50 ms':>8} {'p95 ms':>8}")
        for name, (path, params) in variants.items():
            assert client.get(path, params=params, headers=headers).status_code == 200
            samples = []
            for _ in range(args.runs):
                seconds, response = timed(lambda: client.get(path, params=params, headers=headers))  # noqa: B023
                assert response.status_code == 200, response.text
                samples.append(seconds)
            p50, p95 = percentiles(samples)
            print(f"{name:34} {p50 * 1000:8.1f} {p95 * 1000:8.1f}")

    # One bet changes: it gains an epic as a ref and is renamed.
    with sessions() as session:
        bet_key, refs = session.execute(
            text("SELECT key, refs FROM bets WHERE key = 'bet-042'")
        ).one()
        epic = session.execute(
            text(
                "SELECT i.key FROM tracker_items i WHERE i.type = 'epic' AND NOT EXISTS ("
                " SELECT 1 FROM matches m WHERE m.item_id = i.id AND m.origin <> 'inherited')"
                " ORDER BY i.id LIMIT 1 OFFSET 3"
            )
        ).scalar_one()
        # Independently: the epic and its descendants that do not match on their own.
        expected = session.execute(
            text(
                "WITH RECURSIVE tree(id) AS ("
                " SELECT id FROM tracker_items WHERE source = 'jira' AND key = :epic"
                " UNION ALL SELECT c.item_id FROM tree JOIN item_states c ON c.parent_id = tree.id"
                " WHERE NOT EXISTS (SELECT 1 FROM matches m WHERE m.item_id = c.item_id"
                " AND m.origin <> 'inherited'))"
                " SELECT count(*) FROM tree"
            ),
            {"epic": epic},
        ).scalar_one()
        labelled = session.execute(
            text(
                "SELECT count(DISTINCT m.item_id) FROM matches m JOIN bets b ON b.id = m.target_id"
                " WHERE m.target_kind = 'bet' AND b.key = :bet"
            ),
            {"bet": bet_key},
        ).scalar_one()

    def change_refs() -> tuple[int, int, int]:
        with transaction(sessions) as session:
            session.execute(
                text("UPDATE bets SET refs = :refs WHERE key = :bet"),
                {"refs": json.dumps([*refs, f"jira:{epic}"]), "bet": bet_key},
            )
            rematched = rematch_for_okr_change(session, {bet_key}, set(), RULES)
            return rematched, written_rows(session, "matches"), written_rows(session, "item_states")

    seconds, (rematched, match_rows, state_rows) = timed(change_refs)
    print(
        f"\none bet gains epic {epic} as a ref: {seconds * 1000:.0f} ms;"
        f" re-matched {rematched:,} items (expected {expected:,}),"
        f" wrote {match_rows:,} match rows and {state_rows:,} state rows"
    )

    def rename() -> tuple[int, int, int]:
        with transaction(sessions) as session:
            session.execute(
                text("UPDATE bets SET key = 'bet-042-renamed' WHERE key = :bet"), {"bet": bet_key}
            )
            rematched = rematch_for_okr_change(session, {bet_key, "bet-042-renamed"}, set(), RULES)
            return rematched, written_rows(session, "matches"), written_rows(session, "item_states")

    seconds, (rematched, match_rows, state_rows) = timed(rename)
    print(
        f"the same bet renamed ({labelled:,} items matched to it): {seconds * 1000:.0f} ms;"
        f" re-matched {rematched:,} items, wrote {match_rows:,} match rows"
        f" and {state_rows:,} state rows"
    )

    with sessions() as session:
        ids = [
            row[0]
            for row in session.execute(
                text(
                    "SELECT id FROM tracker_items WHERE type IN ('story', 'task', 'bug')"
                    " ORDER BY random() LIMIT :n"
                ),
                {"n": args.runs},
            )
        ]
    samples = []
    for item_id in ids:

        def one() -> int:
            with transaction(sessions) as session:
                return rematch_items(session, [item_id], RULES)  # noqa: B023

        samples.append(timed(one)[0])
    p50, p95 = percentiles(samples)
    print(f"single-item re-match (webhook): p50 {p50 * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:.0f} MB")


if __name__ == "__main__":
    main()
