"""How OKR file imports and exports scale with the size of the catalogue.

Generates catalogues of growing size (objectives with 3 key results each, and 2 bets per
objective on 2 weighted KRs each), then times, on a fresh store: the first import (everything
created), a second import of the same file (nothing to change), an import that updates 10% of
the key results, and an export. It also counts SQL statements, to show how they grow with the
catalogue.

The store holds no tracker items here, and the final re-match of tickets (sync.matching.rematch's
step, with a benchmark of its own) is left out with `--without-rematch`, to time the OKR
store alone.

    .venv/bin/python benchmarks/okrs_import.py [--postgres postgresql://postgres@127.0.0.1/postgres]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import yaml
from sqlalchemy import Engine, event

from sync.okrs import catalogue as okrs
from sync.okrs.document import export_okrs, import_okrs
from sync.store.db import make_engine, migrate, session_factory, transaction

SIZES = (10, 100, 1000)


def catalogue(objectives: int) -> dict[str, Any]:
    """A believable catalogue with `objectives` objectives, 3 KRs each, 2 bets each."""
    document: dict[str, Any] = {
        "north_star": {"name": "Weekly active teams"},
        "strategies": [{"key": f"S{i}", "title": f"Strategy {i}"} for i in range(5)],
        "cycles": [{"key": "2026-Q4", "start": "2026-10-01", "end": "2026-12-31"}],
        "objectives": [],
        "bets": [],
    }
    for o in range(objectives):
        krs = [f"KR-{o}.{k}" for k in range(3)]
        document["objectives"].append(
            {
                "key": f"O{o}",
                "title": f"Objective {o}",
                "cycle": "2026-Q4",
                "strategy": f"S{o % 5}",
                "team": f"team-{o % 12}",
                "key_results": [
                    {
                        "key": kr,
                        "title": f"Metric {kr}",
                        "baseline": 10,
                        "target": 20,
                        "current": 12,
                    }
                    for kr in krs
                ],
            }
        )
        for b in range(2):
            document["bets"].append(
                {
                    "key": f"bet-{o}-{b}",
                    "title": f"Bet {o}.{b}",
                    "status": "now",
                    "key_results": {krs[b]: 0.6, krs[2]: 0.4},
                    "refs": [f"jira:PAY-{o * 2 + b + 1}"],
                }
            )
    return document


@contextmanager
def counting(engine: Engine) -> Iterator[list[int]]:
    counter = [0]

    def count(*_args: Any) -> None:
        counter[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", count)


def measure(engine: Engine, action: Callable[[], Any]) -> tuple[float, int]:
    with counting(engine) as statements:
        started = time.perf_counter()
        action()
        return time.perf_counter() - started, statements[0]


def run(url: str, objectives: int) -> dict[str, tuple[float, int]]:
    """Time each step on a fresh store at `url` for a catalogue of `objectives`."""
    engine = make_engine(url)
    migrate(engine)
    sessions = session_factory(engine)
    document = catalogue(objectives)
    text = yaml.safe_dump(document, sort_keys=False)
    for objective in document["objectives"][::10]:
        objective["key_results"][0]["current"] = 15
    updated = yaml.safe_dump(document, sort_keys=False)

    def do_import(content: str) -> Callable[[], Any]:
        def action() -> Any:
            with transaction(sessions) as session:
                return import_okrs(session, content)

        return action

    def do_export() -> None:
        with transaction(sessions) as session:
            export_okrs(session)

    results = {
        "first import": measure(engine, do_import(text)),
        "same file again": measure(engine, do_import(text)),
        "10% of KRs updated": measure(engine, do_import(updated)),
        "export": measure(engine, do_export),
    }
    engine.dispose()
    return results


@contextmanager
def database(kind: str, postgres: str | None) -> Iterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return
    assert postgres
    name = f"ladder_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(postgres, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield postgres.rsplit("/", 1)[0] + "/" + name
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a PostgreSQL server URL to also run against")
    parser.add_argument(
        "--without-rematch", action="store_true", help="leave out the re-match of tickets"
    )
    args = parser.parse_args()
    if args.without_rematch:
        okrs.rematch_for_okr_change = lambda *_args: None
    print(f"Python {platform.python_version()}, {platform.machine()}")
    for kind in ("sqlite", "postgresql") if args.postgres else ("sqlite",):
        print(f"\n{kind}: seconds (SQL statements); objects = objectives * 6 + 7")
        header = "| step | " + " | ".join(f"{n} obj. ({n * 6 + 7} objects)" for n in SIZES)
        print(header + f" | time {SIZES[-1]}/{SIZES[0]} |")
        print("|---" * (len(SIZES) + 2) + "|")
        rows: dict[str, list[tuple[float, int]]] = {}
        for size in SIZES:
            with database(kind, args.postgres) as url:
                for step, figures in run(url, size).items():
                    rows.setdefault(step, []).append(figures)
        for step, figures in rows.items():
            cells = " | ".join(f"{seconds:.3f} s ({statements})" for seconds, statements in figures)
            ratio = figures[-1][0] / figures[0][0]
            print(f"| {step} | {cells} | {ratio:.0f}x |")


if __name__ == "__main__":
    main()
