"""Delete a stack instance: its delete plan, and the ``delete`` task that runs it (lifecycle.md §4.4).

``plan_delete`` answers ``POST /stack_instances/plan`` for a delete; ``delete`` marks the steps that will run
and writes the instance with its task in one transaction (`instances.start`). The plan itself is pure
(`step_plans.delete_groups`); this module reads the FR documents it needs and writes.
"""

import copy
from collections.abc import Mapping
from typing import Any

from stackl.broker import base as broker_base
from stackl.datastore.base import StoredDocument, Transaction
from stackl.domain import step_plans
from stackl.domain.ids import ulid
from stackl.usecases import documents as document_cases
from stackl.usecases.instances import Started, start, unique_key
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE


async def plan_delete(ports: Ports, stored: StoredDocument) -> dict[str, Any]:
    """``POST /stack_instances/plan`` for a delete: the delete plan of ``stored`` (lifecycle.md §4.4).

    Writes nothing.
    """
    frs = sorted({str(e["functional_requirement"]) for e in stored.body.get("status", [])})
    async with ports.store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=[("functional_requirement", fr) for fr in frs])
    groups = step_plans.delete_groups(stored.body, {key[1]: doc.body for key, doc in found.items()})
    return step_plans.delete_plan_answer(stored.name, stored.body, groups)


async def delete(ports: Ports, name: str, *, force: bool, subject: str, source: Mapping[str, Any]) -> Started:
    """``DELETE /stack_instances/{name}``: mark the steps, start the ``delete`` task (lifecycle.md §4.4).

    An unknown instance is an answer, not an error, as in STACKL 0.5.

    Raises:
        InstanceBusy: a task of this instance is active.
    """
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type="stack_instance", name=name)
        if stored is None:
            return Started(
                body={"result": f"Stack instance {name} can't be deleted because it does not exist"},
                task_id=None,
            )
        frs = sorted({str(e["functional_requirement"]) for e in stored.body.get("status", [])})
        found = await tx.get_many(keys=[("functional_requirement", fr) for fr in frs])
    fr_bodies = {key[1]: doc.body for key, doc in found.items()}
    groups = step_plans.delete_groups(stored.body, fr_bodies)
    task_id = ulid(ports.clock.now())
    running = {(s["service"], s["replica"], s["functional_requirement"]) for g in groups for s in g["steps"]}
    payload = {
        "stack_instance": name,
        "source": dict(source),
        "timeout_s": ports.task_timeout_s,
        "options": {"rollback": False, "force": force, "force_rerun": False},
        "staged": bool(stored.body.get("stages")),
        "groups": groups,
        "base_params": {},
        "revision_before": stored.revision,
    }
    spec = broker_base.ItemSpec(
        max_attempts=ports.task_max_attempts,
        queue=TASKS_QUEUE,
        kind="delete",
        payload=payload,
        unique_key=unique_key(name),
        id=task_id,
    )

    async def write(tx: Transaction) -> int | None:
        current = await tx.get(doc_type="stack_instance", name=name)
        if current is None:
            return None
        body = copy.deepcopy(current.body)
        for entry in body.get("status", []):
            key = (entry["service"], entry.get("replica") or 0, entry["functional_requirement"])
            if key in running:
                entry.update(status="in_progress", error_message="", action="delete", task_id=task_id)
        result = await tx.put(
            doc_type="stack_instance",
            name=name,
            body=body,
            subject=subject,
            action="status",
            if_revision=current.revision,
            references=document_cases.references(body),
            task_id=task_id,
        )
        return result.document.revision

    revision = await start(ports, name, spec, write)
    return Started(
        body={"result": f"Stack instance {name} is being deleted"}, task_id=task_id, revision=revision
    )
