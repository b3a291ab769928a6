"""A full sync of a big sandbox Linear through the real adapter and engine, against the quota.

    .venv/bin/python benchmarks/linear_sync.py                  # 50,000 issues, SQLite
    .venv/bin/python benchmarks/linear_sync.py --issues 10000 --database-url postgresql://…

Each run gets a fresh sandbox Linear in its own process, metering Linear's default hourly
quota (1,500 requests, 3,000,000 complexity points): a sync that needed more would be
refused and show rate-limit answers. Each sync runs in a process of its own too, so its
peak RSS is its own. Side by side: the adapter's pages (as large as the complexity ceiling
allows, up to 250), the same sync at Linear's default page of 50, and the id census.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import psutil

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from integrations.linear import LinearAdapter  # noqa: E402
from integrations.sandbox.linear import DEFAULT_API_KEY, Quota  # noqa: E402
from integrations.sandbox.server import free_port  # noqa: E402
from sync.ingest.engine import run_sync  # noqa: E402
from sync.store.db import make_engine, migrate, session_factory  # noqa: E402

RUNS = {
    "full sync, adapter pages": {"mode": "full"},
    "full sync, 50 per page": {"mode": "full", "page_cap": 50},
    "id census": {"mode": "census"},
}


@contextmanager
def sandbox(issues: int) -> Iterator[str]:
    """A sandbox Linear in a child process; yields its GraphQL URL."""
    port = free_port()
    command = [sys.executable, "-m", "integrations.sandbox.linear", "--port", str(port)]
    command += ["--issues", str(issues)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                httpx.post(url, json={"query": "{ viewer { id } }"}, timeout=5)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def worker(url: str, database_url: str, mode: str, page_cap: int | None) -> dict[str, Any]:
    """One sync into a freshly migrated store; what it cost."""
    engine = make_engine(database_url)
    migrate(engine)
    adapter = LinearAdapter.connect(url, DEFAULT_API_KEY)
    if page_cap:
        adapter.page_cap = page_cap
    started = time.perf_counter()
    summary = run_sync(session_factory(engine), adapter, mode)  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    stats = adapter.client.stats
    return {
        "ok": summary.ok,
        "error": summary.error,
        "items": summary.items_seen,
        "seconds": seconds,
        "requests": stats.requests,
        "complexity": stats.complexity,
        "rate_limited": stats.rate_limited,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def run(issues: int, database_url: str | None, mode: str, page_cap: int | None) -> dict[str, Any]:
    with sandbox(issues) as url, tempfile.TemporaryDirectory() as tmp:
        database = database_url or f"sqlite:///{tmp}/ladder.db"
        command = [sys.executable, __file__, "--worker", url, "--database-url", database]
        command += ["--mode", mode] + (["--page-cap", str(page_cap)] if page_cap else [])
        output = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
        return json.loads(output.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=50_000)
    parser.add_argument("--database-url", default=None, help="default: a fresh SQLite file")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="full", help=argparse.SUPPRESS)
    parser.add_argument("--page-cap", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.database_url, args.mode, args.page_cap)))
        return
    quota = Quota()
    print(f"{args.issues} issues; quota {quota.requests} requests, {quota.complexity} points/h")
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {sys.version.split()[0]}, store {args.database_url or 'SQLite'}"
    )
    results = {
        name: run(args.issues, args.database_url, spec["mode"], spec.get("page_cap"))
        for name, spec in RUNS.items()
    }
    base = next(iter(results.values()))
    print(
        "\n| run | items | seconds | items/s | requests | of quota | complexity | of quota "
        "| rate-limited | peak RSS | requests vs first |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in results.items():
        if not r["ok"]:
            print(f"| {name} | failed: {r['error']} |")
            continue
        print(
            f"| {name} | {r['items']:,} | {r['seconds']:.1f} | {r['items'] / r['seconds']:,.0f} "
            f"| {r['requests']:,} | {r['requests'] / quota.requests:.0%} "
            f"| {r['complexity']:,} | {r['complexity'] / quota.complexity:.0%} "
            f"| {r['rate_limited']} | {r['peak_rss_mb']:.0f} MB "
            f"| {r['requests'] / base['requests']:.2f} |"
        )


if __name__ == "__main__":
    main()
