"""The Clock port: every time STACKL uses comes from here, as an aware UTC datetime.

Injecting the clock lets leases, retention and timestamps be tested without sleeping. The loops that wait
(worker heartbeats and lease fencing, the agent's heartbeat, claim backoff and self-fencing) read
``monotonic()`` and wait with ``sleep()`` of the same clock, so a test clock moves them forward as well: a
45 s fencing rule or a 30 s lease is tested in milliseconds, in a fixed order, without real sleeps.
``sleep`` is the only coroutine here: it waits and does no I/O, so the domain stays pure.
"""

import abc
import asyncio
import time
from datetime import UTC, datetime


class Clock(abc.ABC):
    """Source of the current time, and of waiting for some of it to pass."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The current time, aware, in UTC."""

    @abc.abstractmethod
    def monotonic(self) -> float:
        """Seconds from an arbitrary origin that never go back: measure intervals (leases, fencing) with it."""

    @abc.abstractmethod
    async def sleep(self, seconds: float) -> None:
        """Return once ``seconds`` of ``monotonic()`` time have passed (at once when ``seconds`` <= 0).

        Cancellable like ``asyncio.sleep``; it yields to the event loop even when it does not wait.
        """


class SystemClock(Clock):
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as every API timestamp (``2025-05-01T10:15:30.123Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
