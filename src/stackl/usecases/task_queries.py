"""Reads of tasks (api.md §B.3): the task record of lifecycle.md §5.1 built from its broker item and instance.

A task is an item of the ``tasks`` queue; its payload holds the plan, its broker fields the state, lease and
result. Progress counts the instance's status entries of this task (the instance is where steps record their
state). ``wait`` long-polls until the item changes.
"""

import asyncio
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from stackl import errors
from stackl.broker.base import Item
from stackl.domain.clock import rfc3339
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

WAIT_MAX_S = 30.0
POLL_S = 0.2
_STEP_STATE = {"READY": "ready", "FAILED": "failed", "SKIPPED": "skipped"}


def _time(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment is not None else None


def _state(item: Item) -> str:
    """The task's state (lifecycle.md §5.2); a started task waiting for its jobs is a ``queued`` item."""
    active = item.state == "running" or (item.state == "queued" and item.started_at is not None)
    if active and item.cancel_requested:
        return "cancelling"
    return "running" if active else item.state


async def _instances(ports: Ports, items: Sequence[Item]) -> dict[str, dict[str, Any]]:
    """The current bodies of the instances these tasks belong to, read once (absent ones are left out)."""
    names = {str(item.payload.get("stack_instance", "")) for item in items}
    async with ports.store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=[("stack_instance", name) for name in sorted(names)])
    return {name: stored.body for (_, name), stored in found.items()}


def _progress(item: Item, instance: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    entries = {
        (e["service"], e.get("replica") or 0, e["functional_requirement"]): e
        for e in (instance.get("status", []) if instance else [])
    }
    counts = dict.fromkeys(
        ("pending", "queued", "running", "ready", "unchanged", "failed", "skipped", "cancelled"), 0
    )
    steps: list[dict[str, Any]] = []
    stage: str | None = None
    for group in item.payload.get("groups", []):
        for step in group.get("steps", []):
            entry = entries.get((step["service"], step["replica"], step["functional_requirement"]))
            if entry is None or entry.get("task_id") != item.id:
                # A READY delete step removes its entry; an unchanged step keeps its READY status of an
                # earlier task; otherwise the step has not been touched yet.
                if step.get("action") == "delete" and entry is None:
                    state = "ready"
                elif step.get("decision") == "unchanged" and entry is not None and entry["status"] == "READY":
                    state = "unchanged"
                else:
                    state = "pending" if not item.final else "skipped"
            elif entry["status"] == "in_progress":
                state = "running" if entry.get("job_id") else "pending"
            else:
                state = _STEP_STATE[entry["status"]]
            if state in ("running", "pending") and stage is None and not item.final:
                stage = str(group.get("stage"))
            counts[state] += 1
            steps.append(
                {
                    "id": step["id"],
                    "state": state,
                    "status": entry.get("status") if entry else None,
                    "agent": step.get("agent"),
                    "action": step.get("action"),
                    "job_id": entry.get("job_id") if entry else None,
                    "attempt": entry.get("attempt") if entry else None,
                    "started_at": entry.get("started_at") if entry else None,
                    "finished_at": entry.get("finished_at") if entry else None,
                    "error_message": entry.get("error_message", "") if entry else "",
                }
            )
    return {"stage": stage, **counts}, steps


def step_records(
    item: Item, instance: Mapping[str, Any] | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The task's progress counts and step records as the instance shows them now.

    Kept in the task's result when it ends, so a later task changing the same steps never rewrites its history.
    """
    return _progress(item, instance)


async def task_view(
    ports: Ports,
    item: Item,
    *,
    include_steps: bool = False,
    instances: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The task record (api.md §B.3); ``instances`` are the instance bodies already read (else read here)."""
    payload = item.payload
    timeout_s = payload.get("timeout_s")
    deadline = (
        item.started_at + timedelta(seconds=float(timeout_s)) if item.started_at and timeout_s else None
    )
    if instances is None:
        instances = await _instances(ports, [item])
    instance = instances.get(str(payload.get("stack_instance", "")))
    progress, steps = _progress(item, instance)
    recorded = item.result if item.final and isinstance(item.result, dict) else {}
    if isinstance(recorded.get("steps"), list) and isinstance(recorded.get("progress"), dict):
        progress, steps = dict(recorded["progress"]), list(recorded["steps"])  # its history, as it ended
        progress["stage"] = None
    state = _state(item)
    marker = str(instance.get("rolling_back") or "") if instance is not None else ""
    if state == "running" and marker.split(":")[0] == item.id:
        state = "rolling_back"
    view: dict[str, Any] = {
        "id": item.id,
        "kind": item.kind,
        "stack_instance": payload.get("stack_instance"),
        "state": state,
        "created_at": _time(item.created_at),
        "started_at": _time(item.started_at),
        "finished_at": _time(item.finished_at),
        "updated_at": _time(item.updated_at),
        "timeout_s": timeout_s,
        "deadline": _time(deadline),
        "source": payload.get("source", {}),
        "options": payload.get("options", {}),
        "revision_before": payload.get("revision_before"),
        "progress": progress,
        "lease_owner": item.lease_owner,
        "lease_epoch": item.lease_epoch,
        "cancel_requested": item.cancel_requested,
        "warnings": [],
        "result": item.result if item.final else None,
        "error": item.error,
    }
    if include_steps:
        view["steps"] = steps
    return view


async def get_task(
    ports: Ports, task_id: str, *, wait_s: float = 0.0, include_steps: bool = False
) -> dict[str, Any]:
    """One task; with ``wait_s`` > 0, answered when it changes (or is final) or after at most 30 s.

    Raises:
        TaskNotFound: no such task.
    """
    item = await ports.broker.get(task_id)
    if item is None or item.queue != TASKS_QUEUE:
        raise errors.TaskNotFound(f"task {task_id} not found")
    end = time.monotonic() + min(max(wait_s, 0.0), WAIT_MAX_S)
    first = await task_view(ports, item, include_steps=include_steps)
    if wait_s <= 0 or item.final:
        return first
    delay, seen = 0.01, item.updated_at
    while time.monotonic() < end:
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, POLL_S)
        current = await ports.broker.get(task_id)
        if current is None:
            break
        if current.updated_at == seen:
            continue  # steps change only in an activation, which changes the task (claim, park, end)
        seen = current.updated_at
        view = await task_view(ports, current, include_steps=include_steps)
        if current.final or view["state"] != first["state"] or view["progress"] != first["progress"]:
            return view
    return first


async def list_tasks(
    ports: Ports,
    *,
    stack_instance: str | None = None,
    state: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Tasks matching the filters, newest first."""
    items = await ports.broker.list(queue=TASKS_QUEUE)
    chosen = [
        item
        for item in reversed(items)
        if (stack_instance is None or item.payload.get("stack_instance") == stack_instance)
        and (state is None or _state(item) == state)
        and (kind is None or item.kind == kind)
    ][:limit]
    instances = await _instances(ports, chosen)
    return [await task_view(ports, item, instances=instances) for item in chosen]


async def instance_task(ports: Ports, name: str) -> dict[str, Any] | None:
    """``{id, kind, state}`` of the active or last task of instance ``name`` (lifecycle.md §4.9), or None.

    The last task is the newest revision written on behalf of a task (``POST /outputs`` writes none).
    """
    async with ports.store.transaction(readonly=True) as tx:
        try:
            page = await tx.history(doc_type="stack_instance", name=name, limit=50)
        except errors.DocumentNotFound:
            return None
    task_id = next((entry.task_id for entry in page.items if entry.task_id), None)
    item = await ports.broker.get(task_id) if task_id else None
    if item is None:
        return None
    return {"id": item.id, "kind": item.kind, "state": _state(item)}


def instance_state(body: Mapping[str, Any], task: Mapping[str, Any] | None) -> str:
    """``in_progress`` while a task is active; else ``FAILED`` if a step failed or was not run; else ``READY``."""
    if task is not None and task["state"] in ("queued", "running", "rolling_back", "cancelling"):
        return "in_progress"
    for entry in body.get("status", []):
        if entry.get("status") == "FAILED" or (
            entry.get("status") == "SKIPPED" and str(entry.get("error_message", "")).startswith("not run")
        ):
            return "FAILED"
    return "READY"
