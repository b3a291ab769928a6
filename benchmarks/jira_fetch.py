"""Fetch a big sandbox Jira through the real adapter: sequential against partitioned.

    .venv/bin/python benchmarks/jira_fetch.py                    # 100,000 issues, 200 ms
    .venv/bin/python benchmarks/jira_fetch.py --issues 20000 --latency 0.05

For each flavour the sandbox runs in its own process (so its work does not share the client's
interpreter) with `--latency` seconds added to every request. Measured, side by side: a full
fetch on one thread without partitions, the same split into creation-time ranges (as many as
the adapter makes of the scope, at most `--threads`) fetched by `--threads` threads, and the
id census. Pages are normalised and dropped as they arrive, as the sync engine does, so the
client's memory must not grow with the number of issues.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from integrations.jira.adapter import JiraAdapter  # noqa: E402
from integrations.sandbox.server import free_port  # noqa: E402

CREDENTIALS = {
    "cloud": {"email": "ladder-bot@example.com", "api_token": "sandbox-token"},
    "datacenter": {"pat": "sandbox-pat"},
}


@dataclass
class Result:
    name: str
    seconds: float
    issues: int
    requests: int
    client_cpu: float
    rss_growth_mb: float


@contextmanager
def sandbox(flavour: str, issues: int, latency: float) -> Iterator[str]:
    """A sandbox Jira in a child process; yields its URL."""
    port = free_port()
    command = [sys.executable, "-m", "integrations.sandbox.jira", "--port", str(port)]
    command += ["--issues", str(issues), "--flavour", flavour, "--latency", str(latency)]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(f"{url}/rest/api/2/serverInfo", timeout=5)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


def measure(name: str, adapter: JiraAdapter, run: Callable[[], int]) -> Result:
    process = psutil.Process()
    rss, cpu = process.memory_info().rss, sum(process.cpu_times()[:2])
    before = adapter.requests
    started = time.perf_counter()
    issues = run()
    seconds = time.perf_counter() - started
    used = sum(process.cpu_times()[:2]) - cpu
    growth = (process.memory_info().rss - rss) / 2**20
    return Result(name, seconds, issues, adapter.requests - before, used, growth)


def sequential(adapter: JiraAdapter) -> int:
    return sum(
        len([adapter.normalise(raw) for raw in page.items]) for page in adapter.iter_pages(None)
    )


def partitioned(adapter: JiraAdapter, threads: int) -> int:
    def fetch(partition: str | None) -> int:
        pages = adapter.iter_pages(None, partition)
        return sum(len([adapter.normalise(raw) for raw in page.items]) for page in pages)

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(fetch, adapter.partitions()))


def census(adapter: JiraAdapter) -> int:
    return sum(len(page.ids) for page in adapter.iter_ids())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--issues", type=int, default=100_000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--flavours", default="cloud,datacenter")
    parser.add_argument("--skip-sequential", action="store_true")
    args = parser.parse_args()
    print(f"{args.issues} issues, {args.latency * 1000:.0f} ms per request, {args.threads} threads")
    print(
        f"machine: {os.cpu_count()} cores, {psutil.virtual_memory().total / 2**30:.0f} GiB, "
        f"Python {sys.version.split()[0]}"
    )
    for flavour in args.flavours.split(","):
        with sandbox(flavour, args.issues, args.latency) as url:
            results = []
            if not args.skip_sequential:
                adapter = JiraAdapter(url, **CREDENTIALS[flavour])  # type: ignore[arg-type]
                results.append(measure("full, 1 thread", adapter, lambda a=adapter: sequential(a)))
            adapter = JiraAdapter(url, max_partitions=args.threads, **CREDENTIALS[flavour])  # type: ignore[arg-type]
            results.append(
                measure(
                    f"full, ≤ {args.threads} creation ranges",
                    adapter,
                    lambda a=adapter: partitioned(a, args.threads),
                )
            )
            results.append(measure("id census", adapter, lambda a=adapter: census(a)))
        base = results[0].seconds
        print(f"\n{flavour}")
        print("| run | issues | requests | seconds | issues/s | vs first | CPU s | RSS growth |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|")
        for r in results:
            print(
                f"| {r.name} | {r.issues} | {r.requests} | {r.seconds:.1f} | "
                f"{r.issues / r.seconds:,.0f} | {r.seconds / base:.2f} | {r.client_cpu:.1f} | "
                f"{r.rss_growth_mb:.0f} MB |"
            )


if __name__ == "__main__":
    main()
