"""InMemoryBroker: the Broker fake for unit tests, with the lease, retry and fencing rules of the SQL adapter.

Items live in a dict of frozen ``Item`` records. No method awaits between reading and writing the dict, so
each call is atomic for the event loop, as a transaction is in SQL. Times come from the injected clock, so
tests move leases, backoffs and deadlines forward without sleeping; ``wait`` alone counts real seconds.

``enqueue(tx=…)`` takes a transaction of ``InMemoryDocumentStore``: the item is held aside and added when that
transaction commits (its ``commit`` is wrapped for this transaction object only), so a transaction that
rolls back leaves no item, exactly as in SQL. The unique key is checked at enqueue and again at commit
(before the documents apply), so a key taken meanwhile fails the whole transaction with ``Conflict``.
``claim``, ``get``, ``complete`` and ``fail`` with ``tx`` apply at once, whatever becomes of the transaction:
their one caller (the agent protocol) rolls back only on a bug, or to re-run a result, then a duplicate.
"""

import asyncio
import builtins
import json
import time
import weakref
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Literal

from stackl import errors
from stackl.broker import base
from stackl.broker.base import Broker, Depth, Item, ItemSpec, State
from stackl.datastore import rules
from stackl.datastore.base import Transaction
from stackl.datastore.memory import MemoryTransaction
from stackl.domain.clock import Clock, SystemClock
from stackl.domain.ids import ulid


class InMemoryBroker(Broker):
    """A Broker in this process's memory; its items vanish with it."""

    def __init__(self, clock: Clock | None = None, *, poll_interval_s: float = 0.05) -> None:
        self._clock = clock or SystemClock()
        self._poll_interval_s = poll_interval_s  # only for items that become ready as the clock moves
        self._items: dict[str, Item] = {}
        self._pending: weakref.WeakKeyDictionary[MemoryTransaction, list[Item]] = weakref.WeakKeyDictionary()
        self._waiters: dict[asyncio.Event, frozenset[str]] = {}

    def _now(self) -> datetime:
        return rules.timestamp(self._clock)

    def _wake(self, queue: str) -> None:
        for event, queues in self._waiters.items():
            if queue in queues:
                event.set()

    def _put(self, item: Item) -> Item:
        """Store a changed item (scrubbed when final); an item that just ended wakes its parent."""
        before = self._items.get(item.id)
        item = base.scrubbed(item)
        self._items[item.id] = item
        if item.final and (before is None or not before.final) and item.parent_id is not None:
            parent = self._items.get(item.parent_id)
            if parent is not None and parent.state in base.ACTIVE_STATES:
                self._items[parent.id] = replace(parent, **base.woken(parent, self._now()))
                if parent.state == "queued":
                    self._wake(parent.queue)
        return item

    def _require(self, item_id: str) -> Item:
        item = self._items.get(item_id)
        if item is None:
            raise base.not_found(item_id)
        return item

    def _holder(self, unique_key: str | None, pending: Sequence[Item] = ()) -> str | None:
        if unique_key is None:
            return None
        for item in (*self._items.values(), *pending):
            if item.unique_key == unique_key and item.state in base.ACTIVE_STATES:
                return item.id
        return None

    def _check_new(self, item: Item, pending: Sequence[Item] = ()) -> None:
        if item.id in self._items or any(p.id == item.id for p in pending):
            raise errors.Conflict(f"queue item {item.id} already exists")
        holder = self._holder(item.unique_key, pending)
        if holder is not None and item.unique_key is not None:
            raise base.unique_key_taken(item.unique_key, holder)

    # --- the port --------------------------------------------------------------------------------------
    async def enqueue(self, spec: ItemSpec, *, tx: Transaction | None = None) -> Item:
        now = self._now()
        values = base.new_item(spec, now=now, item_id=spec.id or ulid(now))
        item = Item(**values | {"payload": _json(spec.payload)})
        if tx is None:
            self._check_new(item)
            self._items[item.id] = item
            self._wake(item.queue)
            return item
        if not isinstance(tx, MemoryTransaction):
            raise TypeError(
                f"InMemoryBroker needs an InMemoryDocumentStore transaction, not {type(tx).__name__}"
            )
        pending = self._pending.get(tx)
        if pending is None:
            pending = self._pending[tx] = []
            tx.on_commit(before=self._check_pending(pending), after=self._apply_pending(pending))
        self._check_new(item, pending)
        pending.append(item)
        return item

    def _check_pending(self, pending: list[Item]) -> Callable[[], None]:
        def check() -> None:
            for index, item in enumerate(pending):
                self._check_new(item, pending[:index])

        return check

    def _apply_pending(self, pending: list[Item]) -> Callable[[], None]:
        def apply() -> None:
            for item in pending:
                self._items[item.id] = item
                self._wake(item.queue)

        return apply

    async def claim(
        self,
        *,
        queues: Sequence[str],
        owner: str,
        lease_s: float = base.DEFAULT_LEASE_S,
        limit: int = 1,
        tx: Transaction | None = None,
    ) -> builtins.list[Item]:
        now = self._now()
        self._expire(now)
        wanted = set(queues)
        ready = sorted(
            (
                i
                for i in self._items.values()
                if i.state == "queued" and i.queue in wanted and i.available_at <= now
            ),
            key=base.claim_order,
        )[: max(limit, 0)]
        claimed = []
        for item in ready:
            deadline = now + timedelta(seconds=item.timeout_s) if item.timeout_s is not None else None
            taken = replace(
                item,
                state="running",
                attempt=item.attempt + 1,
                lease_epoch=item.lease_epoch + 1,
                lease_owner=owner,
                lease_until=now + timedelta(seconds=lease_s),
                started_at=item.started_at or now,
                deadline=deadline,
                updated_at=now,
            )
            self._items[item.id] = taken
            claimed.append(taken)
        return claimed

    async def expire_leases(self) -> int:
        return self._expire(self._now())

    def _expire(self, now: datetime) -> int:
        lapsed = [item for item in self._items.values() if base.lapsed(item, now)]
        for item in lapsed:
            changed = self._put(replace(item, **base.expiry(item, now)))
            if changed.state == "queued":
                self._wake(item.queue)
        return len(lapsed)

    async def heartbeat(
        self, item_id: str, *, owner: str, epoch: int, lease_s: float = base.DEFAULT_LEASE_S
    ) -> Item:
        now = self._now()
        item = self._items.get(item_id)
        if (
            item is None
            or item.state != "running"
            or item.lease_owner != owner
            or item.lease_epoch != epoch
            or (item.lease_until is not None and item.lease_until < now)
            or (item.deadline is not None and item.deadline < now)
        ):
            raise base.lease_lost(item, item_id, owner=owner, epoch=epoch)
        extended = replace(item, lease_until=now + timedelta(seconds=lease_s), updated_at=now)
        self._items[item_id] = extended
        return extended

    async def heartbeat_many(
        self, held: Sequence[tuple[str, int]], *, owner: str, lease_s: float = base.DEFAULT_LEASE_S
    ) -> dict[str, Item]:
        renewed: dict[str, Item] = {}
        for item_id, epoch in held:
            try:
                renewed[item_id] = await self.heartbeat(item_id, owner=owner, epoch=epoch, lease_s=lease_s)
            except (errors.Conflict, errors.NotFound):
                continue
        return renewed

    async def get_many(self, item_ids: Sequence[str]) -> dict[str, Item]:
        return {i: self._items[i] for i in item_ids if i in self._items}

    def _held(self, item_id: str, *, owner: str | None, epoch: int | None) -> Item | None:
        """The item when the caller may finish it; None when the call is a duplicate (else raise)."""
        item = self._items.get(item_id)
        if (
            item is not None
            and item.state == "running"
            and (owner is None or item.lease_owner == owner)
            and (epoch is None or item.lease_epoch == epoch)
        ):
            return item
        base.check_finish(item, item_id, owner=owner, epoch=epoch)
        return None

    async def complete(
        self,
        item_id: str,
        *,
        owner: str | None,
        epoch: int | None,
        result: Any = None,
        state: Literal["succeeded", "cancelled"] = "succeeded",
        tx: Transaction | None = None,
    ) -> Item:
        item = self._held(item_id, owner=owner, epoch=epoch)
        if item is None:
            return self._items[item_id]
        now = self._now()
        done = replace(
            item, state=state, result=_json(result), finished_at=now, lease_until=None, updated_at=now
        )
        return self._put(done)

    async def fail(
        self,
        item_id: str,
        *,
        owner: str | None,
        epoch: int | None,
        error: str,
        retry_in_s: float | None = None,
        result: Any = None,
        tx: Transaction | None = None,
    ) -> Item:
        item = self._held(item_id, owner=owner, epoch=epoch)
        if item is None:
            return self._items[item_id]
        now = self._now()
        failed = replace(item, error=error, result=_json(result), lease_until=None, updated_at=now)
        if retry_in_s is not None and item.attempt < item.max_attempts:
            failed = replace(failed, state="queued", available_at=now + timedelta(seconds=retry_in_s))
            self._wake(item.queue)
        else:
            failed = replace(failed, state="failed", finished_at=now)
        return self._put(failed)

    async def release(self, item_id: str, *, owner: str, epoch: int, started: bool) -> Item:
        item = self._held(item_id, owner=owner, epoch=epoch)
        if item is None:
            return self._items[item_id]
        released = self._put(replace(item, **base.release(item, self._now(), started=started)))
        if released.state == "queued":
            self._wake(item.queue)
        return released

    async def park(self, item_id: str, *, owner: str, epoch: int, until: datetime, seen_wakeups: int) -> Item:
        item = self._held(item_id, owner=owner, epoch=epoch)
        if item is None:
            return self._items[item_id]
        now = self._now()
        parked = self._put(
            replace(item, **base.park(item, now, until=until, woken=item.wakeups != seen_wakeups))
        )
        if parked.available_at <= now:
            self._wake(parked.queue)
        return parked

    async def fence(self, item_id: str, *, owner: str, epoch: int, tx: Transaction) -> None:
        item = self._items.get(item_id)
        if item is None or item.state != "running" or item.lease_owner != owner or item.lease_epoch != epoch:
            raise base.fence_lost(item, item_id, owner=owner, epoch=epoch)

    async def cancel(self, item_id: str, *, by: str, wind_down: bool = False) -> Item:
        item = self._require(item_id)
        now = self._now()
        marker = base.cancel_marker(by, now)
        if wind_down and item.state == "queued" and item.started_at is not None:
            if item.cancel_requested is None:
                item = replace(item, cancel_requested=marker, available_at=now, updated_at=now)
                self._wake(item.queue)
        elif item.state == "queued":
            item = replace(
                item,
                state="cancelled",
                cancel_requested=marker,
                error=f"cancelled by {by}",
                finished_at=now,
                updated_at=now,
            )
        elif item.state == "running" and item.cancel_requested is None:
            item = replace(item, cancel_requested=marker, updated_at=now, wakeups=item.wakeups + 1)
        return self._put(item)

    async def get(self, item_id: str, *, tx: Transaction | None = None) -> Item | None:
        return self._items.get(item_id)

    async def list(
        self,
        *,
        queue: str | None = None,
        state: State | None = None,
        unique_key: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Item]:
        found = [
            item
            for item in sorted(self._items.values(), key=lambda i: i.id)
            if (queue is None or item.queue == queue)
            and (state is None or item.state == state)
            and (unique_key is None or item.unique_key == unique_key)
        ]
        return found if limit is None else found[:limit]

    async def depth(self, queue: str) -> Depth:
        now = self._now()
        mine = [item for item in self._items.values() if item.queue == queue]
        ready = [item.available_at for item in mine if item.state == "queued" and item.available_at <= now]
        return base.depth(
            sum(item.state == "queued" for item in mine),
            sum(item.state == "running" for item in mine),
            min(ready, default=None),
            now=now,
        )

    async def wait(self, *, queues: Sequence[str], timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        wanted = frozenset(queues)
        event = asyncio.Event()
        self._waiters[event] = wanted
        try:
            while True:
                event.clear()
                active = [i for i in self._items.values() if i.queue in wanted]
                moments: list[datetime | None] = [i.available_at for i in active if i.state == "queued"]
                moments += [i.lease_until for i in active if i.state == "running"]
                # The clock may be a test's: a moment still to come is re-checked at the poll interval.
                pause = base.pause_before(
                    moments,
                    now=self._now(),
                    remaining_s=end - time.monotonic(),
                    poll_s=self._poll_interval_s,
                )
                if pause is None:
                    return True
                if pause <= 0:
                    return False
                try:
                    async with asyncio.timeout(min(pause, self._poll_interval_s)):
                        await event.wait()
                except TimeoutError:
                    pass
        finally:
            del self._waiters[event]


def _json(value: Any) -> Any:
    """A JSON copy: a value that is not JSON fails here as in SQL, and the caller's object stays its own."""
    return json.loads(rules.dumps(value))
