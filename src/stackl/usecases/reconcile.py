"""Repair steps left ``in_progress`` by a task that is no longer alive.

A step is ``in_progress`` only while a live task owns it: the request marks it with the task's id, and the task
ends it (its final record) or the worker records why it could not (``operations.give_up``). Two paths can still
leave one behind: the broker itself fails a task whose lease expired on its last attempt (no worker is there to
record anything), and ``give_up`` may meet the very database outage that failed the task. Without a repair such
steps show ``in_progress`` forever and the instance looks busy with no task to wait for.

``repair_orphaned_steps`` finds them and records them FAILED with the reason, so the instance is READY or FAILED
again and can be re-applied. Workers run it at start and every ``reconcile_s`` (``worker/runner.py``); it is
idempotent, and a repair that loses a race to a concurrent write of the same instance is simply skipped (the
next round sees the new state). Cost per round: one listing of the stack instances and one batched read of the
tasks their ``in_progress`` steps name.
"""

import copy
from collections.abc import Mapping
from typing import Any

import structlog

from stackl import errors
from stackl.broker.base import Item
from stackl.datastore.base import Transaction
from stackl.domain.step_status import cut_error
from stackl.usecases import documents as document_cases
from stackl.usecases.ports import Ports

log = structlog.get_logger(__name__)

SI = "stack_instance"
SUBJECT = "worker:reconcile"


def _stuck(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [
        entry
        for entry in body.get("status") or []
        if isinstance(entry, dict) and entry.get("status") == "in_progress"
    ]


def _reason(task_id: str, item: Item | None) -> str:
    if item is None:
        return f"task {task_id} no longer exists; this step never finished (repaired by the worker)"
    detail = f": {item.error}" if item.error else ""
    return cut_error(f"task {task_id} ended {item.state} without finishing this step{detail}")


async def repair_orphaned_steps(ports: Ports) -> list[str]:
    """Record FAILED every ``in_progress`` step whose task has ended or is gone; the names of repaired instances.

    Every request marks its steps with its task's id; a step without one was not written by a task, and is
    left alone.

    Raises:
        Unavailable: the database could not be reached (the caller tries again later).
    """
    instances = await document_cases.list_all(ports, SI)
    wanted = {
        str(entry.get("task_id"))
        for stored in instances
        for entry in _stuck(stored.body)
        if entry.get("task_id")
    }
    if not wanted:
        return []
    tasks = await ports.broker.get_many(sorted(wanted))
    dead = {task_id: tasks.get(task_id) for task_id in wanted if task_id not in tasks or tasks[task_id].final}
    repaired: list[str] = []
    for stored in instances:
        if not any(str(entry.get("task_id") or "") in dead for entry in _stuck(stored.body)):
            continue
        try:
            if await _repair(ports, stored.name, dead):
                repaired.append(stored.name)
        except errors.Conflict as exc:  # a task or a request wrote the instance meanwhile: next round
            log.info("reconcile_skipped", stack_instance=stored.name, error=exc.message)
    return repaired


async def _repair(ports: Ports, name: str, dead: Mapping[str, Item | None]) -> bool:
    """Mark the orphaned steps of ``name`` FAILED in one transaction, re-checked against what it reads."""

    async def work(tx: Transaction) -> bool:
        stored = await tx.get(doc_type=SI, name=name)
        if stored is None:
            return False
        body = copy.deepcopy(stored.body)
        changed: dict[str, int] = {}
        for entry in _stuck(body):
            task_id = str(entry.get("task_id") or "")
            if task_id not in dead:
                continue  # a live task owns it (or a new request re-marked it meanwhile)
            entry.update(status="FAILED", error_message=_reason(task_id, dead[task_id]))
            changed[task_id] = changed.get(task_id, 0) + 1
        if not changed:
            return False
        await tx.put(
            doc_type=SI,
            name=name,
            body=body,
            subject=SUBJECT,
            action="status",
            if_revision=stored.revision,
            references=document_cases.references(body),
            task_id=min(changed),
        )
        log.warning("steps_repaired", stack_instance=name, steps=changed)
        return True

    return await document_cases.in_transaction(ports, work)
