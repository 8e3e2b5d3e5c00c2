"""The contract between the worker loop and the use cases that run tasks (spec/lifecycle.md §5).

A task is a broker item on the ``tasks`` queue; its ``kind`` (``create``, ``update``, ``delete``…) picks the
handler. The worker claims the item, keeps its lease alive and calls the handler with a `TaskLease`; the
handler advances the task as far as it can from its stored state and persists every step, so that any worker
can continue it (the handler must be idempotent: each activation replays the task from its start, finding
what earlier activations recorded as done). When the task waits for agent jobs, the handler *parks* it
(``lease.park``) and returns: the worker's slot is free, and the task is a row until one of its jobs ends, it
is cancelled or its timer (the task deadline) comes; then any worker claims it again. Otherwise the handler
finishes the item through ``lease.complete``/``lease.fail``, or raises; the worker then fails the item with the
error, visibly. Every write of a handler is fenced in its own transaction (``lease.fence(tx)``).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stackl.broker.base import Broker, Item
from stackl.datastore.base import Transaction
from stackl.usecases.ports import Ports

TASKS_QUEUE = "tasks"


@dataclass(frozen=True, slots=True)
class TaskLease:
    """The worker's hold on one task item: who holds it at which epoch (the fencing token)."""

    item: Item
    owner: str
    epoch: int
    broker: Broker

    async def complete(self, result: Any = None) -> Item:
        """Finish the task as succeeded (fenced: refused when the lease was lost)."""
        return await self.broker.complete(self.item.id, owner=self.owner, epoch=self.epoch, result=result)

    async def fail(self, error: str, result: Any = None) -> Item:
        """Finish the task as failed, for good (tasks are not retried: lifecycle.md §5.5)."""
        return await self.broker.fail(
            self.item.id, owner=self.owner, epoch=self.epoch, error=error, retry_in_s=None, result=result
        )

    async def park(self, until: datetime) -> Item:
        """Give the task back until ``until``, or until one of its jobs ends or someone cancels it."""
        return await self.broker.park(
            self.item.id, owner=self.owner, epoch=self.epoch, until=until, seen_wakeups=self.item.wakeups
        )

    async def fence(self, tx: Transaction) -> None:
        """Refuse (``LeaseLost``) to let ``tx`` commit unless this worker still holds the task."""
        await self.broker.fence(self.item.id, owner=self.owner, epoch=self.epoch, tx=tx)


TaskHandler = Callable[[Ports, TaskLease], Awaitable[None]]
"""``handler(ports, lease)``: run one task to its end."""
