"""A store hiccup is not an abandon: PostgreSQL restarts in the middle of 20 deployments (issue 12, item 3).

A `stackl server` on PostgreSQL (its in-process worker on, its embedded agent off) and one `stackl agent
--executor mock` deploy 20 instances of two mock steps of a few seconds each. While jobs run, the test stops
the PostgreSQL cluster the tests use (``pg_ctl stop -m fast``: every connection is cut) and starts it again
(``pg_ctl restart``) once the agent was answered 503 for a heartbeat and for a result, so the outage surely
met both (a bare restart lasts about a second and usually falls between two heartbeats). The agent retries,
keeping its jobs and their results until they are delivered. Every instance ends READY, and every step ran
exactly once: one started attempt, one READY result (read from the database, as ``test_cluster_e2e`` does);
the agent abandoned, fenced and dropped nothing, and no result was refused.
"""

import asyncio
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from tests import factories
from tests.e2e.conftest import STACKL, ChildProcess, ServerProcess, process_env, wait_until

from stackl.broker.sql import SqlBroker
from stackl.datastore.agents import JobAttempt
from stackl.datastore.agents_sql import SqlAgentRegistry
from stackl.datastore.sql import SqlDocumentStore

AGENT = "hiccup-agent"
INSTANCES = 20
STEP_S = 3.0  # each mock step's duration: long enough for the restart to land while jobs run
TERMINAL = ("succeeded", "failed", "cancelled")


@dataclass
class AgentProcess(ChildProcess):
    """A running `stackl agent --executor mock` and its JSON log."""

    url: str
    data_dir: Path
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            *STACKL,
            "agent",
            "--name",
            AGENT,
            "--server",
            self.url,
            "--executor",
            "mock",
            "--max-jobs",
            "16",
            "--data-dir",
            str(self.data_dir),
            "--shutdown-timeout",
            "10",
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log().splitlines() if line.startswith("{")]


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[[ServerProcess], AgentProcess]]:
    started: list[AgentProcess] = []

    def make(server: ServerProcess) -> AgentProcess:
        agent = AgentProcess(
            url=server.url, data_dir=tmp_path / "agent", env=server.env, log_path=tmp_path / "agent.log"
        )
        agent.start()
        started.append(agent)
        return agent

    yield make
    for agent in started:
        if agent.proc is not None:
            assert agent.stop() == 0, agent.log()
        assert "Traceback" not in agent.log(), agent.log()


def documents() -> list[dict[str, Any]]:
    step = {"generic": {"tool": "shell", "command": "true", "mock_duration": STEP_S}}
    return [
        factories.environment(),
        factories.location(agent=AGENT),
        factories.zone(),
        factories.functional_requirement("step_a", params={}, invocation=step),
        factories.functional_requirement("step_b", params={}, invocation=step),
        factories.service("svc_a", functional_requirements=["step_a"], params={}, resource_requirements={}),
        factories.service("svc_b", functional_requirements=["step_b"], params={}, resource_requirements={}),
        factories.stack_application_template(
            "app", services=[{"name": "a", "service": "svc_a"}, {"name": "b", "service": "svc_b"}]
        ),
        factories.stack_infrastructure_template("prod"),
    ]


# --- the PostgreSQL cluster of the tests (scripts/start-postgres), found through the PG* variables --------
async def _admin(sql: str) -> Any:
    conn = await asyncpg.connect(
        host=os.environ.get("PGHOST", "127.0.0.1"),
        port=int(os.environ.get("PGPORT", "5432")),
        user=os.environ.get("PGUSER", "postgres"),
        database="postgres",
    )
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


@dataclass
class Postgres:
    """The cluster's data directory and binaries, asked of the server itself while it is up."""

    data_dir: str
    bindir: str

    @classmethod
    def find(cls) -> "Postgres":
        data_dir = asyncio.run(_admin("SHOW data_directory"))
        bindir = asyncio.run(_admin("SELECT setting FROM pg_config WHERE name = 'BINDIR'"))
        return cls(str(data_dir), str(bindir))

    def pg_ctl(self, *args: str) -> None:
        """Run pg_ctl on the cluster (as its owner when the tests run as root), waiting for it to finish."""
        command = [f"{self.bindir}/pg_ctl", "-D", self.data_dir, "-w", *args]
        if os.geteuid() == 0:
            command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(command)]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)

    def stop(self) -> None:
        self.pg_ctl("-m", "fast", "stop")  # every connection is cut at once

    def start(self) -> None:
        # ``restart`` of a stopped cluster starts it with the options it last ran with (postmaster.opts);
        # its log goes to a file in the data directory, which the cluster's owner may write.
        self.pg_ctl("-l", f"{self.data_dir}/restart.log", "restart")


def postmaster_started() -> str:
    return str(asyncio.run(_admin("SELECT pg_postmaster_start_time()")))


def attempts_by_step(url: str) -> dict[tuple[str, str, str], list[JobAttempt]]:
    """Every attempt of every job the agent was sent, by step (instance, alias, FR), from the database."""

    async def go() -> dict[tuple[str, str, str], list[JobAttempt]]:
        async with SqlDocumentStore(url) as store, SqlBroker(store) as broker:
            registry = SqlAgentRegistry(store)
            found: dict[tuple[str, str, str], list[JobAttempt]] = {}
            for job in await broker.list(queue=f"agent:{AGENT}"):
                payload = job.payload
                step = (
                    str(payload["stack_instance"]),
                    str(payload["service"]),
                    str(payload["functional_requirement"]),
                )
                found.setdefault(step, []).extend(await registry.attempts(job.id))
            return found

    return asyncio.run(go())


def hit_the_outage(agent: AgentProcess) -> bool:
    """Whether a heartbeat failed and a result was retried, with the server up (503, not refused)."""
    events = agent.events()
    heartbeat = any(e.get("event") == "agent_heartbeat_failed" and e.get("status") == 503 for e in events)
    result = any(
        e.get("event") == "agent_call_retried" and "/result" in str(e.get("path")) and e.get("status") == 503
        for e in events
    )
    return heartbeat and result


def get(client: httpx.Client, path: str, *, missing_ok: bool = False) -> dict[str, Any] | None:
    """A GET answer's body, or None while the server cannot answer it (the database is restarting)."""
    try:
        response = client.get(path)
    except httpx.TransportError:
        return None
    if response.status_code == 503 or (missing_ok and response.status_code == 404):
        return None
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_a_postgresql_restart_mid_deployment_abandons_nothing_and_runs_no_step_twice(
    pg_url: str,
    tmp_path: Path,
    server_factory: Callable[..., ServerProcess],
    agent_factory: Callable[[ServerProcess], AgentProcess],
) -> None:
    env = process_env(tmp_path) | {"STACKL_SERVER__AGENT": "false", "STACKL_LOGGING__LEVEL": "info"}
    server = server_factory("--database-url", pg_url, env=env)
    agent = agent_factory(server)
    with httpx.Client(base_url=server.url, timeout=40) as client:
        wait_until(
            lambda: (get(client, f"/agents/{AGENT}", missing_ok=True) or {}).get("state") == "online",
            timeout_s=60,
            what="the agent to come online",
        )
        assert client.post("/documents", json=documents()).status_code == 200
        tasks: dict[str, str] = {}
        for index in range(INSTANCES):
            name = f"inst-{index:02d}"
            body = {"stack_instance_name": name, "stack_application_template": "app"}
            created = client.post("/stack_instances", json=body | {"stack_infrastructure_template": "prod"})
            assert created.status_code == 200, created.text
            tasks[name] = created.headers["Stackl-Task-Id"]

        def running_jobs() -> int:
            return len((get(client, f"/agents/{AGENT}") or {}).get("running_jobs", []))

        wait_until(lambda: running_jobs() >= 4, timeout_s=60, what="jobs to run on the agent")
        before = postmaster_started()
        postgres = Postgres.find()
        postgres.stop()
        try:  # down until the agent was refused a heartbeat and a result: well within the 45 s fencing
            wait_until(lambda: hit_the_outage(agent), timeout_s=40, what="agent calls during the outage")
        finally:
            postgres.start()
        assert postmaster_started() != before  # the cluster really went down and came back

        def finished() -> bool:
            views = [get(client, f"/tasks/{task_id}") for task_id in tasks.values()]
            return all(view is not None and view["state"] in TERMINAL for view in views)

        wait_until(finished, timeout_s=240, what="every task to finish")
        views = {
            name: client.get(f"/tasks/{task_id}", params={"include": "steps"}).json()
            for name, task_id in tasks.items()
        }
    for name, view in views.items():
        assert view["state"] == "succeeded", (name, view, server.log()[-5000:])
        assert [step["status"] for step in view["steps"]] == ["READY", "READY"], (name, view["steps"])

    # No step ran twice: all the attempts of all the jobs of a step hold one start and one READY result.
    attempts = attempts_by_step(pg_url)
    assert len(attempts) == 2 * INSTANCES
    for step, found in attempts.items():
        started = [a for a in found if a.started_at is not None]
        ready = [a for a in found if a.result is not None and a.result.get("status") == "READY"]
        assert (len(started), len(ready)) == (1, 1), (step, found)

    events = {e.get("event") for e in agent.events()}
    assert not events & {"job_abandoned", "job_fenced", "job_dropped", "job_result_refused"}, agent.log()
    assert '"request_failed"' not in server.log()  # the outage was answered 503, never 500
