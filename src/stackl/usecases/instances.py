"""An instance and its task, written together: one active task per instance (lifecycle.md §5.9).

Create, update and delete each write the instance and enqueue its task in one transaction (`start`), under
the broker key that keeps one active task per instance (`unique_key`); a second request while a task is
active is ``InstanceBusy``, naming the task. The limits every instance task runs under (`TASK_TIMEOUT_S`,
`JOB_LEASE_EXPIRIES`) and the answer of a request that started one (`Started`) live here with them.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from stackl import errors
from stackl.broker import base as broker_base
from stackl.datastore.base import Transaction
from stackl.domain.instances import InstanceRequest
from stackl.usecases import documents as document_cases
from stackl.usecases.ports import Ports

TASK_TIMEOUT_S = 7200
JOB_LEASE_EXPIRIES = 3  # the third lease expiry of a step's job fails it (lifecycle.md §5.5)


@dataclass(frozen=True, slots=True)
class Started:
    """A request that started a task: the 0.5 response body and the task."""

    body: Any
    task_id: str | None
    revision: int | None = None


def wants_rollback(ports: Ports, request: InstanceRequest) -> bool:
    """``rollback`` of the request, else the ``tasks.rollback`` setting (lifecycle.md §4.5)."""
    return ports.rollback if request.rollback is None else request.rollback


def unique_key(name: str) -> str:
    """The broker key that keeps one active task per instance (lifecycle.md §5.9)."""
    return f"instance:{name}"


async def _busy(ports: Ports, name: str, exc: errors.Conflict) -> errors.InstanceBusy:
    holder = broker_base.holder_of(exc) or ""
    item = await ports.broker.get(holder) if holder else None
    return errors.InstanceBusy(instance=name, task_id=holder, task_kind=item.kind if item else "unknown")


async def start(
    ports: Ports,
    name: str,
    spec: broker_base.ItemSpec,
    write: Callable[[Transaction], Awaitable[int | None]],
) -> int | None:
    """Write the instance and enqueue its task in one transaction; a task already active → InstanceBusy."""

    async def work(tx: Transaction) -> int | None:
        revision = await write(tx)
        await ports.broker.enqueue(spec, tx=tx)
        return revision

    try:
        return await document_cases.in_transaction(ports, work)
    except errors.AlreadyExists as exc:
        raise errors.InstanceExists("Stack instance already exists") from exc
    except errors.Conflict as exc:
        if broker_base.holder_of(exc) is None:
            raise
        raise await _busy(ports, name, exc) from exc
