"""The Broker port: one durable queue of work items, used for worker tasks and for agent jobs alike.

An item sits on a named queue (``tasks``, ``agent:bru-agent``) and moves ``queued → running → succeeded |
failed | cancelled``. Claiming gives the claimer a *lease*: an owner, an expiry and an epoch. Every claim adds
one to both ``attempt`` (how many times the item was dispatched) and ``lease_epoch`` (the fencing token), so
two claimers never hold the same item at the same epoch, and every write by a holder (heartbeat, complete,
fail) is conditional on its ``lease_epoch`` (and owner): a holder that lost its lease cannot change the item.

Why one generic queue: tasks and jobs need the same machinery (lease, heartbeat, retry with backoff, expiry,
cancellation, one active item per key), and getting it right once, under one contract suite on every
adapter, beats two copies. What an item *means* lives in its ``kind`` and ``payload``, which the broker
never reads.

Rules every adapter follows (the contract suite in ``tests/integration/contracts/test_broker.py`` checks
them on memory, SQLite and PostgreSQL):

- **Enqueue with the change that causes it.** ``enqueue(tx=…)`` writes inside an open document-store
  transaction: the state change and its item commit together or not at all. ``claim``, ``get``,
  ``complete`` and ``fail`` take a ``tx`` too, so that claiming or finishing an item and recording it (an
  agent's claim or result) commit together, in one transaction (the in-memory fake applies them at once).
- **Claim** takes the ready items (``queued`` and ``available_at <= now``) of the given queues by priority
  (higher first), then ``available_at``, then id (ULIDs: creation order). It first expires lapsed leases.
- **Lease expiry.** A running item whose lease lapsed goes back to ``queued`` at once while ``attempt <
  max_attempts``, else ends ``failed`` with ``lease expired N times``; one with a pending cancel request
  ends ``cancelled``; one past its ``deadline`` (claim + ``timeout_s``) ends ``failed`` (``timed out``).
- **Fencing.** ``heartbeat`` refuses a lapsed or superseded lease (``errors.Conflict``): the holder must
  stop. ``complete`` and ``fail`` refuse a superseded epoch (``errors.Conflict``), but a repeated call for
  the epoch that already finished the item is a *duplicate*: it changes nothing and returns the item.
  A holder whose lease lapsed but which nobody re-claimed yet may still finish the item.
- **Release.** A holder may give an item back (``release``): one whose work never started goes back to
  ``queued`` without using up an attempt (``max_attempts`` grows by one, ``lease_expiries`` stays), one
  whose work started is treated as a lease expiry at once. Fenced like ``fail``; a repeat is a duplicate.
- **Unique keys.** At most one ``queued`` or ``running`` item per ``unique_key`` (a unique index in SQL):
  enqueueing a second raises ``errors.Conflict`` carrying the holder's id (``holder_of``).
- **Ephemeral payload keys.** When an item reaches a final state its payload loses the keys of
  ``EPHEMERAL_KEYS`` (a job's ``secrets``): they are needed only while it may still run, and must not stay in
  the database in clear for ever (encrypting them at rest is a later issue).
- **Parents and parking** (event-driven tasks, lifecycle.md §5). An item may name a ``parent_id`` (a job names
  the task that dispatched it). Whenever an item reaches a final state, in the same transaction, its parent's
  ``wakeups`` grows by one and a parent that is ``queued`` becomes ready now. A holder that has nothing to do
  until its children end ``park``s its item: back to ``queued``, ready at ``until`` (a timer such as the task
  deadline), without using up an attempt; but ready at once when a child ended since the holder's claim
  (``wakeups`` differs from the value it claimed), so a wake-up between the holder's last look and its park is
  never lost. A parked item costs a row: nothing polls it.
- **Fencing in the writer's transaction.** ``fence(tx=…)`` checks, inside the caller's transaction, that the
  caller still holds the item at its epoch (and takes the row's write lock until commit on PostgreSQL), so a
  holder that lost its lease commits nothing of what it wrote in that transaction.
- **Cancel with wind-down.** ``cancel(wind_down=True)`` on a queued item that started before (a parked task)
  does not end it: it records the request and makes the item ready now, so its next holder stops what it
  started (its jobs) and finishes the item itself. A cancel request on a running item counts as a wake-up,
  so a holder about to park looks again.
- Times come from the injected clock; ids are ULIDs.
"""

import abc
import builtins
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

from stackl import errors
from stackl.datastore.base import Transaction
from stackl.domain.clock import rfc3339

State = Literal["queued", "running", "succeeded", "failed", "cancelled"]
STATES: tuple[State, ...] = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES: tuple[State, ...] = ("queued", "running")  # the states a unique key is held in
FINAL_STATES: tuple[State, ...] = ("succeeded", "failed", "cancelled")

EPHEMERAL_KEYS: tuple[str, ...] = ("secrets",)  # payload keys dropped when an item reaches a final state
DEFAULT_LEASE_S = 30.0
BACKOFF_BASE_S = 30.0  # spec/lifecycle.md §5.5: the n-th retry waits 30 s * 2^(n-1) ...
BACKOFF_MAX_S = 600.0  # ... at most 10 min
CANCEL_UNCONFIRMED = "cancel not confirmed before the lease expired"


@dataclass(frozen=True, slots=True)
class ItemSpec:
    """What to enqueue. ``id`` may be chosen by the caller (a ULID) to refer to the item before it exists."""

    queue: str
    kind: str
    payload: dict[str, Any] = field(default_factory=dict)
    priority: int = 0  # higher first
    max_attempts: int = 1  # dispatches, lease expiries and retries included
    delay_s: float = 0.0  # first claimable at now + delay_s
    timeout_s: float | None = None  # per claim: deadline = claim time + timeout_s
    unique_key: str | None = None  # at most one queued or running item per key
    id: str | None = None
    parent_id: str | None = None  # woken when this item reaches a final state


@dataclass(frozen=True, slots=True)
class Item:
    """An item as stored; every time is aware UTC."""

    id: str
    queue: str
    kind: str
    payload: dict[str, Any]
    state: State
    priority: int
    attempt: int  # dispatch count: claims so far
    max_attempts: int
    available_at: datetime  # not claimable before (backoff, delay)
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None  # first claim
    finished_at: datetime | None
    lease_owner: str | None
    lease_until: datetime | None
    lease_epoch: int  # fencing token; 0 until the first claim
    lease_expiries: int
    timeout_s: float | None
    deadline: datetime | None
    cancel_requested: dict[str, Any] | None  # {"by": subject, "at": RFC 3339 time}
    result: Any
    error: str | None
    unique_key: str | None
    parent_id: str | None = None  # the item woken when this one ends
    wakeups: int = 0  # how many of this item's children ended: a park compares it with the claimed value

    @property
    def final(self) -> bool:
        """Whether the item reached a final state."""
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class Depth:
    """Queue statistics for metrics: counts and the oldest ready item's age."""

    queued: int
    running: int
    oldest_queued_at: datetime | None  # available_at of the oldest claimable item
    oldest_age_s: float  # 0 when nothing is waiting


def backoff_s(retry: int) -> float:
    """The default delay before the n-th retry (1-based): 30 s * 2^(n-1), at most 10 min."""
    return min(BACKOFF_BASE_S * 2.0 ** max(retry - 1, 0), BACKOFF_MAX_S)


def unique_key_taken(unique_key: str, holder_id: str) -> errors.Conflict:
    """The Conflict raised when ``unique_key`` is held; the holder's id is on ``holder_id`` and in ``errors``."""
    exc = errors.Conflict(
        f"unique key {unique_key!r} is held by active item {holder_id}",
        errors=[
            {
                "loc": ["unique_key"],
                "msg": f"held by active item {holder_id}",
                "type": "unique_key_taken",
                "holder_id": holder_id,
            }
        ],
    )
    exc.holder_id = holder_id  # type: ignore[attr-defined]  # errors.py has no broker-specific class
    return exc


def holder_of(exc: errors.Conflict) -> str | None:
    """The id of the active item holding the key of a ``unique_key_taken`` Conflict, else None."""
    for item in exc.errors:
        if item.get("type") == "unique_key_taken":
            return str(item["holder_id"])
    return None


def not_found(item_id: str) -> errors.NotFound:
    return errors.NotFound(f"queue item {item_id} not found")


def check_finish(item: Item | None, item_id: str, *, owner: str | None, epoch: int | None) -> Item:
    """After a conditional finish changed nothing: return the item if the call was a duplicate, else raise.

    A duplicate is a call for the epoch (and owner) that already finished or re-queued the item; the
    holder's lease is then kept on the row. An item whose lease expired has no owner left, so a late call
    for its epoch is refused like any superseded one.

    Raises:
        NotFound: no such item.
        Conflict: the caller does not hold (and did not last hold) the item at that epoch.
    """
    if item is None:
        raise not_found(item_id)
    if (
        item.state != "running"
        and item.lease_owner is not None
        and (epoch is None or item.lease_epoch == epoch)
        and (owner is None or item.lease_owner == owner)
    ):
        return item
    raise errors.Conflict(
        f"queue item {item_id} is {item.state} at epoch {item.lease_epoch} (owner {item.lease_owner}); "
        f"the call for epoch {epoch} (owner {owner}) is superseded"
    )


def fence_lost(item: Item | None, item_id: str, *, owner: str, epoch: int) -> errors.LeaseLost:
    """The error of a failed ``fence``: the holder must stop and write nothing."""
    if item is None:
        return errors.LeaseLost(f"queue item {item_id} is gone; {owner} at epoch {epoch} writes nothing")
    return errors.LeaseLost(
        f"queue item {item_id} is {item.state} at epoch {item.lease_epoch} (owner {item.lease_owner}); "
        f"{owner} at epoch {epoch} lost it and writes nothing"
    )


def lease_lost(item: Item | None, item_id: str, *, owner: str, epoch: int) -> errors.StacklError:
    """The error of a refused heartbeat: NotFound, or Conflict naming why the lease is gone."""
    if item is None:
        return not_found(item_id)
    return errors.Conflict(
        f"lease on queue item {item_id} lost: it is {item.state} at epoch {item.lease_epoch} "
        f"(owner {item.lease_owner}, lease until {item.lease_until}); this holder is {owner} at epoch {epoch}"
    )


# --- rules shared by the adapters, so memory and SQL cannot drift apart ----------------------------------
def new_item(spec: ItemSpec, *, now: datetime, item_id: str) -> dict[str, Any]:
    """The column values of a freshly enqueued item (the fields of ``Item``).

    Raises:
        InvalidInput: ``max_attempts`` is below 1, or ``delay_s`` or ``timeout_s`` is negative.
    """
    if spec.max_attempts < 1 or spec.delay_s < 0 or (spec.timeout_s is not None and spec.timeout_s <= 0):
        raise errors.InvalidInput("max_attempts must be at least 1, delay_s and timeout_s positive")
    return {
        "id": item_id,
        "queue": spec.queue,
        "kind": spec.kind,
        "payload": spec.payload,
        "state": "queued",
        "priority": spec.priority,
        "attempt": 0,
        "max_attempts": spec.max_attempts,
        "available_at": now + timedelta(seconds=spec.delay_s),
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "finished_at": None,
        "lease_owner": None,
        "lease_until": None,
        "lease_epoch": 0,
        "lease_expiries": 0,
        "timeout_s": spec.timeout_s,
        "deadline": None,
        "cancel_requested": None,
        "result": None,
        "error": None,
        "unique_key": spec.unique_key,
        "parent_id": spec.parent_id,
        "wakeups": 0,
    }


def claim_order(item: Item) -> tuple[int, datetime, str]:
    """The order ``claim`` takes ready items in: priority (higher first), then ``available_at``, then id."""
    return (-item.priority, item.available_at, item.id)


def scrubbed(item: Item) -> Item:
    """The item without its ephemeral payload keys once it is final (unchanged otherwise)."""
    if not item.final or not any(key in item.payload for key in EPHEMERAL_KEYS):
        return item
    return replace(item, payload=scrub_payload(item.payload))


def scrub_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """The payload without its ephemeral keys."""
    return {key: value for key, value in payload.items() if key not in EPHEMERAL_KEYS}


def with_deadline(item: Item, deadline: datetime | None) -> Item:
    return item if deadline is None else replace(item, deadline=deadline)


def expiry(item: Item, now: datetime) -> dict[str, Any]:
    """The column changes of a running item whose deadline passed or whose lease lapsed at ``now``."""
    ended = {"lease_owner": None, "lease_until": None, "finished_at": now, "updated_at": now}
    if item.deadline is not None and item.deadline < now:
        return ended | {"state": "failed", "error": f"timed out after {item.timeout_s:g} s"}
    if item.cancel_requested is not None:
        return ended | {"state": "cancelled", "error": CANCEL_UNCONFIRMED}
    expiries = item.lease_expiries + 1
    if item.attempt < item.max_attempts:
        return {
            "state": "queued",
            "available_at": now,
            "lease_owner": None,
            "lease_until": None,
            "lease_expiries": expiries,
            "error": f"lease of {item.lease_owner} expired (attempt {item.attempt})",
            "updated_at": now,
        }
    times = "once" if expiries == 1 else f"{expiries} times"
    return ended | {"state": "failed", "lease_expiries": expiries, "error": f"lease expired {times}"}


def release(item: Item, now: datetime, *, started: bool) -> dict[str, Any]:
    """The column changes of a running item its holder gives back at ``now``.

    Not started: back to ``queued`` at once and the attempt does not count (spec/lifecycle.md §5.5: a job
    released before its tool started, or lost in transit, is re-dispatched for free), so ``max_attempts``
    grows by one; the attempt number still grows at the next claim, because it is the fencing token.
    Started: exactly a lease expiry. The holder's ``lease_owner`` stays on the row either way, so a repeated
    release (or a late finish) for the same epoch is recognised as a duplicate by ``check_finish``.
    """
    if started:
        changes = expiry(item, now)
    else:
        changes = {
            "state": "queued",
            "available_at": now,
            "lease_until": None,
            "max_attempts": item.max_attempts + 1,
            "error": f"released by {item.lease_owner} before it started (attempt {item.attempt})",
            "updated_at": now,
        }
    return changes | {"lease_owner": item.lease_owner}


def park(item: Item, now: datetime, *, until: datetime, woken: bool) -> dict[str, Any]:
    """The column changes of a running item its holder parks at ``now`` until ``until`` (or now if ``woken``).

    Like an unstarted release, a park is not an attempt (``max_attempts`` grows by one, ``lease_expiries``
    stays) and the holder's ``lease_owner`` stays on the row, so a repeated park is recognised as a duplicate.
    """
    return {
        "state": "queued",
        "available_at": now if woken else max(until, now),
        "lease_until": None,
        "max_attempts": item.max_attempts + 1,
        "updated_at": now,
        "lease_owner": item.lease_owner,
    }


def woken(parent: Item, now: datetime) -> dict[str, Any]:
    """The column changes of a parent one of whose children just ended (see the module docstring)."""
    changes: dict[str, Any] = {"wakeups": parent.wakeups + 1}
    if parent.state == "queued" and parent.available_at > now:
        changes["available_at"] = now
    return changes


def lapsed(item: Item, now: datetime) -> bool:
    """Whether ``expiry`` applies to the item at ``now``."""
    return item.state == "running" and (
        (item.lease_until is not None and item.lease_until < now)
        or (item.deadline is not None and item.deadline < now)
    )


def cancel_marker(by: str, now: datetime) -> dict[str, Any]:
    return {"by": by, "at": rfc3339(now)}


def depth(queued: int, running: int, oldest: datetime | None, *, now: datetime) -> Depth:
    age = max((now - oldest).total_seconds(), 0.0) if oldest is not None else 0.0
    return Depth(queued=queued, running=running, oldest_queued_at=oldest, oldest_age_s=age)


def pause_before(
    moments: Iterable[datetime | None], *, now: datetime, remaining_s: float, poll_s: float
) -> float | None:
    """How long ``wait`` sleeps before looking again.

    None when something is ready (one of the moments has come), 0 when the wait is over, else the poll
    interval cut short by the nearest moment still to come.
    """
    known = [moment for moment in moments if moment is not None]
    if any(moment <= now for moment in known):
        return None
    if remaining_s <= 0:
        return 0.0
    nearest = min(((moment - now).total_seconds() for moment in known), default=poll_s)
    return min(remaining_s, poll_s, nearest)


class Broker(abc.ABC):
    """A durable queue of items with leases; open it with ``async with`` before use."""

    @abc.abstractmethod
    async def enqueue(self, spec: ItemSpec, *, tx: Transaction | None = None) -> Item:
        """Add an item, inside the document-store transaction ``tx`` (commits with it) or on its own.

        Raises:
            Conflict: ``spec.unique_key`` is held by an active item (``holder_of(exc)`` names it), or an
                item with ``spec.id`` exists.
            BrokerUnavailable: the database cannot be reached.
        """

    @abc.abstractmethod
    async def claim(
        self,
        *,
        queues: Sequence[str],
        owner: str,
        lease_s: float = DEFAULT_LEASE_S,
        limit: int = 1,
        tx: Transaction | None = None,
    ) -> builtins.list[Item]:
        """Take up to ``limit`` ready items of ``queues`` for ``owner``, atomically: no item goes to two claimers.

        Each claimed item is ``running`` with ``attempt + 1``, ``lease_epoch + 1`` and a lease until
        now + ``lease_s``. Lapsed leases are expired first (see the module docstring). With ``tx``, the claim
        is written in that document-store transaction (with what the claimer records of it).

        Raises:
            BrokerUnavailable: the database cannot be reached.
        """

    @abc.abstractmethod
    async def heartbeat(
        self, item_id: str, *, owner: str, epoch: int, lease_s: float = DEFAULT_LEASE_S
    ) -> Item:
        """Extend the lease to now + ``lease_s``; the returned item shows any ``cancel_requested``.

        Raises:
            NotFound: no such item.
            Conflict: the lease is lost (lapsed, superseded, or the item is no longer running): stop working.
        """

    @abc.abstractmethod
    async def heartbeat_many(
        self, held: Sequence[tuple[str, int]], *, owner: str, lease_s: float = DEFAULT_LEASE_S
    ) -> dict[str, Item]:
        """``heartbeat`` for many ``(item_id, epoch)`` of one owner at once, in one statement.

        Returns the renewed items by id; an item left out was refused (lapsed, superseded, not running,
        unknown), as ``heartbeat`` would have raised for it. An agent lists all its jobs at once, so its
        heartbeat costs the database the same whether it runs one job or a thousand.
        """

    @abc.abstractmethod
    async def get_many(self, item_ids: Sequence[str]) -> dict[str, Item]:
        """The items that exist among ``item_ids``, by id (one read)."""

    @abc.abstractmethod
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
        """Finish a running item as ``succeeded`` (or ``cancelled``, confirming a cancel request).

        ``owner`` and ``epoch`` fence the call (None skips that check). A duplicate returns the item unchanged.
        With ``tx``, the change is written in that document-store transaction and commits with it.

        Raises:
            NotFound: no such item.
            Conflict: the caller's epoch or owner is superseded, or the item is not running.
        """

    @abc.abstractmethod
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
        """Fail a running item, or queue it again after ``retry_in_s`` when given and attempts are left.

        ``backoff_s`` gives the usual retry delay. Without ``retry_in_s``, or with no attempt left, the item
        ends ``failed``. Fenced like ``complete``, and like it written in ``tx`` when given.

        Raises:
            NotFound: no such item.
            Conflict: the caller's epoch or owner is superseded, or the item is not running.
        """

    @abc.abstractmethod
    async def release(self, item_id: str, *, owner: str, epoch: int, started: bool) -> Item:
        """Give a running item back: re-queued at once (see ``release`` in the module docstring).

        ``started=False``: the work never began; the attempt is not counted. ``started=True``: handled as
        a lease expiry (re-queued while attempts are left, else ``failed``; a pending cancel ends it
        ``cancelled``). A repeated call for the same owner and epoch returns the item unchanged.

        Raises:
            NotFound: no such item.
            Conflict: the caller's epoch or owner is superseded, or the item is not running.
        """

    @abc.abstractmethod
    async def park(self, item_id: str, *, owner: str, epoch: int, until: datetime, seen_wakeups: int) -> Item:
        """Give a running item back until ``until``, or until one of its children ends (see ``park`` above).

        ``seen_wakeups`` is the item's ``wakeups`` when the holder claimed it: if it grew since, the item is
        ready at once. A repeated call for the same owner and epoch returns the item unchanged.

        Raises:
            NotFound: no such item.
            Conflict: the caller's epoch or owner is superseded, or the item is not running.
        """

    @abc.abstractmethod
    async def fence(self, item_id: str, *, owner: str, epoch: int, tx: Transaction) -> None:
        """Check in ``tx`` that ``owner`` still holds the running item at ``epoch`` (the row stays locked).

        Raises:
            LeaseLost: the item is gone, final, re-queued or held at another epoch: write nothing.
        """

    @abc.abstractmethod
    async def cancel(self, item_id: str, *, by: str, wind_down: bool = False) -> Item:
        """Cancel an item: a queued one ends ``cancelled`` at once, a running one gets ``cancel_requested``.

        The holder of a running item sees the request on its next heartbeat and confirms with
        ``complete(state="cancelled")``; if its lease lapses first, the item ends ``cancelled`` anyway. A
        final item is returned unchanged. With ``wind_down``, a queued item that started before gets
        ``cancel_requested`` and becomes ready now instead of ending (its next holder winds it down).

        Raises:
            NotFound: no such item.
        """

    @abc.abstractmethod
    async def expire_leases(self) -> int:
        """Apply lease expiry and deadlines now (``claim`` does it too); returns how many items changed."""

    @abc.abstractmethod
    async def get(self, item_id: str, *, tx: Transaction | None = None) -> Item | None:
        """The item (as transaction ``tx`` sees it, when given), or None."""

    @abc.abstractmethod
    async def list(
        self,
        *,
        queue: str | None = None,
        state: State | None = None,
        unique_key: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Item]:
        """Items matching every given filter, oldest first (by id)."""

    async def counts(self) -> dict[tuple[str, str, str], int]:
        """How many items there are per (queue, kind, state): counted, not loaded (``/metrics``).

        A queued item that started before (a parked task, a job waiting to be retried) counts as ``waiting``.
        """
        found: dict[tuple[str, str, str], int] = {}
        for item in await self.list():
            waiting = item.state == "queued" and item.started_at is not None
            key = (item.queue, item.kind, "waiting" if waiting else item.state)
            found[key] = found.get(key, 0) + 1
        return found

    @abc.abstractmethod
    async def wait(self, *, queues: Sequence[str], timeout_s: float) -> bool:
        """Wait until an item of ``queues`` may be claimable: True then, False after ``timeout_s``.

        A True is a hint, not a promise: another claimer may be faster.
        """

    @abc.abstractmethod
    async def depth(self, queue: str) -> Depth:
        """Counts of queued and running items and the age of the oldest ready one."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None
