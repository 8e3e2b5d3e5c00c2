"""WorkerRunner: claim tasks, keep their leases alive, run their handlers, finish them (lifecycle.md §5).

One runner serves the ``tasks`` queue for one process (``stackl worker`` or the server's in-process worker).
A handler runs one *activation* of a task: it advances the task as far as it can, then finishes it or parks it
(``usecases/tasks.py``); a parked task holds no slot while its jobs run, so ``concurrency`` bounds the tasks
being advanced at one moment, not the deployments in flight. Its loops, and why they have this shape:

- **Claim** never takes more items than there are free slots (``concurrency``), waits on ``broker.wait``
  when nothing is ready, and backs off when the database is unavailable.
- **A database outage is waited out, never a reason to fail a deployment.** Every loop that meets
  ``Unavailable`` (a PostgreSQL restart, a SQLite lock timeout, a full disk) pauses ``unavailable_pause_s``,
  doubling at each consecutive failure up to ``max_pause_s``, and tries again: an activation runs again from
  the task's stored state, the record of a failed task (``give_up``) is retried.
- **Nothing stays ``in_progress`` without a live task.** ``reconcile`` (``usecases/reconcile.py``) runs at
  start and every ``reconcile_s``: steps whose task ended or vanished without finishing them (a lease that
  expired on its last attempt, a ``give_up`` that never got through) become FAILED with the reason.
- **One heartbeat per task** renews its lease every ``heartbeat_s`` (10 s for the 30 s lease). A refused
  renewal (``Conflict``/``NotFound``: superseded, lapsed, gone), or no renewal acknowledged for almost a
  whole lease (the database is unreachable, so another worker may take it over), means the task is no
  longer ours: the handler's asyncio task is cancelled at once, so it stops writing. Its writes are fenced
  anyway (lease epoch); cancelling stops its side effects too, such as dispatching jobs.
- **Failures stay with their task.** An unknown kind, a handler exception or a handler that returns
  without finishing its item ends that item ``failed`` with a readable error, logged once with the
  traceback; the worker carries on with the others.
- **A task that keeps killing its worker cannot loop forever**: an item claimed after ``max_lease_expiries``
  lapsed leases ends ``failed`` (``worker lost N times``) without running. This relies on task items being
  enqueued with ``max_attempts`` above ``max_lease_expiries`` (the broker itself fails an item whose lease
  expires on its last attempt, with ``lease expired N times``).
- **Time comes from ``ports.clock``**: heartbeats, the fencing rule, the pauses after an unreachable database
  and the shutdown wait read its ``monotonic()`` and wait with its ``sleep()``, so tests move them with a
  manual clock instead of sleeping (only ``broker.wait`` counts real seconds, inside the broker).
- **Graceful stop**: stop claiming (an item claimed after the stop is given back unstarted), let running
  handlers finish for up to ``shutdown_timeout_s`` (``force`` ends the wait), then cancel the rest and
  release them as started, which the broker treats as a lease expiry: another worker resumes them at once
  from their stored state (handlers are idempotent, see ``usecases/tasks.py``).

Log lines carry ``task_id`` and ``kind`` (bound in the task's context); payloads are never logged.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import structlog

from stackl import errors
from stackl.broker.base import DEFAULT_LEASE_S, Item
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE, TaskHandler, TaskLease

log = structlog.get_logger(__name__)

HEARTBEAT_INTERVAL_S = 10.0  # lifecycle.md §5.6: the 30 s lease is renewed every 10 s
MAX_LEASE_EXPIRIES = 5  # lifecycle.md §5.2: then failed, "worker lost 5 times"
SHUTDOWN_TIMEOUT_S = 10.0  # a graceful stop waits this long for running handlers
POLL_S = 5.0  # longest wait on the broker before claiming again (broker.wait wakes earlier on new items)
UNAVAILABLE_PAUSE_S = 1.0  # first pause after the database could not be reached; then doubling
MAX_PAUSE_S = 30.0  # the longest pause between two tries against an unreachable database
RECONCILE_S = 300.0  # how often a worker repairs steps that no live task owns
GIVE_UP_TRIES = 5  # tries to record a failed task in its instance before leaving it to the reconciler
FENCE_FRACTION = 0.9  # no renewal acknowledged for this part of a lease → stop the task


@dataclass
class Backoff:
    """Pauses between tries against an unreachable database: ``first_s``, doubling up to ``cap_s``."""

    first_s: float
    cap_s: float
    failures: int = 0

    def next_pause(self) -> float:
        """The pause before the next try; each call counts one more consecutive failure."""
        pause = min(self.cap_s, self.first_s * float(1 << min(self.failures, 30)))
        self.failures += 1
        return pause

    def reset(self) -> None:
        """A try succeeded: the next failure pauses ``first_s`` again."""
        self.failures = 0


@dataclass
class _Running:
    """One claimed task in this runner: its lease and the asyncio tasks that work on it."""

    lease: TaskLease
    runner: "asyncio.Task[None] | None" = None  # _run_one
    work: "asyncio.Task[None] | None" = None  # the handler
    give_back: bool = False  # shutdown: release as started instead of failing
    lost: bool = False  # the lease is gone: report nothing
    started_at: float = 0.0  # the clock's monotonic() at the claim


class WorkerRunner:
    """Serve the ``tasks`` queue: ``await run(stop)`` until ``stop`` is set, then stop gracefully."""

    def __init__(
        self,
        ports: Ports,
        handlers: Mapping[str, TaskHandler],
        *,
        owner: str,
        concurrency: int = 4,
        lease_s: float = DEFAULT_LEASE_S,
        heartbeat_s: float = HEARTBEAT_INTERVAL_S,
        max_lease_expiries: int = MAX_LEASE_EXPIRIES,
        shutdown_timeout_s: float = SHUTDOWN_TIMEOUT_S,
        poll_s: float = POLL_S,
        unavailable_pause_s: float = UNAVAILABLE_PAUSE_S,
        max_pause_s: float = MAX_PAUSE_S,
        give_up: Mapping[str, Callable[[Ports, Item, str], Awaitable[None]]] | None = None,
        reconcile: Callable[[Ports], Awaitable[object]] | None = None,
        reconcile_s: float = RECONCILE_S,
    ) -> None:
        if concurrency < 1 or lease_s <= 0 or heartbeat_s <= 0 or heartbeat_s >= lease_s:
            raise ValueError("concurrency must be at least 1 and 0 < heartbeat_s < lease_s")
        if not 0 < unavailable_pause_s <= max_pause_s or reconcile_s <= 0:
            raise ValueError("0 < unavailable_pause_s <= max_pause_s and reconcile_s > 0 are required")
        self.ports = ports
        self.handlers = dict(handlers)
        self.give_up = dict(give_up or {})
        self.owner = owner
        self.concurrency = concurrency
        self.lease_s = lease_s
        self.heartbeat_s = heartbeat_s
        self.max_lease_expiries = max_lease_expiries
        self.shutdown_timeout_s = shutdown_timeout_s
        self.poll_s = poll_s
        self.unavailable_pause_s = unavailable_pause_s
        self.max_pause_s = max_pause_s
        self.reconcile = reconcile
        self.reconcile_s = reconcile_s
        self._claim_backoff = self._backoff()
        self._running: dict[str, _Running] = {}
        self._slot_freed = asyncio.Event()

    def _backoff(self) -> Backoff:
        return Backoff(self.unavailable_pause_s, self.max_pause_s)

    @property
    def running(self) -> list[str]:
        """Ids of the tasks this runner holds right now."""
        return list(self._running)

    # --- lifecycle --------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, force: asyncio.Event | None = None) -> None:
        """Claim and run tasks until ``stop`` is set; then drain (``force`` skips the wait for handlers)."""
        force = force or asyncio.Event()
        log.info("worker_started", owner=self.owner, concurrency=self.concurrency, lease_s=self.lease_s)
        repair = None
        if self.reconcile is not None:
            repair = asyncio.create_task(self._reconcile_loop(stop, self.reconcile), name="reconcile")
        try:
            await self._claim_loop(stop)
        finally:
            if repair is not None:
                repair.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await repair
            await self._drain(force)
            log.info("worker_stopped", owner=self.owner)

    async def _reconcile_loop(
        self, stop: asyncio.Event, reconcile: Callable[[Ports], Awaitable[object]]
    ) -> None:
        """Repair orphaned steps at start, then every ``reconcile_s``; an outage only delays a round."""
        backoff = self._backoff()
        while not stop.is_set():
            pause = self.reconcile_s
            try:
                await reconcile(self.ports)
                backoff.reset()
            except errors.Unavailable as exc:
                pause = backoff.next_pause()
                log.warning("reconcile_unavailable", owner=self.owner, error=exc.message, retry_s=pause)
            except Exception:  # a bug in one round must not stop the worker; the next round tries again
                log.exception("reconcile_failed", owner=self.owner)
            await _first(stop.wait(), self.ports.clock.sleep(pause))

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        broker = self.ports.broker
        while not stop.is_set():
            free = self.concurrency - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await _first(stop.wait(), self._slot_freed.wait())
                continue
            try:
                items = await broker.claim(
                    queues=[TASKS_QUEUE], owner=self.owner, lease_s=self.lease_s, limit=free
                )
            except errors.Unavailable as exc:
                pause = self._claim_backoff.next_pause()
                log.warning("worker_claim_failed", owner=self.owner, error=exc.message, retry_s=pause)
                await _first(stop.wait(), self.ports.clock.sleep(pause))
                continue
            self._claim_backoff.reset()
            if stop.is_set():
                for item in items:  # claimed while stopping: give back, not counted as an attempt
                    await self._release(item, started=False)
                return
            for item in items:
                self._start(item)
            if not items:
                await _first(stop.wait(), self._wait_ready())

    async def _wait_ready(self) -> None:
        try:
            await self.ports.broker.wait(queues=[TASKS_QUEUE], timeout_s=self.poll_s)
        except errors.Unavailable as exc:
            pause = self._claim_backoff.next_pause()
            log.warning("worker_wait_failed", owner=self.owner, error=exc.message, retry_s=pause)
            await self.ports.clock.sleep(pause)

    def _start(self, item: Item) -> None:
        lease = TaskLease(item=item, owner=self.owner, epoch=item.lease_epoch, broker=self.ports.broker)
        state = _Running(lease=lease, started_at=self.ports.clock.monotonic())
        self._running[item.id] = state
        # Owned by this runner: _drain awaits every one of them before run() returns.
        state.runner = asyncio.create_task(self._run_one(state), name=f"task-{item.id}")

    async def _drain(self, force: asyncio.Event) -> None:
        pending = [s.runner for s in self._running.values() if s.runner is not None]
        if pending:
            log.info(
                "worker_draining", owner=self.owner, tasks=len(pending), timeout_s=self.shutdown_timeout_s
            )
            await _first(asyncio.wait(pending), force.wait(), self.ports.clock.sleep(self.shutdown_timeout_s))
        for state in list(self._running.values()):
            state.give_back = True
            if state.work is not None:
                state.work.cancel()
        remaining = [s.runner for s in self._running.values() if s.runner is not None]
        if remaining:
            await asyncio.wait(remaining)

    # --- one task ---------------------------------------------------------------------------------------
    async def _run_one(self, state: _Running) -> None:
        item = state.lease.item
        try:
            with structlog.contextvars.bound_contextvars(task_id=item.id, kind=item.kind):
                await self._run_claimed(state)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the runner itself: keep the worker alive, the lease will lapse
            log.exception("task_runner_failed", task_id=item.id)
        finally:
            self._running.pop(item.id, None)
            self._slot_freed.set()

    async def _run_claimed(self, state: _Running) -> None:
        lease, item = state.lease, state.lease.item
        log.info(
            "task_claimed",
            task_id=item.id,
            kind=item.kind,
            attempt=item.attempt,
            lease_expiries=item.lease_expiries,
            owner=self.owner,
        )
        if item.lease_expiries >= self.max_lease_expiries:
            reason = f"worker lost {item.lease_expiries} times"
            await self._fail(lease, reason, result={"status": "FAILED", "reason": reason})
            return
        handler = self.handlers.get(item.kind)
        if handler is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            await self._fail(lease, f"no handler for task kind {item.kind!r} (known: {known})")
            return
        work = asyncio.create_task(self._activate(handler, lease), name=f"handler-{item.id}")
        state.work = work
        beat = asyncio.create_task(self._heartbeat(state), name=f"heartbeat-{item.id}")
        try:
            await asyncio.wait([work])
        finally:
            beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beat
            if not work.done():  # this runner was cancelled from outside: stop the handler too
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        duration_s = round(self.ports.clock.monotonic() - state.started_at, 3)
        if state.lost:
            log.warning("task_dropped", task_id=item.id, reason="lease lost", duration_s=duration_s)
        elif work.cancelled():  # shutdown: another worker resumes it from its stored state
            await self._release(item, started=True)
        elif (exc := work.exception()) is not None:
            log.error("task_handler_failed", task_id=item.id, exc_info=exc)
            await self._fail(lease, f"task handler for {item.kind!r} failed: {_describe(exc)}")
        else:
            await self._check_finished(lease, duration_s)

    async def _activate(self, handler: TaskHandler, lease: TaskLease) -> None:
        """Run one activation; when the database could not be reached, run it again after a pause.

        An activation replays the task from its stored state, so running it again is safe; a hiccup of the
        database (a PostgreSQL restart, a SQLite lock timeout) is not a reason to fail a deployment. The
        heartbeat still stops the handler if the outage outlasts the lease. The pauses grow (``Backoff``).
        """
        backoff = self._backoff()
        while True:
            try:
                await handler(self.ports, lease)
                return
            except errors.Unavailable as exc:
                pause = backoff.next_pause()
                log.warning(
                    "task_activation_unavailable", task_id=lease.item.id, error=exc.message, retry_s=pause
                )
                await self.ports.clock.sleep(pause)

    async def _check_finished(self, lease: TaskLease, duration_s: float) -> None:
        item = lease.item
        try:
            current = await self.ports.broker.get(item.id)
        except errors.Unavailable as exc:
            log.warning("task_state_unknown", task_id=item.id, error=exc.message)
            return
        if current is not None and current.state == "running" and current.lease_epoch == lease.epoch:
            await self._fail(lease, f"task handler for {item.kind!r} returned without finishing the task")
            return
        if current is not None and current.state == "queued":
            log.info("task_parked", task_id=item.id, kind=item.kind, duration_s=duration_s)
            return
        state = current.state if current is not None else "gone"
        log.info("task_finished", task_id=item.id, kind=item.kind, state=state, duration_s=duration_s)

    async def _heartbeat(self, state: _Running) -> None:
        """Renew the lease until cancelled; on loss, mark the task lost and cancel its handler."""
        lease, broker, clock = state.lease, self.ports.broker, self.ports.clock
        last_ok = state.started_at  # the claim gave a full lease at about this time
        fence_s = self.lease_s * FENCE_FRACTION
        while True:
            left = last_ok + fence_s - clock.monotonic()
            await clock.sleep(max(0.0, min(self.heartbeat_s, left)))
            sent = clock.monotonic()
            if sent - last_ok >= fence_s:
                self._lose(state, "no heartbeat acknowledged within the lease")
                return
            try:
                await broker.heartbeat(
                    lease.item.id, owner=lease.owner, epoch=lease.epoch, lease_s=self.lease_s
                )
                last_ok = sent
            except (errors.Conflict, errors.NotFound) as exc:
                if not await self._finished_by_us(lease):
                    self._lose(state, exc.message)
                return
            except errors.Unavailable as exc:
                log.warning("task_heartbeat_failed", task_id=lease.item.id, error=exc.message)
                await clock.sleep(min(self.heartbeat_s, self.unavailable_pause_s))

    async def _finished_by_us(self, lease: TaskLease) -> bool:
        """Whether a refused renewal only means the handler already finished the item at our epoch."""
        with contextlib.suppress(errors.Unavailable):
            current = await self.ports.broker.get(lease.item.id)
            return (
                current is not None
                and current.state != "running"  # finished, or parked to wait for its jobs
                and current.lease_epoch == lease.epoch
                and current.lease_owner == lease.owner
            )
        return False

    def _lose(self, state: _Running, reason: str) -> None:
        state.lost = True
        log.warning("task_lease_lost", task_id=state.lease.item.id, epoch=state.lease.epoch, reason=reason)
        if state.work is not None:
            state.work.cancel()

    async def _fail(self, lease: TaskLease, error: str, result: object = None) -> None:
        try:
            await lease.fail(error, result=result)
        except (errors.Conflict, errors.NotFound, errors.Unavailable) as exc:
            log.warning("task_fail_refused", task_id=lease.item.id, error=exc.message)
            return
        log.warning("task_failed", task_id=lease.item.id, kind=lease.item.kind, error=error)
        record = self.give_up.get(lease.item.kind)
        if record is not None:
            await self._record_give_up(record, lease.item, error)

    async def _record_give_up(
        self, record: Callable[[Ports, Item, str], Awaitable[None]], item: Item, error: str
    ) -> None:
        """Record a failed task in its instance, retrying an unreachable database a few times.

        The task is failed already; what is left undone here, the reconciler repairs later.
        """
        backoff = self._backoff()
        for attempt in range(1, GIVE_UP_TRIES + 1):
            try:
                await record(self.ports, item, error)
                return
            except errors.Unavailable as exc:
                if attempt == GIVE_UP_TRIES:
                    log.warning("task_give_up_deferred", task_id=item.id, error=exc.message)
                    return
                await self.ports.clock.sleep(backoff.next_pause())
            except Exception as exc:  # a bug: logged; the reconciler still repairs the steps
                log.warning("task_give_up_failed", task_id=item.id, error=str(exc))
                return

    async def _release(self, item: Item, *, started: bool) -> None:
        try:
            await self.ports.broker.release(
                item.id, owner=self.owner, epoch=item.lease_epoch, started=started
            )
        except (errors.Conflict, errors.NotFound, errors.Unavailable) as exc:
            log.warning("task_release_failed", task_id=item.id, error=exc.message)
            return
        log.info("task_released", task_id=item.id, attempt=item.attempt, started=started)


async def _first(*awaitables: Awaitable[object]) -> None:
    """Wait until the first of ``awaitables`` is done; cancel and await the others."""
    tasks = [asyncio.ensure_future(a) for a in awaitables]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiting = [task for task in tasks if not task.done()]
        for task in waiting:
            task.cancel()
        for task in waiting:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    for task in done:
        task.result()  # an exception of the one that finished is not hidden


def _describe(exc: BaseException) -> str:
    message = exc.message if isinstance(exc, errors.StacklError) else str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
