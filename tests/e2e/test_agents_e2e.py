"""Real `stackl server` and `stackl agent --executor mock` processes speaking the agent protocol.

The test enqueues jobs straight into the server's database with a ``SqlBroker`` (the worker that turns steps
into jobs is another issue), then waits for their outcome there. Covers: results and logs on SQLite and
PostgreSQL, secrets kept out of logs, results, API answers and the agent's own log; kill -9 of an agent
mid-job and its restart with the same data directory; two instances never running one attempt; duplicate
results ignored.
"""

import asyncio
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import STACKL, ChildProcess, ServerProcess, wait_until

from stackl.broker.base import Item, ItemSpec
from stackl.broker.sql import SqlBroker
from stackl.datastore.agents import JobAttempt, LogLine
from stackl.datastore.agents_sql import SqlAgentRegistry
from stackl.datastore.sql import SqlDocumentStore

SECRET = "e2e-s3cr3t-Value"
AGENT = "e2e-agent"


@dataclass
class AgentProcess(ChildProcess):
    """A running `stackl agent` and its log."""

    server: ServerProcess
    data_dir: Path
    log_path: Path
    name: str = AGENT
    shutdown_timeout: str = "20"
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            *STACKL,
            "agent",
            "--name",
            self.name,
            "--server",
            self.server.url,
            "--executor",
            "mock",
            "--max-jobs",
            "4",
            "--data-dir",
            str(self.data_dir),
            "--shutdown-timeout",
            self.shutdown_timeout,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.server.env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Callable[..., AgentProcess]]:
    started: list[AgentProcess] = []

    def make(
        server: ServerProcess, *, data_dir: Path | None = None, shutdown_timeout: str = "20"
    ) -> AgentProcess:
        index = len(started)
        agent = AgentProcess(
            server=server,
            data_dir=data_dir or tmp_path / f"agent{index}",
            log_path=tmp_path / f"agent{index}.log",
            shutdown_timeout=shutdown_timeout,
        )
        agent.start()
        started.append(agent)
        return agent

    yield make
    for agent in started:
        if agent.proc is not None:
            assert agent.stop() == 0, agent.log()
        assert "Traceback" not in agent.log(), agent.log()


class Db:
    """Synchronous access to the server's database for the test: enqueue jobs, read items and logs."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, work: Callable[[SqlBroker, SqlAgentRegistry], Any]) -> Any:
        async def go() -> Any:
            async with SqlDocumentStore(self.url) as store, SqlBroker(store) as broker:
                return await work(broker, SqlAgentRegistry(store))

        return asyncio.run(go())

    def enqueue(self, **invocation: Any) -> str:
        payload = {
            "task_id": "T1",
            "action": "create",
            "stack_instance": "shop",
            "service": "web",
            "replica": 0,
            "functional_requirement": "nginx",
            "tool": "shell",
            "agent": AGENT,
            "invocation": {"command": "true", **invocation},
            "provisioning_parameters": {"domain": "example.com"},
            "secrets": {"api_token": SECRET},
        }
        spec = ItemSpec(queue=f"agent:{AGENT}", kind="job", payload=payload, max_attempts=3)
        item: Item = self._run(lambda broker, _registry: broker.enqueue(spec))
        return item.id

    def item(self, job_id: str) -> Item:
        found: Item | None = self._run(lambda broker, _registry: broker.get(job_id))
        assert found is not None
        return found

    def logs(self, job_id: str) -> list[LogLine]:
        lines: list[LogLine] = self._run(lambda _broker, registry: registry.logs(job_id))
        return lines

    def attempts(self, job_id: str) -> list[JobAttempt]:
        found: list[JobAttempt] = self._run(lambda _broker, registry: registry.attempts(job_id))
        return found


def wait_final(db: Db, job_ids: list[str], *, timeout_s: float = 40) -> dict[str, Item]:
    items: dict[str, Item] = {}

    def done() -> bool:
        items.update({job_id: db.item(job_id) for job_id in job_ids})
        return all(item.final for item in items.values())

    wait_until(done, timeout_s=timeout_s, what="the jobs to finish")
    return items


def sqlite_url(server: ServerProcess) -> str:
    return f"sqlite+aiosqlite:///{server.data_dir / 'stackl.db'}"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_mock_agent_runs_jobs_and_keeps_secrets_out(
    database: str,
    request: pytest.FixtureRequest,
    server_factory: Callable[..., ServerProcess],
    agent_factory: Callable[..., AgentProcess],
) -> None:
    if database == "postgresql":
        url = request.getfixturevalue("pg_url")
        server = server_factory("--database-url", url)
    else:
        server = server_factory()
        url = sqlite_url(server)
    db = Db(url)
    good = db.enqueue(
        mock_duration=0.2, mock_log=[f"token {SECRET} used", "all good"], mock_outputs={"k": SECRET}
    )
    bad = db.enqueue(mock_result="fail", mock_error=f"boom {SECRET}")
    agent = agent_factory(server)
    items = wait_final(db, [good, bad])

    assert items[good].state == "succeeded"
    assert items[good].result["status"] == "READY"
    assert items[good].result["outputs"] == {"k": "********"}
    assert items[bad].state == "failed"
    assert items[bad].result["status"] == "FAILED"
    lines = [line.line for line in db.logs(good)]
    assert "token ******** used" in lines
    assert "all good" in lines

    # A duplicate result for the finished attempt is answered, and changes nothing.
    attempt = db.attempts(good)[0]
    body = {"instance_id": attempt.instance_id, "attempt": 1, "status": "FAILED", "error_message": "late"}
    answer = httpx.post(f"{server.url}/agents/{AGENT}/jobs/{good}/result", json=body, timeout=10)
    assert (answer.status_code, answer.json()) == (200, {"accepted": False, "reason": "duplicate"})
    assert db.item(good).state == "succeeded"

    listed = httpx.get(f"{server.url}/agents/{AGENT}", timeout=10)
    assert listed.status_code == 200
    embedded = httpx.get(f"{server.url}/agents/common", timeout=10).json()
    assert (embedded["state"], embedded["instances"][0]["executors"]) == ("online", ["local"])
    assert listed.json()["state"] == "online"
    assert listed.json()["instances"][0]["instance_id"] == attempt.instance_id
    everything = repr([db.logs(good), db.logs(bad), items[good].result, items[bad].result, items[bad].error])
    assert SECRET not in everything
    assert SECRET not in listed.text + httpx.get(f"{server.url}/agents", timeout=10).text
    assert agent.stop() == 0
    assert SECRET not in agent.log()
    assert httpx.get(f"{server.url}/agents/{AGENT}", timeout=10).json()["state"] == "offline"


def test_graceful_stop_with_a_job_running_hands_it_back_and_exits_0(
    server: ServerProcess, agent_factory: Callable[..., AgentProcess]
) -> None:
    db = Db(sqlite_url(server))
    job_id = db.enqueue(mock_duration=60)
    agent = agent_factory(server, shutdown_timeout="1")
    wait_until(
        lambda: any(a.started_at is not None for a in db.attempts(job_id)),
        timeout_s=20,
        what="the job to start",
    )
    assert agent.stop() == 0, agent.log()  # the job outlived --shutdown-timeout: stopped and released
    assert "Traceback" not in agent.log()
    item = db.item(job_id)
    assert (item.state, item.attempt) == ("queued", 1)  # back in the queue for the next instance at once
    assert httpx.get(f"{server.url}/agents/{AGENT}", timeout=10).json()["state"] == "offline"


def test_killed_agent_restarts_and_the_job_completes_as_attempt_2(
    server: ServerProcess, agent_factory: Callable[..., AgentProcess], tmp_path: Path
) -> None:
    db = Db(sqlite_url(server))
    job_id = db.enqueue(mock_duration=4)
    agent = agent_factory(server, data_dir=tmp_path / "agent-a")
    wait_until(
        lambda: any(a.started_at is not None for a in db.attempts(job_id)),
        timeout_s=20,
        what="the job to start",
    )
    agent.kill()
    assert db.item(job_id).state == "running"
    agent_factory(server, data_dir=tmp_path / "agent-a")  # same data dir: names its previous instance
    item = wait_final(db, [job_id])[job_id]
    assert (item.state, item.attempt) == ("succeeded", 2)
    attempts = db.attempts(job_id)
    assert [a.attempt for a in attempts] == [1, 2]
    assert attempts[0].instance_id != attempts[1].instance_id
    assert attempts[0].result is None


def test_two_instances_never_run_one_attempt(
    server: ServerProcess, agent_factory: Callable[..., AgentProcess]
) -> None:
    db = Db(sqlite_url(server))
    first, second = agent_factory(server), agent_factory(server)
    jobs = [db.enqueue(mock_duration=0.3) for _ in range(12)]
    items = wait_final(db, jobs)
    assert {item.state for item in items.values()} == {"succeeded"}
    assert {item.attempt for item in items.values()} == {1}
    owners = {db.attempts(job_id)[0].instance_id for job_id in jobs}
    for job_id in jobs:
        assert len(db.attempts(job_id)) == 1
    registered = {
        i["instance_id"] for i in httpx.get(f"{server.url}/agents/{AGENT}", timeout=10).json()["instances"]
    }
    assert owners <= registered  # every attempt was claimed by one of the two live instances
    listed = httpx.get(f"{server.url}/agents/{AGENT}", timeout=10).json()
    assert len(listed["instances"]) == 2
    assert first.stop() == 0
    assert second.stop() == 0


def test_results_batch_answers_each_result_as_its_own_call_would(server: ServerProcess) -> None:
    """Feature ``result_batch``: accepted, duplicate and refused results in one call, each with its status."""
    db = Db(sqlite_url(server))
    jobs = [db.enqueue(), db.enqueue()]
    base = f"{server.url}/agents/{AGENT}"
    register = {"name": AGENT, "instance_id": "HAND1", "max_jobs": 4, "tools": {"shell": ""}}
    answer = httpx.post(f"{server.url}/agents/register", json=register, timeout=10)
    assert "result_batch" in answer.json()["features"]
    claimed = httpx.post(f"{base}/claim", json={"instance_id": "HAND1", "wait": 5, "max_jobs": 4}, timeout=20)
    assert sorted(job["job_id"] for job in claimed.json()["jobs"]) == sorted(jobs)
    ready = {"instance_id": "HAND1", "attempt": 1, "status": "READY", "start": True}
    events = [{"seq": 1, "text": f"line with {SECRET}"}]
    body = {
        "results": [
            ready | {"job_id": jobs[0], "events": events, "outputs": {"k": SECRET}},
            ready | {"job_id": jobs[0]},  # the same result again: a duplicate
            ready | {"job_id": jobs[1], "attempt": 2},  # an attempt never dispatched
            ready | {"job_id": "01JNOSUCHJOB0000000000000X"},
        ]
    }
    answer = httpx.post(f"{base}/results", json=body, timeout=10)
    assert answer.status_code == 200, answer.text
    statuses = [
        (r["job_id"], r["status"], r.get("accepted"), r.get("reason")) for r in answer.json()["results"]
    ]
    assert statuses == [
        (jobs[0], 200, True, None),
        (jobs[0], 200, False, "duplicate"),
        (jobs[1], 404, None, None),
        ("01JNOSUCHJOB0000000000000X", 404, None, None),
    ]
    item = db.item(jobs[0])
    assert (item.state, item.result["outputs"]) == ("succeeded", {"k": "********"})
    assert [line.line for line in db.logs(jobs[0])] == ["line with ********"]
    attempt = db.attempts(jobs[0])[0]
    assert attempt.started_at is not None
    assert attempt.result is not None
    assert db.item(jobs[1]).state == "running"  # its refused result changed nothing
