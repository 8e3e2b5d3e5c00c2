"""The vault secret handler against a real OpenBao server, through the shell tool on the local executor (and
once on the docker and kubernetes executors).

Token and AppRole logins, KV v2 and KV v1 reads, a rotated value, a revoked token (one new login), a real
renewal, and the three failures of issue 15 (missing path, denied read, unreachable server) with messages
that name the secret and its path and never the value.
"""

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from tests.integration.agent.conftest import BUSYBOX_IMAGE, Run, Runner, make_job
from tests.integration.agent.fake_k8s import FakeKubernetes
from tests.openbao import OpenBao, dev_server, free_port

from stackl.agent.executors.base import Job, LogLine
from stackl.agent.executors.docker import DockerConfig, DockerExecutor
from stackl.agent.executors.kubernetes import KubernetesConfig, KubernetesExecutor
from stackl.agent.vault import VaultConfig, VaultHandler

PASSWORD = "vault-Pa55-0f-the-db"
REFERENCE = "secret/data/infra/db#password"
# Proves the tool got the value without printing it, then prints it to show the masking.
USES_SECRET = (
    'printf %s "$STACKL_SECRET_db_password" | sha256sum | cut -c1-64; '
    'stat -c %a "$STACKL_SECRETS_FILE"; '
    'echo "leaked: $STACKL_SECRET_db_password"; '
    'printf \'{"digest": "%s"}\' "$(printf %s "$STACKL_SECRET_db_password" | sha256sum | cut -c1-64)"'
    ' > "$STACKL_OUTPUTS"'
)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpenBao]:
    with dev_server(tmp_path_factory.mktemp("openbao")) as server:
        server.put_kv2("infra/db", password=PASSWORD, user="app")
        server.put_kv2("other/db", password="not-for-the-agent")
        server.enable_kv1("kv1")
        server.call("POST", "kv1/app", {"api_key": "kv1-Api-Key-77"})
        server.policy("agent", ["secret/data/infra/*", "kv1/*"])
        yield server


def token_handler(bao: OpenBao, tmp_path: Path, token: str) -> VaultHandler:
    (tmp_path / "vault-token").write_text(token)
    return VaultHandler(VaultConfig(addr=bao.addr, token_file=tmp_path / "vault-token"))


def approle_handler(
    bao: OpenBao,
    tmp_path: Path,
    role: str = "stackl-agent",
    ttl: str = "1h",
    clock: Callable[[], float] = time.monotonic,
) -> VaultHandler:
    role_id, secret_id = bao.approle(role, "agent", ttl=ttl)
    (tmp_path / "role-id").write_text(role_id)
    (tmp_path / "secret-id").write_text(secret_id)
    config = VaultConfig(
        addr=bao.addr, role_id_file=tmp_path / "role-id", secret_id_file=tmp_path / "secret-id"
    )
    return VaultHandler(config, clock=clock)


def job(**secrets: object) -> Job:
    return make_job(
        "shell", invocation={"command": USES_SECRET}, secrets=secrets or {"db_password": REFERENCE}
    )


async def test_token_login_hands_the_value_to_the_shell_step_masked(
    bao: OpenBao, tmp_path: Path, run_job: Runner
) -> None:
    run = await run_job(job(), handler=token_handler(bao, tmp_path, bao.token("agent")))
    assert run.result.status == "READY", run.result.error_message
    stdout = run.text("stdout").splitlines()
    assert stdout == [digest(PASSWORD), "600", "leaked: ********"]
    assert run.result.outputs == {"digest": digest(PASSWORD)}
    assert PASSWORD not in json.dumps([line.line for line in run.lines])


async def test_approle_login_reads_kv2_and_kv1(bao: OpenBao, tmp_path: Path, run_job: Runner) -> None:
    handler = approle_handler(bao, tmp_path)
    command = 'printf %s "$STACKL_SECRET_db_password:$STACKL_SECRET_api_key" | sha256sum | cut -c1-64'
    checked = make_job(
        "shell",
        invocation={"command": command},
        secrets={"db_password": REFERENCE, "api_key": "kv1:kv1/app#api_key"},
    )
    run = await run_job(checked, handler=handler)
    assert run.result.status == "READY", run.result.error_message
    assert run.text("stdout") == digest(f"{PASSWORD}:kv1-Api-Key-77")
    assert handler.logins == 1


async def test_a_rotated_value_is_read_by_the_next_run(bao: OpenBao, tmp_path: Path, run_job: Runner) -> None:
    bao.put_kv2("infra/rotating", password="first-Value-1")
    bao.policy("rotation", ["secret/data/infra/*"])
    handler = token_handler(bao, tmp_path, bao.token("rotation"))
    rotating = job(db_password="secret/data/infra/rotating#password")
    assert (await run_job(rotating, handler=handler)).result.outputs == {"digest": digest("first-Value-1")}
    bao.put_kv2("infra/rotating", password="second-Value-2")
    assert (await run_job(rotating, handler=handler)).result.outputs == {"digest": digest("second-Value-2")}


async def test_a_revoked_token_means_one_new_login(bao: OpenBao, tmp_path: Path) -> None:
    handler = approle_handler(bao, tmp_path, role="revoked-agent")
    assert await handler.resolve({"pw": REFERENCE}) == {"pw": PASSWORD}
    token = handler._token  # the agent's current Vault token, revoked behind its back
    assert token is not None
    bao.revoke(token.value)
    assert await handler.resolve({"pw": REFERENCE}) == {"pw": PASSWORD}
    assert handler.logins == 2


async def test_a_token_past_two_thirds_of_its_lease_is_renewed(bao: OpenBao, tmp_path: Path) -> None:
    now = [0.0]
    handler = approle_handler(bao, tmp_path, role="renewing-agent", ttl="10m", clock=lambda: now[0])
    await handler.resolve({"pw": REFERENCE})
    now[0] += 500  # seconds on the agent's clock: past 2/3 of the 600 s lease
    assert await handler.resolve({"pw": REFERENCE}) == {"pw": PASSWORD}
    assert (handler.logins, handler.renewals) == (1, 1)


async def test_a_missing_path_fails_the_step_naming_secret_and_path(
    bao: OpenBao, tmp_path: Path, run_job: Runner
) -> None:
    handler = token_handler(bao, tmp_path, bao.token("agent"))
    run = await run_job(job(db_password="secret/data/infra/nope#password"), handler=handler)
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == (
        "secret db_password: Vault path secret/data/infra/nope not found: check the path (KV v2 API paths"
        " have data/ after the mount, e.g. secret/data/infra/db; use kv1: for KV version 1)"
    )


async def test_a_denied_read_fails_the_step_naming_secret_and_path(
    bao: OpenBao, tmp_path: Path, run_job: Runner
) -> None:
    handler = token_handler(bao, tmp_path, bao.token("agent"))
    run = await run_job(job(db_password="secret/data/other/db#password"), handler=handler)
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == (
        "secret db_password: Vault denied reading secret/data/other/db (403: permission denied):"
        " check that the policy of the agent's Vault login (token) grants read on it"
    )
    assert "not-for-the-agent" not in run.result.error_message


async def test_an_unreachable_vault_fails_the_step_naming_the_address(
    tmp_path: Path, run_job: Runner
) -> None:
    (tmp_path / "vault-token").write_text("any")
    addr = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    handler = VaultHandler(VaultConfig(addr=addr, token_file=tmp_path / "vault-token", timeout_s=5))
    run = await run_job(job(), handler=handler)
    assert run.result.status == "FAILED"
    first = run.result.error_message.splitlines()[0]
    assert first.startswith(f"secret db_password: Vault at {addr} is unreachable (ConnectError")
    assert first.endswith("check --vault-addr, the network and --vault-ca-file")


async def test_a_bad_token_file_fails_the_step_saying_what_to_check(
    bao: OpenBao, tmp_path: Path, run_job: Runner
) -> None:
    run = await run_job(job(), handler=token_handler(bao, tmp_path, "s.not-a-token"))
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == (
        f"secret db_password: Vault login (token) at {bao.addr} failed (403: permission denied):"
        " check the token in --vault-token-file (expired or revoked?)"
    )


# --- container executors: the value reaches the container as the mounted secrets file only ---------------------
IN_CONTAINER = (
    """pw=$(sed -n 's/.*"db_password": "\\(.*\\)".*/\\1/p' "$STACKL_SECRETS_FILE"); """
    'printf %s "$pw" | sha256sum | cut -c1-64; echo "leaked: $pw"'
)


def container_job() -> Job:
    return make_job(
        "shell",
        invocation={"image": BUSYBOX_IMAGE, "command": IN_CONTAINER},
        agent="vault-agent",
        secrets={"db_password": REFERENCE},
    )


async def run_on(executor: DockerExecutor | KubernetesExecutor) -> Run:
    executor.agent, executor.instance_id = "vault-agent", "01INSTANCE"
    lines: list[LogLine] = []
    try:
        result = await executor.run(container_job(), emit=lines.append, cancel=asyncio.Event())
    finally:
        executor.close()
    return Run(result, lines)


async def test_docker_executor_mounts_the_value(
    bao: OpenBao, tmp_path: Path, data_dir: Path, docker_engine: str
) -> None:
    handler = token_handler(bao, tmp_path, bao.token("agent"))
    config = DockerConfig(
        data_dir=data_dir, docker_host=docker_engine, network="none", pull="never", secret_handler=handler
    )
    run = await run_on(DockerExecutor(config))
    assert run.result.status == "READY", run.result.error_message
    assert run.text("stdout").splitlines() == [digest(PASSWORD), "leaked: ********"]
    assert PASSWORD not in run.text()


async def test_kubernetes_executor_puts_the_value_in_the_jobs_secret_only(
    bao: OpenBao, tmp_path: Path, data_dir: Path, docker_engine: str
) -> None:
    fake = FakeKubernetes(docker_engine).start()
    try:
        handler = token_handler(bao, tmp_path, bao.token("agent"))
        config = KubernetesConfig(
            data_dir=data_dir,
            configuration=fake.configuration(),
            pull="never",
            poll_s=0.1,
            secret_handler=handler,
        )
        run = await run_on(KubernetesExecutor(config))
        assert run.result.status == "READY", run.result.error_message
        assert run.text("stdout").splitlines() == [digest(PASSWORD), "leaked: ********"]
        (secret,) = fake.created("secrets")
        decoded = [base64.b64decode(value).decode() for value in secret["data"].values()]
        assert any(PASSWORD in text for text in decoded)
        assert PASSWORD not in json.dumps(fake.created("configmaps") + fake.created("jobs"))
        assert fake.names("secrets") == []  # deleted once the pod ended
    finally:
        fake.stop()


def test_the_agent_refuses_to_start_with_a_vault_handler_that_cannot_work(tmp_path: Path) -> None:
    args = [
        sys.executable,
        "-m",
        "stackl",
        "agent",
        "--server",
        "http://127.0.0.1:9",
        "--data-dir",
        str(tmp_path),
    ]
    args += ["--secret-handler", "vault"]
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    missing = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert (missing.returncode, missing.stderr.strip()) == (
        2,
        "error: the vault secret handler needs --vault-addr, e.g. https://vault.example.com:8200",
    )
    both = [*args, "--vault-addr", "https://vault:8200", "--vault-k8s-role", "r", "--vault-token-file", "t"]
    refused = subprocess.run(both, capture_output=True, text=True, env=env, timeout=60, check=False)
    assert refused.returncode == 2
    assert "exactly one login method" in refused.stderr
