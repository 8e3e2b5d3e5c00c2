"""The contract between the worker loop and the use cases that run tasks (spec/lifecycle.md §5).

A task is a broker item on the ``tasks`` queue; its ``kind`` (``create``, ``update``, ``delete``…) picks the
handler. The worker claims the item, keeps its lease alive and calls the handler with a `TaskLease`; the
handler does the work and persists its progress after every step, so that any worker can resume the task from
the stored state after a crash (the handler must be idempotent: it is re-run from the start of whatever it had
not recorded as done). The handler finishes the item itself through ``lease.complete``/``lease.fail`` (its
writes are fenced by the lease), or raises; the worker then fails the item with the error, visibly.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stackl.broker.base import Broker, Item
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

    async def cancel_requested(self) -> bool:
        """Whether someone asked to cancel the task (read fresh from the broker)."""
        current = await self.broker.get(self.item.id)
        return bool(current and current.cancel_requested)


TaskHandler = Callable[[Ports, TaskLease], Awaitable[None]]
"""``handler(ports, lease)``: run one task to its end."""
