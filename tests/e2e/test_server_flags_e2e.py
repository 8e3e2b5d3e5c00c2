"""`stackl server --tls-cert/--tls-key` over real HTTPS, with a private CA made here by ``cryptography``.

A server with ``--no-agent`` serves HTTPS; the CLI reaches it with ``--ca-file`` or ``STACKL_CA_FILE`` and
refuses it without (exit 7, TLS failure); a separate ``stackl agent --ca-file`` pulls the example's jobs over
HTTPS and the instance gets READY. A second server keeps its embedded agent (``--agent-executor mock``), which
reaches its own HTTPS server over loopback; with ``--no-worker`` a task waits until a worker runs.
"""

import ssl
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from tests.e2e.conftest import STACKL, ChildProcess, free_port, process_env, wait_until
from tests.pki import Pki, make_pki

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def trust(pki: Pki) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(pki.ca))


@dataclass
class Proc(ChildProcess):
    """A `stackl server|worker|agent` child process with its log."""

    args: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)

    def start(self) -> "Proc":
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*STACKL, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        return self


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[list[Proc]]:
    started: list[Proc] = []
    yield started
    for proc in reversed(started):
        if proc.proc is not None:
            assert proc.stop() == 0, proc.log()
        assert "Traceback" not in proc.log(), proc.log()


def https_server(tmp_path: Path, pki: Pki, procs: list[Proc], name: str, *flags: str) -> str:
    port = free_port()
    server = Proc(
        args=[
            "server",
            "--port",
            str(port),
            "--data-dir",
            str(tmp_path / name),
            "--tls-cert",
            str(pki.cert),
            "--tls-key",
            str(pki.key),
            *flags,
        ],
        env=process_env(tmp_path),
        log_path=tmp_path / f"{name}.log",
    ).start()
    procs.append(server)
    url = f"https://127.0.0.1:{port}"

    def ready() -> bool:
        assert server.proc is not None
        assert server.proc.poll() is None, server.log()
        try:
            return httpx.get(f"{url}/readyz", verify=trust(pki), timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(ready, timeout_s=30, what=f"{name} to answer over HTTPS")
    return url


def cli(
    url: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = process_env(tmp_path) | {"STACKL_URL": url} | (env or {})
    return subprocess.run(
        [*STACKL, *args], env=environ, capture_output=True, text=True, timeout=120, check=False
    )


def test_https_server_verified_by_cli_and_agent_with_a_private_ca(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    url = https_server(tmp_path, pki, procs, "tls", "--no-agent")

    refused = cli(url, tmp_path, "get", "environments")
    assert refused.returncode == 7, refused.stdout + refused.stderr  # not signed by a CA the system trusts
    with pytest.raises(httpx.HTTPError):  # HTTPS only: a plain-HTTP request gets no answer
        httpx.get(f"http://127.0.0.1:{url.rsplit(':', 1)[1]}/healthz", timeout=5)

    applied = cli(url, tmp_path, "--ca-file", str(pki.ca), "apply", "-d", str(EXAMPLES / "documents"))
    assert applied.returncode == 0, applied.stdout + applied.stderr
    listed = cli(url, tmp_path, "get", "environments", env={"STACKL_CA_FILE": str(pki.ca)})
    assert listed.returncode == 0, listed.stderr
    assert "development" in listed.stdout

    agent = Proc(
        args=["agent", "--server", url, "--ca-file", str(pki.ca), "--executor", "mock"],
        env=process_env(tmp_path) | {"HOME": str(tmp_path / "agent-home")},
        log_path=tmp_path / "agent.log",
    ).start()
    procs.append(agent)
    deployed = cli(
        url,
        tmp_path,
        "apply",
        "-c",
        str(EXAMPLES / "web_shop.instance.yml"),
        "shop",
        "--wait",
        "--timeout",
        "90",
        env={"STACKL_CA_FILE": str(pki.ca)},
    )
    assert deployed.returncode == 0, deployed.stdout + deployed.stderr + agent.log()
    instance = httpx.get(f"{url}/stack_instances/shop", verify=trust(pki), timeout=10).json()
    assert {s["status"] for s in instance["status"]} == {"READY"}
    assert '"agent_started"' in agent.log()


def test_embedded_mock_agent_over_https_and_a_server_without_worker(
    tmp_path: Path, pki: Pki, procs: list[Proc]
) -> None:
    url = https_server(tmp_path, pki, procs, "embedded", "--agent-executor", "mock", "--no-worker")
    ca = {"STACKL_CA_FILE": str(pki.ca)}
    assert cli(url, tmp_path, "apply", "-d", str(EXAMPLES / "documents"), env=ca).returncode == 0
    created = cli(url, tmp_path, "apply", "-c", str(EXAMPLES / "web_shop.instance.yml"), "shop", env=ca)
    assert created.returncode == 0, created.stdout + created.stderr

    tasks = httpx.get(f"{url}/tasks", verify=trust(pki), timeout=10).json()["items"]
    assert [t["state"] for t in tasks] == ["queued"]  # --no-worker: nothing in this process runs it

    worker = Proc(
        args=["worker", "--data-dir", str(tmp_path / "embedded")],
        env=process_env(tmp_path),
        log_path=tmp_path / "worker.log",
    ).start()
    procs.append(worker)
    waited = cli(url, tmp_path, "tasks", "wait", tasks[0]["id"], "--timeout", "90", env=ca)
    assert waited.returncode == 0, waited.stdout + waited.stderr + worker.log()
    instance = httpx.get(f"{url}/stack_instances/shop", verify=trust(pki), timeout=10).json()
    assert {s["status"] for s in instance["status"]} == {"READY"}
    agents = httpx.get(f"{url}/agents", verify=trust(pki), timeout=10).json()["items"]
    assert [a["name"] for a in agents] == ["common"]  # the embedded agent, over loopback HTTPS, ran the jobs
