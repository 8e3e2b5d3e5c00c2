"""Document API throughput and latency against a running `stackl server` holding 10,000 documents.

For each database (SQLite file; PostgreSQL when PG* variables point at a server) it starts a real server
process, seeds the documents with bulk applies, then drives concurrent GETs and PUTs over HTTP. The baseline,
measured in the same run against the same process, is ``GET /healthz``: the cost of HTTP and the framework
alone, so the ratio shows what the document path adds.

    python -m bench.api [--quick] [--documents N] [--requests N] [--concurrency N] [--sqlite-only]
"""

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path

import httpx

from bench.harness import header, percentile, table
from bench.servers import databases, postgres_database, start_server, stop


def document(i: int) -> dict[str, object]:
    return {
        "name": f"svc-{i:05d}",
        "type": "service",
        "description": f"service number {i}",
        "functional_requirements": ["vm", "nginx"],
        "params": {"http_port": 8000 + i % 1000, "owner": f"team-{i % 17}"},
        "resource_requirements": {"memory": "2GiB", "cpu": "500m"},
    }


async def seed(client: httpx.AsyncClient, count: int) -> None:
    for start in range(0, count, 500):
        batch = [document(i) for i in range(start, min(count, start + 500))]
        (await client.post("/documents", json=batch, timeout=120)).raise_for_status()


async def drive(
    requests: int, concurrency: int, call: Callable[[int], Awaitable[httpx.Response]]
) -> tuple[float, list[float]]:
    """Run ``requests`` calls with ``concurrency`` in flight; return (seconds, per-request latencies)."""
    latencies: list[float] = []
    queue = iter(range(requests))

    async def worker() -> None:
        for i in queue:
            start = time.perf_counter()
            response = await call(i)
            latencies.append(time.perf_counter() - start)
            if response.status_code >= 400:
                raise SystemExit(f"request failed: {response.status_code} {response.text[:200]}")

    start = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(worker())
    return time.perf_counter() - start, latencies


async def run(url: str, documents: int, requests: int, concurrency: int) -> list[list[object]]:
    rng = random.Random(42)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        await seed(client, documents)
        names = [f"svc-{rng.randrange(documents):05d}" for _ in range(requests)]

        async def health(i: int) -> httpx.Response:
            return await client.get("/healthz")

        async def get(i: int) -> httpx.Response:
            return await client.get(f"/documents/service/{names[i]}")

        async def legacy_get(i: int) -> httpx.Response:
            return await client.get(f"/services/{names[i]}")

        async def put(i: int) -> httpx.Response:
            n = int(names[i].split("-")[1])
            body = {**document(n), "description": f"update {i}"}
            return await client.put(f"/documents/service/{names[i]}", json=body)

        await drive(min(200, requests), concurrency, get)  # warm-up
        await drive(min(200, requests), concurrency, health)
        rows: list[list[object]] = []
        base_rate = 0.0
        for label, call in (
            ("GET /healthz (baseline)", health),
            ("GET /documents/service/{n}", get),
            ("GET /services/{n} (0.5)", legacy_get),
            ("PUT /documents/service/{n}", put),
        ):
            seconds, lat = await drive(requests, concurrency, call)
            rate = requests / seconds
            base_rate = base_rate or rate  # the first row is the baseline: same server, same run
            rows.append(
                [label, rate, percentile(lat, 50) * 1000, percentile(lat, 99) * 1000, base_rate / rate]
            )
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (used by the test suite)")
    parser.add_argument("--documents", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=3_000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.documents, args.requests, args.concurrency = 300, 200, 4
    header(
        f"document API: {args.documents} stored services, {args.requests} requests, "
        f"{args.concurrency} concurrent"
    )
    for label in databases(sqlite_only=args.sqlite_only):
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            database_url = stack.enter_context(postgres_database()) if label == "postgresql" else None
            proc, url = start_server(Path(tmp) / "data", database_url)
            try:
                rows = asyncio.run(run(url, args.documents, args.requests, args.concurrency))
            finally:
                stop(proc)
        print(f"\n## {label}")
        table(rows, ["operation", "req/s", "p50 ms", "p99 ms", "x baseline time"])


if __name__ == "__main__":
    main()
