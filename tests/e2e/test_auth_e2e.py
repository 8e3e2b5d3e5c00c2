"""Auth end to end (issue 6): a real `stackl server --auth` on SQLite with its embedded agent `common`.

Covers: the first admin token in ``<data_dir>/admin.token`` (0600); `stackl token create|list|revoke` and
`stackl audit`; the embedded agent working with auth on through its in-process credential; the user policy
"operators may deploy only to targets whose environment is development" end to end; and a unique secret seeded
in every document type that carries secrets, found in no API response, log file, event, task record or
database column stored in clear after a deployment.
"""

import json
import stat
import time
from pathlib import Path
from typing import Any

import httpx
from tests import factories
from tests.e2e.conftest import ServerProcess, run_cli, wait_until

SECRET = "Unique-Seeded-Secret-4c1d9e"
AGENT = "common"

POLICY = """package authorization
import rego.v1
default allow := false
allow if "admin" in input.roles
allow if {
  some r in input.roles
  r in {"viewer", "operator"}
  input.action in {"read", "plan", "evaluate"}
}
allow if {
  "operator" in input.roles
  input.action == "cancel"
}
allow if {
  "agent" in input.roles
  input.action in {"register", "report"}
  input.resource.type == "agent"
  input.resource.name == input.agent
}
allow if {
  "operator" in input.roles
  input.resource.type == "stack_instance"
  count(input.environments) > 0
  every env in input.environments { env == "development" }
}
reasons contains msg if {
  "operator" in input.roles
  some env in input.environments
  env != "development"
  msg := sprintf("operators may deploy only to development, not %s", [env])
}
"""


def secret(kind: str) -> dict[str, str]:
    return {"password": f"{SECRET}-{kind}"}


def documents() -> list[dict[str, Any]]:
    shell = {"generic": {"tool": "shell", "command": "echo deploying"}}
    return [
        factories.environment("development", secrets=secret("environment")),
        factories.environment("production", secrets=secret("environment")),
        factories.location("brussels", agent=AGENT, secrets=secret("location")),
        factories.zone("dmz", secrets=secret("zone")),
        factories.functional_requirement("vm", params={}, invocation=shell, secrets=secret("fr")),
        factories.service("webserver", resource_requirements={}, secrets=secret("service")),
        factories.stack_application_template("web_shop"),
        factories.stack_infrastructure_template(
            "dev",
            infrastructure_targets=[{"environment": "development", "location": "brussels", "zone": "dmz"}],
        ),
        factories.stack_infrastructure_template("prod"),
    ]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def cli(server: ServerProcess, token: str, *args: str) -> str:
    """Run the CLI with ``STACKL_TOKEN``; its stdout (stderr must not show the secret either)."""
    with_token = ServerProcess(**{**server.__dict__, "env": {**server.env, "STACKL_TOKEN": token}})
    result = run_cli(*args, server=with_token)
    assert SECRET not in result.stdout + result.stderr
    return result.stdout


def wait_task(client: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    task_id = response.headers["Stackl-Task-Id"]
    deadline = time.monotonic() + 60
    task: dict[str, Any] = {}
    while time.monotonic() < deadline:
        task = client.get(f"/tasks/{task_id}", params={"wait": 10, "include": "steps"}).json()
        if task["state"] in ("succeeded", "failed", "cancelled"):
            return task
    raise AssertionError(f"task {task_id} did not finish: {task}")


def test_auth_policy_and_secrets_end_to_end(server_factory: Any, tmp_path: Path) -> None:
    server: ServerProcess = server_factory("--auth")
    token_file = server.data_dir / "admin.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    admin = token_file.read_text().strip()
    assert admin not in server.log()
    assert httpx.get(f"{server.url}/documents", timeout=10).status_code == 401
    assert httpx.get(f"{server.url}/version", timeout=10).json()["auth_enabled"] is True

    operator = cli(
        server, admin, "-q", "token", "create", "--role", "operator", "--subject", "olivia"
    ).strip()
    viewer = cli(
        server, admin, "-q", "token", "create", "--role", "viewer", "--subject", "victor", "--expires", "1d"
    )
    viewer = viewer.strip()
    with (  # closed before the server stops: a pooled keep-alive socket is not left to the garbage collector
        httpx.Client(base_url=server.url, headers=bearer(admin), timeout=30) as as_admin,
        httpx.Client(base_url=server.url, headers=bearer(operator), timeout=30) as as_operator,
        httpx.Client(base_url=server.url, headers=bearer(viewer), timeout=30) as as_viewer,
    ):
        applied = as_admin.post("/documents", json=documents())
        assert applied.status_code == 200, applied.text
        template = {"name": "authorization", "type": "policy_template", "policy": POLICY}
        assert as_admin.put("/policy_templates", json=template).status_code == 200

        wait_until(
            lambda: as_admin.get(f"/agents/{AGENT}").json().get("state") == "online",
            timeout_s=30,
            what="the embedded agent to come online with auth on",
        )
        refused = as_operator.post(
            "/stack_instances",
            json={
                "stack_instance_name": "shop-prod",
                "stack_application_template": "web_shop",
                "stack_infrastructure_template": "prod",
            },
        )
        assert refused.status_code == 403, refused.text
        assert refused.json()["reasons"] == ["operators may deploy only to development, not production"]

        create = {
            "stack_instance_name": "shop",
            "stack_application_template": "web_shop",
            "stack_infrastructure_template": "dev",
            "secrets": {"api_key": f"{SECRET}-instance"},
            "service_secrets": {"web": {"cert": f"{SECRET}-service-secrets"}},
        }
        task = wait_task(as_operator, as_operator.post("/stack_instances", json=create))
        assert task["state"] == "succeeded", task
        assert as_viewer.delete("/stack_instances/shop").status_code == 403
        snap = as_operator.post("/snapshots/stack_instance/shop")
        assert snap.status_code == 200, snap.text

        # the secret is nowhere in clear: API answers, events, tasks, logs, audit, the log file, the database
        paths = [
            "/documents",
            *(f"/documents/{d['type']}/{d['name']}" for d in documents()),
            "/documents/stack_instance/shop",
            "/documents/stack_instance/shop/revisions",
            "/documents/stack_instance/shop/revisions/1/diff/latest",
            "/stack_instances/shop",
            "/stack_instances",
            "/infrastructure_base/environment/development",
            "/services/webserver",
            "/functional_requirements/vm",
            f"/snapshots/{snap.json()['name']}",
            "/tasks",
            f"/tasks/{task['id']}?include=steps,plan",
            f"/tasks/{task['id']}/logs",
            "/stack_instances/shop/logs",
            "/stack_instances/shop/events",
            "/events?after=0",
            "/agents",
            "/audit",
            "/auth/tokens",
        ]
        answers = []
        for path in paths:
            answer = as_admin.get(path, headers={"Accept": "application/json"})
            assert answer.status_code < 500, (path, answer.status_code, answer.text)
            answers.append(answer.text)
        everything = "\n".join(answers)
        assert SECRET not in everything
        assert "********" in everything
        cli(server, admin, "logs", "shop")
        cli(server, admin, "get", "stack_instance", "shop", "-o", "yaml")

        audit = as_admin.get("/audit", params={"limit": 1000}).json()["items"]
        kinds = {(e["subject"], e["action"], e["resource"]["type"], e["result"]) for e in audit}
        assert ("olivia", "create", "stack_instance", "denied") in kinds
        assert ("olivia", "create", "stack_instance", "success") in kinds
        assert ("victor", "delete", "stack_instance", "denied") in kinds
        claims = [e for e in audit if e["action"] == "report" and e.get("detail", {}).get("jobs")]
        assert claims, "the embedded agent's claims are audited"
        assert claims[0]["subject"] == "agent:common"
        assert "olivia" in cli(server, admin, "audit", "--subject", "olivia")

        listed = json.loads(cli(server, admin, "token", "list", "-o", "json"))
        victor = next(t for t in listed if t["subject"] == "victor")
        cli(server, admin, "token", "revoke", victor["id"])
        assert as_viewer.get("/documents").status_code == 401

    assert server.stop() == 0
    assert SECRET not in server.log()
    database = b"".join(p.read_bytes() for p in server.data_dir.glob("stackl.db*") if p.is_file())
    assert SECRET.encode() not in database
    assert admin.encode() not in database
    for file in server.data_dir.rglob("*"):
        if file.is_file() and file.suffix in (".log", ".json", ".txt", ".jsonl"):
            assert SECRET not in file.read_text(errors="replace"), file
