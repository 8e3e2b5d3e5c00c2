"""The pure rules both broker adapters share (broker/base.py): backoff, expiry, fencing, wait pauses."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stackl import errors
from stackl.broker import base
from stackl.broker.base import Item, ItemSpec

NOW = datetime(2025, 5, 1, 10, 0, 0, tzinfo=UTC)


def running(**changes: Any) -> Item:
    values = base.new_item(ItemSpec(queue="tasks", kind="k", max_attempts=3), now=NOW, item_id="01A")
    values |= {"state": "running", "attempt": 1, "lease_epoch": 1, "lease_owner": "w1"}
    values |= {"lease_until": NOW + timedelta(seconds=30)}
    return Item(**values | changes)


def test_backoff_doubles_from_thirty_seconds_up_to_ten_minutes() -> None:
    assert [base.backoff_s(n) for n in (1, 2, 3, 5, 6, 20)] == [30, 60, 120, 480, 600, 600]


def test_a_lapsed_lease_requeues_while_attempts_remain_then_fails() -> None:
    later = NOW + timedelta(seconds=31)
    assert base.lapsed(running(), later)
    assert not base.lapsed(running(), NOW)
    requeued = base.expiry(running(), later)
    assert (requeued["state"], requeued["lease_owner"], requeued["lease_expiries"]) == ("queued", None, 1)
    assert requeued["available_at"] == later
    final = base.expiry(running(attempt=3, lease_expiries=2), later)
    assert (final["state"], final["error"]) == ("failed", "lease expired 3 times")


def test_a_passed_deadline_wins_over_a_lapsed_lease() -> None:
    item = running(timeout_s=10.0, deadline=NOW + timedelta(seconds=10))
    assert base.expiry(item, NOW + timedelta(seconds=31))["error"] == "timed out after 10 s"


def test_a_pending_cancel_ends_cancelled_on_expiry() -> None:
    item = running(cancel_requested={"by": "alice", "at": "2025-05-01T10:00:00.000Z"})
    assert base.expiry(item, NOW + timedelta(seconds=31))["state"] == "cancelled"


def test_a_duplicate_finish_returns_the_item_and_a_superseded_one_raises() -> None:
    done = running(state="succeeded")
    assert base.check_finish(done, "01A", owner="w1", epoch=1) == done
    assert base.check_finish(done, "01A", owner=None, epoch=None) == done
    with pytest.raises(errors.Conflict, match="superseded"):
        base.check_finish(done, "01A", owner="w1", epoch=2)
    with pytest.raises(errors.Conflict, match="superseded"):
        base.check_finish(running(state="queued", lease_owner=None), "01A", owner="w1", epoch=1)
    with pytest.raises(errors.NotFound):
        base.check_finish(None, "01A", owner="w1", epoch=1)


def test_the_holder_of_a_unique_key_rides_on_the_conflict() -> None:
    exc = base.unique_key_taken("instance:web", "01HOLDER")
    assert base.holder_of(exc) == "01HOLDER"
    assert base.holder_of(errors.Conflict("other")) is None


def test_wait_pauses_until_the_next_known_moment() -> None:
    soon = NOW + timedelta(seconds=2)
    assert base.pause_before([NOW, None], now=NOW, remaining_s=5, poll_s=1) is None
    assert base.pause_before([soon], now=NOW, remaining_s=5, poll_s=10) == 2
    assert base.pause_before([], now=NOW, remaining_s=5, poll_s=1) == 1
    assert base.pause_before([soon], now=NOW, remaining_s=0.5, poll_s=10) == 0.5
    assert base.pause_before([soon], now=NOW, remaining_s=0, poll_s=10) == 0


def test_invalid_specs_are_refused() -> None:
    with pytest.raises(errors.InvalidInput):
        base.new_item(ItemSpec(queue="q", kind="k", max_attempts=0), now=NOW, item_id="01A")
    with pytest.raises(errors.InvalidInput):
        base.new_item(ItemSpec(queue="q", kind="k", delay_s=-1), now=NOW, item_id="01A")
