"""WorkerRunner on the in-memory store and broker: claim, heartbeat, run, finish, fail, release, drop.

Everything runs on a manual clock (``tests/clocks.py``) with the real timings of lifecycle.md §5.6: a 30 s
lease renewed every 10 s, fencing at 0.9 of a lease. ``await clock.elapse(s)`` plays those seconds out in
order and ``await clock.settle()`` runs the loop until it is idle, so no test sleeps and each assertion
names the exact moment it is about.
"""

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest
from tests.clocks import ManualClock

from stackl import errors
from stackl.broker.base import Item, ItemSpec
from stackl.broker.memory import InMemoryBroker
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.clock import Clock
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE, TaskHandler, TaskLease
from stackl.worker.handlers import noop
from stackl.worker.runner import Backoff, WorkerRunner

OWNER = "worker@test:1"


class FlakyBroker(InMemoryBroker):
    """The in-memory broker whose heartbeats fail: ``down`` → BrokerUnavailable, ``refuse`` → Conflict."""

    down = False
    refuse = False
    heartbeats = 0  # heartbeat calls received, answered or not

    async def heartbeat(self, item_id: str, *, owner: str, epoch: int, lease_s: float = 30.0) -> Item:
        self.heartbeats += 1
        if self.down:
            raise errors.BrokerUnavailable("database unreachable")
        if self.refuse:
            raise errors.Conflict("the lease was superseded")
        return await super().heartbeat(item_id, owner=owner, epoch=epoch, lease_s=lease_s)


def make_ports(clock: Clock, broker: InMemoryBroker | None = None) -> Ports:
    return Ports(
        store=InMemoryDocumentStore(clock=clock),
        broker=broker or FlakyBroker(clock, poll_interval_s=0.01),
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


def flaky(ports: Ports) -> FlakyBroker:
    assert isinstance(ports.broker, FlakyBroker)
    return ports.broker


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
    """The items once the loop is idle; each must have ended by then."""
    clock = ports.clock
    assert isinstance(clock, ManualClock)
    await clock.settle()
    items = [await item(ports, i) for i in item_ids]
    assert all(i.final for i in items), [(i.id, i.state) for i in items]
    return items


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
    """A runner with the default timings on the ports' manual clock, started and settled."""
    clock = ports.clock
    assert isinstance(clock, ManualClock)
    runner = WorkerRunner(ports, handlers, owner=OWNER, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run(stop))
    await clock.settle()
    try:
        yield runner, stop, task
    finally:
        stop.set()
        async with asyncio.timeout(5):
            while not task.done():  # a handler still blocked: the shutdown timeout runs out
                await clock.elapse(1)
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


async def test_a_refused_renewal_cancels_the_handler_at_once(ports: Ports, clock: ManualClock) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}) as (runner, _stop, _task):
        assert blocker.started == [task_id]
        flaky(ports).refuse = True  # e.g. the task was superseded by another worker
        await clock.elapse(9.9)
        assert (blocker.cancelled, flaky(ports).heartbeats) == ([], 0)
        await clock.elapse(0.1)  # the first renewal, at 10 s, is refused
        assert blocker.cancelled == [task_id]
        assert runner.running == []
    assert flaky(ports).heartbeats == 1


async def test_a_worker_paused_past_its_lease_stops_its_handler_when_it_resumes(
    ports: Ports, clock: ManualClock
) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}) as (runner, _stop, _task):
        assert blocker.started == [task_id]
        clock.advance(60)  # the process was frozen for a minute: the lease lapses, another worker takes over
        [stolen] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="thief", lease_s=30)
        await clock.settle()  # resumed: the heartbeat sees 60 s without acknowledgement and fences at once
        assert blocker.cancelled == [task_id]
        assert runner.running == []
        current = await item(ports, task_id)
    assert flaky(ports).heartbeats == 0  # fenced without asking
    assert (current.state, current.lease_owner, current.lease_epoch) == (
        "running",
        "thief",
        stolen.lease_epoch,
    )
    assert stolen.lease_epoch == 2


async def test_an_unreachable_database_stops_the_handler_before_the_lease_can_lapse(
    ports: Ports, clock: ManualClock
) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}) as (runner, _stop, _task):
        assert blocker.started == [task_id]
        flaky(ports).down = True
        await clock.elapse(26.9)  # renewals fail at 10 s and 21 s (each retried 1 s later, at 11 s and 22 s)
        assert (blocker.cancelled, flaky(ports).heartbeats) == ([], 2)
        await clock.elapse(0.1)  # 27 s = 0.9 of the 30 s lease without an acknowledged renewal: fenced
        assert blocker.cancelled == [task_id]
        current = await item(ports, task_id)
        assert current.lease_until is not None
        assert current.lease_until > clock.now()  # stopped while the lease still held
        flaky(ports).down = False
        await clock.settle()
        assert runner.running == []


async def test_heartbeats_keep_a_long_task_leased(ports: Ports, clock: ManualClock) -> None:
    async def slow(ports: Ports, lease: TaskLease) -> None:
        await ports.clock.sleep(90)  # three leases
        await lease.complete({"slow": True})

    task_id = await enqueue(ports, "slow")
    async with running(ports, {"slow": slow}):
        await clock.elapse(89.9)
        held = await item(ports, task_id)
        assert held.state == "running"
        assert held.lease_until is not None
        assert held.lease_until > clock.now()
        assert flaky(ports).heartbeats == 8  # every 10 s
        await clock.elapse(0.1)
        [done] = await final(ports, task_id)
    assert (done.state, done.attempt, done.lease_expiries) == ("succeeded", 1, 0)


async def test_graceful_stop_waits_for_running_handlers(ports: Ports, clock: ManualClock) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}) as (_runner, stop, task):
        assert blocker.started == [task_id]
        stop.set()
        await clock.elapse(9.9)  # within the 10 s shutdown timeout
        assert not task.done()  # still waiting for the handler
        blocker.release.set()
        await clock.settle()
        assert task.done()
    assert blocker.cancelled == []
    assert (await item(ports, task_id)).state == "succeeded"


async def test_graceful_stop_releases_a_running_task_for_another_worker(
    ports: Ports, clock: ManualClock
) -> None:
    blocker = Blocker()
    task_id = await enqueue(ports, "block")
    queued = await enqueue(ports, "block")
    async with running(ports, {"block": blocker}, concurrency=1) as (_r, stop, task):
        assert blocker.started == [task_id]
        stop.set()
        await clock.elapse(9.9)
        assert not task.done()
        await clock.elapse(0.1)  # the shutdown timeout is over: the handler is cancelled, the task released
        assert task.done()
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
        assert len(blocker.started) == 2
        assert len(runner.running) == 2
        assert await _states(ports, ids) == ["running"] * 2 + ["queued"] * 4
        blocker.release.set()
        done = await final(ports, *ids)
    assert {d.state for d in done} == {"succeeded"}
    assert blocker.peak == 2


async def test_noop_honours_sleep_s(ports: Ports, clock: ManualClock) -> None:
    task_id = await enqueue(ports, "noop", sleep_s=20)
    async with running(ports, {"noop": noop}) as (runner, _stop, _task):
        assert runner.running == [task_id]
        await clock.elapse(19.9)
        assert (await item(ports, task_id)).state == "running"
        await clock.elapse(0.1)
        [done] = await final(ports, task_id)
    assert done.result == {"ok": True}


def test_bad_timings_are_refused(ports: Ports) -> None:
    with pytest.raises(ValueError, match="heartbeat_s"):
        WorkerRunner(ports, {}, owner=OWNER, lease_s=10, heartbeat_s=10)
    with pytest.raises(ValueError, match="max_pause_s"):
        WorkerRunner(ports, {}, owner=OWNER, unavailable_pause_s=5, max_pause_s=1)


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() -> None:
    backoff = Backoff(first_s=1, cap_s=30)
    assert [backoff.next_pause() for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    backoff.reset()
    assert backoff.next_pause() == 1
    assert Backoff(first_s=1, cap_s=30, failures=10_000).next_pause() == 30  # no overflow however long


async def test_the_reconciler_runs_at_start_then_every_reconcile_s_and_outlives_an_outage(
    ports: Ports, clock: ManualClock
) -> None:
    rounds: list[float] = []

    async def reconcile(ports: Ports) -> None:
        rounds.append(clock.monotonic())
        if len(rounds) == 2:
            raise errors.StoreUnavailable("disk full")
        if len(rounds) == 3:
            raise RuntimeError("a bug in one round")

    start = clock.monotonic()
    async with running(ports, {}, reconcile=reconcile, reconcile_s=60):
        assert rounds == [start]
        await clock.elapse(60)
        assert len(rounds) == 2  # failed: the database is down
        await clock.elapse(1)  # retried after the first backoff pause, not a whole period later
        assert len(rounds) == 3  # a bug: logged, the loop carries on
        await clock.elapse(60)
        assert len(rounds) == 4
    assert [round(r - start, 3) for r in rounds] == [0, 60, 61, 121]


async def test_the_record_of_a_failed_task_is_retried_while_the_database_is_down(
    ports: Ports, clock: ManualClock
) -> None:
    recorded: list[str] = []

    async def crash(ports: Ports, lease: TaskLease) -> None:
        raise RuntimeError("boom")

    async def give_up(ports: Ports, item: Item, reason: str) -> None:
        if len(recorded) < 2:
            recorded.append("down")
            raise errors.StoreUnavailable("database or disk is full")
        recorded.append(reason)

    task_id = await enqueue(ports, "crash")
    async with running(ports, {"crash": crash}, give_up={"crash": give_up}):
        await clock.elapse(3)  # pauses of 1 s then 2 s
        [failed] = await final(ports, task_id)
    assert failed.state == "failed"
    assert recorded == ["down", "down", "task handler for 'crash' failed: RuntimeError: boom"]


async def _true(value: object) -> bool:
    return bool(value)


async def _states(ports: Ports, ids: Sequence[str]) -> list[str]:
    return [(await item(ports, i)).state for i in ids]


async def test_an_activation_that_met_an_unreachable_database_runs_again(
    ports: Ports, clock: ManualClock
) -> None:
    calls: list[int] = []

    async def flaky(ports: Ports, lease: TaskLease) -> None:
        calls.append(lease.epoch)
        if len(calls) < 3:
            raise errors.BrokerUnavailable("database restarting")
        await lease.complete({"after": len(calls)})

    task_id = await enqueue(ports, "flaky")
    async with running(ports, {"flaky": flaky}):
        assert calls == [1]
        await clock.elapse(0.9)
        assert calls == [1]
        await clock.elapse(0.1)  # after the 1 s pause, the same lease runs it again
        assert calls == [1, 1]
        await clock.elapse(1.9)
        assert calls == [1, 1]
        await clock.elapse(0.1)  # the second pause is twice as long (backoff)
        [done] = await final(ports, task_id)
    assert (done.state, done.result, done.attempt) == ("succeeded", {"after": 3}, 1)  # one claim, three runs
    assert calls == [1, 1, 1]
