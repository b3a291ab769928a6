"""Full and incremental Jira syncs into PostgreSQL and SQLite, beside the script users write.

    .venv/bin/python benchmarks/jira_sync.py                  # 10k and 100k issues, both stores
    .venv/bin/python benchmarks/jira_sync.py --sizes 10000 --stores sqlite --latency-issues 0

Every measured sync runs in a process of its own (its peak RSS is its own), against a sandbox
Jira (Cloud) in another process, so neither shares the client's interpreter. Side by side:

- naive: `jira.JIRA(...).search_issues(jql, maxResults=False)` (every issue in memory), then
  one ORM insert per issue (`session.add` and `flush`) and one commit at the end: the script
  a user would otherwise write;
- ladder: `run_sync(..., "full")` with the adapter the settings build (`ladder sync --full`);
- the same with `--latency` seconds added to every sandbox request (`--latency-issues`
  issues), then an incremental sync of 100 changed issues in Ladder's store, warm (the adapter
  already knows the site, as in the scheduler) and cold (a fresh process, as `ladder sync`).

Request counts are the sandbox's own, so nothing a client does goes uncounted.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

EMAIL, TOKEN = "ladder-bot@example.com", "sandbox-token"
PAGE = 100  # issues per search page, for the adapter and for the jira library alike
JQL = 'project in ("PAY", "OPS", "WEB") ORDER BY id ASC'
POSTGRES = "postgresql://postgres@127.0.0.1:5432"
BENCH_DATABASE = "ladder_bench_jira"


# --- the sandbox, in its own process ---------------------------------------------------------


def serve(issues: int, latency: float) -> None:
    """Child: serve a sandbox Jira; answer `requests`, `touch N` and `latency S` on stdin."""
    from integrations.sandbox.jira.app import JiraSandbox
    from integrations.sandbox.server import serve_in_thread

    sandbox = JiraSandbox("cloud", issues=issues, labels=["bet:one-click-checkout", "ktlo"])
    sandbox.faults.latency = latency
    with serve_in_thread(sandbox.app) as url:
        print(json.dumps({"url": url}), flush=True)
        for line in sys.stdin:
            command, *arguments = line.split()
            if command == "requests":
                searches = sum(
                    n for path, n in sandbox.requests_by_path.items() if "search" in path
                )
                answer: Any = {"total": sandbox.requests_total, "searches": searches}
            elif command == "touch":
                answer = sandbox.touch(int(arguments[0]))
            elif command == "latency":
                sandbox.faults.latency = float(arguments[0])
                answer = "ok"
            else:
                answer = f"unknown command {command!r}"
            print(json.dumps(answer), flush=True)


class Sandbox:
    """The parent's handle on the sandbox process."""

    def __init__(self, issues: int, latency: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, __file__, "serve", str(issues), str(latency)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url = self._read()["url"]

    def ask(self, command: str) -> Any:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def requests(self) -> dict[str, int]:
        return self.ask("requests")

    def _read(self) -> Any:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the sandbox process ended")
        return json.loads(line)

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.terminate()
        self.process.wait(timeout=30)


@contextmanager
def sandbox(issues: int, latency: float = 0.0) -> Iterator[Sandbox]:
    handle = Sandbox(issues, latency)
    try:
        yield handle
    finally:
        handle.close()


# --- the measured syncs, each in its own process ----------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux


def ladder(url: str, database_url: str, mode: str, concurrency: int, warm: bool) -> dict:
    """Child: one sync through the engine and the adapter the settings build."""
    from service.settings import Settings
    from service.trackers import build_adapters, match_rules
    from sync.ingest import engine
    from sync.store.db import make_engine, session_factory

    # Time the re-matching step (the traceability engine's) apart from fetching and storing,
    # and note the peak memory before it first runs.
    matching = [0.0]
    rss_before_matching: list[float] = []
    rematch = engine.rematch_items

    def timed_rematch(*args: Any, **kwargs: Any) -> Any:
        if not rss_before_matching:
            rss_before_matching.append(_peak_rss_mb())
        began = time.perf_counter()
        try:
            return rematch(*args, **kwargs)
        finally:
            matching[0] += time.perf_counter() - began

    engine.rematch_items = timed_rematch  # type: ignore[assignment]
    settings = Settings(
        database_url=database_url,
        jira_url=url,
        jira_email=EMAIL,
        jira_api_token=TOKEN,
        sync_concurrency=concurrency,
        _env_file=None,
    )
    adapter = build_adapters(settings)["jira"]
    if warm:  # what a scheduler process learnt on an earlier tick
        adapter.site()  # type: ignore[attr-defined]
        adapter.scope()  # type: ignore[attr-defined]
    gc.freeze()  # as `ladder sync` does once it has started
    print(json.dumps("ready"), flush=True)
    sys.stdin.readline()
    sessions = session_factory(make_engine(database_url))
    started = time.perf_counter()
    rules = match_rules(settings)
    summary = engine.run_sync(sessions, adapter, mode, concurrency=concurrency, rules=rules)  # type: ignore[arg-type]
    return {
        "ok": summary.ok,
        "error": summary.error,
        "items": summary.items_seen,
        "seconds": time.perf_counter() - started,
        "matching_seconds": matching[0],
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_before_matching_mb": (rss_before_matching or [_peak_rss_mb()])[0],
    }


def naive(url: str, database_url: str) -> dict:
    """Child: the script a user would write with the `jira` library and the ORM."""
    from jira import JIRA
    from sqlalchemy.orm import Session

    from integrations.jira.mapping import SYSTEM_FIELDS, parse_time
    from sync.store.db import make_engine
    from sync.store.models import TrackerItem

    print(json.dumps("ready"), flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    jira = JIRA(url, basic_auth=(EMAIL, TOKEN))
    fields = ",".join([*SYSTEM_FIELDS, "customfield_10016", "customfield_10024"])
    issues = jira.search_issues(JQL, maxResults=False, fields=fields)
    categories = {"new": "todo", "indeterminate": "in_progress", "done": "done"}
    with Session(make_engine(database_url)) as session:
        for issue in issues:
            f = issue.fields
            session.add(
                TrackerItem(
                    source="jira",
                    external_id=issue.id,
                    key=issue.key,
                    title=f.summary,
                    type=f.issuetype.name.lower(),
                    status=f.status.name,
                    status_category=categories[f.status.statusCategory.key],
                    labels=list(f.labels),
                    project=f.project.key,
                    estimate=getattr(f, "customfield_10024", None)
                    or getattr(f, "customfield_10016", None),
                    updated_at=parse_time(f.updated),
                    raw=issue.raw,
                )
            )
            session.flush()  # one INSERT per issue
        session.commit()
    return {
        "ok": True,
        "error": None,
        "items": len(issues),
        "seconds": time.perf_counter() - started,
        "matching_seconds": 0.0,
        "peak_rss_mb": _peak_rss_mb(),
        "peak_rss_before_matching_mb": _peak_rss_mb(),
    }


def measure(site: Sandbox, command: list[str]) -> dict:
    """Run a child sync; count the sandbox requests between its start and its end."""
    child = subprocess.Popen(
        [sys.executable, __file__, *command],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    assert json.loads(child.stdout.readline()) == "ready"
    before = site.requests()
    child.stdin.write("go\n")
    child.stdin.flush()
    output, _ = child.communicate(timeout=3600)
    if child.returncode:
        raise RuntimeError(f"{command[0]} failed with exit code {child.returncode}")
    result = json.loads(output.strip().splitlines()[-1])
    after = site.requests()
    result["requests"] = after["total"] - before["total"]
    result["searches"] = after["searches"] - before["searches"]
    return result


# --- stores -----------------------------------------------------------------------------------


@contextmanager
def fresh_store(kind: str) -> Iterator[str]:
    """An empty, migrated store: a SQLite file, or a PostgreSQL database of its own."""
    from sync.store.db import make_engine, migrate

    if kind == "sqlite":
        with tempfile.TemporaryDirectory() as directory:
            url = f"sqlite:///{directory}/ladder.db"
            migrate(make_engine(url))
            yield url
        return
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
    url = f"{POSTGRES}/{BENCH_DATABASE}"
    engine = make_engine(url)
    migrate(engine)
    engine.dispose()
    yield url


# --- the run ------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> None:
    import psutil

    print(
        f"# {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {sys.version.split()[0]}; "
        f"concurrency {args.concurrency}, page {PAGE}\n"
    )
    print(
        "| store | issues | latency | script | items/s | seconds | of which re-matching "
        "| requests (searches) | requests / min. | searches / min. | peak RSS "
        "| peak RSS before re-matching |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for store in args.stores:
        for size in args.sizes:
            side_by_side(store, size, 0.0, args.concurrency)
        if args.latency_issues:
            side_by_side(
                store, args.latency_issues, args.latency, args.concurrency, incremental=True
            )


def side_by_side(
    store: str, size: int, latency: float, concurrency: int, *, incremental: bool = False
) -> None:
    """The naive script, then Ladder's full sync, each into a fresh store; a row each."""
    with sandbox(size, latency) as site:
        rows = {}
        for name in ("naive", "ladder"):
            with fresh_store(store) as url:
                command = (
                    ["naive", site.url, url]
                    if name == "naive"
                    else ["ladder", site.url, url, "full", str(concurrency), "cold"]
                )
                rows[name] = measure(site, command)
                if name == "ladder" and incremental:
                    # Both runs fetch the same 100 changes: the second finds them again inside
                    # the overlap window behind the first one's cursor.
                    site.ask("touch 100")
                    for warmth in ("warm", "cold"):
                        rows[f"incremental, 100 changed, {warmth}"] = measure(
                            site, ["ladder", site.url, url, "incremental", str(concurrency), warmth]
                        )
        for name, result in rows.items():
            print(_row(store, size, latency, name, result))
        naive, ladder = rows["naive"], rows["ladder"]
        whole = naive["seconds"] / ladder["seconds"]
        storing = naive["seconds"] / (ladder["seconds"] - ladder["matching_seconds"])
        print(
            f"| {store} | {size:,} | {latency * 1000:.0f} ms | ladder / naive "
            f"| **{whole:.1f}x** (without re-matching {storing:.1f}x) | | | | | | | |"
        )


def _row(store: str, size: int, latency: float, name: str, r: dict) -> str:
    head = f"| {store} | {size:,} | {latency * 1000:.0f} ms | {name} "
    if not r["ok"]:
        return head + f"| failed: {r['error']} | | | | | | | |"
    minimum = math.ceil(r["items"] / PAGE)
    return head + (
        f"| {r['items'] / r['seconds']:,.0f} | {r['seconds']:.2f} | {r['matching_seconds']:.2f} "
        f"| {r['requests']:,} ({r['searches']:,}) | {r['requests'] / minimum:.3f} "
        f"| {r['searches'] / minimum:.3f} | {r['peak_rss_mb']:.0f} MB "
        f"| {r['peak_rss_before_matching_mb']:.0f} MB |"
    )


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in {"serve", "ladder", "naive"}:
        role, *rest = sys.argv[1:]
        if role == "serve":
            serve(int(rest[0]), float(rest[1]))
            return
        if role == "naive":
            result = naive(rest[0], rest[1])
        else:
            url, database, mode, concurrency, warmth = rest
            result = ladder(url, database, mode, int(concurrency), warmth == "warm")
        print(json.dumps(result), flush=True)
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--stores", nargs="+", default=["postgresql", "sqlite"])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request")
    parser.add_argument("--latency-issues", type=int, default=100_000, help="0 to skip")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
