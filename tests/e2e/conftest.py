"""Real processes: a `stackl server` on a free loopback port with its own data directory (or PostgreSQL)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

STACKL = [sys.executable, "-m", "stackl"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class ChildProcess:
    """Stop, kill and read the log of a process a test started; subclasses set ``proc`` and ``log_path``."""

    proc: subprocess.Popen[bytes] | None
    log_path: Path

    def stop(self) -> int:
        """SIGTERM, wait, and return the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=60)
        self.proc = None
        return code

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=30)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@dataclass
class ServerProcess(ChildProcess):
    """A running `stackl server` and how to reach, stop and restart it."""

    data_dir: Path
    port: int
    env: dict[str, str]
    log_path: Path
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        args = [
            *STACKL,
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        with self.log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"server exited with {proc.returncode}:\n{self.log_path.read_text()}")
            try:
                return httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        try:
            wait_until(ready, timeout_s=30, what="the server to be ready")
        except BaseException:  # not yet in server_factory's list: its teardown would not stop it
            self.kill()
            raise


def process_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STACKL_", "ANSIBLE_", "TF_"))}
    env["HOME"] = str(tmp_path / "home")
    env["STACKL_LOGGING__FORMAT"] = "json"
    return env


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start servers; each is stopped at teardown, which asserts a clean exit without a traceback."""
    started: list[ServerProcess] = []

    def make(
        *extra_args: str, data_dir: Path | None = None, env: dict[str, str] | None = None
    ) -> ServerProcess:
        index = len(started)
        server = ServerProcess(
            data_dir=data_dir or tmp_path / f"data{index}",
            port=free_port(),
            env=env or process_env(tmp_path),
            log_path=tmp_path / f"server{index}.log",
            extra_args=list(extra_args),
        )
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc is not None:
            assert server.stop() == 0, server.log()
        assert "Traceback" not in server.log(), server.log()


@pytest.fixture
def server(server_factory: Callable[..., ServerProcess]) -> ServerProcess:
    return server_factory()


def run_cli(
    *args: str, server: ServerProcess, check: bool = True, **kwargs: object
) -> subprocess.CompletedProcess[str]:
    """Run a `stackl` CLI subprocess against ``server``."""
    env = dict(server.env)
    env["STACKL_URL"] = server.url
    result = subprocess.run(
        [*STACKL, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"stackl {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
        )
    return result


def pg_dsn(database: str) -> str:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    return f"postgresql+asyncpg://{user}@{host}:{port}/{database}"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database (the server under test migrates it); dropped afterwards."""
    import asyncio
    import uuid

    import asyncpg

    name = f"stackl_e2e_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        try:
            conn = await asyncpg.connect(
                host=os.environ.get("PGHOST", "127.0.0.1"),
                port=int(os.environ.get("PGPORT", "5432")),
                user=os.environ.get("PGUSER", "postgres"),
                database="postgres",
            )
        except OSError as exc:
            raise AssertionError("PostgreSQL not reachable: run scripts/start-postgres") from exc
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    yield pg_dsn(name)
    asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
