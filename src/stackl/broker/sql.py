"""SqlBroker: the Broker on the document store's own SQLite or PostgreSQL database, in SQLAlchemy Core.

Why on the same database: an item is enqueued in the transaction of the state change that causes it
(``enqueue(tx=…)`` writes through that transaction's connection), so no request commits without its task and
no task exists for a change that rolled back. The broker's own operations run in the store's transactions
too (``SqlDocumentStore.transaction``), so they get its SQLite writer queue, ``BEGIN IMMEDIATE`` and error
translation; database errors surface as ``BrokerUnavailable``.

The claim is one statement: ``UPDATE queue_items SET state = 'running', attempt = attempt + 1, lease_epoch =
lease_epoch + 1, … WHERE id IN (SELECT id … ORDER BY priority DESC, available_at, id LIMIT n) RETURNING *``.
On SQLite the write transaction holds the database's one write lock, so two claimers never see the same
queued row; on PostgreSQL the subquery takes ``FOR UPDATE SKIP LOCKED`` row locks, so concurrent claimers
take different rows instead of queueing behind each other. Before claiming, the same transaction expires
lapsed leases (a few rows, found through a partial index). Every later write of a holder is an UPDATE
conditional on ``state = 'running'`` and its epoch (and owner), so a superseded holder changes nothing.

Wake-ups: an enqueue (or a retry) issues ``pg_notify`` on PostgreSQL, delivered at commit to every broker's
``LISTEN`` connection; waiters in this process are also woken directly. SQLite has no NOTIFY: the queue names
are noted on the connection (``Connection.info``) and announced when the connection goes back to the pool,
that is after the transaction committed, even one the caller owns (``enqueue(tx=…)``): to this process's
waiters directly, and to other processes through a datagram per queue (``broker.wake``). Polling stays as a
slow safety net (``listen_poll_s``) while this broker can be woken, else at ``poll_interval_s``, and a waiter
never sleeps past the next backoff or lease end it knows of.
"""

import asyncio
import builtins
import threading
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Literal, Self

import sqlalchemy as sa
from sqlalchemy import event as sa_event
from sqlalchemy.ext.asyncio import AsyncConnection

from stackl import errors
from stackl.broker import base
from stackl.broker.base import Broker, Depth, Item, ItemSpec, State
from stackl.broker.wake import WakeChannel
from stackl.datastore import dialects, rules
from stackl.datastore.base import Transaction
from stackl.datastore.schema import UtcDateTime, queue_items
from stackl.datastore.sql import SqlDocumentStore, SqlTransaction
from stackl.domain.clock import Clock, SystemClock
from stackl.domain.ids import ulid

CHANNEL = "stackl_queue"  # NOTIFY channel; the payload is the queue name
ENQUEUE_TRIES = 3  # a unique key's holder may finish between our insert and our look-up: insert again

_Q = queue_items.c
_ID: sa.BindParameter[str] = sa.bindparam("p_id")
_NOW: sa.BindParameter[datetime] = sa.bindparam("p_now", type_=UtcDateTime())
_UNTIL: sa.BindParameter[datetime] = sa.bindparam("p_until", type_=UtcDateTime())
_OWNER: sa.BindParameter[str] = sa.bindparam("p_owner")
_EPOCH: sa.BindParameter[int] = sa.bindparam("p_epoch")
_QUEUES: sa.BindParameter[list[str]] = sa.bindparam("p_queues", expanding=True)
# States as SQL literals, not bound parameters: only then may the planners (SQLite always, PostgreSQL in a
# generic plan of a prepared statement) use the partial indexes, whose WHERE names the state.
_QUEUED: sa.ColumnClause[str] = sa.literal_column("'queued'")
_RUNNING: sa.ColumnClause[str] = sa.literal_column("'running'")

_SELECT_ONE = sa.select(queue_items).where(_Q.id == _ID)
_READY = (
    sa.select(_Q.id)
    .where(_Q.queue.in_(_QUEUES), _Q.state == _QUEUED, _Q.available_at <= _NOW)
    .order_by(_Q.priority.desc(), _Q.available_at, _Q.id)
    .limit(sa.bindparam("p_limit"))
)
_LAPSED = sa.select(queue_items).where(
    _Q.state == _RUNNING, sa.or_(_Q.lease_until < _NOW, _Q.deadline < _NOW)
)
# What ``wait`` needs to know: the earliest moment a queued item becomes ready, or a lease lapses. Each half
# reads one partial index, so neither scans the finished items that accumulate in the table.
_NEXT_READY = sa.select(
    sa.select(sa.func.min(_Q.available_at))
    .where(_Q.queue.in_(_QUEUES), _Q.state == _QUEUED)
    .scalar_subquery(),
    sa.select(sa.func.min(_Q.lease_until))
    .where(_Q.queue.in_(_QUEUES), _Q.state == _RUNNING)
    .scalar_subquery(),
)
_DEPTH = sa.select(
    sa.select(sa.func.count())
    .where(_Q.queue == sa.bindparam("p_queue"), _Q.state == _QUEUED)
    .scalar_subquery(),
    sa.select(sa.func.count())
    .where(_Q.queue == sa.bindparam("p_queue"), _Q.state == _RUNNING)
    .scalar_subquery(),
    sa.select(sa.func.min(_Q.available_at))
    .where(_Q.queue == sa.bindparam("p_queue"), _Q.state == _QUEUED, _Q.available_at <= _NOW)
    .scalar_subquery(),
)
# A child ended: its parent counts the wake-up, and a parked (queued) parent becomes ready now.
_WAKE_PARENT = (
    queue_items.update()
    .where(_Q.id == _ID, _Q.state.in_([_QUEUED, _RUNNING]))
    .values(
        wakeups=_Q.wakeups + 1,
        available_at=sa.case(
            (sa.and_(_Q.state == _QUEUED, _Q.available_at > _NOW), _NOW), else_=_Q.available_at
        ),
    )
    .returning(_Q.queue, _Q.state)
)
_FENCE = (
    queue_items.update()
    .where(_Q.id == _ID, _Q.state == _RUNNING, _Q.lease_owner == _OWNER, _Q.lease_epoch == _EPOCH)
    .values(updated_at=_NOW)
)
_SET_DEADLINE = (
    queue_items.update().where(_Q.id == _ID).values(deadline=sa.bindparam("p_deadline", type_=UtcDateTime()))
)
_HEARTBEAT = (
    queue_items.update()
    .where(
        _Q.id == _ID,
        _Q.state == _RUNNING,
        _Q.lease_owner == _OWNER,
        _Q.lease_epoch == _EPOCH,
        _Q.lease_until >= _NOW,
        sa.or_(_Q.deadline.is_(None), _Q.deadline >= _NOW),
    )
    .values(lease_until=_UNTIL, updated_at=_NOW)
    .returning(*queue_items.c)
)


class SqlBroker(Broker):
    """The Broker on an open ``SqlDocumentStore``'s database; open it with ``async with`` (starts LISTEN)."""

    def __init__(
        self,
        store: SqlDocumentStore,
        *,
        clock: Clock | None = None,
        poll_interval_s: float = 0.5,
        listen_poll_s: float = 5.0,
    ) -> None:
        self._store = store
        self._clock = clock or SystemClock()
        self._flavour = dialects.Flavour(kind=store.kind)
        self._poll_interval_s, self._listen_poll_s = poll_interval_s, listen_poll_s
        self._insert = self._flavour.insert_if_absent(queue_items)
        self._claim = (
            queue_items.update()
            .where(_Q.id.in_(self._flavour.lock_for_claim(_READY).scalar_subquery()))
            .values(
                state="running",
                attempt=_Q.attempt + 1,
                lease_epoch=_Q.lease_epoch + 1,
                lease_owner=_OWNER,
                lease_until=_UNTIL,
                started_at=sa.func.coalesce(_Q.started_at, _NOW),
                deadline=None,
                updated_at=_NOW,
            )
            .returning(*queue_items.c)
        )
        self._lapsed = self._flavour.lock_for_claim(_LAPSED)
        self._scrubbed = self._flavour.without_keys(_Q.payload, base.EPHEMERAL_KEYS)  # for final states
        self._complete = (
            queue_items.update()
            .where(_Q.id == _ID, _Q.state == _RUNNING, _Q.lease_owner == _OWNER, _Q.lease_epoch == _EPOCH)
            .values(
                state=sa.bindparam("p_state"),
                result=sa.bindparam("p_result", type_=_Q.result.type),
                finished_at=_NOW,
                lease_until=None,
                updated_at=_NOW,
                payload=self._scrubbed,
            )
            .returning(*queue_items.c)
        )
        self._waiters: dict[asyncio.Event, frozenset[str]] = {}
        self._listening = False
        self._exit = AsyncExitStack()
        self._pending_key = f"stackl_broker_wake_{id(self)}"  # queues to announce after commit (SQLite)
        self._channel: WakeChannel | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread = 0

    async def __aenter__(self) -> Self:
        if self._flavour.notifies:
            try:
                self._listening = await self._exit.enter_async_context(
                    dialects.listen(self._store.engine, CHANNEL, self._wake, self._lost)
                )
            except errors.StoreUnavailable:
                self._listening = False  # polling still works; a later wait() does not retry LISTEN
        else:
            self._loop, self._loop_thread = asyncio.get_running_loop(), threading.get_ident()
            pool = self._store.engine.sync_engine.pool
            sa_event.listen(pool, "checkin", self._checked_in)
            self._exit.callback(sa_event.remove, pool, "checkin", self._checked_in)
            database = dialects.sqlite_file(self._store.engine.url)
            if database is not None:
                channel = WakeChannel(database, self._wake)
                self._listening = channel.open()
                self._channel = channel
                self._exit.callback(channel.close)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._listening = False
        self._channel = None
        await self._exit.aclose()

    # --- plumbing ------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _connection(
        self, *, readonly: bool = False, tx: Transaction | None = None
    ) -> AsyncIterator[AsyncConnection]:
        """A connection in a store transaction of its own (or ``tx``'s); trouble is ``BrokerUnavailable``."""
        try:
            if tx is not None:
                yield _connection_of(tx)
                return
            async with self._store.transaction(readonly=readonly) as own:
                yield _connection_of(own)
        except errors.StoreUnavailable as exc:
            raise errors.BrokerUnavailable(exc.message) from exc

    @staticmethod
    async def _execute(
        connection: AsyncConnection, statement: sa.Executable, parameters: Any = None
    ) -> sa.CursorResult[Any]:
        with dialects.wrap_errors():
            return await connection.execute(statement, parameters)

    async def _get(self, connection: AsyncConnection, item_id: str) -> Item | None:
        row = (await self._execute(connection, _SELECT_ONE, {"p_id": item_id})).first()
        return _item(row) if row is not None else None

    async def _notify(self, connection: AsyncConnection, queue: str) -> None:
        """Wake the queue's waiters everywhere once this transaction commits."""
        statement = self._flavour.notify(CHANNEL, queue)
        if statement is not None:
            await self._execute(connection, statement)
        elif self._loop is not None:  # SQLite: announced by ``_checked_in``, after the commit
            connection.info.setdefault(self._pending_key, set()).add(queue)

    def _checked_in(self, _dbapi_connection: Any, record: Any) -> None:
        """Pool event: a connection came back, its transaction over; announce the queues it enqueued on.

        A rolled-back transaction announces too: a wake-up is a hint, and a spurious one costs one look.
        """
        queues = record.info.pop(self._pending_key, None)
        if not queues or self._loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            self._announce(queues)
        elif not self._loop.is_closed():  # a connection collected by another thread
            self._loop.call_soon_threadsafe(self._announce, queues)

    def _announce(self, queues: set[str]) -> None:
        for queue in queues:
            self._wake(queue)
        if self._channel is not None:
            self._channel.send(queues)

    def _wake(self, queue: str) -> None:
        for event, queues in self._waiters.items():
            if queue in queues:
                event.set()

    def _lost(self) -> None:
        self._listening = False  # the LISTEN connection died: waiters poll at the short interval

    def _now(self) -> datetime:
        return rules.timestamp(self._clock)

    # --- the port --------------------------------------------------------------------------------------
    async def enqueue(self, spec: ItemSpec, *, tx: Transaction | None = None) -> Item:
        now = self._now()
        values = base.new_item(spec, now=now, item_id=spec.id or ulid(now))
        if tx is not None:
            item = await self._enqueue(_connection_of(tx), values)
        else:
            async with self._connection() as connection:
                item = await self._enqueue(connection, values)
        self._wake(item.queue)  # this process's waiters; others hear the NOTIFY or poll
        return item

    async def _enqueue(self, connection: AsyncConnection, values: dict[str, Any]) -> Item:
        for _ in range(ENQUEUE_TRIES):
            if (await self._execute(connection, self._insert, values)).rowcount == 1:
                await self._notify(connection, values["queue"])
                return Item(**values)
            if await self._get(connection, values["id"]) is not None:
                raise errors.Conflict(f"queue item {values['id']} already exists")
            holder = (
                await self._execute(
                    connection,
                    sa.select(_Q.id).where(
                        _Q.unique_key == values["unique_key"], _Q.state.in_(base.ACTIVE_STATES)
                    ),
                )
            ).scalar()
            if holder is not None:
                raise base.unique_key_taken(values["unique_key"], holder)
        raise errors.Conflict(f"unique key {values['unique_key']!r} stayed contended; retry")

    async def claim(
        self,
        *,
        queues: Sequence[str],
        owner: str,
        lease_s: float = base.DEFAULT_LEASE_S,
        limit: int = 1,
        tx: Transaction | None = None,
    ) -> builtins.list[Item]:
        if not queues or limit < 1:
            return []
        now = self._now()
        parameters = {
            "p_queues": list(queues),
            "p_now": now,
            "p_until": now + timedelta(seconds=lease_s),
            "p_owner": owner,
            "p_limit": limit,
        }
        async with self._connection(tx=tx) as connection:
            await self._expire(connection, now)
            items = [_item(row) for row in await self._execute(connection, self._claim, parameters)]
            timed = [i for i in items if i.timeout_s is not None]
            if timed:
                deadlines = {i.id: now + timedelta(seconds=i.timeout_s or 0) for i in timed}
                rows = [{"p_id": item_id, "p_deadline": at} for item_id, at in deadlines.items()]
                await self._execute(connection, _SET_DEADLINE, rows)
                items = [base.with_deadline(i, deadlines.get(i.id)) for i in items]
        return sorted(items, key=base.claim_order)

    async def expire_leases(self) -> int:
        async with self._connection() as connection:
            return await self._expire(connection, self._now())

    async def _expire(self, connection: AsyncConnection, now: datetime) -> int:
        changed = 0
        for row in await self._execute(connection, self._lapsed, {"p_now": now}):
            item = _item(row)
            changes = _scrub(item, base.expiry(item, now))
            statement = (
                queue_items.update()
                .where(_Q.id == item.id, _Q.state == "running", _Q.lease_epoch == item.lease_epoch)
                .values(**changes)
            )
            count = (await self._execute(connection, statement)).rowcount
            changed += count
            if count and changes["state"] == "queued":
                await self._notify(connection, item.queue)
            elif count:
                await self._wake_parent(connection, replace(item, state=changes["state"]))
        return changed

    async def heartbeat(
        self, item_id: str, *, owner: str, epoch: int, lease_s: float = base.DEFAULT_LEASE_S
    ) -> Item:
        now = self._now()
        parameters = {
            "p_id": item_id,
            "p_owner": owner,
            "p_epoch": epoch,
            "p_now": now,
            "p_until": now + timedelta(seconds=lease_s),
        }
        async with self._connection() as connection:
            row = (await self._execute(connection, _HEARTBEAT, parameters)).first()
            if row is not None:
                return _item(row)
            raise base.lease_lost(await self._get(connection, item_id), item_id, owner=owner, epoch=epoch)

    async def heartbeat_many(
        self, held: Sequence[tuple[str, int]], *, owner: str, lease_s: float = base.DEFAULT_LEASE_S
    ) -> dict[str, Item]:
        if not held:
            return {}
        now = self._now()
        statement = (
            queue_items.update()
            .where(
                sa.tuple_(_Q.id, _Q.lease_epoch).in_([(item_id, epoch) for item_id, epoch in held]),
                _Q.state == _RUNNING,
                _Q.lease_owner == owner,
                _Q.lease_until >= now,
                sa.or_(_Q.deadline.is_(None), _Q.deadline >= now),
            )
            .values(lease_until=now + timedelta(seconds=lease_s), updated_at=now)
            .returning(*queue_items.c)
        )
        async with self._connection() as connection:
            return {item.id: item for item in map(_item, await self._execute(connection, statement))}

    async def get_many(self, item_ids: Sequence[str]) -> dict[str, Item]:
        if not item_ids:
            return {}
        statement = sa.select(queue_items).where(_Q.id.in_(list(item_ids)))
        async with self._connection(readonly=True) as connection:
            return {item.id: item for item in map(_item, await self._execute(connection, statement))}

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
        now = self._now()
        if owner is not None and epoch is not None:  # a holder's call: the statement built once
            parameters = {"p_id": item_id, "p_owner": owner, "p_epoch": epoch, "p_now": now}
            parameters |= {"p_state": state, "p_result": result}
            return await self._conditional(self._complete, parameters, item_id, owner, epoch, tx=tx)
        values = {
            "state": state,
            "result": result,
            "finished_at": now,
            "lease_until": None,
            "updated_at": now,
            "payload": self._scrubbed,
        }
        return await self._finish(item_id, owner=owner, epoch=epoch, values=values, tx=tx)

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
        now = self._now()
        values: dict[str, Any] = {"error": error, "result": result, "lease_until": None, "updated_at": now}
        if retry_in_s is None:
            values |= {"state": "failed", "finished_at": now, "payload": self._scrubbed}
        else:
            retry = _Q.attempt < _Q.max_attempts
            retry_at = sa.literal(now + timedelta(seconds=retry_in_s), UtcDateTime())
            values |= {
                "state": sa.case((retry, sa.literal("queued")), else_=sa.literal("failed")),
                "available_at": sa.case((retry, retry_at), else_=_Q.available_at),
                "finished_at": sa.case((retry, sa.null()), else_=sa.literal(now, UtcDateTime())),
                "payload": sa.case((retry, _Q.payload), else_=self._scrubbed),
            }
        return await self._finish(item_id, owner=owner, epoch=epoch, values=values, tx=tx)

    async def release(self, item_id: str, *, owner: str, epoch: int, started: bool) -> Item:
        now = self._now()
        async with self._connection() as connection:
            item = await self._get(connection, item_id)
            if item is None or not _held(item, owner=owner, epoch=epoch):
                return base.check_finish(item, item_id, owner=owner, epoch=epoch)
            # Conditional on the epoch read above, inside the same write transaction: nobody re-claimed it.
            statement = (
                queue_items.update()
                .where(
                    _Q.id == item_id, _Q.state == "running", _Q.lease_epoch == epoch, _Q.lease_owner == owner
                )
                .values(**_scrub(item, base.release(item, now, started=started)))
                .returning(*queue_items.c)
            )
            row = (await self._execute(connection, statement)).first()
            if row is None:
                return base.check_finish(
                    await self._get(connection, item_id), item_id, owner=owner, epoch=epoch
                )
            released = _item(row)
            if released.state == "queued":
                await self._notify(connection, released.queue)
            await self._wake_parent(connection, released)
        if released.state == "queued":
            self._wake(released.queue)
        return released

    async def _finish(
        self,
        item_id: str,
        *,
        owner: str | None,
        epoch: int | None,
        values: dict[str, Any],
        tx: Transaction | None = None,
    ) -> Item:
        conditions = [_Q.id == item_id, _Q.state == "running"]
        if owner is not None:
            conditions.append(_Q.lease_owner == owner)
        if epoch is not None:
            conditions.append(_Q.lease_epoch == epoch)
        statement = queue_items.update().where(*conditions).values(**values).returning(*queue_items.c)
        return await self._conditional(statement, None, item_id, owner, epoch, tx=tx)

    async def _conditional(
        self,
        statement: sa.Update,
        parameters: dict[str, Any] | None,
        item_id: str,
        owner: str | None,
        epoch: int | None,
        *,
        tx: Transaction | None,
    ) -> Item:
        """Run a holder's conditional UPDATE … RETURNING; a row unchanged is a duplicate or a conflict."""
        async with self._connection(tx=tx) as connection:
            row = (await self._execute(connection, statement, parameters)).first()
            if row is None:
                return base.check_finish(
                    await self._get(connection, item_id), item_id, owner=owner, epoch=epoch
                )
            item = _item(row)
            if item.state == "queued":
                await self._notify(connection, item.queue)
            await self._wake_parent(connection, item)
        if item.state == "queued":
            self._wake(item.queue)
        return item

    async def _wake_parent(self, connection: AsyncConnection, item: Item) -> None:
        """In the transaction that made ``item`` final: wake its parent (broker/base.py, parents and parking)."""
        if not item.final or item.parent_id is None:
            return
        parameters = {"p_id": item.parent_id, "p_now": self._now()}
        row = (await self._execute(connection, _WAKE_PARENT, parameters)).first()
        if row is not None and row._mapping["state"] == "queued":
            await self._notify(connection, str(row._mapping["queue"]))

    async def park(self, item_id: str, *, owner: str, epoch: int, until: datetime, seen_wakeups: int) -> Item:
        now = self._now()
        async with self._connection() as connection:
            item = await self._get(connection, item_id)
            if item is None or not _held(item, owner=owner, epoch=epoch):
                return base.check_finish(item, item_id, owner=owner, epoch=epoch)
            changes = base.park(item, now, until=until, woken=False)
            woken = _Q.wakeups != seen_wakeups  # re-read by the UPDATE: a wake-up racing this park counts
            changes["available_at"] = sa.case(
                (woken, sa.literal(now, UtcDateTime())),
                else_=sa.literal(changes["available_at"], UtcDateTime()),
            )
            statement = (
                queue_items.update()
                .where(
                    _Q.id == item_id, _Q.state == "running", _Q.lease_epoch == epoch, _Q.lease_owner == owner
                )
                .values(**changes)
                .returning(*queue_items.c)
            )
            row = (await self._execute(connection, statement)).first()
            if row is None:
                return base.check_finish(
                    await self._get(connection, item_id), item_id, owner=owner, epoch=epoch
                )
            parked = _item(row)
            if parked.available_at <= now:
                await self._notify(connection, parked.queue)
        if parked.available_at <= now:
            self._wake(parked.queue)
        return parked

    async def fence(self, item_id: str, *, owner: str, epoch: int, tx: Transaction) -> None:
        connection = _connection_of(tx)
        parameters = {"p_id": item_id, "p_owner": owner, "p_epoch": epoch, "p_now": self._now()}
        try:
            if (await self._execute(connection, _FENCE, parameters)).rowcount == 1:
                return
            item = await self._get(connection, item_id)
        except errors.StoreUnavailable as exc:
            raise errors.BrokerUnavailable(exc.message) from exc
        raise base.fence_lost(item, item_id, owner=owner, epoch=epoch)

    async def cancel(self, item_id: str, *, by: str, wind_down: bool = False) -> Item:
        now = self._now()
        marker = base.cancel_marker(by, now)
        queued = [_Q.id == item_id, _Q.state == "queued"]
        statements: builtins.list[Any] = []
        if wind_down:  # a parked task: its next holder stops its jobs
            statements.append(
                queue_items.update()
                .where(*queued, _Q.started_at.is_not(None), _Q.cancel_requested.is_(None))
                .values(cancel_requested=marker, available_at=now, updated_at=now)
                .returning(*queue_items.c)
            )
            queued.append(_Q.started_at.is_(None))
        at_once = (
            queue_items.update()
            .where(*queued)
            .values(
                state="cancelled",
                cancel_requested=marker,
                error=f"cancelled by {by}",
                finished_at=now,
                updated_at=now,
                payload=self._scrubbed,
            )
            .returning(*queue_items.c)
        )
        requested = (
            queue_items.update()
            .where(_Q.id == item_id, _Q.state == "running", _Q.cancel_requested.is_(None))
            .values(
                cancel_requested=marker, updated_at=now, wakeups=_Q.wakeups + 1
            )  # a parking holder looks again
            .returning(*queue_items.c)
        )
        async with self._connection() as connection:
            for statement in (*statements, at_once, requested):
                row = (await self._execute(connection, statement)).first()
                if row is not None:
                    changed = _item(row)
                    if changed.state == "queued":
                        await self._notify(connection, changed.queue)
                    await self._wake_parent(connection, changed)
                    return changed
            item = await self._get(connection, item_id)
        if item is None:
            raise base.not_found(item_id)
        return item

    async def get(self, item_id: str, *, tx: Transaction | None = None) -> Item | None:
        async with self._connection(readonly=True, tx=tx) as connection:
            return await self._get(connection, item_id)

    async def list(
        self,
        *,
        queue: str | None = None,
        state: State | None = None,
        unique_key: str | None = None,
        limit: int | None = None,
    ) -> builtins.list[Item]:
        statement = sa.select(queue_items).order_by(_Q.id)
        if queue is not None:
            statement = statement.where(_Q.queue == queue)
        if state is not None:
            statement = statement.where(_Q.state == state)
        if unique_key is not None:
            statement = statement.where(_Q.unique_key == unique_key)
        if limit is not None:
            statement = statement.limit(limit)
        async with self._connection(readonly=True) as connection:
            return [_item(row) for row in await self._execute(connection, statement)]

    async def counts(self) -> dict[tuple[str, str, str], int]:
        waiting = sa.and_(_Q.state == _QUEUED, _Q.started_at.is_not(None))
        state = sa.case((waiting, sa.literal("waiting")), else_=_Q.state).label("counted_state")
        statement = sa.select(_Q.queue, _Q.kind, state, sa.func.count()).group_by(_Q.queue, _Q.kind, state)
        async with self._connection(readonly=True) as connection:
            rows: list[Any] = list((await self._execute(connection, statement)).all())
        return {(str(row[0]), str(row[1]), str(row[2])): int(row[3]) for row in rows}

    async def depth(self, queue: str) -> Depth:
        now = self._now()
        async with self._connection(readonly=True) as connection:
            counts: Any = (await self._execute(connection, _DEPTH, {"p_queue": queue, "p_now": now})).one()
        queued, running, oldest = counts
        return base.depth(int(queued), int(running), _utc(oldest), now=now)

    async def wait(self, *, queues: Sequence[str], timeout_s: float) -> bool:
        end = time.monotonic() + timeout_s
        event = asyncio.Event()
        self._waiters[event] = frozenset(queues)
        try:
            while True:
                event.clear()  # registered before the check: a wake-up during it is not lost
                async with self._connection(readonly=True) as connection:
                    row: Any = (
                        await self._execute(connection, _NEXT_READY, {"p_queues": list(queues)})
                    ).one()
                now = self._now()
                pause = base.pause_before(
                    [_utc(row[0]), _utc(row[1])],
                    now=now,
                    remaining_s=end - time.monotonic(),
                    poll_s=self._listen_poll_s if self._listening else self._poll_interval_s,
                )
                if pause is None:
                    return True
                if pause <= 0:
                    return False
                try:
                    async with asyncio.timeout(pause):
                        await event.wait()
                except TimeoutError:
                    pass
        finally:
            del self._waiters[event]


def _held(item: Item | None, *, owner: str, epoch: int) -> bool:
    """Whether ``owner`` holds the running ``item`` at ``epoch`` (a release or a park may go on)."""
    return (
        item is not None
        and item.state == "running"
        and item.lease_owner == owner
        and item.lease_epoch == epoch
    )


def _scrub(item: Item, changes: dict[str, Any]) -> dict[str, Any]:
    """Column changes plus the payload without its ephemeral keys when they make the item final."""
    if changes.get("state") in base.FINAL_STATES and any(k in item.payload for k in base.EPHEMERAL_KEYS):
        return changes | {"payload": base.scrub_payload(item.payload)}
    return changes


def _connection_of(tx: Transaction) -> AsyncConnection:
    if not isinstance(tx, SqlTransaction):
        raise TypeError(f"SqlBroker needs a SqlDocumentStore transaction, not {type(tx).__name__}")
    return tx.connection


def _utc(value: Any) -> datetime | None:
    """An aggregate's datetime as aware UTC (``min`` over a column loses the column type on some drivers)."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _item(row: sa.Row[Any]) -> Item:
    return Item(**row._mapping)
