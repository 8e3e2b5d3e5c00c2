"""What a killed agent leaves running is stopped: by the next start of the agent, or at once on a cancel.

A real `stackl server` and a real `stackl agent --executor local`: the agent runs a shell job whose processes
sleep in its process group and in a session of their own, and is killed with SIGKILL mid-job; its restart
(same data directory) stops them before it claims anything and removes the stale job directory. And a step's
orphan (reparented to init because its parent exited) is stopped with the step when the job is cancelled.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from bench.servers import clean_env, start_server, stop
from tests.integration.agent.conftest import Runner, make_job

from stackl.agent.executors.base import LogLine
from stackl.broker.base import ItemSpec
from stackl.broker.sql import SqlBroker
from stackl.datastore.sql import SqlDocumentStore

AGENT = "restart-agent"
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def sleepers(token: str) -> list[int]:
    """Living processes whose command line holds ``token`` (a sleep of a unique length)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if token in cmdline and state != "Z" and "sh -c" not in cmdline:
            found.append(int(entry.name))
    return found


def wait_for(predicate: Any, *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def enqueue(database_url: str, command: str) -> str:
    async def go() -> str:
        async with SqlDocumentStore(database_url) as store, SqlBroker(store) as broker:
            payload = {
                "task_id": "T1",
                "action": "create",
                "stack_instance": "shop",
                "service": "web",
                "replica": 0,
                "functional_requirement": "nginx",
                "tool": "shell",
                "agent": AGENT,
                "invocation": {"command": command},
                "secrets": {},
            }
            spec = ItemSpec(queue=f"agent:{AGENT}", kind="job", payload=payload, max_attempts=1)
            return (await broker.enqueue(spec)).id

    return asyncio.run(go())


def start_agent(url: str, data_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "stackl", "agent", "--name", AGENT, "--server", url]
    args += ["--executor", "local", "--data-dir", str(data_dir), "--log-level", "info"]
    with log.open("ab") as out:
        return subprocess.Popen(args, env=clean_env(), stdout=out, stderr=subprocess.STDOUT)


def test_a_restarted_agent_stops_what_its_killed_instance_left_running(tmp_path: Path) -> None:
    token = f"{os.getpid() % 1000 + 3000}"  # unique sleep lengths: tests of others may run meanwhile
    in_group, own_session = f"sleep {token}1", f"sleep {token}2"
    server, url = start_server(
        tmp_path / "server", None, env=clean_env(STACKL_SERVER__AGENT="false", STACKL_SERVER__WORKER="false")
    )
    agent_dir, log = tmp_path / "agent", tmp_path / "agent.log"
    agent = start_agent(url, agent_dir, log)
    restarted: subprocess.Popen[bytes] | None = None
    try:
        # The step's group holds one sleep; the other sleeps in a session (and group) of its own.
        enqueue(
            f"sqlite+aiosqlite:///{tmp_path / 'server' / 'stackl.db'}", f"setsid {own_session} & {in_group}"
        )
        wait_for(lambda: sleepers(in_group) and sleepers(own_session), timeout_s=60, what="the job's sleeps")
        assert list((agent_dir / "jobs").iterdir())  # the job's directory
        assert list((agent_dir / "procs").iterdir())  # the step's process group, recorded
        agent.send_signal(signal.SIGKILL)
        agent.wait(timeout=10)
        time.sleep(0.5)
        left = set(sleepers(in_group)) | set(sleepers(own_session))
        assert sleepers(in_group)  # orphaned: nobody stopped them
        assert sleepers(own_session)

        # The restart expires the killed instance's lease at once, so attempt 2 of the job may start new
        # sleeps meanwhile: what must go are the processes the killed instance left.
        restarted = start_agent(url, agent_dir, log)
        wait_for(
            lambda: not left & (set(sleepers(in_group)) | set(sleepers(own_session))),
            timeout_s=30,
            what="the restarted agent to stop the leftovers",
        )
        wait_for(lambda: "local_leftovers_removed" in log.read_text(), timeout_s=10, what="the log line")
        # The stale job directory (attempt 1) is gone; attempt 2 may have been claimed meanwhile.
        assert [p.name for p in (agent_dir / "jobs").iterdir() if p.name.endswith("-1")] == []
    finally:
        for proc in (agent, restarted):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        stop(server)
        for pid in sleepers(in_group) + sleepers(own_session):  # never leave a sleeper behind
            os.kill(pid, signal.SIGKILL)
    assert "Traceback" not in log.read_text(), log.read_text()


async def test_cancel_stops_an_orphan_of_the_step(run_job: Runner) -> None:
    """A child whose parent exited is reparented to init: the tree walk misses it, its environment does not."""
    token = f"sleep {os.getpid() % 1000 + 4000}3"
    cancel = asyncio.Event()

    def ready(line: LogLine) -> None:
        if line.line == "ready":
            cancel.set()

    command = f"(setsid {token} &); echo ready; sleep 300"
    try:
        run = await run_job(make_job("shell", invocation={"command": command}), cancel=cancel, watch=ready)
        assert run.result.cancelled, run.result.error_message
        assert sleepers(token) == []
    finally:
        for pid in sleepers(token):
            os.kill(pid, signal.SIGKILL)
