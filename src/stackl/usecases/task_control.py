"""Cancelling a task (lifecycle.md §5.7, api.md ``POST /tasks/{id}/cancel``).

A queued task ends ``cancelled`` at once: no worker ever ran it, so the steps it had set ``in_progress`` become
``SKIPPED`` (``not run: task cancelled``) here, or they would wait forever. A running (or rolling back) task gets
``cancel_requested``; the worker holding it notices within seconds, stops dispatching, cancels its running
jobs through their agents and ends the task ``cancelled``. A final task cannot be cancelled (409).
"""

import copy
from typing import Any

from stackl import errors
from stackl.datastore.base import Transaction
from stackl.usecases import documents as document_cases
from stackl.usecases import task_queries
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

NOT_RUN = "not run: task cancelled"


async def _skip_unstarted(ports: Ports, name: str, task_id: str) -> None:
    async def work(tx: Transaction) -> None:
        stored = await tx.get(doc_type="stack_instance", name=name)
        if stored is None:
            return
        body = copy.deepcopy(stored.body)
        changed = False
        for entry in body.get("status", []):
            if entry.get("task_id") == task_id and entry.get("status") == "in_progress":
                entry.update(status="SKIPPED", error_message=NOT_RUN)
                changed = True
        if changed:
            await tx.put(
                doc_type="stack_instance",
                name=name,
                body=body,
                subject="worker",
                action="status",
                if_revision=stored.revision,
                references=document_cases.references(body),
                task_id=task_id,
            )

    await document_cases.in_transaction(ports, work)


async def cancel(ports: Ports, task_id: str, *, by: str) -> dict[str, Any]:
    """Cancel task ``task_id`` on behalf of ``by``; the task record after the request.

    Raises:
        TaskNotFound: no such task. Conflict: the task is already final.
    """
    item = await ports.broker.get(task_id)
    if item is None or item.queue != TASKS_QUEUE:
        raise errors.TaskNotFound(f"task {task_id} not found")
    if item.final:
        raise errors.Conflict(f"task {task_id} is already {item.state}")
    item = await ports.broker.cancel(task_id, by=by, wind_down=True)  # a parked task stops its jobs
    if item.state == "cancelled":
        name = item.payload.get("stack_instance")
        if isinstance(name, str):
            await _skip_unstarted(ports, name, task_id)
    return await task_queries.task_view(ports, item)
