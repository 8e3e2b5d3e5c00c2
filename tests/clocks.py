"""ManualClock: the test clock of every suite, for wall times and for the loops that wait on the clock.

Time moves only when a test says so. ``advance(s)`` jumps at once, as for a process that was paused that
long (the sleepers whose time came wake when the loop next runs); ``await elapse(s)`` lets the time pass
in order: each sleeper wakes at its own moment and the event loop runs until nothing is ready before time
moves on, so a 30 s lease renewed every 10 s, or a 45 s fencing rule checked every second, plays out
exactly as it would in real time, in milliseconds. ``await settle()`` runs the loop until it is idle
without moving time: what a test asserts afterwards does not depend on how fast the machine is.

``now()`` also moves ``tick_s`` (1 ms by default) on each read, so ids and timestamps taken one after the
other are ordered; those ticks are not seen by ``monotonic()`` and wake no sleeper.
"""

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

from stackl.domain.clock import Clock

START = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
SETTLE_ROUNDS = 10_000  # a loop still busy after this many rounds spins: fail instead of hanging


class ManualClock(Clock):
    """A clock moved by the test; ``sleep`` waits until ``advance`` or ``elapse`` moves it far enough."""

    def __init__(self, start: datetime = START, *, tick_s: float = 0.001) -> None:
        self.start = start
        self.tick_s = tick_s
        self.elapsed = 0.0  # seconds moved by advance/elapse: monotonic() and now() without the ticks
        self._reads = 0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []  # (wake at, order, waiter)
        self._order = itertools.count()

    @property
    def moment(self) -> datetime:
        """The current time without taking a tick."""
        return self.start + timedelta(seconds=self.elapsed + self._reads * self.tick_s)

    def now(self) -> datetime:
        self._reads += 1
        return self.moment

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.elapsed + seconds, next(self._order), waiter))
        await waiter  # a cancelled sleep leaves a cancelled waiter: skipped when its time comes

    @property
    def sleepers(self) -> int:
        """How many tasks sleep on this clock right now."""
        return sum(not waiter.done() for _, _, waiter in self._sleepers)

    @property
    def next_wake(self) -> float | None:
        """Seconds until the next sleeper wakes (None: nobody sleeps)."""
        due = [at for at, _, waiter in self._sleepers if not waiter.done()]
        return max(min(due) - self.elapsed, 0.0) if due else None

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` forward at once; the sleepers whose time came run when the loop next runs."""
        self.elapsed += seconds
        self._wake_due()

    async def elapse(self, seconds: float) -> None:
        """Let ``seconds`` pass in order: wake each sleeper at its moment and settle before moving on."""
        until = self.elapsed + seconds
        await self.settle()
        while self._sleepers and self._sleepers[0][0] <= until:
            self.elapsed = max(self.elapsed, self._sleepers[0][0])
            self._wake_due()
            await self.settle()
        self.elapsed = until
        await self.settle()

    async def settle(self) -> None:
        """Run the event loop until no task is ready, without moving time (see ``settle`` below)."""
        await settle()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self.elapsed:
            _, _, waiter = heapq.heappop(self._sleepers)
            if not waiter.done():
                waiter.set_result(None)


async def settle() -> None:
    """Run the event loop until no task is ready; real timers, threads and sockets are not waited for.

    Raises:
        RuntimeError: something keeps the loop busy (a task that yields in a loop without waiting).
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)  # CPython's queue of ready callbacks
    for _ in range(SETTLE_ROUNDS if ready is not None else 100):  # another loop: a fixed number of rounds
        await asyncio.sleep(0)
        if ready is not None and not ready:
            return
    if ready is not None:
        raise RuntimeError(f"the event loop is still busy after {SETTLE_ROUNDS} rounds")
