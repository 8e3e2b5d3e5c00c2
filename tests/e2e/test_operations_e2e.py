"""Stack-instance operations end to end (issue 5): a real server (embedded worker) and a real `stackl agent`
process with the mock executor, on SQLite.

Covers: an update that changes one parameter re-runs only the affected steps; scale 2 → 3 → 1; removing a
service tears it down; a failing step with rollback leaves no trace; delete with and without force; and a
server killed with SIGKILL mid-deployment that, restarted on the same data directory, finishes the instance.
"""

import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests import factories
from tests.e2e.conftest import STACKL, ChildProcess, ServerProcess, wait_until

AGENT = "bru-agent"
ZONES = ("zone-a", "zone-b", "zone-c")


@dataclass
class Agent(ChildProcess):
    """A `stackl agent --executor mock` process serving ``bru-agent``."""

    server_url: str
    env: dict[str, str]
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    args: list[str] = field(default_factory=list)

    def start(self) -> None:
        args = [*STACKL, "agent", "--name", AGENT, "--server", self.server_url, "--executor", "mock"]
        args += ["--max-jobs", "8", "--data-dir", str(self.data_dir), "--shutdown-timeout", "5", *self.args]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def agent_for(tmp_path: Path) -> Iterator[Callable[[ServerProcess], Agent]]:
    started: list[Agent] = []

    def make(server: ServerProcess) -> Agent:
        agent = Agent(
            server_url=server.url,
            env=server.env,
            data_dir=tmp_path / "agent",
            log_path=tmp_path / f"agent{len(started)}.log",
        )
        agent.start()
        started.append(agent)
        return agent

    yield make
    for agent in started:
        if agent.proc is not None:
            agent.stop()
        assert "Traceback" not in agent.log(), agent.log()


def mock(**fields: Any) -> dict[str, Any]:
    return {"generic": {"tool": "shell", "command": "true", "mock_duration": 0.05, **fields}}


def documents(*, db_duration: float = 0.05) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = [
        factories.environment(),
        factories.location(agent=AGENT),
        *(factories.zone(z) for z in ZONES),
        factories.functional_requirement(
            "db_vm",
            params={},
            invocation=mock(mock_duration=db_duration, mock_outputs={"db_host": "10.0.0.5"}),
        ),
        factories.functional_requirement("web_cfg", params={}, invocation=mock()),
        factories.functional_requirement("web_app", params={}, invocation=mock()),
        factories.service("postgres", functional_requirements=["db_vm"], resource_requirements={}),
        factories.service("nginx", functional_requirements=["web_cfg", "web_app"], resource_requirements={}),
        factories.stack_application_template(
            "shop", services=[{"name": "db", "service": "postgres"}, {"name": "web", "service": "nginx"}]
        ),
        factories.stack_infrastructure_template(
            "prod",
            infrastructure_targets=[
                {"environment": "production", "location": "brussels", "zone": z} for z in ZONES
            ],
        ),
    ]
    return docs


CREATE = {
    "stack_instance_name": "shop",
    "stack_application_template": "shop",
    "stack_infrastructure_template": "prod",
    "params": {"owner": "team-a"},
    "replicas": {"web": 2},
}


def finished(client: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    location = response.headers["Location"]
    for _ in range(30):
        task: dict[str, Any] = client.get(location, params={"wait": 10, "include": "steps"}).json()
        if task["state"] in ("succeeded", "failed", "cancelled"):
            return task
    raise AssertionError(f"task still {task['state']}: {task}")


def ran(task: dict[str, Any]) -> list[tuple[str, str]]:
    """(step id, action) of the steps that ran a job in this task."""
    return sorted((s["id"], s["action"]) for s in task["steps"] if s["state"] in ("ready", "failed"))


def full(client: httpx.Client) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/documents/stack_instance/shop").json()
    return body


def test_update_scale_and_remove(server: ServerProcess, agent_for: Callable[[ServerProcess], Agent]) -> None:
    agent_for(server)
    with httpx.Client(base_url=server.url, timeout=40) as client:
        assert client.post("/documents", json=documents()).status_code == 200
        task = finished(client, client.post("/stack_instances", json=CREATE))
        assert task["state"] == "succeeded", task
        assert len(ran(task)) == 5  # db + 2 replicas of 2 FRs

        # The same body again: nothing runs.
        task = finished(client, client.put("/stack_instances", json=CREATE))
        assert task["state"] == "succeeded", task
        assert ran(task) == []
        assert task["progress"]["unchanged"] == 5

        # One parameter of web changes: only web's steps run again, as updates; db stays.
        task = finished(
            client, client.put("/stack_instances", json={**CREATE, "service_params": {"web": {"x": 1}}})
        )
        assert ran(task) == [(f"web/{r}/{fr}", "update") for r in (0, 1) for fr in ("web_app", "web_cfg")]

        # Scale 2 → 3 → 1.
        task = finished(client, client.put("/stack_instances", json={**CREATE, "replicas": {"web": 3}}))
        assert ran(task) == [("web/2/web_app", "create"), ("web/2/web_cfg", "create")]
        assert [r["infrastructure_target"] for r in full(client)["services"]["web"]] == [
            f"production.brussels.{z}" for z in ZONES
        ]
        task = finished(client, client.put("/stack_instances", json={**CREATE, "replicas": {"web": 1}}))
        assert task["state"] == "succeeded", task
        assert ran(task) == [(f"web/{r}/{fr}", "delete") for r in (1, 2) for fr in ("web_app", "web_cfg")]
        body = full(client)
        assert len(body["services"]["web"]) == 1
        assert [e["replica"] for e in body["status"] if e["service"] == "web"] == [0, 0]

        # Adding an extra service, then removing it, tears it down.
        extra = {**CREATE, "replicas": {"web": 1}, "services": [{"name": "cache", "service": "postgres"}]}
        task = finished(client, client.put("/stack_instances", json=extra))
        assert ran(task) == [("cache/0/db_vm", "create")]
        task = finished(client, client.put("/stack_instances", json={**extra, "services": []}))
        assert ran(task) == [("cache/0/db_vm", "delete")]
        body = full(client)
        assert "cache" not in body["services"]
        assert {e["service"] for e in body["status"]} == {"db", "web"}


def test_failed_create_with_rollback_leaves_no_trace(
    server: ServerProcess, agent_for: Callable[[ServerProcess], Agent]
) -> None:
    agent_for(server)
    with httpx.Client(base_url=server.url, timeout=40) as client:
        assert client.post("/documents", json=documents()).status_code == 200
        failing = {**CREATE, "service_params": {"web": {"mock_result": "fail"}}, "rollback": True}
        task = finished(client, client.post("/stack_instances", json=failing))
        assert task["state"] == "failed"
        assert task["result"]["rolled_back"] is True, task
        assert client.get("/stack_instances/shop").status_code == 404
        history = client.get("/documents/stack_instance/shop/revisions").json()
        assert history["items"][0]["action"] == "delete"


def test_delete_without_and_with_force(
    server: ServerProcess, agent_for: Callable[[ServerProcess], Agent]
) -> None:
    agent_for(server)
    with httpx.Client(base_url=server.url, timeout=40) as client:
        assert client.post("/documents", json=documents()).status_code == 200
        stuck = {
            **CREATE,
            "replicas": {"web": 1},
            "service_params": {"db": {"mock_result": {"delete": "fail"}}},
        }
        assert finished(client, client.post("/stack_instances", json=stuck))["state"] == "succeeded"
        task = finished(client, client.delete("/stack_instances/shop"))
        assert task["state"] == "failed"
        assert task["result"]["document_removed"] is False
        body = full(client)
        assert [(e["service"], e["status"]) for e in body["status"]] == [("db", "FAILED")]  # web's went
        task = finished(client, client.delete("/stack_instances/shop", params={"force": "true"}))
        assert task["state"] == "failed"
        assert task["result"]["forced"] is True
        assert task["result"]["document_removed"] is True
        assert "resources may remain" in task["result"]["error_message"]
        assert client.get("/stack_instances/shop").status_code == 404


def test_server_killed_mid_deployment_finishes_after_restart(
    server: ServerProcess, agent_for: Callable[[ServerProcess], Agent]
) -> None:
    agent_for(server)
    with httpx.Client(base_url=server.url, timeout=40) as client:
        assert client.post("/documents", json=documents(db_duration=3)).status_code == 200
        created = client.post("/stack_instances", json=CREATE)
        assert created.status_code == 200, created.text
        location = created.headers["Location"]

        def db_running() -> bool:
            task = client.get(location, params={"include": "steps"}).json()
            return any(s["id"] == "db/0/db_vm" and s["state"] == "running" for s in task["steps"])

        wait_until(db_running, timeout_s=30, what="the db step to run")
    server.kill()
    server.start()  # same data directory and port; the agent has kept retrying
    with httpx.Client(base_url=server.url, timeout=40) as client:
        for _ in range(30):
            task = client.get(location, params={"wait": 10}).json()
            if task["state"] in ("succeeded", "failed", "cancelled"):
                break
        assert task["state"] == "succeeded", (task, server.log())
        body = full(client)
        assert {e["status"] for e in body["status"]} == {"READY"}
        assert body["instance_outputs"]["db_host"] == "10.0.0.5"
        job_ids = {e["job_id"] for e in body["status"]}
        assert len(job_ids) == 5  # one job per step: the db job was not dispatched twice
