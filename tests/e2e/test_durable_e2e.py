"""Durable, event-driven tasks through real processes (lifecycle.md §5, issue 12).

One `stackl worker` advancing at most 4 tasks at a time, two servers and three mock agents on one
PostgreSQL. 50 instances, each one step of several seconds, are all in flight at once: a task waiting for its
job holds no worker slot. While they run, the worker is killed (SIGKILL) twice and restarted, and PostgreSQL
is restarted once. Every instance ends READY; every step has exactly one successful attempt, and no two
attempts of one step overlap.
"""

import asyncio
import os
import shutil
import subprocess
from pathlib import Path

import asyncpg
from bench.cluster import Cluster
from tests.e2e.test_cluster_e2e import jobs_and_attempts, overlapping

INSTANCES = 50
STEP_S = 8.0


def restart_postgres() -> None:
    """``pg_ctl restart`` of the server the PG* variables point at (its data directory, asked of it)."""

    async def data_directory() -> str:
        conn = await asyncpg.connect(
            host=os.environ["PGHOST"],
            port=int(os.environ["PGPORT"]),
            user=os.environ.get("PGUSER", "postgres"),
        )
        try:
            return str(await conn.fetchval("SHOW data_directory"))
        finally:
            await conn.close()

    data = asyncio.run(data_directory())
    pg_ctl = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))[-1]
    command = f"{pg_ctl} -D {data} -w -m fast restart"
    as_postgres = os.geteuid() == 0 and shutil.which("su") is not None
    args = ["su", "postgres", "-s", "/bin/sh", "-c", command] if as_postgres else ["sh", "-c", command]
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, timeout=60)


def running_jobs(pg_url: str) -> int:
    jobs, _ = jobs_and_attempts(pg_url)
    return sum(1 for j in jobs if j.state == "running")


def test_fifty_long_deployments_on_one_worker_survive_worker_kills_and_a_database_restart(
    pg_url: str, tmp_path: Path
) -> None:
    nodes = Cluster(tmp_path / "cluster", pg_url, workers=1, concurrency=4, lease_s=2.0, max_jobs=20)
    try:
        nodes.up()
        nodes.load_model(step_s=STEP_S)
        names = [f"long-{k:02d}" for k in range(INSTANCES)]
        for index, name in enumerate(names):
            nodes.create(name, index)
            if index == 10:
                nodes.worker_procs[0].kill()  # killed while it dispatches
                nodes.start_worker(0)
        # Far more deployments in flight than the worker's 4 slots: waiting tasks hold none.
        peak = 0

        def many_running() -> bool:
            nonlocal peak
            peak = max(peak, running_jobs(pg_url))
            return peak >= 40

        nodes.wait(many_running, 60, "most jobs to run side by side")
        nodes.worker_procs[0].kill()  # killed while every task waits
        restart_postgres()
        nodes.start_worker(0)
        nodes.wait(lambda: nodes.ready(names) == INSTANCES, 300, "every instance to be READY")

        jobs, attempts = jobs_and_attempts(pg_url)
        by_step: dict[str, list[str]] = {}
        spans: dict[str, list[tuple[object, object]]] = {}
        for job in jobs:
            step = f"{job.payload['stack_instance']}/{job.payload['functional_requirement']}"
            for attempt in attempts[job.id]:
                if attempt.result is not None:
                    by_step.setdefault(step, []).append(str(attempt.result.get("status")))
                if attempt.started_at is not None and attempt.result_at is not None:
                    spans.setdefault(step, []).append((attempt.started_at, attempt.result_at))
        assert len(by_step) == INSTANCES
        assert {step: results.count("READY") for step, results in by_step.items()} == dict.fromkeys(
            by_step, 1
        )
        assert not [step for step, s in spans.items() if overlapping(s)]  # type: ignore[arg-type]
    finally:
        codes = nodes.down()
    assert set(codes.values()) <= {0, None}, {
        p.name: p.log()[-3000:] for p in [*nodes.servers, *nodes.worker_procs, *nodes.agents]
    }
