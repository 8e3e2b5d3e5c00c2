"""Deployments in flight at once: N instances, each one mock step of D seconds, on one server with defaults.

For each database (SQLite file; PostgreSQL when PG* variables point at a server) it starts a `stackl server`
with its default settings (its in-process worker advances 4 tasks at a time) and one `stackl agent --executor
mock --max-jobs N`, creates N instances of a one-step application at once (32 concurrent clients), and
measures:

- **wall**: from the first `POST /stack_instances` until every task has ended (all must succeed), and its
  **ratio to D**: 1.0x is the ideal (every step runs side by side); a worker that held a slot per
  deployment would need about N/4 x D;
- **created**: how long the N creations took (they count in the wall time);
- **statements/s while waiting**: SQL statements the server sent per second (``stackl_db_statements`` of
  `/metrics`) from the moment every job is running until the first one ends; a waiting task should cost a
  row, not reads, so this figure must not grow with N. The agent's heartbeats (every 10 s) and the scrapes
  themselves are not (one scrape's statements, measured first, are subtracted for each).

The baseline is D itself (the step's own duration) and the same run with N=10, in the same process: the
statements per second at N=10 against those at N show whether waiting tasks cost the database anything.

    python -m bench.concurrency [--instances 200] [--duration 20] [--sqlite-only] [--quick]
"""

import argparse
import asyncio
import re
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.harness import header, table
from bench.servers import databases, postgres_database, start_mock_agent, start_server, stop

AGENT = "bench-agent"
CLIENTS = 32
FINAL = ("succeeded", "failed", "cancelled")
_METRIC = re.compile(r"^stackl_(tasks_total|jobs_total|db_statements)(\{[^}]*\})? ([0-9.e+]+)$", re.M)


def documents(duration_s: float) -> list[dict[str, Any]]:
    mock = {"generic": {"tool": "shell", "command": "true", "mock_duration": duration_s}}
    return [
        {"name": "bench", "type": "environment"},
        {"name": "here", "type": "location", "agent": AGENT},
        {"name": "z", "type": "zone"},
        {"name": "bench", "type": "stack_infrastructure_template",
         "infrastructure_targets": [{"environment": "bench", "location": "here", "zone": "z"}]},
        {"name": "step", "type": "functional_requirement", "invocation": mock},
        {"name": "one", "type": "service", "functional_requirements": ["step"]},
        {"name": "app", "type": "stack_application_template", "services": [{"name": "a", "service": "one"}]},
    ]  # fmt: skip


async def _scrape(client: httpx.AsyncClient) -> dict[str, float]:
    """Tasks by state, jobs by state and statements so far, from `/metrics`."""
    text = (await client.get("/metrics")).text
    found: dict[str, float] = {}
    for name, labels, value in _METRIC.findall(text):
        state = re.search(r'state="([^"]+)"', labels or "")
        key = f"{name}:{state.group(1)}" if state else name
        found[key] = found.get(key, 0.0) + float(value)
    return found


async def _run(url: str, count: int, duration_s: float) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        (await client.post("/documents", json=documents(duration_s))).raise_for_status()
        gate = asyncio.Semaphore(CLIENTS)

        async def create(i: int) -> None:
            body = {"stack_instance_name": f"i{i}", "stack_application_template": "app",
                    "stack_infrastructure_template": "bench"}  # fmt: skip
            async with gate:
                (await client.post("/stack_instances", json=body)).raise_for_status()

        before = (await _scrape(client)).get("db_statements", 0.0)
        scrape_cost = (await _scrape(client)).get("db_statements", 0.0) - before  # what one scrape sends
        start = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(count)))
        created = time.perf_counter() - start
        window: list[tuple[float, float]] = []  # (time, statements) while every job runs and none ended
        while True:
            seen = await _scrape(client)
            now = time.perf_counter()
            ended = sum(seen.get(f"tasks_total:{s}", 0) for s in FINAL)
            if ended >= count:
                break
            if seen.get("jobs_total:running", 0) >= count and not seen.get("jobs_total:succeeded", 0):
                window.append((now, seen.get("db_statements", 0.0)))
            await asyncio.sleep(0.5)
        wall = now - start
        if seen.get("tasks_total:succeeded", 0) < count:
            raise SystemExit(f"{count - seen.get('tasks_total:succeeded', 0):.0f} task(s) did not succeed")
    rate = float("nan")
    if len(window) >= 2 and window[-1][0] > window[0][0]:  # without the scrapes' own statements
        sent = window[-1][1] - window[0][1] - (len(window) - 1) * scrape_cost
        rate = sent / (window[-1][0] - window[0][0])
    return {
        "wall": wall,
        "created": created,
        "rate": rate,
        "window": window[-1][0] - window[0][0] if window else 0,
    }


def run(database: str, count: int, duration_s: float) -> dict[str, float]:
    with ExitStack() as stack:
        url_db = stack.enter_context(postgres_database()) if database == "postgresql" else None
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server, url = start_server(tmp / "server", url_db)
        stack.callback(stop, server)
        stack.callback(stop, start_mock_agent(AGENT, url, tmp / "agent", max_jobs=min(count, 1024)))
        return asyncio.run(_run(url, count, duration_s))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=200, help="instances created at once (N)")
    parser.add_argument("--duration", type=float, default=20.0, help="each instance's one step, seconds (D)")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--quick", action="store_true", help="20 instances of a 2 s step (the test suite)")
    args = parser.parse_args(argv)
    count, duration_s = (20, 2.0) if args.quick else (args.instances, args.duration)
    header(f"concurrency: {count} instances x one mock step of {duration_s:g} s, server defaults")
    rows: list[Sequence[object]] = []
    for database in databases(sqlite_only=args.sqlite_only):
        small = run(database, 10, duration_s)
        big = run(database, count, duration_s)
        for n, result in ((10, small), (count, big)):
            rows.append(
                (
                    f"{database}: {n} x {duration_s:g} s",
                    f"{result['wall']:.1f} s",
                    f"{result['wall'] / duration_s:.2f}x",
                    f"{result['created']:.1f} s",
                    f"{result['rate']:.1f} ({result['window']:.0f} s)",
                    f"{result['rate'] / small['rate']:.2f}x" if n != 10 else "1.00x",
                )
            )
    table(
        rows,
        ["what", "wall until all ended", "ratio to D", "created in", "statements/s waiting (window)",
         "statements/s vs N=10"],
    )  # fmt: skip


if __name__ == "__main__":
    main()
