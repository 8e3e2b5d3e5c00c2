"""The handlers the worker runs for stack-instance tasks (lifecycle.md §5), by task kind.

``create``, ``update``, ``delete`` and ``restore`` advance through ``task_runner.run_task``; a
``document_update`` (``disable_invocation``) only ends; ``give_up`` records in the instance that a task ended
without its handler finishing it.
"""

import copy

import structlog

from stackl.broker.base import Item
from stackl.datastore.base import Transaction
from stackl.domain.step_status import cut_error
from stackl.usecases import documents as document_cases
from stackl.usecases.ports import Ports
from stackl.usecases.task_runner import run_task
from stackl.usecases.tasks import TaskLease

__all__ = ["document_update", "give_up", "run_task"]

log = structlog.get_logger(__name__)
SI = "stack_instance"


async def document_update(ports: Ports, lease: TaskLease) -> None:
    """A ``disable_invocation`` update: the request wrote the document; the task only ends (§4.3)."""
    del ports
    await lease.complete(
        {"status": "succeeded", "error_message": "", "failed_steps": [], "document_only": True}
    )


async def give_up(ports: Ports, item: Item, reason: str) -> None:
    """Record in the instance that its task ended without its handler finishing it.

    The worker fails a task itself when the handler crashed or the task lost its worker too many times
    (lifecycle.md §5.2); without this, the steps the task had not finished would show ``in_progress``
    forever. They become FAILED with the reason; finished steps keep their status.
    """
    name = item.payload.get("stack_instance")
    if not isinstance(name, str):
        return
    message = cut_error(f"task {item.kind} failed: {reason}")

    async def work(tx: Transaction) -> None:
        stored = await tx.get(doc_type=SI, name=name)
        if stored is None:
            return
        body = copy.deepcopy(stored.body)
        stuck = [entry for entry in body.get("status", []) if entry.get("status") == "in_progress"]
        if not stuck:
            return
        for entry in stuck:
            entry.update(status="FAILED", error_message=message, task_id=item.id)
        await tx.put(
            doc_type=SI,
            name=name,
            body=body,
            subject="worker",
            action="status",
            if_revision=stored.revision,
            references=document_cases.references(body),
            task_id=item.id,
        )

    await document_cases.in_transaction(ports, work)
    log.warning("task_given_up", task_id=item.id, stack_instance=name, reason=reason)
