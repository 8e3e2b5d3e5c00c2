"""Multi-node: two `stackl server`, two `stackl worker` and three agents on one PostgreSQL (``bench.cluster``).

50 instances are created through both servers in turn; after 20, one server and one worker are killed
(SIGKILL) and the creates go on through the other server; after 35 both are restarted. Every instance ends
READY; no step ran twice at the same time (every attempt of every step's jobs, from the database, has a
start-to-result interval that overlaps no other); the surviving server's event stream saw the tasks succeed
and its metrics count them; the worker logs are JSON lines carrying the task id. Everything stops with exit 0.
"""

import asyncio
import itertools
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from bench.cluster import Cluster
from prometheus_client.parser import text_string_to_metric_families

from stackl.broker.base import Item
from stackl.broker.sql import SqlBroker
from stackl.datastore.agents import JobAttempt
from stackl.datastore.agents_sql import SqlAgentRegistry
from stackl.datastore.sql import SqlDocumentStore

INSTANCES = 50
KILL_AFTER, RESTART_AFTER = 20, 35


def jobs_and_attempts(url: str) -> tuple[list[Item], dict[str, list[JobAttempt]]]:
    async def go() -> tuple[list[Item], dict[str, list[JobAttempt]]]:
        async with SqlDocumentStore(url) as store, SqlBroker(store) as broker:
            registry = SqlAgentRegistry(store)
            jobs = [i for i in await broker.list() if i.queue.startswith("agent:")]
            return jobs, {job.id: await registry.attempts(job.id) for job in jobs}

    return asyncio.run(go())


def overlapping(intervals: list[tuple[datetime, datetime]]) -> bool:
    ordered = sorted(intervals)
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(ordered))


def test_fifty_instances_through_two_servers_survive_a_killed_server_and_worker(
    pg_url: str, tmp_path: Path
) -> None:
    nodes = Cluster(tmp_path / "cluster", pg_url, workers=2, concurrency=4, lease_s=2.0, log_level="info")
    try:
        nodes.up()
        nodes.load_model(step_s=0.3)
        survivor = nodes.url(1)
        assert httpx.get(f"{survivor}/events", timeout=10).status_code == 200  # its event hub starts watching
        names = [f"inst-{k:02d}" for k in range(INSTANCES)]
        for index, name in enumerate(names):
            if index == KILL_AFTER:
                nodes.servers[0].kill()
                nodes.worker_procs[0].kill()
            if index == RESTART_AFTER:
                nodes.start_server(0)
                nodes.start_worker(0)
            nodes.create(name, index)
        nodes.wait(lambda: nodes.ready(names) == INSTANCES, 300, "every instance to be READY")

        docs = nodes.instances()
        assert sorted(docs) == names
        for name in names:
            assert {e["status"] for e in docs[name]["status"]} == {"READY"}, docs[name]["status"]

        # No step ran twice at the same time: all attempts of all jobs of one step, start to result.
        jobs, attempts = jobs_and_attempts(pg_url)
        by_step: dict[tuple[str, str], list[tuple[datetime, datetime]]] = {}
        for job in jobs:
            step = (str(job.payload.get("stack_instance")), str(job.payload.get("functional_requirement")))
            for attempt in attempts[job.id]:
                if attempt.started_at is not None and attempt.result_at is not None:
                    by_step.setdefault(step, []).append((attempt.started_at, attempt.result_at))
        assert len(by_step) == INSTANCES
        assert not [step for step, spans in by_step.items() if overlapping(spans)]
        succeeded = [j for j in jobs if j.state == "succeeded"]
        assert (
            len({(j.payload["stack_instance"], j.payload["functional_requirement"]) for j in succeeded}) == 50
        )

        # The surviving server's events and metrics saw the whole run.
        def task_events() -> list[dict[str, Any]]:
            page = httpx.get(
                f"{survivor}/events", params={"kind": "task.succeeded", "limit": 1000}, timeout=10
            ).json()
            return list(page["items"])

        nodes.wait(lambda: len(task_events()) >= INSTANCES, 30, "the task events")
        assert {e["resource"]["name"] for e in task_events()} >= set(names)
        metrics = httpx.get(f"{survivor}/metrics", timeout=30).text
        values = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(metrics)
            for s in family.samples
        }
        created = values[("stackl_tasks_total", (("kind", "create"), ("state", "succeeded")))]
        assert created == INSTANCES
        assert values[("stackl_agents", (("state", "online"),))] >= 3

        # Structured logs: worker lines are JSON with the task id bound.
        lines = [line for line in nodes.worker_procs[1].log().splitlines() if line.startswith("{")]
        assert any('"task_id"' in line for line in lines)
    finally:
        codes = nodes.down()
    assert set(codes.values()) <= {0, None}, {
        p.name: p.log()[-3000:] for p in [*nodes.servers, *nodes.worker_procs, *nodes.agents]
    }
    for proc in [*nodes.servers, *nodes.worker_procs, *nodes.agents]:
        assert "Traceback" not in proc.log(), proc.log()[-5000:]
