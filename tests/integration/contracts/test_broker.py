"""The Broker contract (broker/base.py, spec/lifecycle.md §5), run against memory, SQLite and PostgreSQL.

Each test drives leases and backoffs through a manual clock, so nothing sleeps; only ``wait`` counts real
time, and its tests assert what it returned, never how long it took.
"""

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.clocks import ManualClock
from tests.integration import adapters

from stackl import errors
from stackl.broker import base
from stackl.broker.base import Broker, ItemSpec
from stackl.broker.memory import InMemoryBroker
from stackl.broker.sql import SqlBroker
from stackl.datastore.base import DocumentStore
from stackl.datastore.sql import SqlDocumentStore
from stackl.domain.clock import Clock

START = datetime(2025, 5, 1, 10, 0, 0, tzinfo=UTC)
Q = "tasks"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(params=adapters.KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    # Sync on purpose (as in test_document_store.py): only the PostgreSQL run needs the session template.
    if request.param == "postgresql":
        request.getfixturevalue("pg_template")
    return str(request.param)


@pytest.fixture
async def store(kind: str, tmp_path: Path, clock: ManualClock) -> AsyncIterator[DocumentStore]:
    async with adapters.open_store(kind, tmp_path, clock=clock) as opened:
        yield opened


def make_broker(store: DocumentStore, clock: Clock, **options: Any) -> Broker:
    """The broker of the store's kind, on the same database (memory: a fresh one)."""
    if isinstance(store, SqlDocumentStore):
        return SqlBroker(store, clock=clock, **options)
    return InMemoryBroker(clock)


@pytest.fixture
async def broker(store: DocumentStore, clock: ManualClock) -> AsyncIterator[Broker]:
    async with make_broker(store, clock) as opened:
        yield opened


async def claim_one(broker: Broker, owner: str = "w1", **kwargs: Any) -> base.Item:
    claimed = await broker.claim(queues=[kwargs.pop("queue", Q)], owner=owner, **kwargs)
    assert len(claimed) == 1
    return claimed[0]


# --- enqueue, claim, complete --------------------------------------------------------------------------------
async def test_enqueue_claim_complete(broker: Broker) -> None:
    queued = await broker.enqueue(ItemSpec(queue=Q, kind="create", payload={"instance": "web", "n": [1, 2]}))
    assert (queued.state, queued.attempt, queued.lease_epoch, queued.lease_owner) == ("queued", 0, 0, None)
    assert await broker.get(queued.id) == queued

    item = await claim_one(broker, lease_s=30)
    assert (item.id, item.state, item.attempt, item.lease_epoch, item.lease_owner) == (
        queued.id,
        "running",
        1,
        1,
        "w1",
    )
    assert item.started_at is not None
    assert item.lease_until == item.started_at + timedelta(seconds=30)
    assert item.payload == {"instance": "web", "n": [1, 2]}
    assert await broker.claim(queues=[Q], owner="w2") == []

    done = await broker.complete(item.id, owner="w1", epoch=1, result={"status": "ok"})
    assert (done.state, done.result, done.lease_until) == ("succeeded", {"status": "ok"}, None)
    assert done.finished_at is not None
    assert await broker.get(item.id) == done
    assert await broker.claim(queues=[Q], owner="w2") == []
    assert await broker.get("01ABSENT") is None


async def test_claim_is_fifo_per_queue_by_priority_and_availability(
    broker: Broker, clock: ManualClock
) -> None:
    a = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    later = await broker.enqueue(ItemSpec(queue=Q, kind="k", delay_s=10))
    b = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    other = await broker.enqueue(ItemSpec(queue="agent:bru", kind="k"))
    urgent = await broker.enqueue(ItemSpec(queue=Q, kind="k", priority=5))

    claimed = await broker.claim(queues=[Q], owner="w1", limit=10)
    assert [i.id for i in claimed] == [urgent.id, a.id, b.id]
    assert await broker.claim(queues=[Q], owner="w1", limit=10) == []
    clock.advance(11)
    # Across queues the order is by availability too: ``other`` was ready before ``later``.
    assert [i.id for i in await broker.claim(queues=[Q, "agent:bru"], owner="w1", limit=10)] == [
        other.id,
        later.id,
    ]


async def test_claim_respects_limit(broker: Broker) -> None:
    ids = [(await broker.enqueue(ItemSpec(queue=Q, kind="k"))).id for _ in range(5)]
    first = await broker.claim(queues=[Q], owner="w1", limit=2)
    second = await broker.claim(queues=[Q], owner="w2", limit=2)
    third = await broker.claim(queues=[Q], owner="w3", limit=2)
    assert [i.id for i in first + second + third] == ids
    assert await broker.claim(queues=[Q], owner="w1", limit=0) == []
    assert await broker.claim(queues=[], owner="w1") == []


async def test_concurrent_claimers_never_share_an_item(broker: Broker) -> None:
    ids = {(await broker.enqueue(ItemSpec(queue=Q, kind="k"))).id for _ in range(40)}
    taken: list[str] = []

    async def claimer(name: str) -> None:
        while claimed := await broker.claim(queues=[Q], owner=name, limit=3):
            for item in claimed:
                taken.append(item.id)
                await broker.complete(item.id, owner=name, epoch=item.lease_epoch)

    async with asyncio.TaskGroup() as group:
        for n in range(8):
            group.create_task(claimer(f"w{n}"))
    assert sorted(taken) == sorted(ids)
    assert {i.state for i in await broker.list(queue=Q)} == {"succeeded"}


# --- leases, heartbeats, fencing -----------------------------------------------------------------------------
async def test_heartbeat_extends_the_lease(broker: Broker, clock: ManualClock) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=3))
    held = await claim_one(broker, lease_s=30)
    clock.advance(20)
    beat = await broker.heartbeat(item.id, owner="w1", epoch=held.lease_epoch, lease_s=30)
    assert beat.lease_until is not None
    assert held.lease_until is not None
    assert beat.lease_until > held.lease_until
    assert beat.cancel_requested is None
    clock.advance(20)  # past the first lease, within the extended one
    assert await broker.claim(queues=[Q], owner="w2") == []
    assert await broker.expire_leases() == 0
    with pytest.raises(errors.Conflict, match="lease"):
        await broker.heartbeat(item.id, owner="w1", epoch=held.lease_epoch + 1)
    with pytest.raises(errors.Conflict, match="lease"):
        await broker.heartbeat(item.id, owner="w2", epoch=held.lease_epoch)
    with pytest.raises(errors.NotFound):
        await broker.heartbeat("01ABSENT", owner="w1", epoch=1)


async def test_expired_lease_is_claimed_again_and_the_stale_holder_is_fenced(
    broker: Broker, clock: ManualClock
) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=3))
    first = await claim_one(broker, "w1", lease_s=30)
    clock.advance(31)
    with pytest.raises(errors.Conflict, match="lease"):  # lapsed: the holder must stop, even if unclaimed
        await broker.heartbeat(item.id, owner="w1", epoch=first.lease_epoch)
    second = await claim_one(broker, "w2", lease_s=30)
    assert (second.id, second.attempt, second.lease_epoch, second.lease_owner) == (item.id, 2, 2, "w2")
    assert second.lease_expiries == 1
    assert second.started_at == first.started_at

    with pytest.raises(errors.Conflict, match="superseded"):
        await broker.complete(item.id, owner="w1", epoch=first.lease_epoch, result="stale")
    with pytest.raises(errors.Conflict, match="superseded"):
        await broker.fail(item.id, owner="w1", epoch=first.lease_epoch, error="stale")
    with pytest.raises(errors.Conflict, match="superseded"):
        await broker.complete(item.id, owner="w1", epoch=second.lease_epoch)  # right epoch, wrong owner
    done = await broker.complete(item.id, owner="w2", epoch=second.lease_epoch, result="fresh")
    assert (done.state, done.result) == ("succeeded", "fresh")


async def test_a_late_result_after_expiry_is_refused_before_any_reclaim(
    broker: Broker, clock: ManualClock
) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=3))
    held = await claim_one(broker, lease_s=30)
    clock.advance(31)
    assert await broker.expire_leases() == 1
    assert (await broker.get(item.id)).state == "queued"  # type: ignore[union-attr]
    with pytest.raises(errors.Conflict):
        await broker.complete(item.id, owner="w1", epoch=held.lease_epoch)


async def test_a_lapsed_but_unclaimed_holder_may_still_finish(broker: Broker, clock: ManualClock) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    held = await claim_one(broker, lease_s=30)
    clock.advance(31)
    done = await broker.complete(item.id, owner="w1", epoch=held.lease_epoch, result=1)
    assert done.state == "succeeded"


async def test_duplicate_completion_is_ignored(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    held = await claim_one(broker)
    done = await broker.complete(item.id, owner="w1", epoch=held.lease_epoch, result={"n": 1})
    again = await broker.complete(item.id, owner="w1", epoch=held.lease_epoch, result={"n": 2})
    assert again == done
    assert (await broker.fail(item.id, owner="w1", epoch=held.lease_epoch, error="late")) == done
    assert (await broker.get(item.id)) == done
    with pytest.raises(errors.NotFound):
        await broker.complete("01ABSENT", owner="w1", epoch=1)


async def test_an_unfenced_completion_finishes_a_running_item(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    await claim_one(broker)
    done = await broker.complete(item.id, owner=None, epoch=None, result="by the server")
    assert (done.state, done.result) == ("succeeded", "by the server")
    queued = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    with pytest.raises(errors.Conflict):  # not running: nothing to complete
        await broker.complete(queued.id, owner=None, epoch=None)


async def test_release_before_start_requeues_without_using_an_attempt(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=1))
    held = await claim_one(broker, "a1")
    released = await broker.release(item.id, owner="a1", epoch=held.lease_epoch, started=False)
    assert (released.state, released.lease_expiries, released.max_attempts) == ("queued", 0, 2)
    assert released.lease_until is None
    again = await broker.release(item.id, owner="a1", epoch=held.lease_epoch, started=False)
    assert again == released  # a repeat is a duplicate
    second = await claim_one(broker, "a2")
    assert (second.attempt, second.lease_epoch, second.lease_owner) == (2, 2, "a2")
    with pytest.raises(errors.Conflict, match="superseded"):
        await broker.release(item.id, owner="a1", epoch=held.lease_epoch, started=False)
    done = await broker.complete(item.id, owner="a2", epoch=second.lease_epoch)
    assert done.state == "succeeded"


async def test_release_after_start_counts_as_a_lease_expiry(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=2))
    first = await claim_one(broker, "a1")
    released = await broker.release(item.id, owner="a1", epoch=first.lease_epoch, started=True)
    assert (released.state, released.lease_expiries, released.max_attempts) == ("queued", 1, 2)
    second = await claim_one(broker, "a1")
    assert second.attempt == 2
    with pytest.raises(errors.Conflict):
        await broker.release(item.id, owner="a1", epoch=first.lease_epoch, started=True)
    final = await broker.release(item.id, owner="a1", epoch=second.lease_epoch, started=True)
    assert (final.state, final.error, final.lease_expiries) == ("failed", "lease expired 2 times", 2)
    assert await broker.claim(queues=[Q], owner="a1") == []


async def test_release_of_an_unknown_or_queued_item_is_refused(broker: Broker) -> None:
    with pytest.raises(errors.NotFound):
        await broker.release("01ABSENT", owner="a1", epoch=1, started=False)
    queued = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    with pytest.raises(errors.Conflict):
        await broker.release(queued.id, owner="a1", epoch=0, started=False)


async def test_lease_expiring_max_attempts_times_fails_the_item(broker: Broker, clock: ManualClock) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=2))
    for attempt in (1, 2):
        assert (await claim_one(broker, f"w{attempt}", lease_s=30)).attempt == attempt
        clock.advance(31)
    assert await broker.claim(queues=[Q], owner="w3") == []
    failed = await broker.get(item.id)
    assert failed is not None
    assert (failed.state, failed.error, failed.lease_expiries) == ("failed", "lease expired 2 times", 2)
    assert failed.finished_at is not None
    assert failed.lease_owner is None


async def test_a_deadline_fails_the_item(broker: Broker, clock: ManualClock) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", timeout_s=100, max_attempts=5))
    held = await claim_one(broker, lease_s=1000)
    assert held.deadline is not None
    assert held.started_at is not None
    assert held.deadline == held.lease_until - timedelta(seconds=900)  # type: ignore[operator]
    assert (await broker.get(item.id)).deadline == held.deadline  # type: ignore[union-attr]
    clock.advance(101)
    with pytest.raises(errors.Conflict):
        await broker.heartbeat(item.id, owner="w1", epoch=held.lease_epoch)
    assert await broker.expire_leases() == 1
    failed = await broker.get(item.id)
    assert failed is not None
    assert (failed.state, failed.error) == ("failed", "timed out after 100 s")


# --- failures and retries ------------------------------------------------------------------------------------
async def test_fail_with_retry_backs_off_then_fails_for_good(broker: Broker, clock: ManualClock) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=2))
    first = await claim_one(broker)
    retried = await broker.fail(item.id, owner="w1", epoch=first.lease_epoch, error="exit 2", retry_in_s=60)
    assert (retried.state, retried.error, retried.finished_at) == ("queued", "exit 2", None)
    assert retried.available_at > first.lease_until - timedelta(seconds=1)  # type: ignore[operator]
    again = await broker.fail(item.id, owner="w1", epoch=first.lease_epoch, error="exit 2", retry_in_s=60)
    assert again == retried  # duplicate
    assert await broker.claim(queues=[Q], owner="w1") == []
    clock.advance(61)
    second = await claim_one(broker, "w2")
    assert (second.attempt, second.lease_epoch) == (2, 2)
    final = await broker.fail(item.id, owner="w2", epoch=2, error="exit 3", retry_in_s=60, result={"rc": 3})
    assert (final.state, final.error, final.result) == ("failed", "exit 3", {"rc": 3})
    assert final.finished_at is not None


async def test_fail_without_retry_is_final(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=5))
    held = await claim_one(broker)
    failed = await broker.fail(item.id, owner="w1", epoch=held.lease_epoch, error="no")
    assert failed.state == "failed"
    assert await broker.claim(queues=[Q], owner="w1") == []


# --- cancellation --------------------------------------------------------------------------------------------
async def test_cancel_a_queued_item_at_once(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    cancelled = await broker.cancel(item.id, by="alice")
    assert (cancelled.state, cancelled.error) == ("cancelled", "cancelled by alice")
    assert cancelled.cancel_requested is not None
    assert cancelled.cancel_requested["by"] == "alice"
    assert await broker.claim(queues=[Q], owner="w1") == []
    assert await broker.cancel(item.id, by="bob") == cancelled  # final: unchanged
    with pytest.raises(errors.NotFound):
        await broker.cancel("01ABSENT", by="alice")


async def test_cancel_a_running_item_reaches_its_holder(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    held = await claim_one(broker)
    requested = await broker.cancel(item.id, by="alice")
    assert requested.state == "running"
    assert requested.cancel_requested is not None
    assert requested.cancel_requested["by"] == "alice"
    assert (await broker.cancel(item.id, by="bob")).cancel_requested == requested.cancel_requested
    beat = await broker.heartbeat(item.id, owner="w1", epoch=held.lease_epoch)
    assert beat.cancel_requested == requested.cancel_requested
    done = await broker.complete(item.id, owner="w1", epoch=held.lease_epoch, state="cancelled")
    assert done.state == "cancelled"


async def test_an_unconfirmed_cancel_ends_cancelled_when_the_lease_lapses(
    broker: Broker, clock: ManualClock
) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=3))
    await claim_one(broker, lease_s=30)
    await broker.cancel(item.id, by="alice")
    clock.advance(31)
    assert await broker.claim(queues=[Q], owner="w2") == []
    ended = await broker.get(item.id)
    assert ended is not None
    assert (ended.state, ended.error) == ("cancelled", base.CANCEL_UNCONFIRMED)


# --- unique keys ---------------------------------------------------------------------------------------------
async def test_one_active_item_per_unique_key(broker: Broker) -> None:
    first = await broker.enqueue(ItemSpec(queue=Q, kind="create", unique_key="instance:web"))
    with pytest.raises(errors.Conflict) as caught:
        await broker.enqueue(ItemSpec(queue=Q, kind="update", unique_key="instance:web"))
    assert base.holder_of(caught.value) == first.id
    assert caught.value.holder_id == first.id  # type: ignore[attr-defined]
    assert first.id in caught.value.message
    await broker.enqueue(ItemSpec(queue=Q, kind="create", unique_key="instance:db"))
    await broker.enqueue(ItemSpec(queue=Q, kind="other"))
    await broker.enqueue(ItemSpec(queue=Q, kind="other"))  # no key: no limit

    held = await claim_one(broker)
    assert held.id == first.id
    with pytest.raises(errors.Conflict):  # running still holds the key
        await broker.enqueue(ItemSpec(queue=Q, kind="update", unique_key="instance:web"))
    await broker.complete(first.id, owner="w1", epoch=held.lease_epoch)
    second = await broker.enqueue(ItemSpec(queue=Q, kind="update", unique_key="instance:web"))
    assert [i.id for i in await broker.list(unique_key="instance:web")] == [first.id, second.id]


async def test_an_existing_id_is_a_conflict(broker: Broker) -> None:
    item = await broker.enqueue(ItemSpec(queue=Q, kind="k", id="01JCHOSENBYCALLER00000000A"))
    assert item.id == "01JCHOSENBYCALLER00000000A"
    with pytest.raises(errors.Conflict, match="already exists"):
        await broker.enqueue(ItemSpec(queue=Q, kind="k", id=item.id))


async def test_invalid_specs_are_refused(broker: Broker) -> None:
    with pytest.raises(errors.InvalidInput):
        await broker.enqueue(ItemSpec(queue=Q, kind="k", max_attempts=0))
    assert await broker.list() == []


# --- enqueue inside a document transaction -------------------------------------------------------------------
async def test_enqueue_commits_with_the_document_transaction(store: DocumentStore, broker: Broker) -> None:
    async with store.transaction() as tx:
        await tx.put(doc_type="stack_instance", name="web", body={"name": "web"}, subject="alice")
        item = await broker.enqueue(ItemSpec(queue=Q, kind="create", unique_key="web"), tx=tx)
    assert await broker.get(item.id) == item
    assert (await claim_one(broker)).id == item.id


async def put_and_enqueue(
    store: DocumentStore, broker: Broker, spec: ItemSpec, *, fail: bool = False
) -> None:
    """Write a document and enqueue an item in one transaction, raising ``boom`` at the end if told."""
    async with store.transaction() as tx:
        await tx.put(doc_type="stack_instance", name="web", body={"name": "web"}, subject="alice")
        await broker.enqueue(spec, tx=tx)
        if fail:
            raise RuntimeError("boom")


async def test_a_rolled_back_transaction_leaves_no_item(store: DocumentStore, broker: Broker) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        await put_and_enqueue(store, broker, ItemSpec(queue=Q, kind="create", unique_key="web"), fail=True)
    assert await broker.list() == []
    assert await broker.claim(queues=[Q], owner="w1") == []
    async with store.transaction(readonly=True) as reader:
        assert await reader.get(doc_type="stack_instance", name="web") is None
    await broker.enqueue(ItemSpec(queue=Q, kind="create", unique_key="web"))  # the key was never taken


async def test_a_held_key_fails_the_whole_transaction(store: DocumentStore, broker: Broker) -> None:
    holder = await broker.enqueue(ItemSpec(queue=Q, kind="create", unique_key="web"))
    with pytest.raises(errors.Conflict) as caught:
        await put_and_enqueue(store, broker, ItemSpec(queue=Q, kind="update", unique_key="web"))
    assert base.holder_of(caught.value) == holder.id
    async with store.transaction(readonly=True) as reader:
        assert await reader.get(doc_type="stack_instance", name="web") is None


# --- listing, depth, wait ------------------------------------------------------------------------------------
async def test_list_filters(broker: Broker) -> None:
    a = await broker.enqueue(ItemSpec(queue=Q, kind="k", unique_key="a"))
    b = await broker.enqueue(ItemSpec(queue="agent:bru", kind="k"))
    c = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    await claim_one(broker)  # a
    assert [i.id for i in await broker.list()] == [a.id, b.id, c.id]
    assert [i.id for i in await broker.list(queue=Q)] == [a.id, c.id]
    assert [i.id for i in await broker.list(queue=Q, state="queued")] == [c.id]
    assert [i.id for i in await broker.list(state="running")] == [a.id]
    assert [i.id for i in await broker.list(unique_key="a")] == [a.id]
    assert [i.id for i in await broker.list(limit=2)] == [a.id, b.id]


async def test_depth_counts_and_ages(broker: Broker, clock: ManualClock) -> None:
    assert await broker.depth(Q) == base.Depth(queued=0, running=0, oldest_queued_at=None, oldest_age_s=0.0)
    first = await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    await broker.enqueue(ItemSpec(queue=Q, kind="k", delay_s=3600))
    await broker.enqueue(ItemSpec(queue="other", kind="k"))
    await claim_one(broker)
    clock.advance(10)
    depth = await broker.depth(Q)
    assert (depth.queued, depth.running) == (2, 1)
    assert depth.oldest_queued_at is not None
    assert depth.oldest_queued_at > first.available_at
    assert 10 <= depth.oldest_age_s < 11


async def test_wait_returns_at_once_when_an_item_is_ready(broker: Broker) -> None:
    await broker.enqueue(ItemSpec(queue=Q, kind="k"))
    assert await broker.wait(queues=[Q], timeout_s=30) is True


async def test_wait_times_out_when_nothing_comes(broker: Broker) -> None:
    await broker.enqueue(ItemSpec(queue="other", kind="k"))
    assert await broker.wait(queues=[Q], timeout_s=0.2) is False


async def test_wait_wakes_on_enqueue_from_another_broker(
    store: DocumentStore, broker: Broker, clock: ManualClock
) -> None:
    # On PostgreSQL the waiting broker's safety-net poll is far beyond the timeout: only NOTIFY can wake it.
    # SQLite waiters poll (short interval); the memory broker has one process, so it is its own producer.
    if isinstance(store, SqlDocumentStore):
        waiting_broker = make_broker(store, clock, poll_interval_s=0.1, listen_poll_s=120)
    else:
        waiting_broker = broker
    async with waiting_broker as waiting:
        waiter = asyncio.create_task(waiting.wait(queues=[Q, "x"], timeout_s=300))
        await asyncio.sleep(0.2)  # let the waiter look first and find nothing
        assert not waiter.done()
        await broker.enqueue(ItemSpec(queue=Q, kind="k"))
        async with asyncio.timeout(30):  # a deadline, not a timing: far below the waiter's poll and timeout
            assert await waiter is True


async def test_a_final_item_loses_its_secrets_and_a_retried_one_keeps_them(
    broker: Broker, clock: ManualClock
) -> None:
    payload = {"tool": "shell", "secrets": {"token": "s3cr3t"}}

    async def claimed(max_attempts: int = 1) -> base.Item:
        await broker.enqueue(ItemSpec(queue=Q, kind="job", payload=payload, max_attempts=max_attempts))
        return await claim_one(broker)

    item = await claimed()
    done = await broker.complete(item.id, owner="w1", epoch=item.lease_epoch)
    assert done.payload == {"tool": "shell"}
    stored = await broker.get(item.id)
    assert stored is not None
    assert stored.payload == {"tool": "shell"}

    item = await claimed(max_attempts=2)
    retried = await broker.fail(item.id, owner="w1", epoch=item.lease_epoch, error="x", retry_in_s=0)
    assert retried.state == "queued"
    assert retried.payload == payload
    item = await claim_one(broker)
    failed = await broker.fail(item.id, owner="w1", epoch=item.lease_epoch, error="x", retry_in_s=0)
    assert failed.state == "failed"
    assert "secrets" not in failed.payload

    queued = await broker.enqueue(ItemSpec(queue=Q, kind="job", payload=payload))
    assert "secrets" not in (await broker.cancel(queued.id, by="alice")).payload

    item = await claimed()
    clock.advance(base.DEFAULT_LEASE_S + 1)
    assert await broker.expire_leases() == 1
    expired = await broker.get(item.id)
    assert expired is not None
    assert expired.state == "failed"
    assert "secrets" not in expired.payload


async def test_counts_group_items_by_queue_kind_and_state(broker: Broker) -> None:
    await broker.enqueue(ItemSpec(queue="q1", kind="a", payload={}))
    await broker.enqueue(ItemSpec(queue="q1", kind="a", payload={}))
    await broker.enqueue(ItemSpec(queue="q2", kind="b", payload={}))
    [claimed] = await broker.claim(queues=["q2"], owner="w", lease_s=30)
    await broker.complete(claimed.id, owner="w", epoch=claimed.lease_epoch, result={})
    await broker.enqueue(ItemSpec(queue="q3", kind="c", payload={}))
    [started] = await broker.claim(queues=["q3"], owner="w", lease_s=30)
    until = started.available_at + timedelta(hours=1)
    await broker.park(started.id, owner="w", epoch=started.lease_epoch, until=until, seen_wakeups=0)
    assert await broker.counts() == {
        ("q1", "a", "queued"): 2,
        ("q2", "b", "succeeded"): 1,
        ("q3", "c", "waiting"): 1,  # queued again after it started: parked
    }


# --- parents, parking, fencing in the writer's transaction (event-driven tasks) ------------------------------
JOBS = "agent:bru"


async def parked_parent(broker: Broker, clock: ManualClock) -> tuple[base.Item, base.Item]:
    """A task that dispatched one job and parked until its 1-hour timer: (the parked task, the job)."""
    await broker.enqueue(ItemSpec(queue=Q, kind="create", max_attempts=6))
    task = await claim_one(broker, "w1")
    job = await broker.enqueue(ItemSpec(queue=JOBS, kind="job", parent_id=task.id, max_attempts=2))
    parked = await broker.park(
        task.id, owner="w1", epoch=task.lease_epoch, until=clock.moment + timedelta(hours=1), seen_wakeups=0
    )
    return parked, job


async def test_a_parked_item_is_not_ready_until_its_timer_and_costs_no_attempt(
    broker: Broker, clock: ManualClock
) -> None:
    parked, _ = await parked_parent(broker, clock)
    assert (parked.state, parked.lease_until, parked.max_attempts) == ("queued", None, 7)
    assert await broker.claim(queues=[Q], owner="w2") == []
    again = await broker.park(  # a repeat of the same park is a duplicate
        parked.id, owner="w1", epoch=parked.lease_epoch, until=clock.moment, seen_wakeups=0
    )
    assert again == parked
    clock.advance(3601)
    resumed = await claim_one(broker, "w2")
    assert (resumed.id, resumed.lease_epoch, resumed.lease_expiries) == (parked.id, 2, 0)


@pytest.mark.parametrize("end", ["complete", "fail", "cancel", "expire", "release"])
async def test_a_child_that_ends_wakes_its_parked_parent(
    broker: Broker, clock: ManualClock, end: str
) -> None:
    parked, job = await parked_parent(broker, clock)
    if end == "cancel":
        await broker.cancel(job.id, by="alice")
    else:
        held = await claim_one(broker, "agent-1", queue=JOBS, lease_s=60)
        await broker.heartbeat(held.id, owner="agent-1", epoch=held.lease_epoch, lease_s=60)
        if end == "complete":
            await broker.complete(job.id, owner="agent-1", epoch=held.lease_epoch, result={"ok": True})
        elif end == "fail":
            await broker.fail(job.id, owner="agent-1", epoch=held.lease_epoch, error="exit 2")
        elif end == "release":  # released as started twice: the second release fails the job
            await broker.release(job.id, owner="agent-1", epoch=held.lease_epoch, started=True)
            assert await broker.claim(queues=[Q], owner="w2") == []  # a re-queued job wakes no one
            again = await claim_one(broker, "agent-1", queue=JOBS, lease_s=60)
            await broker.release(job.id, owner="agent-1", epoch=again.lease_epoch, started=True)
        else:  # both attempts lapse: the second expiry fails the job
            clock.advance(61)
            assert await broker.expire_leases() == 1
            assert await broker.claim(queues=[Q], owner="w2") == []  # a re-queued job wakes no one
            await claim_one(broker, "agent-1", queue=JOBS, lease_s=60)
            clock.advance(61)
            assert await broker.expire_leases() == 1
    assert (await broker.get(job.id)).final  # type: ignore[union-attr]
    woken = await claim_one(broker, "w2")
    assert (woken.id, woken.wakeups) == (parked.id, 1)


async def test_a_retried_child_does_not_wake_its_parent(broker: Broker, clock: ManualClock) -> None:
    parked, job = await parked_parent(broker, clock)
    await broker.enqueue(ItemSpec(queue=JOBS, kind="job"))  # no parent: ends without waking anyone
    held = await claim_one(broker, "agent-1", queue=JOBS)
    other = await claim_one(broker, "agent-1", queue=JOBS)
    await broker.complete(other.id, owner="agent-1", epoch=other.lease_epoch)
    assert held.id == job.id
    await broker.fail(job.id, owner="agent-1", epoch=held.lease_epoch, error="exit 1", retry_in_s=30)
    assert await broker.claim(queues=[Q], owner="w2") == []
    assert (await broker.get(parked.id)).wakeups == 0  # type: ignore[union-attr]


async def test_a_child_ending_while_its_parent_runs_is_not_lost_by_the_park(
    broker: Broker, clock: ManualClock
) -> None:
    await broker.enqueue(ItemSpec(queue=Q, kind="create", max_attempts=6))
    task = await claim_one(broker, "w1")
    job = await broker.enqueue(ItemSpec(queue=JOBS, kind="job", parent_id=task.id))
    held = await claim_one(broker, "agent-1", queue=JOBS)
    # The job ends after the worker looked at it and before it parks: the park must not sleep past it.
    await broker.complete(job.id, owner="agent-1", epoch=held.lease_epoch)
    parked = await broker.park(
        task.id, owner="w1", epoch=task.lease_epoch, until=clock.moment + timedelta(hours=1), seen_wakeups=0
    )
    assert parked.wakeups == 1
    assert (await claim_one(broker, "w2")).id == task.id


async def test_park_is_fenced(broker: Broker, clock: ManualClock) -> None:
    await broker.enqueue(ItemSpec(queue=Q, kind="create", max_attempts=6))
    first = await claim_one(broker, "w1", lease_s=30)
    clock.advance(31)
    second = await claim_one(broker, "w2", lease_s=30)
    with pytest.raises(errors.Conflict, match="superseded"):
        await broker.park(first.id, owner="w1", epoch=first.lease_epoch, until=clock.moment, seen_wakeups=0)
    with pytest.raises(errors.NotFound):
        await broker.park("01ABSENT", owner="w1", epoch=1, until=clock.moment, seen_wakeups=0)
    assert (await broker.get(second.id)).state == "running"  # type: ignore[union-attr]


async def test_fence_passes_for_the_holder_and_refuses_a_superseded_one(
    store: DocumentStore, broker: Broker, clock: ManualClock
) -> None:
    await broker.enqueue(ItemSpec(queue=Q, kind="create", max_attempts=6))
    first = await claim_one(broker, "w1", lease_s=30)
    async with store.transaction() as tx:
        await broker.fence(first.id, owner="w1", epoch=first.lease_epoch, tx=tx)
        await tx.put(doc_type="stack_instance", name="web", body={"name": "web", "n": 1}, subject="worker")
    clock.advance(31)
    await claim_one(broker, "w2", lease_s=30)

    async def stale_write(item_id: str) -> None:
        async with store.transaction() as tx:
            await tx.put(
                doc_type="stack_instance", name="web", body={"name": "web", "n": 2}, subject="worker"
            )
            await broker.fence(item_id, owner="w1", epoch=first.lease_epoch, tx=tx)

    with pytest.raises(errors.LeaseLost, match="writes nothing"):
        await stale_write(first.id)
    with pytest.raises(errors.LeaseLost, match="gone"):
        await stale_write("01ABSENT")
    async with store.transaction(readonly=True) as reader:
        stored = await reader.get(doc_type="stack_instance", name="web")
    assert stored is not None
    assert stored.body["n"] == 1  # the stale holder's write rolled back with its transaction


async def test_cancel_with_wind_down_wakes_a_parked_item_instead_of_ending_it(
    broker: Broker, clock: ManualClock
) -> None:
    parked, _ = await parked_parent(broker, clock)
    fresh = await broker.enqueue(ItemSpec(queue=Q, kind="create", unique_key="other"))
    requested = await broker.cancel(parked.id, by="alice", wind_down=True)
    assert requested.state == "queued"
    assert requested.cancel_requested is not None
    assert requested.cancel_requested["by"] == "alice"
    assert (await broker.cancel(fresh.id, by="alice", wind_down=True)).state == "cancelled"  # never started
    woken = await claim_one(broker, "w2")
    assert (woken.id, woken.cancel_requested["by"]) == (parked.id, "alice")  # type: ignore[index]


async def test_heartbeat_many_renews_what_the_owner_holds_and_leaves_out_the_rest(
    broker: Broker, clock: ManualClock
) -> None:
    ids = [(await broker.enqueue(ItemSpec(queue=JOBS, kind="job", max_attempts=3))).id for _ in range(4)]
    held = {i.id: i for i in await broker.claim(queues=[JOBS], owner="agent-1", lease_s=60, limit=3)}
    other = await claim_one(broker, "agent-2", queue=JOBS, lease_s=60)
    a, b, c = sorted(held)
    await broker.complete(c, owner="agent-1", epoch=held[c].lease_epoch)
    clock.advance(30)
    asked = [(a, held[a].lease_epoch), (b, held[b].lease_epoch + 1), (c, 1), (other.id, 1), ("01ABSENT", 1)]
    renewed = await broker.heartbeat_many(asked, owner="agent-1", lease_s=60)
    assert list(renewed) == [a]  # b: wrong epoch, c: finished, other: not ours, absent: unknown
    before = held[a].lease_until
    assert before is not None
    until = renewed[a].lease_until
    assert until is not None
    assert until > before + timedelta(seconds=29)  # now + 60 s, from 30 s later
    clock.advance(61)
    assert await broker.heartbeat_many([(b, held[b].lease_epoch)], owner="agent-1") == {}  # lapsed
    assert await broker.heartbeat_many([], owner="agent-1") == {}
    found = await broker.get_many([a, other.id, "01ABSENT"])
    assert sorted(found) == sorted([a, other.id])
    assert set(ids) >= set(found)
