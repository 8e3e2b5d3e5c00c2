"""The worked end-to-end example of lifecycle.md §6, run for real.

A `stackl server` (embedded worker) and a `stackl agent --name bru-agent` process with the local executor;
``db`` runs real Terraform (a provider-free configuration reporting ``db_host``/``db_port``), ``web`` runs a
real Ansible role that reports ``web_url`` with ``set_stats``. The final instance document must match the
spec's example in every field the example shows (ids, times and hashes excepted), and the two follow-ups of
the example hold: the same PUT re-runs nothing; a changed ``listen_port`` re-runs only ``web/0/nginx``.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import STACKL, ChildProcess, ServerProcess

MAIN_TF = """
variable "owner" {
  type    = string
  default = ""
}
output "db_host" { value = "10.20.0.15" }
output "db_port" { value = 5432 }
"""
ROLE_TASKS = """
- name: Report the web URL
  ansible.builtin.set_stats:
    data:
      web_url: "http://10.20.0.16:{{ listen_port }}"
    per_host: false
"""
ALLOWED = """package allowedrepositories

infringement[{"msg": msg}] {
  inv := input.services[_].functional_requirements[fr][_]
  ok := [r | r := input.parameters.repositories[_]; startswith(inv.image, r)]
  count(ok) == 0
  msg := sprintf("functional requirement %v uses image %v outside %v", [fr, inv.image, input.parameters.repositories])
}
"""


def documents() -> list[dict[str, Any]]:
    """The documents of §1.2 and §6 (with a SIT policy that tests the repositories as intended)."""
    return [
        {
            "name": "production",
            "type": "environment",
            "agent": "",
            "cloud_provider": "",
            "params": {
                "domain": "example.com",
                "log_level": "info",
                "ntp": {"servers": ["ntp1.example.com"]},
            },
            "secrets": {"registry_token": "dG9rZW4="},
            "tags": {"environment": "prod", "tier": "gold"},
            "resources": {"cpu": 64, "memory": "256GiB", "disk": "10TB"},
            "policies": {"allowedrepositories": {"repositories": ["registry.example.com"]}},
            "packages": ["postgres_vm", "nginx"],
        },
        {
            "name": "brussels",
            "type": "location",
            "agent": "bru-agent",
            "cloud_provider": "vmw",
            "params": {"dns_servers": ["10.0.0.2"], "ntp": {"servers": ["ntp.bru.lan"]}},
            "tags": {"region": "eu-west"},
            "resources": {"memory": "128GiB"},
            "packages": ["haproxy"],
        },
        {
            "name": "zone-a",
            "type": "zone",
            "params": {"vlan": 120, "log_level": "debug"},
            "tags": {"tier": "silver"},
            "resources": {"cpu": 32},
            "policies": {"allowedrepositories": {"repositories": ["registry.example.com", "reg.bru.lan"]}},
        },
        {"name": "zone-b", "type": "zone", "resources": {"memory": "8GiB"}},
        {"name": "allowedrepositories", "type": "policy_template", "policy": ALLOWED},
        {
            "name": "postgres_vm",
            "type": "functional_requirement",
            "params": {"vm_size": "medium"},
            "invocation": {
                "generic": {
                    "tool": "terraform",
                    "image": "registry.example.com/stackl/pg-vm:1.4",
                    "working_directory": "pg-vm",
                }
            },
            "outputs": {"db_host": "db_host.value", "db_port": "db_port.value"},
        },
        {
            "name": "nginx",
            "type": "functional_requirement",
            "invocation": {
                "generic": {
                    "tool": "ansible",
                    "image": "registry.example.com/stackl/nginx:2.0",
                    "working_directory": "nginx",
                    "ansible_role": "nginx",
                    "connection": "local",
                    "gather_facts": False,
                }
            },
        },
        {
            "name": "postgres",
            "type": "service",
            "functional_requirements": ["postgres_vm"],
            "params": {"pg_version": "15"},
            "resource_requirements": {"cpu": "2", "memory": "16GiB"},
            "secrets": {"db_password": "c3VwZXJzZWNyZXQ="},
        },
        {
            "name": "nginx",
            "type": "service",
            "functional_requirements": ["nginx"],
            "params": {"listen_port": 8080},
            "resource_requirements": {"cpu": "500m", "memory": "512MiB"},
        },
        {
            "name": "shop",
            "type": "stack_application_template",
            "services": [{"name": "db", "service": "postgres"}, {"name": "web", "service": "nginx"}],
        },
        {
            "name": "prod-bru",
            "type": "stack_infrastructure_template",
            "infrastructure_targets": [
                {"environment": "production", "location": "brussels", "zone": "zone-a"},
                {"environment": "production", "location": "brussels", "zone": "zone-b"},
            ],
        },
    ]


REQUEST = {
    "stack_instance_name": "shop-prod",
    "stack_application_template": "shop",
    "stack_infrastructure_template": "prod-bru",
    "params": {"owner": "team-a"},
    "service_params": {"web": {"listen_port": 80}},
}
TARGET = "production.brussels.zone-a"
BASE = {
    "domain": "example.com",
    "log_level": "debug",
    "ntp": {"servers": ["ntp.bru.lan"]},
    "dns_servers": ["10.0.0.2"],
    "vlan": 120,
}
OUTPUTS = {"db_host": "10.20.0.15", "db_port": 5432, "web_url": "http://10.20.0.16:80"}
TAGS = {"environment": "prod", "tier": "silver", "region": "eu-west"}


def expected(task_id: str) -> dict[str, Any]:
    """The final document of §6, the fields the example shows (ids, times, hashes are checked apart)."""
    common = {"infrastructure_target": TARGET, "agent": "bru-agent", "cloud_provider": "vmw", "hosts": []}
    return {
        "name": "shop-prod",
        "type": "stack_instance",
        "category": "items",
        "stack_infrastructure_template": "prod-bru",
        "stack_application_template": "shop",
        "instance_params": {"owner": "team-a"},
        "service_params": {"web": {"listen_port": 80}},
        "instance_secrets": {},
        "service_secrets": {},
        "instance_outputs": OUTPUTS,
        "services": {
            "db": [
                {
                    **common,
                    "service": "postgres",
                    "opa_outputs": {},
                    "resources": {"cpu": "2", "memory": "16GiB"},
                    "tags": TAGS,
                    "outputs": {"db_host": "10.20.0.15", "db_port": 5432},
                    "secrets": {"registry_token": "********", "db_password": "********"},
                    "provisioning_parameters": {
                        **BASE,
                        "vm_size": "medium",
                        "pg_version": "15",
                        "owner": "team-a",
                        **OUTPUTS,
                    },
                }
            ],
            "web": [
                {
                    **common,
                    "service": "nginx",
                    "opa_outputs": {},
                    "resources": {"cpu": "500m", "memory": "512MiB"},
                    "tags": TAGS,
                    "outputs": {"web_url": "http://10.20.0.16:80"},
                    "secrets": {"registry_token": "********"},
                    "provisioning_parameters": {**BASE, "listen_port": 80, "owner": "team-a", **OUTPUTS},
                }
            ],
        },
        "groups": {},
        "stages": [],
        "deleted": False,
        "tags": {},
        "status": [
            {
                "functional_requirement": "postgres_vm",
                "infrastructure_target": TARGET,
                "service": "db",
                "status": "READY",
                "error_message": "",
                "replica": 0,
                "action": "create",
                "task_id": task_id,
                "attempt": 1,
            },
            {
                "functional_requirement": "nginx",
                "infrastructure_target": TARGET,
                "service": "web",
                "status": "READY",
                "error_message": "",
                "replica": 0,
                "action": "create",
                "task_id": task_id,
                "attempt": 1,
            },
        ],
        "state": "READY",
        "task": {"id": task_id, "kind": "create", "state": "succeeded"},
    }


class BruAgent(ChildProcess):
    def __init__(self, server: ServerProcess, tmp_path: Path, automation: Path) -> None:
        self.log_path = tmp_path / "bru-agent.log"
        env = dict(server.env)
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # terraform, ansible
        args = [*STACKL, "agent", "--name", "bru-agent", "--server", server.url, "--executor", "local"]
        args += ["--automation-dir", str(automation), "--data-dir", str(tmp_path / "bru-agent")]
        args += ["--secret-handler", "base64", "--shutdown-timeout", "5"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def bru_agent(server: ServerProcess, tmp_path: Path) -> Iterator[BruAgent]:
    automation = tmp_path / "automation"
    (automation / "pg-vm").mkdir(parents=True)
    (automation / "pg-vm" / "main.tf").write_text(MAIN_TF)
    tasks = automation / "nginx" / "roles" / "nginx" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(ROLE_TASKS)
    agent = BruAgent(server, tmp_path, automation)
    yield agent
    if agent.proc is not None:
        agent.stop()
    assert "Traceback" not in agent.log(), agent.log()


def wait(client: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    for _ in range(30):
        task: dict[str, Any] = client.get(
            response.headers["Location"], params={"wait": 10, "include": "steps"}
        ).json()
        if task["state"] in ("succeeded", "failed", "cancelled"):
            return task
    raise AssertionError(task)


def test_the_worked_example(server: ServerProcess, bru_agent: BruAgent) -> None:
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/documents", json=documents()).status_code == 200
        created = client.post("/stack_instances", json=REQUEST)
        assert created.json() == {
            "db": {"service": "postgres", "targets": [TARGET]},
            "web": {"service": "nginx", "targets": [TARGET]},
        }
        task_id = created.headers["Stackl-Task-Id"]
        task = wait(client, created)
        assert task["state"] == "succeeded", (task, server.log(), bru_agent.log())

        full = client.get("/documents/stack_instance/shop-prod").json()
        want = expected(task_id)
        for key, value in want.items():
            if key == "status":
                for got, entry in zip(full["status"], value, strict=True):
                    assert {k: got[k] for k in entry} == entry
                    assert got["job_id"]
                    assert got["input_hash"].startswith("sha256:")
                    assert got["started_at"] <= got["finished_at"]
            else:
                assert full[key] == value, key
        candidates = full["placement"]["services"]["db"]["candidates"]
        assert candidates["production.brussels.zone-b"]["result"] == "rejected"
        assert (
            full["placement"]["services"]["web"]["candidates"]["production.brussels.zone-b"]["result"]
            == "spare"
        )
        # The request's revision and the task's outcome: step progress is not a revision (issue 15, 7).
        assert full["metadata"]["revision"] == 2

        legacy = client.get("/stack_instances/shop-prod").json()
        for key in ("tags", "state", "task", "placement", "metadata", "steps"):
            assert key not in legacy
        assert legacy["deleted"] is False

        # Repeating the same PUT re-runs nothing.
        again = wait(client, client.put("/stack_instances", json=REQUEST))
        assert again["state"] == "succeeded"
        assert [(s["id"], s["state"]) for s in again["steps"]] == [
            ("db/0/postgres_vm", "unchanged"),
            ("web/0/nginx", "unchanged"),
        ]
        # Changing service_params.web.listen_port re-runs only web/0/nginx, with action update.
        changed = wait(
            client,
            client.put(
                "/stack_instances", json={**REQUEST, "service_params": {"web": {"listen_port": 8080}}}
            ),
        )
        assert changed["state"] == "succeeded", (changed, bru_agent.log())
        assert [(s["id"], s["state"], s["action"]) for s in changed["steps"]] == [
            ("db/0/postgres_vm", "unchanged", "update"),
            ("web/0/nginx", "ready", "update"),
        ]
        full = client.get("/documents/stack_instance/shop-prod").json()
        assert full["instance_outputs"]["web_url"] == "http://10.20.0.16:8080"
