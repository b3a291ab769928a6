"""Traceability at scale: up to 1,000,000 items in PostgreSQL, matched, reported, re-matched.

    .venv/bin/python benchmarks/traceability.py                   # 100,000 and 1,000,000 items
    .venv/bin/python benchmarks/traceability.py --sizes 20000 --runs 10

For each size, a database of its own (`ladder_bench`, dropped and recreated) is filled with
the OKR tree and backlog of `benchmarks/traceability_data.py`, then, through the real code:

1. a full re-match of every item (`rematch_items(session, None, rules)`), twice;
2. the effort report and the orphan listing through the HTTP API (FastAPI app, bearer
   token, JSON or CSV), p50 and p95 over `--runs` calls per variant after a warm-up call;
3. one bet gaining an epic as a ref, then renamed (`rematch_for_okr_change`): the time,
   and the rows written, checked against the items affected as SQL counts them apart;
4. single-item re-matches, as a webhook triggers them, p50 and p95.

Prints a Markdown table, one column per size, for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from benchmarks.traceability_data import CURRENT, build  # noqa: E402
from service.app import create_app  # noqa: E402
from service.settings import Settings  # noqa: E402
from service.tokens import Role, create_token  # noqa: E402
from sync.matching.item import MatchRules  # noqa: E402
from sync.matching.rematch import rematch_for_okr_change, rematch_items  # noqa: E402
from sync.store.db import make_engine, migrate, session_factory, transaction  # noqa: E402

RULES = MatchRules()


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


VARIANTS = {
    "effort by objective, points": ("/api/reports/effort", {"cycle": CURRENT}),
    "effort by objective, count": ("/api/reports/effort", {"cycle": CURRENT, "measure": "count"}),
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
    "orphans in cycle, one project": ("/api/orphans", {"cycle": CURRENT, "project": "PA"}),
    "orphan rate per team": ("/api/reports/orphans", {"cycle": CURRENT}),
}


Figure = tuple[str, float | None]  # as shown, and the time it stands for (for ratios)


def measure(admin_url: str, database: str, items: int, runs: int, seed: int) -> dict[str, Figure]:
    """Build a database of `items` items and measure everything; the figures by name."""
    url = admin_url.rsplit("/", 1)[0] + "/" + database
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{database}"')
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    figures: dict[str, Figure] = {}

    seconds, _ = timed(lambda: build(url, items, seed))
    figures["generate with COPY"] = (f"{seconds:.1f} s", seconds)

    def full() -> int:
        with transaction(sessions) as session:
            return rematch_items(session, None, RULES)

    for label in ("full re-match", "full re-match again, nothing changed"):
        seconds, _ = timed(full)
        figures[label] = (f"{seconds:.1f} s", seconds)
        # What autovacuum does after such a rewrite, done now so that runs start alike.
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute("VACUUM ANALYZE")
    with sessions() as session:
        states = dict(
            session.execute(text("SELECT state, count(*) FROM item_states GROUP BY state")).all()
        )
    figures["matched / non-OKR / orphan items"] = (
        f"{states['matched']:,} / {states['non_okr']:,} / {states['orphan']:,}",
        None,
    )

    with transaction(sessions) as session:
        token = create_token(session, Role.viewer, "benchmark")
    headers = {"Authorization": f"Bearer {token}"}
    settings = Settings(database_url=url, scheduler=False, _env_file=None)
    with TestClient(create_app(settings)) as client:
        for name, (path, params) in VARIANTS.items():
            assert client.get(path, params=params, headers=headers).status_code == 200
            samples = []
            for _ in range(runs):
                seconds, response = timed(lambda: client.get(path, params=params, headers=headers))  # noqa: B023
                assert response.status_code == 200, response.text
                samples.append(seconds)
            p50, p95 = percentiles(samples)
            figures[f"{name}: p50 / p95"] = (f"{p50 * 1000:.0f} / {p95 * 1000:.0f} ms", p50)

    figures.update(okr_changes(sessions))

    with sessions() as session:
        ids = session.scalars(
            text(
                "SELECT id FROM tracker_items WHERE type IN ('story', 'task', 'bug')"
                " ORDER BY random() LIMIT :n"
            ),
            {"n": runs},
        ).all()
    samples = []
    for item_id in ids:

        def one() -> int:
            with transaction(sessions) as session:
                return rematch_items(session, [item_id], RULES)  # noqa: B023

        samples.append(timed(one)[0])
    p50, p95 = percentiles(samples)
    figures["one item re-matched (a webhook): p50 / p95"] = (
        f"{p50 * 1000:.0f} / {p95 * 1000:.0f} ms",
        p50,
    )
    engine.dispose()
    return figures


def okr_changes(sessions: Any) -> dict[str, Figure]:
    """One bet gains an epic as a ref, then is renamed: time, and rows written.

    The items the new ref affects are counted independently, in SQL: the epic and its
    descendants that do not match on their own. Anything else written is a failure.
    """
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
        served = session.execute(
            text(
                "SELECT count(DISTINCT m.item_id) FROM matches m JOIN bets b ON b.id = m.target_id"
                " WHERE m.target_kind = 'bet' AND b.key = :bet"
            ),
            {"bet": bet_key},
        ).scalar_one()

    def change(statement: str, params: dict[str, str], keys: set[str]) -> tuple[int, int, int]:
        with transaction(sessions) as session:
            session.execute(text(statement), params)
            rematched = rematch_for_okr_change(session, keys, set(), RULES)
            return rematched, written_rows(session, "matches"), written_rows(session, "item_states")

    figures: dict[str, Figure] = {}
    seconds, (rematched, match_rows, state_rows) = timed(
        lambda: change(
            "UPDATE bets SET refs = :refs WHERE key = :bet",
            {"refs": json.dumps([*refs, f"jira:{epic}"]), "bet": bet_key},
            {bet_key},
        )
    )
    if not rematched == match_rows == state_rows == expected:
        raise SystemExit(f"a new ref re-matched {rematched} items, {expected} expected")
    figures["a bet gains an epic as a ref"] = (
        f"{seconds * 1000:.0f} ms, {rematched:,} items re-matched = affected",
        seconds,
    )
    seconds, (rematched, _, state_rows) = timed(
        lambda: change(
            "UPDATE bets SET key = :new WHERE key = :bet",
            {"new": f"{bet_key}-renamed", "bet": bet_key},
            {bet_key, f"{bet_key}-renamed"},
        )
    )
    figures["the bet renamed"] = (
        f"{seconds * 1000:.0f} ms, {rematched:,} items re-matched ({served:,} served it)",
        seconds,
    )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000,1000000", help="item counts, comma-separated")
    parser.add_argument("--runs", type=int, default=40, help="calls per API variant")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database", default="ladder_bench")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    results = {}
    for size in sizes:
        results[size] = measure(args.postgres, args.database, size, args.runs, args.seed)
        print(f"measured {size:,} items", file=sys.stderr)
    print(f"Machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}, PostgreSQL.\n")
    first, last = sizes[0], sizes[-1]
    print(
        "| | "
        + " | ".join(f"{size:,} items" for size in sizes)
        + f" | time {last // first}x items |"
    )
    print("|---|" + "---:|" * (len(sizes) + 1))
    for name in results[first]:
        shown = " | ".join(results[size][name][0] for size in sizes)
        before, after = results[first][name][1], results[last][name][1]
        ratio = f"{after / before:.1f}x" if before and after else ""
        print(f"| {name} | {shown} | {ratio} |")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\nPeak RSS of the process: {peak:.0f} MB.")


if __name__ == "__main__":
    main()
