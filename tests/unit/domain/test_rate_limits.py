"""Token buckets per caller: burst, refill, independence of callers, bounded memory."""

import pytest

from stackl.domain.rate_limits import TokenBuckets


def test_a_caller_spends_its_burst_then_waits_for_the_refill() -> None:
    buckets = TokenBuckets(per_minute=6, burst=3)  # one token every 10 s
    assert [buckets.take("mallory", now=0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("mallory", now=0.0) == pytest.approx(10.0)
    assert buckets.take("mallory", now=4.0) == pytest.approx(6.0)  # a refusal takes nothing
    assert buckets.take("mallory", now=10.0) == 0.0
    assert buckets.take("mallory", now=10.0) == pytest.approx(10.0)


def test_the_refill_stops_at_the_burst() -> None:
    buckets = TokenBuckets(per_minute=60, burst=2)
    assert buckets.take("a", now=0.0) == 0.0
    assert [buckets.take("a", now=3600.0) for _ in range(2)] == [0.0, 0.0]  # an hour idle: still 2, not 3600
    assert buckets.take("a", now=3600.0) == pytest.approx(1.0)


def test_callers_have_their_own_buckets() -> None:
    buckets = TokenBuckets(per_minute=1, burst=1)
    assert buckets.take("mallory", now=0.0) == 0.0
    assert buckets.take("mallory", now=0.0) > 0
    assert buckets.take("alice", now=0.0) == 0.0


def test_a_clock_going_back_gives_no_tokens() -> None:
    buckets = TokenBuckets(per_minute=60, burst=1)
    assert buckets.take("a", now=100.0) == 0.0
    assert buckets.take("a", now=50.0) == pytest.approx(1.0)


def test_memory_is_bounded_full_buckets_go_first() -> None:
    buckets = TokenBuckets(per_minute=60, burst=1, max_callers=3)
    buckets.take("old", now=0.0)  # full again from t=1
    buckets.take("b", now=5.0)
    buckets.take("c", now=5.0)
    assert buckets.take("d", now=5.5) == 0.0
    assert len(buckets) == 3  # "old" was full: forgotten, which costs it nothing
    assert buckets.take("b", now=5.5) > 0  # the partly spent ones were kept
    buckets.take("e", now=5.6)  # none is full: the stalest goes
    assert len(buckets) == 3


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="per_minute"):
        TokenBuckets(per_minute=0, burst=1)
