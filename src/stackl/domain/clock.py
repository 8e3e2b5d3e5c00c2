"""The Clock port: every time STACKL uses comes from here, as an aware UTC datetime.

Injecting the clock lets leases, retention and timestamps be tested without sleeping.
"""

import abc
from datetime import UTC, datetime


class Clock(abc.ABC):
    """Source of the current time."""

    @abc.abstractmethod
    def now(self) -> datetime:
        """The current time, aware, in UTC."""


class SystemClock(Clock):
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)


def rfc3339(moment: datetime) -> str:
    """RFC 3339 UTC with milliseconds, as every API timestamp (``2025-05-01T10:15:30.123Z``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
