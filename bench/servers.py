"""Real `stackl server` processes for the benchmarks, and the PostgreSQL database each run gets.

Every bench that drives a server over HTTP starts it the same way (free loopback port, its own data dir,
warnings only, ready when `/readyz` answers 200) and runs once on SQLite and once on PostgreSQL when `PGHOST`
is set (a fresh database per run, dropped afterwards).
"""

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


PROFILE_ENV = "STACKL_BENCH_PROFILE"  # a directory: every STACKL process runs under cProfile, one file each


def stackl_command(role: str, *args: str) -> list[str]:
    """The command line of ``stackl <args>``, under cProfile (``<dir>/<role>-<pid>.prof``) when profiling."""
    profile_dir = os.environ.get(PROFILE_ENV)
    if not profile_dir:
        return [sys.executable, "-m", "stackl", *args]
    out = Path(profile_dir) / f"{role}-{uuid.uuid4().hex[:6]}.prof"
    return [sys.executable, "-m", "cProfile", "-o", str(out), "-m", "stackl", *args]


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without the developer's STACKL_ settings, plus ``extra``."""
    return {k: v for k, v in os.environ.items() if not k.startswith("STACKL_")} | extra


def start_server(
    data_dir: Path, database_url: str | None, *, env: Mapping[str, str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """Start `stackl server` and wait until it is ready; return the process and its URL."""
    port = free_port()
    args = stackl_command("server", "server", "--port", str(port), "--data-dir", str(data_dir))
    args += ["--log-level", "warning", *(["--database-url", database_url] if database_url else [])]
    proc = subprocess.Popen(
        args, env=dict(env or clean_env()), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not become ready")


def start_mock_agent(name: str, url: str, data_dir: Path, *, max_jobs: int) -> subprocess.Popen[bytes]:
    """Start `stackl agent --executor mock` named ``name`` against ``url`` (stop it with ``stop``)."""
    args = stackl_command("agent", "agent", "--name", name, "--server", url, "--executor", "mock")
    args += ["--max-jobs", str(max_jobs), "--data-dir", str(data_dir), "--log-level", "warning"]
    return subprocess.Popen(args, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()


def databases(*, sqlite_only: bool = False) -> list[str]:
    """The databases a bench runs on: SQLite, and PostgreSQL when `PGHOST` is set."""
    return ["sqlite"] if sqlite_only or not os.environ.get("PGHOST") else ["sqlite", "postgresql"]


@contextmanager
def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database (from the PG* variables) for one run; its SQLAlchemy URL."""
    name = f"bench_{uuid.uuid4().hex[:10]}"
    subprocess.run(["createdb", name], check=True)
    try:
        user, host, port = (
            os.environ.get("PGUSER", "postgres"),
            os.environ["PGHOST"],
            os.environ.get("PGPORT", "5432"),
        )
        yield f"postgresql+asyncpg://{user}@{host}:{port}/{name}"
    finally:
        subprocess.run(["dropdb", "--if-exists", name], check=False)
