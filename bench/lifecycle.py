"""Stack-instance lifecycle speed through real processes: one big instance, and many small ones at once.

For each database (SQLite file; PostgreSQL when PG* variables point at a server) it starts a `stackl server`
(its in-process worker) and one `stackl agent --executor mock --max-jobs 16`, loads an application of 20
services x 3 functional requirements (every FR a mock invocation that takes no time), then measures:

- **big**: time from `POST /stack_instances` to the task's end with all 60 steps READY (no stages: the 20
  aliases run one after another, each replica's 3 FRs in order: 60 dispatches in a row);
- **many**: 100 small instances (1 service x 1 FR) created by 16 concurrent clients; instances per minute
  until every task has ended, and the p50/p99 of each instance's time to READY.

The **baseline**, in this process: the same operations on the in-memory adapters (no HTTP, no database, no
agent process: a fake agent finishes each job as soon as it is enqueued). The ratio column is the row's time
divided by the baseline's: what the processes, the database and the agent protocol cost on top of the logic.

    python -m bench.lifecycle [--quick] [--many N] [--sqlite-only]
"""

import argparse
import asyncio
import logging
import tempfile
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import structlog

from bench.harness import header, percentile, table
from bench.servers import databases, postgres_database, start_mock_agent, start_server, stop
from stackl.broker.memory import InMemoryBroker
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.clock import SystemClock
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases import documents as document_cases
from stackl.usecases import instance_create, operations
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE, TaskLease

AGENT = "bench-agent"
SERVICES, FRS = 20, 3
CONCURRENCY = 16
FINAL = ("succeeded", "failed", "cancelled")


def documents() -> list[dict[str, Any]]:
    mock = {"generic": {"tool": "shell", "command": "true", "mock_duration": 0}}
    docs: list[dict[str, Any]] = [
        {"name": "bench", "type": "environment"},
        {"name": "here", "type": "location", "agent": AGENT},
        {"name": "z", "type": "zone"},
        {"name": "bench", "type": "stack_infrastructure_template",
         "infrastructure_targets": [{"environment": "bench", "location": "here", "zone": "z"}]},
    ]  # fmt: skip
    docs += [{"name": f"fr{i}", "type": "functional_requirement", "invocation": mock} for i in range(FRS)]
    docs += [
        {"name": f"svc{i}", "type": "service", "functional_requirements": [f"fr{j}" for j in range(FRS)]}
        for i in range(SERVICES)
    ]
    docs.append({"name": "one", "type": "service", "functional_requirements": ["fr0"]})
    docs.append(
        {
            "name": "big",
            "type": "stack_application_template",
            "services": [{"name": f"s{i}", "service": f"svc{i}"} for i in range(SERVICES)],
        }
    )
    docs.append(
        {"name": "small", "type": "stack_application_template", "services": [{"name": "a", "service": "one"}]}
    )
    return docs


def create_body(name: str, sat: str) -> dict[str, Any]:
    return {
        "stack_instance_name": name,
        "stack_application_template": sat,
        "stack_infrastructure_template": "bench",
    }


# --- through real processes ---------------------------------------------------------------------------
async def _deploy(client: httpx.AsyncClient, name: str, sat: str) -> float:
    start = time.perf_counter()
    response = await client.post("/stack_instances", json=create_body(name, sat))
    response.raise_for_status()
    location = response.headers["Location"]
    while True:
        task = (await client.get(location, params={"wait": 10})).json()
        if task["state"] in FINAL:
            if task["state"] != "succeeded":
                raise SystemExit(f"{name}: task {task['state']}: {task.get('result')}")
            return time.perf_counter() - start


async def _many(client: httpx.AsyncClient, count: int, prefix: str) -> tuple[float, list[float]]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> float:
        async with gate:
            return await _deploy(client, f"{prefix}-{i}", "small")

    start = time.perf_counter()
    times = await asyncio.gather(*(one(i) for i in range(count)))
    return time.perf_counter() - start, list(times)


async def _through(url: str, *, big: int, many: int) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        (await client.post("/documents", json=documents())).raise_for_status()
        await _deploy(client, "warmup", "small")
        bigs = [await _deploy(client, f"big-{i}", "big") for i in range(big)]
        wall, times = await _many(client, many, "small")
    return {"big": bigs, "many_wall": wall, "many_times": times}


def run_processes(database: str, *, big: int, many: int) -> dict[str, Any]:
    with ExitStack() as stack:
        url_db = stack.enter_context(postgres_database()) if database == "postgresql" else None
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        server, url = start_server(tmp / "server", url_db)
        stack.callback(stop, server)
        stack.callback(stop, start_mock_agent(AGENT, url, tmp / "agent", max_jobs=16))
        return asyncio.run(_through(url, big=big, many=many))


# --- the in-process baseline ---------------------------------------------------------------------------
async def _fake_agent(ports: Ports) -> None:
    while True:
        items = await ports.broker.claim(queues=[f"agent:{AGENT}"], owner="fake", lease_s=60, limit=64)
        for item in items:
            result = {"status": "READY", "error_message": "", "outputs": {}}
            await ports.broker.complete(item.id, owner="fake", epoch=item.lease_epoch, result=result)
        await asyncio.sleep(0 if items else 0.001)


async def _worker(ports: Ports, stop: asyncio.Event) -> None:
    running: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        for item in await ports.broker.claim(queues=[TASKS_QUEUE], owner="w", lease_s=60, limit=16):
            lease = TaskLease(item=item, owner="w", epoch=item.lease_epoch, broker=ports.broker)
            task = asyncio.create_task(operations.run_task(ports, lease))
            running.add(task)
            task.add_done_callback(running.discard)
        await asyncio.sleep(0.001)


async def _baseline(*, big: int, many: int) -> dict[str, Any]:
    clock = SystemClock()
    ports = Ports(
        store=InMemoryDocumentStore(clock=clock),
        broker=InMemoryBroker(clock),
        policies=StaticPolicyEngine(),
        agents=InMemoryAgentRegistry(),
        clock=clock,
    )
    await document_cases.apply_many(ports, documents(), subject="bench")
    stop = asyncio.Event()
    background = [asyncio.create_task(_fake_agent(ports)), asyncio.create_task(_worker(ports, stop))]

    async def deploy(name: str, sat: str) -> float:
        start = time.perf_counter()
        started = await instance_create.create(ports, create_body(name, sat), subject="bench", source={})
        while True:
            item = await ports.broker.get(str(started.task_id))
            if item is not None and item.final:
                return time.perf_counter() - start
            await asyncio.sleep(0.001)

    bigs = [await deploy(f"big-{i}", "big") for i in range(big)]
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(i: int) -> float:
        async with gate:
            return await deploy(f"small-{i}", "small")

    start = time.perf_counter()
    times = await asyncio.gather(*(one(i) for i in range(many)))
    wall = time.perf_counter() - start
    stop.set()
    for task in background:
        task.cancel()
    return {"big": bigs, "many_wall": wall, "many_times": list(times)}


def rows(label: str, result: dict[str, Any], base: dict[str, Any], many: int) -> list[Sequence[object]]:
    best = min(result["big"])
    per_minute = many / result["many_wall"] * 60
    base_minute = many / base["many_wall"] * 60
    return [
        (f"{label}: big 20x3 to READY", f"{best * 1000:.0f} ms", "", f"{best / min(base['big']):.1f}x"),
        (
            f"{label}: {many} small at once",
            f"{per_minute:.0f} inst/min",
            f"p50 {percentile(result['many_times'], 50) * 1000:.0f} ms, "
            f"p99 {percentile(result['many_times'], 99) * 1000:.0f} ms",
            f"{base_minute / per_minute:.1f}x",
        ),
    ]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 big instance and 20 small ones")
    parser.add_argument("--many", type=int, default=100, help="small instances created at once")
    parser.add_argument("--sqlite-only", action="store_true")
    args = parser.parse_args(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )  # baseline quiet
    big, many = (1, 20) if args.quick else (3, args.many)
    header(f"lifecycle: {SERVICES} services x {FRS} FRs; {many} small instances, {CONCURRENCY} clients")
    base = asyncio.run(_baseline(big=big, many=many))
    out: list[Sequence[object]] = [
        ("baseline in-memory: big 20x3", f"{min(base['big']) * 1000:.0f} ms", "", "1.0x"),
        (
            f"baseline in-memory: {many} small",
            f"{many / base['many_wall'] * 60:.0f} inst/min",
            f"p50 {percentile(base['many_times'], 50) * 1000:.0f} ms",
            "1.0x",
        ),
    ]
    for database in databases(sqlite_only=args.sqlite_only):
        out += rows(database, run_processes(database, big=big, many=many), base, many)
    table(out, ["what", "figure", "latency", "ratio (slower than baseline)"])


if __name__ == "__main__":
    main()
