"""WorkerRunner on the in-memory store and broker: claim, heartbeat, run, finish, fail, release, drop.

Leases are moved forward with a manual clock (the broker's time) where a test needs a lapsed lease; the
runner's own rhythm (heartbeats, polling) uses short real intervals, so every test ends in well under a second.
"""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackl import errors
from stackl.broker.base import Item, ItemSpec
from stackl.broker.memory import InMemoryBroker
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.clock import Clock, SystemClock
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE, TaskHandler, TaskLease
from stackl.worker.handlers import noop
from stackl.worker.runner import WorkerRunner

OWNER = "worker@test:1"


class ManualClock(Clock):
    def __init__(self) -> None:
        self.moment = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)

    def now(self) -> datetime:
        self.moment += timedelta(milliseconds=1)
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


class FlakyBroker(InMemoryBroker):
    """The in-memory broker whose heartbeats fail with BrokerUnavailable while ``down`` is set."""

    down = False

    async def heartbeat(self, item_id: str, *, owner: str, epoch: int, lease_s: float = 30.0) -> Item:
        if self.down:
            raise errors.BrokerUnavailable("database unreachable")
        return await super().heartbeat(item_id, owner=owner, epoch=epoch, lease_s=lease_s)


def make_ports(clock: Clock, broker: InMemoryBroker | None = None) -> Ports:
    return Ports(
        store=InMemoryDocumentStore(clock=clock),
        broker=broker or InMemoryBroker(clock, poll_interval_s=0.01),
        policies=StaticPolicyEngine(),
        agents=InMemoryAgentRegistry(),
        clock=clock,
    )


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ports(clock: ManualClock) -> Ports:
    return make_ports(clock)


async def eventually(predicate: Callable[[], Awaitable[bool]], *, timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():  # noqa: ASYNC110 - polls broker state, which has no event
            await asyncio.sleep(0.01)


async def enqueue(ports: Ports, kind: str, *, max_attempts: int = 10, **payload: Any) -> str:
    item = await ports.broker.enqueue(
        ItemSpec(queue=TASKS_QUEUE, kind=kind, payload=payload, max_attempts=max_attempts)
    )
    return item.id


async def item(ports: Ports, item_id: str) -> Item:
    found = await ports.broker.get(item_id)
    assert found is not None
    return found


async def final(ports: Ports, *item_ids: str) -> list[Item]:
    async def done() -> bool:
        return all([(await item(ports, i)).final for i in item_ids])

    await eventually(done)
    return [await item(ports, i) for i in item_ids]


class Blocker:
    """A handler that waits until released (or cancelled) and records what happened to it."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.release = asyncio.Event()
        self.active = 0
        self.peak = 0

    async def __call__(self, ports: Ports, lease: TaskLease) -> None:
        self.started.append(lease.item.id)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.release.wait()
            await lease.complete({"done": True})
        except asyncio.CancelledError:
            self.cancelled.append(lease.item.id)
            raise
        finally:
            self.active -= 1


@asynccontextmanager
async def running(
    ports: Ports, handlers: dict[str, TaskHandler], **options: Any
) -> AsyncIterator[tuple[WorkerRunner, asyncio.Event, "asyncio.Task[None]"]]:
    options = {"heartbeat_s": 0.02, "poll_s": 0.05, "shutdown_timeout_s": 0.1} | options
    runner = WorkerRunner(ports, handlers, owner=OWNER, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    try:
        yield runner, stop, task
    finally:
        stop.set()
        async with asyncio.timeout(5):
            await task


async def test_a_handler_runs_and_finishes_its_task(ports: Ports) -> None:
    task_id = await enqueue(ports, "noop")
    async with running(ports, {"noop": noop}):
        [done] = await final(ports, task_id)
    assert (done.state, done.result, done.attempt, done.lease_owner) == ("succeeded", {"ok": True}, 1, OWNER)


async def test_a_failing_handler_fails_its_task_and_the_worker_carries_on(ports: Ports) -> None:
    async def broken(ports: Ports, lease: TaskLease) -> None:
        raise RuntimeError("kaput")

    bad = await enqueue(ports, "broken")
    async with running(ports, {"broken": broken, "noop": noop}):
        [failed] = await final(ports, bad)
        good = await enqueue(ports, "noop")
        [succeeded] = await final(ports, good)
    assert failed.state == "failed"
    assert failed.error == "task handler for 'broken' failed: RuntimeError: kaput"
    assert succeeded.state == "succeeded"


async def test_an_unknown_kind_fails_naming_the_kind(ports: Ports) -> None:
    task_id = await enqueue(ports, "mystery")
    async with running(ports, {"noop": noop}):
        [failed] = await final(ports, task_id)
    assert failed.state == "failed"
    assert failed.error == "no handler for task kind 'mystery' (known: noop)"


async def test_a_handler_that_returns_without_finishing_fails_the_task(ports: Ports) -> None:
    async def forgetful(ports: Ports, lease: TaskLease) -> None:
        return None

    task_id = await enqueue(ports, "forgetful")
    async with running(ports, {"forgetful": forgetful}):
        [failed] = await final(ports, task_id)
    assert failed.state == "failed"
    assert failed.error == "task handler for 'forgetful' returned without finishing the task"


async def test_a_lost_lease_cancels_the_handler_at_once(ports: Ports, clock: ManualClock) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}, lease_s=30.0) as (runner, _stop, _task):
        await eventually(lambda: _true(blocker.started))
        clock.advance(60)  # the lease lapses; another worker takes the task over
        [stolen] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="thief", lease_s=30)
        await eventually(lambda: _true(blocker.cancelled))
        await eventually(lambda: _true(not runner.running))
        current = await item(ports, task_id)
    assert blocker.cancelled == [task_id]
    assert (current.state, current.lease_owner, current.lease_epoch) == (
        "running",
        "thief",
        stolen.lease_epoch,
    )
    assert stolen.lease_epoch == 2


async def test_an_unreachable_database_stops_the_handler_before_the_lease_can_lapse() -> None:
    broker = FlakyBroker(SystemClock(), poll_interval_s=0.01)
    ports = make_ports(SystemClock(), broker)
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}, lease_s=0.5, heartbeat_s=0.1) as (runner, _stop, _task):
        await eventually(lambda: _true(blocker.started))
        broker.down = True
        await eventually(lambda: _true(blocker.cancelled))
        current = await item(ports, task_id)
        assert current.lease_until is not None
        assert current.lease_until > SystemClock().now()  # stopped while the lease still held
        broker.down = False
        await eventually(lambda: _true(not runner.running))


async def test_heartbeats_keep_a_long_task_leased() -> None:
    ports = make_ports(SystemClock())

    async def slow(ports: Ports, lease: TaskLease) -> None:
        await asyncio.sleep(0.6)  # twice the lease
        await lease.complete({"slow": True})

    task_id = await enqueue(ports, "slow")
    async with running(ports, {"slow": slow}, lease_s=0.3, heartbeat_s=0.05):
        [done] = await final(ports, task_id)
    assert (done.state, done.attempt, done.lease_expiries) == ("succeeded", 1, 0)


async def test_graceful_stop_waits_for_running_handlers(ports: Ports) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}, shutdown_timeout_s=5) as (_runner, stop, task):
        await eventually(lambda: _true(blocker.started))
        stop.set()
        await asyncio.sleep(0.05)
        assert not task.done()  # still waiting for the handler
        blocker.release.set()
        await task
    assert (await item(ports, task_id)).state == "succeeded"


async def test_graceful_stop_releases_a_running_task_for_another_worker(ports: Ports) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    queued = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}, concurrency=1, shutdown_timeout_s=0.05) as (_r, stop, task):
        await eventually(lambda: _true(blocker.started))
        stop.set()
        await task
    released = await item(ports, task_id)
    assert blocker.cancelled == [task_id]
    assert (released.state, released.attempt, released.lease_expiries) == ("queued", 1, 1)
    assert (await item(ports, queued)).attempt == 0  # never claimed: a stopping worker takes nothing new
    claimed = await ports.broker.claim(queues=[TASKS_QUEUE], owner="other", limit=2)
    assert {(c.id, c.attempt) for c in claimed} == {(task_id, 2), (queued, 1)}


async def test_a_task_that_lost_its_worker_too_often_fails_without_running(
    ports: Ports, clock: ManualClock
) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block", max_attempts=10)
    for _ in range(3):
        await ports.broker.claim(queues=[TASKS_QUEUE], owner="doomed", lease_s=30)
        clock.advance(60)
    async with running(ports, {"block": blocker}, max_lease_expiries=3):
        [failed] = await final(ports, task_id)
    assert blocker.started == []
    assert (failed.state, failed.error) == ("failed", "worker lost 3 times")
    assert failed.result == {"status": "FAILED", "reason": "worker lost 3 times"}


async def test_never_more_tasks_than_the_concurrency(ports: Ports) -> None:
    blocker = Blocker()
    ids = [await enqueue(ports, "block") for _ in range(6)]
    async with running(ports, {"block": blocker}, concurrency=2) as (runner, _stop, _task):
        await eventually(lambda: _true(len(blocker.started) == 2))
        await asyncio.sleep(0.1)
        assert len(runner.running) == 2
        assert await _states(ports, ids) == ["running"] * 2 + ["queued"] * 4
        blocker.release.set()
        done = await final(ports, *ids)
    assert {d.state for d in done} == {"succeeded"}
    assert blocker.peak == 2


async def test_noop_honours_sleep_s(ports: Ports) -> None:
    task_id = await enqueue(ports, "noop", sleep_s=0.2)
    async with running(ports, {"noop": noop}) as (runner, _stop, _task):
        await eventually(lambda: _true(runner.running))
        assert (await item(ports, task_id)).state == "running"
        [done] = await final(ports, task_id)
    assert done.result == {"ok": True}


def test_bad_timings_are_refused(ports: Ports) -> None:
    with pytest.raises(ValueError, match="heartbeat_s"):
        WorkerRunner(ports, {}, owner=OWNER, lease_s=10, heartbeat_s=10)


async def _true(value: object) -> bool:
    return bool(value)


async def _states(ports: Ports, ids: Sequence[str]) -> list[str]:
    return [(await item(ports, i)).state for i in ids]


async def test_an_activation_that_met_an_unreachable_database_runs_again(ports: Ports) -> None:
    calls: list[int] = []

    async def flaky(ports: Ports, lease: TaskLease) -> None:
        calls.append(lease.epoch)
        if len(calls) < 3:
            raise errors.BrokerUnavailable("database restarting")
        await lease.complete({"after": len(calls)})

    task_id = await enqueue(ports, "flaky")
    async with running(ports, {"flaky": flaky}, unavailable_pause_s=0):
        [done] = await final(ports, task_id)
    assert (done.state, done.result, done.attempt) == ("succeeded", {"after": 3}, 1)  # one claim, three runs
    assert calls == [1, 1, 1]
