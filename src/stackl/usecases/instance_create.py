"""Create a stack instance: validate, place, plan, then write it and its ``create`` task at once (lifecycle.md §4.2).

The request is resolved (`instance_requests`) and placed (`instance_placement`) before anything is written; the
instance document, its first status entries and the task payload are then built, host names rendered from the
shared counters, and the instance written with its task in one transaction (`instances.start`).
"""

import asyncio
from collections.abc import Mapping
from typing import Any

from stackl import errors
from stackl.broker import base as broker_base
from stackl.datastore.base import Transaction
from stackl.domain import documents, step_plans
from stackl.domain.ids import ulid
from stackl.domain.instances import parse_request
from stackl.usecases import documents as document_cases
from stackl.usecases import hosting
from stackl.usecases.instance_placement import plan_sync, replica_body, rfc3339_now, step_record
from stackl.usecases.instance_requests import resolve
from stackl.usecases.instances import Started, start, unique_key, wants_rollback
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE


async def create(ports: Ports, body: object, *, subject: str, source: Mapping[str, Any]) -> Started:
    """``POST /stack_instances``: validate, place, plan, write the instance and its ``create`` task at once.

    Raises:
        InvalidDocument, MissingReferences, PolicyError: as ``plan``. InstanceExists: the name is taken.
        PlacementFailed: no valid placement (with its explanation). InstanceBusy: a task of that name is active.
    """
    request = parse_request(body, operation="create")
    name = request.stack_instance_name
    async with ports.store.transaction(readonly=True) as tx:
        if await tx.get(doc_type="stack_instance", name=name) is not None:
            raise errors.InstanceExists("Stack instance already exists")
    ctx = await resolve(ports, request)
    evaluated_at = rfc3339_now(ports)
    planned = await asyncio.to_thread(plan_sync, ports, ctx, evaluated_at=evaluated_at)
    if planned.placed is None:
        raise errors.PlacementFailed(planned.answer["detail"], explanation=planned.answer["explanation"])
    task_id = ulid(ports.clock.now())
    services: dict[str, list[dict[str, Any]]] = {}
    base_params: dict[str, dict[str, Any]] = {}
    host_plan = hosting.HostPlan()
    for alias in ctx.aliases:
        services[alias] = []
        for index, target in enumerate(planned.placed.targets.get(alias, [])):
            replica, params = replica_body(ctx, planned, alias, index, target)
            services[alias].append(replica)
            base_params[f"{alias}/{index}"] = params
            host_plan.add(alias, index, params)
    groups: list[dict[str, Any]] = [
        {"stage": group.stage, "steps": [step_record(ctx, planned, step, services) for step in group.steps]}
        for group in planned.groups
    ]
    instance = {
        "name": name,
        "type": "stack_instance",
        "stack_infrastructure_template": ctx.sit.name,
        "stack_application_template": ctx.sat.name,
        "instance_params": dict(request.params),
        "service_params": dict(request.service_params),
        "instance_secrets": dict(request.secrets),
        "service_secrets": dict(request.service_secrets),
        "instance_outputs": {},
        "services": services,
        "groups": {},
        "status": [step_plans.status_entry(step, task_id) for group in groups for step in group["steps"]],
        "stages": [stage.model_dump() for stage in planned.stages],
        "deleted": False,
        "tags": dict(request.tags or {}),
        "placement": planned.answer["explanation"],
        "extra_services": [extra.model_dump() for extra in request.services or []],
    }
    instance = documents.validate(instance, doc_type="stack_instance")
    payload = {
        "stack_instance": name,
        "source": dict(source),
        "timeout_s": ports.task_timeout_s,
        "options": {"rollback": wants_rollback(ports, request), "force": False, "force_rerun": False},
        "staged": bool(planned.stages),
        "groups": groups,
        "base_params": base_params,
        "revision_before": None,
    }
    spec = broker_base.ItemSpec(
        max_attempts=ports.task_max_attempts,
        queue=TASKS_QUEUE,
        kind="create",
        payload=payload,
        unique_key=unique_key(name),
        id=task_id,
    )

    async def write(tx: Transaction) -> int:
        # Host names use shared counters: rendered here, in the transaction that advances them. The task's
        # payload holds ``base_params`` itself, so it is enqueued with the replicas' machine_names.
        await hosting.fill(tx, host_plan, instance, base_params, consume=True)
        result = await tx.put(
            doc_type="stack_instance",
            name=name,
            body=instance,
            subject=subject,
            create_only=True,
            references=document_cases.references(instance),
            task_id=task_id,
        )
        return result.document.revision

    revision = await start(ports, name, spec, write)
    return Started(body=planned.answer["placement"], task_id=task_id, revision=revision)
