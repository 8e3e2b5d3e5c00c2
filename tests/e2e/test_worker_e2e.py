"""Real `stackl worker` processes running ``noop`` tasks from the server's database (lifecycle.md §5.6, §5.8).

A `stackl server` (its own worker and agent off) owns the schema; the test enqueues tasks straight into the
database with a ``SqlBroker`` and reads the outcome there. Covers: two workers share the queue on SQLite and
PostgreSQL and no task is dispatched twice; ``kill -9`` of a worker holding a long task → another worker takes
it over once the (short) lease expired; SIGTERM releases a running task to another worker at once; a worker
refuses a database whose schema is behind (exit 7); the server's in-process worker runs tasks too.
"""

import asyncio
import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.e2e.conftest import STACKL, ChildProcess, ServerProcess, process_env, wait_until

from stackl.broker.base import Item, ItemSpec
from stackl.broker.sql import SqlBroker
from stackl.datastore.sql import SqlDocumentStore
from stackl.usecases.tasks import TASKS_QUEUE

LEASE_S = "1.5"  # short leases so a killed worker's task is taken over within seconds


@dataclass
class WorkerProcess(ChildProcess):
    """A running `stackl worker` and its log."""

    database: list[str]  # --data-dir DIR or --database-url URL
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [*STACKL, "worker", "--concurrency", "4", *self.database]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: "worker_started" in self.events(), timeout_s=30, what="the worker to start")

    @property
    def owner(self) -> str:
        started = [e for e in self.log_events() if e.get("event") == "worker_started"]
        return str(started[-1]["owner"])

    def events(self) -> str:
        return self.log()

    def log_events(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def claims(self, task_id: str) -> int:
        return sum(
            1 for e in self.log_events() if e.get("event") == "task_claimed" and e.get("task_id") == task_id
        )


class Db:
    """Synchronous access to the server's database for the test: enqueue tasks, read them."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _run(self, work: Callable[[SqlBroker], Any]) -> Any:
        async def go() -> Any:
            async with SqlDocumentStore(self.url) as store, SqlBroker(store) as broker:
                return await work(broker)

        return asyncio.run(go())

    def enqueue(self, count: int = 1, **payload: Any) -> list[str]:
        async def add(broker: SqlBroker) -> list[str]:
            spec = ItemSpec(queue=TASKS_QUEUE, kind="noop", payload=payload, max_attempts=10)
            return [(await broker.enqueue(spec)).id for _ in range(count)]

        ids: list[str] = self._run(add)
        return ids

    def items(self, ids: list[str]) -> dict[str, Item]:
        async def get(broker: SqlBroker) -> dict[str, Item]:
            found = {i: await broker.get(i) for i in ids}
            return {i: item for i, item in found.items() if item is not None}

        items: dict[str, Item] = self._run(get)
        return items

    def item(self, task_id: str) -> Item:
        return self.items([task_id])[task_id]


def wait_final(db: Db, ids: list[str], *, timeout_s: float = 60) -> dict[str, Item]:
    items: dict[str, Item] = {}

    def done() -> bool:
        items.update(db.items(ids))
        return len(items) == len(ids) and all(item.final for item in items.values())

    wait_until(done, timeout_s=timeout_s, what="the tasks to finish")
    return items


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = process_env(tmp_path)
    env |= {
        "STACKL_SERVER__WORKER": "false",
        "STACKL_SERVER__AGENT": "false",
        "STACKL_WORKER__LEASE_S": LEASE_S,
    }
    return env


@pytest.fixture
def worker_factory(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[..., WorkerProcess]]:
    """Start workers; at teardown each is stopped with SIGTERM and must exit 0 without a traceback."""
    started: list[WorkerProcess] = []

    def make(database: list[str], **extra_env: str) -> WorkerProcess:
        worker = WorkerProcess(
            database=database, env=env | extra_env, log_path=tmp_path / f"worker{len(started)}.log"
        )
        started.append(worker)
        worker.start()
        return worker

    yield make
    for worker in started:
        if worker.proc is not None:
            assert worker.stop() == 0, worker.log()
        assert "Traceback" not in worker.log(), worker.log()


@pytest.fixture(params=["sqlite", "postgresql"])
def database(
    request: pytest.FixtureRequest, server_factory: Callable[..., ServerProcess], env: dict[str, str]
) -> tuple[list[str], Db]:
    """A migrated database (a server started on it), as worker arguments and as test access."""
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_url")
        server_factory("--database-url", url, env=env)
        return ["--database-url", url], Db(url)
    server = server_factory(env=env)
    return ["--data-dir", str(server.data_dir)], Db(f"sqlite+aiosqlite:///{server.data_dir / 'stackl.db'}")


def test_two_workers_share_the_queue_and_run_each_task_once(
    database: tuple[list[str], Db], worker_factory: Callable[..., WorkerProcess]
) -> None:
    args, db = database
    first, second = worker_factory(args), worker_factory(args)
    ids = db.enqueue(12, sleep_s=0.2) + db.enqueue(12)
    items = wait_final(db, ids)
    assert {item.state for item in items.values()} == {"succeeded"}
    assert {item.attempt for item in items.values()} == {1}
    assert {json.dumps(item.result) for item in items.values()} == {'{"ok": true}'}
    assert {item.lease_owner for item in items.values()} <= {first.owner, second.owner}
    for task_id in ids:
        assert first.claims(task_id) + second.claims(task_id) == 1


def test_a_killed_workers_task_is_finished_by_another_worker(
    database: tuple[list[str], Db], worker_factory: Callable[..., WorkerProcess]
) -> None:
    args, db = database
    holder = worker_factory(args)
    [task_id] = db.enqueue(sleep_s=4)
    wait_until(lambda: db.item(task_id).state == "running", timeout_s=30, what="the task to start")
    assert db.item(task_id).lease_owner == holder.owner
    other = worker_factory(args)
    assert db.item(task_id).lease_owner == holder.owner  # a live lease is never taken over
    holder.kill()
    item = wait_final(db, [task_id])[task_id]
    assert (item.state, item.attempt, item.lease_expiries) == ("succeeded", 2, 1)
    assert item.lease_owner == other.owner
    assert (holder.claims(task_id), other.claims(task_id)) == (1, 1)


def test_sigterm_releases_a_running_task_to_another_worker(
    server_factory: Callable[..., ServerProcess],
    worker_factory: Callable[..., WorkerProcess],
    env: dict[str, str],
) -> None:
    server = server_factory(env=env)
    args = ["--data-dir", str(server.data_dir)]
    db = Db(f"sqlite+aiosqlite:///{server.data_dir / 'stackl.db'}")
    holder = worker_factory(args, STACKL_WORKER__LEASE_S="30", STACKL_WORKER__SHUTDOWN_TIMEOUT_S="0.2")
    [task_id] = db.enqueue(sleep_s=8)
    wait_until(lambda: db.item(task_id).state == "running", timeout_s=30, what="the task to start")
    other = worker_factory(args, STACKL_WORKER__LEASE_S="30")
    assert holder.stop() == 0
    assert any(e.get("event") == "task_released" for e in holder.log_events())
    item = wait_final(db, [task_id], timeout_s=20)[task_id]  # well before a 30 s lease could expire
    assert (item.state, item.attempt, item.lease_owner) == ("succeeded", 2, other.owner)


def test_the_worker_refuses_a_database_that_is_not_migrated(tmp_path: Path, env: dict[str, str]) -> None:
    empty = subprocess.run(
        [*STACKL, "worker", "--data-dir", str(tmp_path / "nothing")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert empty.returncode == 7, empty.stderr
    behind_dir = tmp_path / "behind"
    subprocess.run(
        [*STACKL, "db", "upgrade", "--to", "0001", "--data-dir", str(behind_dir)],
        env=env,
        capture_output=True,
        timeout=60,
        check=True,
    )
    behind = subprocess.run(
        [*STACKL, "worker", "--data-dir", str(behind_dir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert behind.returncode == 7, behind.stderr
    assert "stackl db upgrade" in behind.stderr


def test_the_servers_in_process_worker_runs_tasks(
    server_factory: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    env = process_env(tmp_path) | {
        "STACKL_SERVER__AGENT": "false",
        "STACKL_WORKER__SHUTDOWN_TIMEOUT_S": "0.5",
    }
    server = server_factory(env=env)
    db = Db(f"sqlite+aiosqlite:///{server.data_dir / 'stackl.db'}")
    ids = db.enqueue(3)
    items = wait_final(db, ids)
    assert {item.state for item in items.values()} == {"succeeded"}
    assert all(str(item.lease_owner).startswith("worker@") for item in items.values())
    [long_task] = db.enqueue(sleep_s=60)
    wait_until(lambda: db.item(long_task).state == "running", timeout_s=30, what="the task to start")
    assert server.stop() == 0  # graceful: the running task is released, not left to its lease
    assert db.item(long_task).state == "queued"
