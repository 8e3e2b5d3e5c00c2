"""What a failed create or update runs to undo itself (lifecycle.md §4.5), planned from the instance's statuses.

The task runner compensates in two phases: delete steps for what the task created (``compensation``), then,
for an update, re-apply ``revision_before``'s inputs to the steps it changed and re-create what it deleted
(``reapply``; once ``revision_before`` is written back, the same steps are found again from their marks:
``marked_reapply``). Each activation of the task plans again from the stored statuses, so these are pure
functions of the plan, the instance body and the task id.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from stackl.domain.step_status import entry_key, step_key


def compensation(
    groups: Sequence[Mapping[str, Any]], body: Mapping[str, Any], task_id: str
) -> list[dict[str, Any]]:
    """Delete steps, in reverse plan order, for every step of this task that created something."""
    entries = {entry_key(e): e for e in body.get("status", [])}
    marked = body.get("rolling_back") == task_id
    out: list[dict[str, Any]] = []
    for group in reversed(groups):
        chosen = []
        for step in reversed(group["steps"]):
            entry = entries.get(step_key(step))
            if entry is None or entry.get("task_id") != task_id or step["action"] != "create":
                continue
            # Once marked, a compensation step is one whatever its state: a replay counts its failure.
            wanted = entry.get("status") == "READY" or (marked and entry.get("action") == "delete")
            if wanted:
                chosen.append({**step, "action": "delete", "decision": "run", "reason": "rollback"})
        if chosen:
            out.append({"stage": group["stage"], "steps": chosen})
    return out


def reapply(
    groups: Sequence[Mapping[str, Any]], body: Mapping[str, Any], task_id: str
) -> list[dict[str, Any]]:
    """An update's steps to converge back (lifecycle.md §4.5).

    Re-apply those it ran on existing replicas, re-create those it deleted (its removal phase), in the
    plan's create order.
    """
    entries = {entry_key(e): e for e in body.get("status", [])}
    out: list[dict[str, Any]] = []
    removals = [s for g in groups for s in g["steps"] if s["action"] == "delete"]
    recreate = [
        {**s, "action": "create", "decision": "run", "reason": "rollback"}
        for s in reversed(removals)  # delete order reversed = create order
        if step_key(s) not in entries
    ]
    if recreate:
        out.append({"stage": "rollback", "steps": recreate})
    for group in groups:
        chosen = []
        for step in group["steps"]:
            entry = entries.get(step_key(step))
            ran = (
                entry is not None
                and entry.get("task_id") == task_id
                and step["action"] == "update"
                and entry.get("status") in ("READY", "FAILED")
            )
            if ran:
                chosen.append({**step, "decision": "run", "reason": "rollback"})
        if chosen:
            out.append({"stage": group["stage"], "steps": chosen})
    return out


def marked_reapply(
    groups: Sequence[Mapping[str, Any]], body: Mapping[str, Any], task_id: str
) -> list[dict[str, Any]]:
    """In the re-apply phase: ``reapply``'s groups again, from the steps marked for this task.

    revision_before's own entries carry older task ids; the re-apply steps were marked with this one.
    """
    marked = {entry_key(e) for e in body.get("status", []) if e.get("task_id") == task_id}
    removals = [s for g in groups for s in g["steps"] if s["action"] == "delete"]
    recreate = [
        {**s, "action": "create", "decision": "run", "reason": "rollback"}
        for s in reversed(removals)
        if step_key(s) in marked
    ]
    out: list[dict[str, Any]] = [{"stage": "rollback", "steps": recreate}] if recreate else []
    for group in groups:
        chosen = [
            {**s, "decision": "run", "reason": "rollback"}
            for s in group["steps"]
            if s["action"] == "update" and step_key(s) in marked
        ]
        if chosen:
            out.append({"stage": group["stage"], "steps": chosen})
    return out
