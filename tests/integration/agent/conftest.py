"""Fixtures for the agent's executors: an automation dir, a data dir, a job factory, a local runner, and a
private Docker engine (started once per session, as docs/PLATFORM "Docker" shows) with `stackl/busybox:test`."""

import asyncio
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stackl.agent.executors.base import Job, LogLine, Result
from stackl.agent.executors.local import LocalConfig, LocalExecutor


@dataclass
class Run:
    """A finished job: its result and every line it emitted."""

    result: Result
    lines: list[LogLine] = field(default_factory=list)

    def text(self, *streams: str) -> str:
        return "\n".join(line.line for line in self.lines if not streams or line.stream in streams)


@pytest.fixture
def automation_dir(tmp_path: Path) -> Path:
    path = tmp_path / "automation"
    path.mkdir()
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_job(tool: str, fr: str = "fr", **fields: Any) -> Job:
    invocation = fields.pop("invocation", {})
    payload: dict[str, Any] = {
        "job_id": "01JOB",
        "attempt": 1,
        "task_id": "01TASK",
        "action": "create",
        "stack_instance": "si",
        "service": "web",
        "replica": 0,
        "infrastructure_target": "production.brussels.zone-a",
        "functional_requirement": fr,
        "tool": tool,
        "invocation": invocation,
        **fields,
    }
    return Job.model_validate(payload)


Runner = Callable[..., Awaitable[Run]]


@pytest.fixture
def run_job(data_dir: Path, automation_dir: Path) -> Runner:
    """Run a job on a local executor (1 s grace, plain secrets unless asked), collecting its lines.

    `watch` sees each line as it comes (a test cancels on a marker line).
    """

    async def run(
        job: Job,
        *,
        cancel: asyncio.Event | None = None,
        handler: str = "plain",
        watch: Callable[[LogLine], None] = lambda _line: None,
        **config: Any,
    ) -> Run:
        executor = LocalExecutor(
            LocalConfig(
                data_dir=data_dir,
                automation_dirs=[automation_dir],
                environ=dict(os.environ),
                secret_handler=handler,
                grace_s=config.pop("grace_s", 1.0),
                **config,
            )
        )
        lines: list[LogLine] = []

        def emit(line: LogLine) -> None:
            lines.append(line)
            watch(line)

        result = await executor.run(job, emit=emit, cancel=cancel or asyncio.Event())
        return Run(result, lines)

    return run


BUSYBOX_IMAGE = "stackl/busybox:test"
DOCKERD = "/usr/sbin/dockerd"


def _busybox_rootfs() -> bytes:
    """A tar of a minimal root filesystem: /bin/busybox (static), /bin/sh, /tmp."""
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, mode in (("bin", 0o755), ("tmp", 0o1777)):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, mode
            tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    return data.getvalue()


def _start_dockerd(directory: Path, driver: str) -> subprocess.Popen[bytes]:
    with (directory / "dockerd.log").open("ab") as output:
        return subprocess.Popen(
            [
                DOCKERD,
                "--data-root", str(directory / "root"),
                "--exec-root", str(directory / "exec"),
                "--host", f"unix://{directory / 'docker.sock'}",
                "--pidfile", str(directory / "dockerd.pid"),
                "--bridge=none", "--iptables=false", "--ip6tables=false", "--ip-forward=false",
                "--ip-masq=false", f"--storage-driver={driver}",
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip


def _answers(url: str) -> bool:
    """Whether the engine answers `GET /_ping` on its socket (a plain request: no client to leak)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(url.removeprefix("unix://"))
            sock.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
            return b" 200 " in sock.recv(64)
    except OSError:
        return False


def _stop_dockerd(directory: Path, process: subprocess.Popen[bytes]) -> None:
    pidfile = directory / "dockerd.pid"
    pid = int(pidfile.read_text().strip()) if pidfile.exists() else process.pid
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[str]:
    """The URL of a private Docker engine holding `stackl/busybox:test`; stopped by its pidfile at the end.

    Fails (never skips) when dockerd cannot start: CI runs as root with docker.io installed.
    """
    if os.geteuid() != 0 or not Path(DOCKERD).exists():
        pytest.fail(f"the docker tests need root and {DOCKERD} (Debian docker.io: scripts/install --test)")
    directory = Path(tempfile.mkdtemp(prefix="stackl-dockerd-"))
    url = f"unix://{directory / 'docker.sock'}"
    process: subprocess.Popen[bytes] | None = None
    for driver in ("overlay2", "vfs"):
        process = _start_dockerd(directory, driver)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and process.poll() is None and not _answers(url):
            time.sleep(0.2)
        if process.poll() is None and _answers(url):
            break
        _stop_dockerd(directory, process)
        process = None
    if process is None:
        log = (directory / "dockerd.log").read_text(errors="replace")[-4000:]
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(f"dockerd did not start (overlay2 nor vfs):\n{log}")
    try:
        import docker  # type: ignore[import-untyped]

        client = docker.APIClient(base_url=url, timeout=60)
        repository, tag = BUSYBOX_IMAGE.split(":")
        client.import_image_from_data(_busybox_rootfs(), repository=repository, tag=tag)
        client.close()
        yield url
    finally:
        _stop_dockerd(directory, process)
        _unmount_below(directory)
        shutil.rmtree(directory, ignore_errors=True)


def _unmount_below(directory: Path) -> None:
    """Unmount what a stopped dockerd left mounted under its directories (``exec/netns/default`` once it has made
    a network, as the compose cluster test does), so that the directory can be removed."""
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        points = [line.split()[1] for line in mounts if line.split()[1].startswith(f"{directory}/")]
    for point in sorted(points, reverse=True):
        subprocess.run(["umount", point], capture_output=True, check=False)
