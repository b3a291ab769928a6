"""Sustained webhook load on Ladder from a second process, over loopback.

    .venv/bin/python benchmarks/webhooks.py                     # 2 x 60 s at 600 events/s
    .venv/bin/python benchmarks/webhooks.py --seconds 20 --rate 800

A sandbox Jira, Ladder on a fresh PostgreSQL database per run, and this process, which sends
signed `jira:issue_updated` deliveries (real v2 issue bodies from the sandbox, each a newer
version of one of 200 issues) on a fixed schedule from 32 keep-alive connections. Two runs,
side by side: `ladder serve` processing events in its worker thread (the default), and
`ladder serve` with LADDER_WEBHOOK_WORKER=off beside `ladder worker`, which processes them
in a process of its own.

Measured: accepted events per second, the latency of each POST (p50, p99, max), events lost
(accepted with 202 but not in the inbox, or never processed once the load stops), and, once
a second, the time from posting a probe change to seeing it in `GET /api/items?q=` (polled
every 50 ms). The service's CPU time per event is measured too, since it does not depend on
what else the machine runs; and, in the first run, its CPU per request for the framework
alone, for a delivery only stored, and for one stored and processed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import psycopg
from sqlalchemy import text

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from integrations.sandbox.server import free_port  # noqa: E402
from integrations.webhooks import sign  # noqa: E402
from service.tokens import Role, create_token  # noqa: E402
from sync.store.db import make_engine, migrate, session_factory, transaction  # noqa: E402

SECRET = "benchmark-webhook-secret"
ISSUES = 200
SANDBOX_AUTH = ("ladder-bot@example.com", "sandbox-token")


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    refused: int = 0
    errors: int = 0
    visible: list[float] = field(default_factory=list)
    invisible: int = 0


@contextmanager
def process(command: list[str], env: dict[str, str], ready: str | None) -> Iterator[psutil.Process]:
    """A child process, up once `ready` answers (at once without it), terminated at the end."""
    child = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while ready is not None:
            try:
                httpx.get(ready, timeout=2)
                break
            except httpx.TransportError:
                if child.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{command[2:4]} did not start") from None
                time.sleep(0.2)
        yield psutil.Process(child.pid)
    finally:
        child.terminate()
        child.wait(timeout=30)


@contextmanager
def database(server: str) -> Iterator[str]:
    """A fresh, migrated PostgreSQL database, dropped at the end."""
    name = f"ladder_bench_{uuid.uuid4().hex[:10]}"
    admin = psycopg.connect(server, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    url = server.rsplit("/", 1)[0] + "/" + name
    try:
        migrate(make_engine(url))
        yield url
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


UPDATED, SUMMARY = "@@UPDATED@@", "@@SUMMARY@@"


def templates(jira_url: str) -> list[tuple[str, str]]:
    """The sandbox's issues as Jira's webhooks carry them (v2), each rendered once with
    placeholders for `updated` and `summary`, so sending costs no JSON work; and the
    issues' summaries."""
    found = []
    with httpx.Client(auth=SANDBOX_AUTH, timeout=30) as client:
        for issue_id in range(10_000, 10_000 + ISSUES):
            response = client.get(f"{jira_url}/rest/api/2/issue/{issue_id}")
            if response.status_code != 200:
                continue
            issue = response.json()
            summary = issue["fields"]["summary"]
            issue["fields"].update(updated=UPDATED, summary=SUMMARY)
            body = {
                "timestamp": int(time.time() * 1000),
                "webhookEvent": "jira:issue_updated",
                "issue_event_type_name": "issue_generic",
                "issue": issue,
            }
            found.append((json.dumps(body), json.dumps(summary)[1:-1]))
    if not found:
        raise RuntimeError("the sandbox answered no issue")
    return found


def delivery(template: tuple[str, str], version: int, summary: str | None = None) -> bytes:
    """A newer version of the issue: `updated` moves on by `version` seconds."""
    body, own_summary = template
    updated = time.strftime("%Y-%m-%dT%H:%M:%S.000+0000", time.gmtime(2e9 + version))
    return body.replace(UPDATED, updated).replace(SUMMARY, summary or own_summary).encode()


async def post(client: httpx.AsyncClient, body: bytes, delivery_id: str) -> httpx.Response:
    headers = {
        "X-Hub-Signature": "sha256=" + sign(SECRET, body),
        "X-Atlassian-Webhook-Identifier": delivery_id,
        "Content-Type": "application/json",
    }
    return await client.post("/webhooks/jira", content=body, headers=headers)


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs webhook deliveries.

    A few lines of asyncio streams instead of a general client: at hundreds of requests a
    second, httpx alone needs most of a core, and the load generator must not starve the
    service it measures on a two-core machine.
    """

    def __init__(self, url: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.host, self.port = host, int(port)
        self.streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def post(self, body: bytes, delivery_id: str) -> int:
        """POST a signed delivery to /webhooks/jira; the status code."""
        if self.streams is None:
            self.streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self.streams
        head = (
            f"POST /webhooks/jira HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"X-Hub-Signature: sha256={sign(SECRET, body)}\r\n"
            f"X-Atlassian-Webhook-Identifier: {delivery_id}\r\n\r\n"
        )
        try:
            writer.write(head.encode() + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            await reader.readexactly(length)
        except (OSError, IndexError, ValueError, asyncio.IncompleteReadError):
            writer.close()
            self.streams = None
            raise ConnectionError(f"delivery {delivery_id} failed") from None
        return status


async def load(
    url: str, token: str, issues: list[tuple[str, str]], seconds: float, rate: float
) -> tuple[Tally, float]:
    """`connections` senders share one schedule of `rate` deliveries a second; each waits
    for its slot, so the load stays at the rate as long as the service keeps up, and the
    senders stop after `seconds` whatever they managed to send."""
    tally = Tally()
    connections = 32
    probe_issue, loaded = issues[0], issues[1:]
    schedule = iter(range(1, 1 << 62))
    started = time.perf_counter()

    async def send(connection: Connection, body: bytes, delivery_id: str) -> None:
        sent = time.perf_counter()
        try:
            status = await connection.post(body, delivery_id)
        except ConnectionError:
            tally.errors += 1
            return
        tally.latencies.append(time.perf_counter() - sent)
        if status == 202:
            tally.accepted.append(delivery_id)
        else:
            tally.refused += 1

    async def sender() -> float:
        connection = Connection(url)
        while time.perf_counter() - started < seconds:
            slot = next(schedule)
            wait = started + slot / rate - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            await send(connection, delivery(loaded[slot % len(loaded)], slot), f"load-{slot}")
        return time.perf_counter()

    async def prober() -> None:
        """Once a second, a change to one issue, polled for in the items API."""
        auth = {"Authorization": f"Bearer {token}"}
        connection = Connection(url)
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            for number in range(1, int(seconds)):
                await asyncio.sleep(started + number - time.perf_counter())
                marker = f"probe-{uuid.uuid4().hex[:12]}"
                body = delivery(probe_issue, 100_000_000 + number, summary=marker)
                posted = time.perf_counter()
                await send(connection, body, f"probe-{number}")
                while time.perf_counter() - posted < 10:
                    if await shows(client, marker, auth):
                        tally.visible.append(time.perf_counter() - posted)
                        break
                    await asyncio.sleep(0.05)  # 20 polls a second: cheap next to the load
                else:
                    tally.invisible += 1

    _, *finished = await asyncio.gather(prober(), *(sender() for _ in range(connections)))
    return tally, max(finished) - started  # the load's duration; the last probe may run on


async def shows(client: httpx.AsyncClient, marker: str, auth: dict[str, str]) -> bool:
    """Whether the items API lists an item whose title holds `marker`."""
    try:
        found = await client.get("/api/items", params={"q": marker}, headers=auth)
    except httpx.HTTPError:
        return False
    return found.status_code == 200 and bool(found.json()["items"])


def settle(
    database_url: str,
    accepted: list[str],
    timeout: float = 120,
    status: str = "processed",
    like: str = "%",
) -> tuple[int, int, float]:
    """Wait for the inbox to finish the deliveries whose ids are `like`; (stored, processed,
    seconds waited)."""
    engine = make_engine(database_url)
    started = time.perf_counter()
    with engine.connect() as connection:
        while True:
            stored, processed = connection.execute(
                text(
                    "SELECT count(*), count(*) FILTER (WHERE status = :status) "
                    "FROM webhook_events WHERE delivery_id LIKE :like"
                ),
                {"status": status, "like": like},
            ).one()
            connection.rollback()
            if processed >= len(accepted) or time.perf_counter() - started > timeout:
                break
            time.sleep(0.2)
    engine.dispose()
    return stored, processed, time.perf_counter() - started


async def closed_loop(url: str, request: Any, count: int, connections: int = 32) -> None:
    """`count` requests, `connections` at a time, as fast as the server answers."""
    numbers = iter(range(count))
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:

        async def one_connection() -> None:
            for number in numbers:
                await request(client, number)

        await asyncio.gather(*(one_connection() for _ in range(connections)))


def breakdown(
    url: str, database_url: str, server: psutil.Process, issues: list[tuple[str, str]]
) -> dict[str, float]:
    """The service's CPU per request, side by side in one run: the framework alone (an
    unknown path), a delivery that is only stored (an event type Ladder ignores), and one
    that is stored and processed (an issue update)."""
    ignored = json.dumps({"webhookEvent": "sprint_started", "pad": "x" * 3000})

    async def unknown(client: httpx.AsyncClient, number: int) -> None:
        await client.get("/no-such-path")

    async def stored_only(client: httpx.AsyncClient, number: int) -> None:
        await post(
            client, ignored.replace("sprint_started", f"sprint_{number}").encode(), f"i{number}"
        )

    async def processed(client: httpx.AsyncClient, number: int) -> None:
        body = delivery(issues[number % len(issues)], 50_000_000 + number)
        await post(client, body, f"b{number}")

    count, costs = 2000, {}
    for name, request in (
        ("framework (404)", unknown),
        ("stored only", stored_only),
        ("stored and processed", processed),
    ):
        before = cpu_seconds(server)
        asyncio.run(closed_loop(url, request, count))
        if request is processed:
            settle(database_url, [""] * count, status="processed", like="b%")
        costs[name] = round((cpu_seconds(server) - before) * 1000 / count, 2)
    return costs


def cpu_seconds(server: psutil.Process) -> float:
    """CPU time the service has used, all its threads: a figure other load does not skew."""
    times = server.cpu_times()
    return times.user + times.system


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def phase(args: argparse.Namespace, jira_url: str, separate_worker: bool) -> dict[str, Any]:
    """One run on a fresh database: `ladder serve` processing events in its worker thread,
    or `ladder serve` storing them and `ladder worker` processing them."""
    ladder_url = f"http://127.0.0.1:{free_port()}"
    with database(args.postgres) as database_url:
        with transaction(session_factory(make_engine(database_url))) as session:
            token = create_token(session, Role.viewer, "benchmark")
        env = os.environ | {
            "LADDER_DATABASE_URL": database_url,
            "LADDER_JIRA_URL": jira_url,
            "LADDER_JIRA_EMAIL": SANDBOX_AUTH[0],
            "LADDER_JIRA_API_TOKEN": SANDBOX_AUTH[1],
            "LADDER_JIRA_WEBHOOK_SECRET": SECRET,
            "LADDER_SCHEDULER": "off",
            "LADDER_WEBHOOK_WORKER": "off" if separate_worker else "on",
            # `ladder worker` also runs the sync schedule: keep it out of the measurement.
            "LADDER_SYNC_CRON": "0 0 1 1 *",
            "LADDER_INCREMENTAL_MINUTES": "100000",
            "LADDER_LOG_LEVEL": "WARNING",
        }
        ladder = [sys.executable, "-c", "from service.cli import app; app()"]
        serve = [*ladder, "serve", "--port", ladder_url.rsplit(":", 1)[1]]
        with ExitStack() as running:
            server = running.enter_context(process(serve, env, f"{ladder_url}/healthz"))
            workers = [server]
            if separate_worker:
                workers.append(running.enter_context(process([*ladder, "worker"], env, None)))
            issues = templates(jira_url)
            before, load_before = sum(map(cpu_seconds, workers)), os.getloadavg()[0]
            client_before = cpu_seconds(psutil.Process())
            tally, elapsed = asyncio.run(load(ladder_url, token, issues, args.seconds, args.rate))
            client_cpu = cpu_seconds(psutil.Process()) - client_before
            stored, processed, drained = settle(database_url, tally.accepted)
            service_cpu = sum(map(cpu_seconds, workers)) - before
            load_after = os.getloadavg()[0]
            costs = None if separate_worker else breakdown(ladder_url, database_url, server, issues)

    results: dict[str, Any] = {
        "seconds": round(elapsed, 1),
        "sent": len(tally.accepted) + tally.refused + tally.errors,
        "accepted (202)": len(tally.accepted),
        "accepted/s": round(len(tally.accepted) / elapsed, 1),
        "refused": tally.refused,
        "transport errors": tally.errors,
        "p50 ms": round(percentile(tally.latencies, 0.50) * 1000, 1),
        "p99 ms": round(percentile(tally.latencies, 0.99) * 1000, 1),
        "max ms": round(max(tally.latencies, default=float("nan")) * 1000, 1),
        "lost (accepted, not stored)": len(tally.accepted) - stored,
        "not processed": len(tally.accepted) - processed,
        "drain after load s": round(drained, 2),
        "probes": len(tally.visible) + tally.invisible,
        "visible p50 ms": round(statistics.median(tally.visible) * 1000, 1)
        if tally.visible
        else None,
        "visible max ms": round(max(tally.visible) * 1000, 1) if tally.visible else None,
        "never visible": tally.invisible,
        "service CPU ms per event": round(service_cpu * 1000 / max(len(tally.accepted), 1), 2),
        "service CPU, cores": round(service_cpu / (elapsed + drained), 2),
        "load generator CPU, cores": round(client_cpu / elapsed, 2),
        "load average before/after": [round(load_before, 1), round(load_after, 1)],
    }
    if costs is not None:
        results["service CPU ms per request, side by side"] = costs
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--rate", type=float, default=600, help="deliveries per second")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    jira_port = free_port()
    jira_url = f"http://127.0.0.1:{jira_port}"
    sandbox = [sys.executable, "-m", "integrations.sandbox.jira", "--port", str(jira_port)]
    sandbox += ["--issues", str(ISSUES)]
    with process(sandbox, os.environ.copy(), f"{jira_url}/rest/api/2/serverInfo"):
        results = {
            "target rate": args.rate,
            "worker thread in `ladder serve`": phase(args, jira_url, separate_worker=False),
            "`ladder serve` + `ladder worker`": phase(args, jira_url, separate_worker=True),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
