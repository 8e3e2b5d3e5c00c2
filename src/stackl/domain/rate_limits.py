"""Token buckets per caller: how often one subject may ask for something expensive (issue 15, defect 2).

A policy evaluation costs a process's CPU and memory for up to the policy time limit, and any viewer may ask for
one; a bucket per subject lets a caller spend ``burst`` evaluations at once and then ``per_minute`` a minute.
The buckets live in the memory of one server process (a cluster of N servers allows N times the rate; the limit
is about keeping one process healthy, not an accounting). Time is handed in (``now``, monotonic seconds from
the injected clock), so the buckets are plain arithmetic and tests move time by hand.

Memory stays bounded: when more than ``max_callers`` buckets exist, those that have refilled completely (they
remember nothing a fresh bucket would not) are dropped, and if that is not enough, the stalest are.
"""

from dataclasses import dataclass

MAX_CALLERS = 10_000  # buckets kept before full ones are forgotten


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float  # the monotonic time ``tokens`` was computed at


class TokenBuckets:
    """``burst`` tokens per caller, refilled at ``per_minute`` a minute; one taken per request.

    Args:
        per_minute: the sustained rate a caller may reach.
        burst: how many a caller may send at once (the bucket's size).
        max_callers: buckets kept before full ones are forgotten.
    """

    def __init__(self, *, per_minute: float, burst: int, max_callers: int = MAX_CALLERS) -> None:
        if per_minute <= 0 or burst < 1:
            raise ValueError("per_minute must be positive and burst at least 1")
        self.per_minute, self.burst, self.max_callers = per_minute, burst, max_callers
        self._rate = per_minute / 60.0  # tokens per second
        self._buckets: dict[str, _Bucket] = {}

    def take(self, caller: str, *, now: float) -> float:
        """Take a token of ``caller``'s bucket: 0.0 when taken, else the seconds until one will be there."""
        bucket = self._buckets.get(caller)
        if bucket is None:
            self._forget(now)
            bucket = self._buckets[caller] = _Bucket(tokens=float(self.burst), at=now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + max(0.0, now - bucket.at) * self._rate)
            bucket.at = max(bucket.at, now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._rate

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget(self, now: float) -> None:
        """Make room for one more bucket: drop the full ones, then the stalest, until one fits."""
        if len(self._buckets) < self.max_callers:
            return
        rate, burst = self._rate, self.burst
        for caller in [c for c, b in self._buckets.items() if b.tokens + (now - b.at) * rate >= burst]:
            del self._buckets[caller]
        while len(self._buckets) >= self.max_callers:
            del self._buckets[min(self._buckets, key=lambda c: self._buckets[c].at)]
