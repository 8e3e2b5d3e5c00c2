"""Secrets from Vault, end to end: a real OpenBao server, `stackl server` and `stackl agent --secret-handler vault`.

A service's secret is a reference (``secret/data/infra/db#password``); the agent logs in with AppRole, reads
the value when the job runs and hands it to a shell step, which proves it got the value by reporting its
SHA-256. The value is then in no API answer, no log (server, agent, step logs: masked there), no file of the
server's data directory (the SQLite database) and nothing left in the agent's data directory. The same PUT
re-runs nothing (the input hash covers the reference, which did not change); after the value is rotated in
Vault, ``force_rerun`` runs the step again and it sees the new value. A reference to a missing path fails the
step with a message naming the secret and the path.
"""

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.e2e.conftest import STACKL, ChildProcess, ServerProcess
from tests.openbao import OpenBao, dev_server

PASSWORD = "e2e-Vault-Pa55word"
ROTATED = "e2e-Rotated-Pa55word"
AGENT = "vault-agent"
COMMAND = (
    'echo "connecting with $STACKL_SECRET_db_password"; '
    'printf \'{"digest": "%s"}\' "$(printf %s "$STACKL_SECRET_db_password" | sha256sum | cut -c1-64)"'
    ' > "$STACKL_OUTPUTS"'
)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def documents() -> list[dict[str, Any]]:
    return [
        {"name": "lab", "type": "environment", "agent": ""},
        {"name": "site", "type": "location", "agent": AGENT},
        {"name": "z1", "type": "zone"},
        {
            "name": "dbinit",
            "type": "functional_requirement",
            "invocation": {"generic": {"tool": "shell", "command": COMMAND}},
        },
        {
            "name": "db",
            "type": "service",
            "functional_requirements": ["dbinit"],
            "secrets": {"db_password": "secret/data/infra/db#password"},
        },
        {
            "name": "broken",
            "type": "service",
            "functional_requirements": ["dbinit"],
            "secrets": {"db_password": "secret/data/infra/missing#password"},
        },
        {"name": "app", "type": "stack_application_template", "services": [{"name": "db", "service": "db"}]},
        {
            "name": "broken-app",
            "type": "stack_application_template",
            "services": [{"name": "db", "service": "broken"}],
        },
        {
            "name": "lab-site",
            "type": "stack_infrastructure_template",
            "infrastructure_targets": [{"environment": "lab", "location": "site", "zone": "z1"}],
        },
    ]


def request(name: str, sat: str = "app", **extra: Any) -> dict[str, Any]:
    return {
        "stack_instance_name": name,
        "stack_application_template": sat,
        "stack_infrastructure_template": "lab-site",
        **extra,
    }


class VaultAgent(ChildProcess):
    """`stackl agent` with the local executor and the vault handler: address from the environment, AppRole."""

    def __init__(self, server: ServerProcess, tmp_path: Path, bao: OpenBao) -> None:
        role_id, secret_id = bao.approle("stackl-agent", "agent")
        (tmp_path / "role-id").write_text(role_id)
        (tmp_path / "secret-id").write_text(secret_id)
        self.data_dir = tmp_path / "vault-agent"
        self.log_path = tmp_path / "vault-agent.log"
        env = dict(server.env)
        env["STACKL_AGENT__VAULT_ADDR"] = bao.addr
        args = [*STACKL, "agent", "--name", AGENT, "--server", server.url, "--executor", "local"]
        args += [
            "--data-dir",
            str(self.data_dir),
            "--automation-dir",
            str(tmp_path),
            "--shutdown-timeout",
            "5",
        ]
        args += ["--secret-handler", "vault", "--vault-role-id-file", str(tmp_path / "role-id")]
        args += ["--vault-secret-id-file", str(tmp_path / "secret-id")]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[OpenBao]:
    with dev_server(tmp_path / "openbao") as server:
        server.put_kv2("infra/db", password=PASSWORD)
        server.policy("agent", ["secret/data/infra/*"])
        yield server


@pytest.fixture
def vault_agent(server: ServerProcess, tmp_path: Path, bao: OpenBao) -> Iterator[VaultAgent]:
    agent = VaultAgent(server, tmp_path, bao)
    yield agent
    if agent.proc is not None:
        assert agent.stop() == 0, agent.log()
    assert "Traceback" not in agent.log(), agent.log()


def wait(client: httpx.Client, response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), response.text
    for _ in range(30):
        task: dict[str, Any] = client.get(
            response.headers["Location"], params={"wait": 10, "include": "steps"}
        ).json()
        if task["state"] in ("succeeded", "failed", "cancelled"):
            return task
    raise AssertionError(task)


def files_text(directory: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(directory.rglob("*")) if path.is_file())


def test_a_shell_step_uses_a_vault_secret_that_stays_out_of_everything(
    server: ServerProcess, vault_agent: VaultAgent, bao: OpenBao, tmp_path: Path
) -> None:
    seen: list[str] = []  # every API answer of the test
    with httpx.Client(base_url=server.url, timeout=60) as client:

        def get(path: str, **params: Any) -> Any:
            response = client.get(path, params=params)
            assert response.status_code == 200, response.text
            seen.append(response.text)
            return response.json()

        assert client.post("/documents", json=documents()).status_code == 200
        task = wait(client, client.post("/stack_instances", json=request("vaulted")))
        assert task["state"] == "succeeded", (task, vault_agent.log())
        instance = get("/documents/stack_instance/vaulted")
        assert instance["services"]["db"][0]["outputs"] == {"digest": digest(PASSWORD)}
        logs = get(f"/tasks/{task['id']}/logs")
        assert "connecting with ********" in str(logs)
        get("/stack_instances/vaulted")
        get(f"/tasks/{task['id']}", include="steps")

        # The reference did not change: the same PUT re-runs nothing, even though Vault is not asked.
        again = wait(client, client.put("/stack_instances", json=request("vaulted")))
        assert [(step["id"], step["state"]) for step in again["steps"]] == [("db/0/dbinit", "unchanged")]
        # A rotated value is picked up by a forced re-run.
        bao.put_kv2("infra/db", password=ROTATED)
        forced = wait(client, client.put("/stack_instances", json=request("vaulted", force_rerun=True)))
        assert forced["state"] == "succeeded", (forced, vault_agent.log())
        assert [(step["id"], step["state"]) for step in forced["steps"]] == [("db/0/dbinit", "ready")]
        rotated = get("/documents/stack_instance/vaulted")
        assert rotated["services"]["db"][0]["outputs"] == {"digest": digest(ROTATED)}
        get(f"/tasks/{forced['id']}/logs")

        # A missing path fails the step, naming the secret and the path.
        failed = wait(client, client.post("/stack_instances", json=request("broken", sat="broken-app")))
        assert failed["state"] == "failed"
        broken = get("/documents/stack_instance/broken")
        message = broken["status"][0]["error_message"]
        assert message.startswith("secret db_password: Vault path secret/data/infra/missing not found")
        get(f"/tasks/{failed['id']}/logs")

    assert vault_agent.stop() == 0, vault_agent.log()
    assert server.stop() == 0, server.log()
    assert digest(ROTATED).encode() in files_text(server.data_dir)  # the scan does see what the server stored
    for value in (PASSWORD, ROTATED):
        for answer in seen:
            assert value not in answer
        assert value not in server.log()
        assert value not in vault_agent.log()
        assert value.encode() not in files_text(server.data_dir)  # the SQLite database, WAL included
        assert value.encode() not in files_text(vault_agent.data_dir)
    assert "vault_handler_configured" in vault_agent.log()
    assert (server.data_dir / "stackl.db").exists()
