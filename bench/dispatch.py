"""Dispatch throughput and latency through real processes: agent jobs and worker tasks.

For each database (SQLite file; PostgreSQL when PG* variables point at a server) it starts a `stackl server`
(its in-process worker and embedded agent off) and one `stackl agent --executor mock --max-jobs 16`, then:

- **jobs**: enqueues N mock jobs (``mock_duration: 0``) straight into the broker on the server's database and
  measures jobs/s until every result is stored, and the latency from enqueue to the agent's ``start``
  (``job_attempts.started_at - queue_items.created_at``) p50/p99 — under that burst, and again for jobs
  enqueued one at a time at a steady pace below capacity (dispatch latency without a backlog);
- **tasks**: starts a `stackl worker --concurrency 16` and measures N ``noop`` tasks/s on the ``tasks`` queue,
  with the enqueue → claim latency;
- **baseline**, in the same run on the same database: the same number of items enqueued, claimed (16 at a
  time) and completed directly through the broker in this process: no HTTP, no agent, no worker. The ratio
  column is the baseline rate divided by the row's rate (how many times slower than the bare queue);
- **CPU per job** of the burst: the CPU time (user + system, from ``/proc``) the server, the agent and this
  process (the enqueuer) spent during the burst, divided by the jobs: where the cost of a job goes.

    python -m bench.dispatch [--quick] [--jobs N] [--tasks N] [--paced N] [--sqlite-only]
"""

import argparse
import asyncio
import os
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.harness import header, percentile, table
from bench.servers import (
    PROFILE_ENV,
    clean_env,
    databases,
    postgres_database,
    stackl_command,
    start_server,
    stop,
)
from stackl.broker.base import ItemSpec
from stackl.broker.sql import SqlBroker
from stackl.datastore import schema
from stackl.datastore.sql import SqlDocumentStore
from stackl.usecases.tasks import TASKS_QUEUE

AGENT = "bench-agent"
MAX_JOBS = 16
CONCURRENCY = 16
PACE_S = 0.02  # paced run: one job every 20 ms (50/s), well below capacity


def bench_env(**extra: str) -> dict[str, str]:
    return clean_env(STACKL_SERVER__AGENT="false", STACKL_SERVER__WORKER="false", **extra)


def job_payload(i: int) -> dict[str, object]:
    return {
        "task_id": "BENCH",
        "action": "create",
        "stack_instance": "bench",
        "service": "web",
        "replica": i,
        "functional_requirement": "nginx",
        "tool": "shell",
        "agent": AGENT,
        "invocation": {"command": "true", "mock_duration": 0},
        "provisioning_parameters": {},
        "secrets": {},
    }


def start_agent(url: str, data_dir: Path) -> subprocess.Popen[bytes]:
    args = stackl_command("agent", "agent", "--name", AGENT, "--server", url, "--executor", "mock")
    args += ["--max-jobs", str(MAX_JOBS), "--data-dir", str(data_dir), "--log-level", "warning"]
    proc = subprocess.Popen(args, env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/agents/{AGENT}", timeout=5)
        if answer.status_code == 200 and answer.json().get("state") == "online":
            return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("agent did not come online")


def start_worker(database: list[str]) -> subprocess.Popen[bytes]:
    args = stackl_command("worker", "worker", "--concurrency", str(CONCURRENCY), *database)
    args += ["--log-level", "warning"]
    return subprocess.Popen(args, env=bench_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def drained(broker: SqlBroker, queue: str, *, timeout_s: float = 600) -> None:
    """Wait until ``queue`` has nothing queued or running."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        depth = await broker.depth(queue)
        if depth.queued == 0 and depth.running == 0:
            return
        await asyncio.sleep(0.005)
    raise SystemExit(f"queue {queue} did not drain within {timeout_s} s")


async def latencies(store: SqlDocumentStore, ids: Sequence[str], *, agent_start: bool) -> list[float]:
    """Seconds from enqueue to the agent's start (jobs) or to the first claim (tasks)."""
    q, a = schema.queue_items, schema.job_attempts
    if agent_start:
        query = (
            sa.select(q.c.created_at, a.c.started_at).join(a, a.c.job_id == q.c.id).where(a.c.attempt == 1)
        )
    else:
        query = sa.select(q.c.created_at, q.c.started_at)
    wanted = set(ids)
    async with store.engine.connect() as connection:
        rows = (await connection.execute(query.where(q.c.id.in_(list(wanted))))).all()
    return [(end - begin).total_seconds() for begin, end in rows if end is not None and begin is not None]


async def enqueue(broker: SqlBroker, specs: Sequence[ItemSpec], *, pace_s: float = 0) -> list[str]:
    ids = []
    for spec in specs:
        ids.append((await broker.enqueue(spec)).id)
        if pace_s:
            await asyncio.sleep(pace_s)
    return ids


async def baseline(broker: SqlBroker, count: int) -> float:
    """Items/s enqueued, claimed 16 at a time and completed through the broker alone."""
    queue = f"bench:{uuid.uuid4().hex[:8]}"
    start = time.perf_counter()
    await enqueue(broker, [ItemSpec(queue=queue, kind="job", payload=job_payload(i)) for i in range(count)])
    done = 0
    while done < count:
        items = await broker.claim(queues=[queue], owner="bench", limit=MAX_JOBS)
        for item in items:
            await broker.complete(item.id, owner="bench", epoch=item.lease_epoch, result={"status": "READY"})
        done += len(items)
    return count / (time.perf_counter() - start)


def cpu_s(pid: int | None = None) -> float:
    """CPU seconds (user + system) a process used so far; 0 where ``/proc`` is missing."""
    try:
        fields = Path(f"/proc/{pid or 'self'}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_jobs(
    url: str, database_url: str, jobs: int, paced: int, *, pids: dict[str, int]
) -> tuple[list[list[object]], str]:
    async with SqlDocumentStore(database_url) as store, SqlBroker(store) as broker:
        base = await baseline(broker, jobs)
        queue = f"agent:{AGENT}"
        specs = [ItemSpec(queue=queue, kind="job", payload=job_payload(i)) for i in range(jobs)]
        await enqueue(broker, specs[: min(20, jobs)])  # warm-up: connections, first claims
        await drained(broker, queue)
        cpu_before = {role: cpu_s(pid) for role, pid in pids.items()} | {"bench": cpu_s()}
        start = time.perf_counter()
        burst = await enqueue(broker, specs)
        await drained(broker, queue)
        rate = jobs / (time.perf_counter() - start)
        cpu_after = {role: cpu_s(pid) for role, pid in pids.items()} | {"bench": cpu_s()}
        burst_lat = await latencies(store, burst, agent_start=True)
        paced_ids = await enqueue(broker, specs[:paced], pace_s=PACE_S)
        await drained(broker, queue)
        paced_lat = await latencies(store, paced_ids, agent_start=True)
    ms = 1000.0
    cpu = ", ".join(
        f"{role} {(cpu_after[role] - cpu_before[role]) * ms / jobs:.2f}" for role in sorted(cpu_after)
    )
    return [
        ["broker in-process (baseline)", base, "", "", 1.0],
        [f"jobs via agent, burst of {jobs}", rate, *_p(burst_lat, ms), base / rate],
        [f"jobs via agent, paced {1 / PACE_S:.0f}/s x {paced}", "", *_p(paced_lat, ms), ""],
    ], f"# CPU ms per job of the burst: {cpu}"


async def run_tasks(database: list[str], database_url: str, tasks: int) -> list[list[object]]:
    async with SqlDocumentStore(database_url) as store, SqlBroker(store) as broker:
        base = await baseline(broker, tasks)
        worker = start_worker(database)
        try:
            await enqueue(broker, [ItemSpec(queue=TASKS_QUEUE, kind="noop") for _ in range(min(20, tasks))])
            await drained(broker, TASKS_QUEUE, timeout_s=60)  # the worker is up and warm
            specs = [ItemSpec(queue=TASKS_QUEUE, kind="noop", max_attempts=10) for _ in range(tasks)]
            start = time.perf_counter()
            ids = await enqueue(broker, specs)
            await drained(broker, TASKS_QUEUE)
            rate = tasks / (time.perf_counter() - start)
        finally:
            stop(worker)
        lat = await latencies(store, ids, agent_start=False)
    return [
        ["broker in-process (baseline)", base, "", "", 1.0],
        [f"noop tasks via worker, burst of {tasks}", rate, *_p(lat, 1000.0), base / rate],
    ]


def _p(values: Sequence[float], scale: float) -> list[object]:
    return [percentile(values, 50) * scale, percentile(values, 99) * scale]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small run (used by the test suite)")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--paced", type=int, default=200, help="jobs of the paced latency run")
    parser.add_argument("--sqlite-only", action="store_true")
    parser.add_argument("--postgresql-only", action="store_true")
    parser.add_argument(
        "--profile", metavar="DIR", help="run the server, agent and worker under cProfile; files in DIR"
    )
    args = parser.parse_args()
    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
        os.environ[PROFILE_ENV] = str(Path(args.profile).resolve())
    if args.quick:
        args.jobs, args.tasks, args.paced = 60, 60, 20
    header(
        f"dispatch: {args.jobs} mock jobs through 1 agent (max {MAX_JOBS} jobs), "
        f"{args.tasks} noop tasks through 1 worker (concurrency {CONCURRENCY})"
    )
    for label in databases(sqlite_only=args.sqlite_only):
        if args.postgresql_only and label != "postgresql":
            continue
        with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
            data_dir = Path(tmp) / "data"
            database_url = f"sqlite+aiosqlite:///{data_dir / 'stackl.db'}"
            database = ["--data-dir", str(data_dir)]
            if label == "postgresql":
                database_url = stack.enter_context(postgres_database())
                database = ["--database-url", database_url]
            server, url = start_server(
                data_dir, database_url if label == "postgresql" else None, env=bench_env()
            )
            try:
                agent = start_agent(url, Path(tmp) / "agent")
                try:
                    pids = {"server": server.pid, "agent": agent.pid}
                    job_rows, cpu = asyncio.run(run_jobs(url, database_url, args.jobs, args.paced, pids=pids))
                finally:
                    stop(agent)
                task_rows = asyncio.run(run_tasks(database, database_url, args.tasks))
            finally:
                stop(server)
        print(f"\n## {label}")
        table(job_rows + task_rows[1:], ["path", "items/s", "p50 ms", "p99 ms", "x baseline time"])
        print(f"# tasks baseline (same database, second measurement): {task_rows[0][1]:.0f} items/s")
        print(cpu)


if __name__ == "__main__":
    main()
