"""Create and delete a stack instance end to end: a real server with its embedded worker and agent.

Two services: ``db`` reports ``db_host``/``db_port`` (a shell step writing ``$STACKL_OUTPUTS``), ``web``
reads them from its variables and reports ``web_url``: outputs pass from one step to the next.
"""

from typing import Any

import httpx
from tests import factories
from tests.e2e.conftest import ServerProcess

DB_COMMAND = (
    "python3 -c \"import json,os; v=json.load(open(os.environ['STACKL_VARIABLES_FILE'])); "
    "json.dump({'db_host': '10.20.0.15', 'db_port': 5432, 'owner_seen': v['owner']}, "
    "open(os.environ['STACKL_OUTPUTS'], 'w'))\""
)
WEB_COMMAND = (
    "python3 -c \"import json,os; v=json.load(open(os.environ['STACKL_VARIABLES_FILE'])); "
    "json.dump({'web_url': 'http://%s:%s' % (v['db_host'], v['listen_port'])}, "
    "open(os.environ['STACKL_OUTPUTS'], 'w'))\""
)


def documents() -> list[dict[str, Any]]:
    return [
        factories.environment(secrets={"registry_token": "dG9rZW4="}),
        factories.location(agent="common"),
        factories.zone(),
        factories.functional_requirement(
            "db_vm", params={}, invocation={"generic": {"tool": "shell", "command": DB_COMMAND}}
        ),
        factories.functional_requirement(
            "web_cfg", params={}, invocation={"generic": {"tool": "shell", "command": WEB_COMMAND}}
        ),
        factories.service(
            "postgres",
            functional_requirements=["db_vm"],
            secrets={"db_password": "c3VwZXJzZWNyZXQ="},
            resource_requirements={"memory": "1GiB"},
        ),
        factories.service(
            "nginx",
            functional_requirements=["web_cfg"],
            params={"listen_port": 8080},
            resource_requirements={},
        ),
        factories.stack_application_template(
            "shop", services=[{"name": "db", "service": "postgres"}, {"name": "web", "service": "nginx"}]
        ),
        factories.stack_infrastructure_template("prod"),
    ]


def wait_task(client: httpx.Client, location: str) -> dict[str, Any]:
    for _ in range(20):
        task: dict[str, Any] = client.get(location, params={"wait": 10}).json()
        if task["state"] in ("succeeded", "failed", "cancelled"):
            return task
    raise AssertionError(f"task still {task['state']}: {task}")


def test_create_then_delete_an_instance(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=40) as client:
        assert client.post("/documents", json=documents()).status_code == 200

        request = {
            "stack_instance_name": "shop-prod",
            "stack_application_template": "shop",
            "stack_infrastructure_template": "prod",
            "params": {"owner": "team-a"},
            "service_params": {"web": {"listen_port": 80}},
        }
        created = client.post("/stack_instances", json=request)
        assert created.status_code == 200, created.text
        target = "production.brussels.dmz"
        assert created.json() == {
            "db": {"service": "postgres", "targets": [target]},
            "web": {"service": "nginx", "targets": [target]},
        }
        location = created.headers["Location"]
        assert location == f"/tasks/{created.headers['Stackl-Task-Id']}"
        again = client.post("/stack_instances", json=request)
        assert again.status_code == 422
        assert again.json()["code"] == "already_exists"

        task = wait_task(client, location)
        assert task["state"] == "succeeded", (task, server.log())
        assert task["kind"] == "create"
        assert task["result"]["failed_steps"] == []

        full = client.get("/documents/stack_instance/shop-prod").json()
        assert [(s["service"], s["status"]) for s in full["status"]] == [("db", "READY"), ("web", "READY")]
        assert full["instance_outputs"] == {
            "db_host": "10.20.0.15",
            "db_port": 5432,
            "owner_seen": "team-a",
            "web_url": "http://10.20.0.15:80",
        }
        assert full["services"]["web"][0]["outputs"] == {"web_url": "http://10.20.0.15:80"}
        assert full["services"]["db"][0]["secrets"] == {
            "registry_token": "********",
            "db_password": "********",
        }
        assert full["placement"]["services"]
        legacy = client.get("/stack_instances/shop-prod").json()
        assert "placement" not in legacy
        assert legacy["deleted"] is False
        assert [s["status"] for s in legacy["status"]] == ["READY", "READY"]
        assert [
            t["id"] for t in client.get("/tasks", params={"stack_instance": "shop-prod"}).json()["items"]
        ] == [created.headers["Stackl-Task-Id"]]

        deleted = client.delete("/stack_instances/shop-prod")
        assert deleted.json() == {"result": "Stack instance shop-prod is being deleted"}
        task = wait_task(client, deleted.headers["Location"])
        assert task["state"] == "succeeded", (task, server.log())
        assert task["result"]["document_removed"] is True
        assert client.get("/stack_instances/shop-prod").status_code == 404
        gone = client.delete("/stack_instances/shop-prod").json()
        assert gone == {"result": "Stack instance shop-prod can't be deleted because it does not exist"}
