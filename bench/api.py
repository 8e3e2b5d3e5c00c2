"""Document API throughput and latency against a running `stackl server` holding 10,000 documents.

For each database (SQLite file; PostgreSQL when PG* variables point at a server) it starts a real server
process, seeds the documents with bulk applies, then drives concurrent GETs and PUTs over HTTP. The baseline,
measured in the same run against the same process, is ``GET /healthz``: the cost of HTTP and the framework
alone, so the ratio shows what the document path adds.

    python -m bench.api [--quick] [--documents N] [--requests N] [--concurrency N] [--sqlite-only]
"""

import argparse
import asyncio
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

from bench.harness import header, percentile, table


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_server(data_dir: Path, database_url: str | None) -> tuple[subprocess.Popen[bytes], str]:
    """Start `stackl server` and wait until it is ready."""
    port = _free_port()
    args = [
        sys.executable,
        "-m",
        "stackl",
        "server",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--log-level",
        "warning",
    ]
    if database_url:
        args += ["--database-url", database_url]
    env = {k: v for k, v in os.environ.items() if not k.startswith("STACKL_")}
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become ready")


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


def pg_url() -> str | None:
    if not os.environ.get("PGHOST"):
        return None
    return (
        f"postgresql+asyncpg://{os.environ.get('PGUSER', 'postgres')}@{os.environ['PGHOST']}:"
        f"{os.environ.get('PGPORT', '5432')}/{{db}}"
    )


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
    targets: list[tuple[str, str | None]] = [("sqlite", None)]
    template = pg_url()
    if template and not args.sqlite_only:
        targets.append(("postgresql", template))
    for label, url_template in targets:
        with tempfile.TemporaryDirectory() as tmp:
            database_url = None
            db_name = None
            if url_template:
                db_name = f"bench_{uuid.uuid4().hex[:10]}"
                subprocess.run(["createdb", db_name], check=True)
                database_url = url_template.format(db=db_name)
            proc, url = start_server(Path(tmp) / "data", database_url)
            try:
                rows = asyncio.run(run(url, args.documents, args.requests, args.concurrency))
            finally:
                proc.terminate()
                proc.wait(timeout=30)
                if db_name:
                    subprocess.run(["dropdb", "--if-exists", db_name], check=False)
        print(f"\n## {label}")
        table(rows, ["operation", "req/s", "p50 ms", "p99 ms", "x baseline time"])


if __name__ == "__main__":
    main()
