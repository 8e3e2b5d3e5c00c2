"""Updating a stack instance: merge the request, re-place, diff, and start the ``update`` task (lifecycle.md §4.3).

``update`` is ``PUT /stack_instances``; ``prepare`` is shared with ``POST /stack_instances/plan`` (an update
planned without writing). The body merges over the stored instance the STACKL 0.5 way (params and secrets
merged, ``service_params``/``service_secrets`` replaced per alias, stages replaced when non-empty, tags when
present). Placement runs again for every desired alias with the existing replicas pinned to their targets. The
plan is a **removal phase** (delete steps of removed aliases, scaled-down replicas and dropped FRs, in delete
order) and then the **apply phase** in create order, where new steps ``create`` and existing ones ``update``
only when their last run was not READY, their input hash changed, or ``force_rerun`` asks; the rest are
``unchanged`` and keep their READY status (the worker re-checks them when they come due, §4.6).
``disable_invocation`` writes the document only: a ``document_update`` task that runs no step.
"""

import asyncio
import copy
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackl import errors
from stackl.broker import base as broker_base
from stackl.datastore.base import StoredDocument, Transaction
from stackl.domain import documents, parameters, step_plans, steps
from stackl.domain.configs import Stage
from stackl.domain.ids import ulid
from stackl.domain.instances import InstanceRequest, parse_request
from stackl.usecases import documents as document_cases
from stackl.usecases import hosting, instance_placement, instance_requests, instances
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

SI = "stack_instance"
UPDATING = "Stack instance updating"


@dataclass
class Prepared:
    """An update, computed but not written: the plan answer, the new body and the task payload."""

    answer: dict[str, Any]
    body: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)
    document_only: bool = False
    hosts: hosting.HostPlan = field(default_factory=hosting.HostPlan)
    base_params: dict[str, dict[str, Any]] = field(default_factory=dict)


def _sat_aliases(sat: StoredDocument | None) -> list[str]:
    return [str(s["name"]) for s in (sat.body.get("services", []) if sat else [])]


def merged_request(
    stored: Mapping[str, Any], request: InstanceRequest, sat_aliases: list[str]
) -> InstanceRequest:
    """The stored instance with the update body merged over it (lifecycle.md §4.3), as a create-like request.

    Replicas default to each existing alias's current count; extras are the body's ``services`` when sent
    (even ``[]``), else the stored ones. Per-alias fields of aliases no longer desired are dropped.
    """
    extras = (
        [e.model_dump() for e in request.services]
        if request.services is not None
        else list(stored.get("extra_services") or [])
    )
    desired = set(sat_aliases) | {str(e["name"]) for e in extras}
    current = {alias: len(replicas) for alias, replicas in stored.get("services", {}).items()}

    def per_alias(stored_map: Mapping[str, Any], sent: Mapping[str, Any]) -> dict[str, Any]:
        return {a: v for a, v in stored_map.items() if a in desired} | dict(sent)

    data = {
        "stack_instance_name": request.stack_instance_name,
        "stack_application_template": request.stack_application_template
        or stored["stack_application_template"],
        "stack_infrastructure_template": request.stack_infrastructure_template
        or stored["stack_infrastructure_template"],
        "params": {**stored.get("instance_params", {}), **request.params},
        "secrets": {**stored.get("instance_secrets", {}), **request.secrets},
        "service_params": per_alias(stored.get("service_params", {}), request.service_params),
        "service_secrets": per_alias(stored.get("service_secrets", {}), request.service_secrets),
        "tags": request.tags if request.tags is not None else stored.get("tags") or {},
        "replicas": {a: n for a, n in current.items() if a in desired} | dict(request.replicas),
        "services": extras,
        "stages": [s.model_dump() for s in request.stages] or list(stored.get("stages") or []),
        "rollback": request.rollback,
        "force_rerun": request.force_rerun,
        "disable_invocation": request.disable_invocation,
    }
    return InstanceRequest.model_validate(data)


def _decide(
    step: dict[str, Any],
    entry: Mapping[str, Any] | None,
    record: Mapping[str, Any] | None,
    payload_hash: str | None,
    *,
    force_rerun: bool,
) -> tuple[str, str]:
    """(decision, reason) of an existing step in the apply phase."""
    if step["decision"] == "skip" or step.get("invocation") is None:
        return str(step["decision"]), str(step["reason"])
    if force_rerun:
        return "run", "force_rerun"
    if entry is None or entry.get("status") != "READY":
        return "run", "last run not READY"
    if not record or record.get("input_hash") != payload_hash:
        return "run", "inputs changed"
    return "unchanged", "inputs unchanged"


async def prepare(
    ports: Ports,
    request: InstanceRequest,
    stored: StoredDocument,
    *,
    desired: Mapping[str, Any] | None = None,
) -> Prepared:
    """Everything an update does before it writes: merge, place, plan, diff.

    ``desired`` (a restore): the body of an earlier revision or snapshot, whose desired state (templates,
    parameters, secrets, services with replicas and targets, stages, tags) replaces the current one; the
    current statuses, outputs and step records are kept and diffed against it (lifecycle.md §4.8).

    Raises:
        InvalidDocument, MissingReferences, PolicyError: as a create. PlacementFailed: no valid placement, or
        an existing replica's target is no longer a candidate (``Update impossible``). InvalidInput:
        ``disable_invocation`` with added or removed services or replicas.
    """
    name = request.stack_instance_name
    old = stored.body
    source = desired if desired is not None else old
    sat_name = request.stack_application_template or source["stack_application_template"]
    async with ports.store.transaction(readonly=True) as tx:
        sat = await tx.get(doc_type="stack_application_template", name=sat_name)
    merged = merged_request(source, request, _sat_aliases(sat))
    ctx = await instance_requests.resolve(ports, merged)
    old_services: dict[str, list[dict[str, Any]]] = old.get("services", {})
    pinned: dict[str, list[dict[str, Any]]] = source.get("services", {})
    existing = {a: [str(r["infrastructure_target"]) for r in pinned[a]] for a in ctx.aliases if a in pinned}
    stages = list(merged.stages) or [Stage.model_validate(s) for s in ctx.sat.body.get("stages", [])]
    evaluated_at = instance_placement.rfc3339_now(ports)
    planned = await asyncio.to_thread(
        instance_placement.plan_sync, ports, ctx, evaluated_at=evaluated_at, existing=existing, stages=stages
    )
    answer = planned.answer
    answer["operation"] = "update" if desired is None else "restore"
    removed_aliases = [a for a in old_services if a not in ctx.aliases]
    replica_changes = {
        a: {"from": len(old_services.get(a, [])), "to": merged.replicas.get(a, 1)}
        for a in ctx.aliases
        if len(old_services.get(a, [])) != merged.replicas.get(a, 1)
    }
    answer["changes"] = {
        "services_added": [a for a in ctx.aliases if a not in old_services],
        "services_removed": removed_aliases,
        "replicas": replica_changes,
        "params_changed": sorted(
            k
            for k in set(merged.params) | set(old.get("instance_params", {}))
            if merged.params.get(k) != old.get("instance_params", {}).get(k)
        ),
    }
    if planned.placed is None:
        return Prepared(answer=answer)
    if merged.disable_invocation and (
        answer["changes"]["services_added"] or removed_aliases or replica_changes
    ):
        problems: list[errors.ErrorItem] = []
        if answer["changes"]["services_added"] or removed_aliases:
            problems.append({"loc": ["body", "services"], "msg": "services cannot change", "type": "value"})
        if replica_changes:
            problems.append({"loc": ["body", "replicas"], "msg": "replicas cannot change", "type": "value"})
        raise errors.InvalidInput(
            "disable_invocation updates the document only: services and replicas cannot be added or removed",
            errors=problems,
        )

    # New services: kept replicas keep target, index, hosts and outputs; new ones as on create.
    services: dict[str, list[dict[str, Any]]] = {}
    base_params: dict[str, dict[str, Any]] = {}
    host_plan = hosting.HostPlan()
    outputs = old.get("instance_outputs", {})
    for alias in ctx.aliases:
        services[alias] = []
        previous = old_services.get(alias, [])
        for index, target in enumerate(planned.placed.targets.get(alias, [])):
            replica, params = instance_placement.replica_body(ctx, planned, alias, index, target)
            prior = previous[index] if index < len(previous) else None
            if prior is not None:
                replica["outputs"] = dict(prior.get("outputs") or {})
                replica["hosts"] = list(prior.get("hosts") or [])
            host_plan.add(alias, index, params, prior)
            replica["provisioning_parameters"] = parameters.dispatch_params(
                params, outputs, replica["outputs"]
            )
            services[alias].append(replica)
            base_params[f"{alias}/{index}"] = params
    removed: list[list[Any]] = []
    for alias, previous in old_services.items():
        keep = len(services.get(alias, []))
        if len(previous) > keep:
            services.setdefault(alias, []).extend(copy.deepcopy(previous[keep:]))
            removed += [[alias, i] for i in range(keep, len(previous))]

    # The plan: removal phase (stored steps not in the apply plan), then the apply phase.
    entries = {
        steps.step_id(str(e["service"]), int(e.get("replica") or 0), str(e["functional_requirement"])): e
        for e in old.get("status", [])
    }
    task_id = ulid(ports.clock.now())
    apply_groups: list[dict[str, Any]] = []
    apply_ids: set[str] = set()
    for planned_group in planned.groups:
        step_records = []
        for planned_step in planned_group.steps:
            apply_ids.add(planned_step.id)
            if planned_step.id in entries:
                planned_step = dataclasses.replace(planned_step, action="update")
            step_records.append(instance_placement.step_record(ctx, planned, planned_step, services))
        apply_groups.append({"stage": planned_group.stage, "steps": step_records})
    removal_body = {**old, "status": [e for i, e in entries.items() if i not in apply_ids]}
    removal_frs = sorted({str(e["functional_requirement"]) for e in removal_body["status"]})
    async with ports.store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=[("functional_requirement", fr) for fr in removal_frs])
    removal_groups = step_plans.delete_groups(removal_body, {k[1]: d.body for k, d in found.items()})
    groups = removal_groups + apply_groups

    body: dict[str, Any] = {
        **{
            k: copy.deepcopy(v)
            for k, v in old.items()
            if k in ("instance_outputs", "groups", "steps", "posted_outputs")
        },
        "name": name,
        "type": SI,
        "stack_infrastructure_template": ctx.sit.name,
        "stack_application_template": ctx.sat.name,
        "instance_params": dict(merged.params),
        "service_params": dict(merged.service_params),
        "instance_secrets": dict(merged.secrets),
        "service_secrets": dict(merged.service_secrets),
        "services": services,
        "stages": [stage.model_dump() for stage in stages],
        "deleted": False,
        "tags": dict(merged.tags or {}),
        "placement": answer["explanation"],
        "extra_services": [e.model_dump() for e in merged.services or []],
    }
    if host_plan.counter_names():  # host names as they would be now: the counters' current values
        async with ports.store.transaction(readonly=True) as tx:
            await hosting.fill(tx, host_plan, body, base_params, consume=False)
    else:
        await hosting.fill(None, host_plan, body, base_params, consume=False)
    records = body.get("steps") or {}
    for group in apply_groups:
        for step in group["steps"]:
            if step["action"] != "update":
                continue
            payload = steps.job_payload(
                task_id=task_id, name=name, step=step, body=body, base_params=base_params, groups=groups
            )
            digest = steps.input_hash(payload, ports.hash_key)
            step["decision"], step["reason"] = _decide(
                step, entries.get(step["id"]), records.get(step["id"]), digest, force_rerun=merged.force_rerun
            )
    answer["plan"] = [
        {"stage": g["stage"], "steps": [{k: s[k] for k in _PLAN_FIELDS} for s in g["steps"]]} for g in groups
    ]

    if merged.disable_invocation:
        body["status"] = copy.deepcopy(old.get("status", []))
        return Prepared(
            answer=answer, body=body, document_only=True, hosts=host_plan, base_params=base_params
        )
    status: list[dict[str, Any]] = []
    for group in groups:
        for step in group["steps"]:
            entry = copy.deepcopy(entries.get(step["id"]))
            if entry is None:
                status.append(step_plans.status_entry(step, task_id))
                continue
            if step["decision"] == "unchanged":
                status.append(entry)
                continue
            fresh = step_plans.status_entry(step, task_id)
            entry.update(
                status=fresh["status"],
                error_message=fresh["error_message"],
                action=step["action"],
                task_id=task_id,
            )
            status.append(entry)
    body["status"] = status
    payload = {
        "stack_instance": name,
        "timeout_s": ports.task_timeout_s,
        "options": {
            "rollback": instances.wants_rollback(ports, merged),
            "force": False,
            "force_rerun": merged.force_rerun,
        },
        "staged": bool(stages),
        "groups": groups,
        "base_params": base_params,
        "revision_before": stored.revision,
        "removed": removed,
        "removed_aliases": removed_aliases,
        "task_id": task_id,
    }
    return Prepared(answer=answer, body=body, payload=payload, hosts=host_plan, base_params=base_params)


_PLAN_FIELDS = (
    "id",
    "service",
    "replica",
    "infrastructure_target",
    "functional_requirement",
    "action",
    "tool",
    "agent",
    "decision",
    "reason",
)


async def update(
    ports: Ports,
    body: object,
    *,
    subject: str,
    source: Mapping[str, Any],
    if_revision: int | None = None,
) -> instances.Started:
    """``PUT /stack_instances``: the merged instance revision and its ``update`` task, in one transaction.

    Raises:
        InstanceNotFound: no such instance. PreconditionFailed: ``If-Match`` names another revision.
        InstanceBusy: a task of the instance is active. And everything ``prepare`` raises.
    """
    request = parse_request(body, operation="update")
    name = request.stack_instance_name
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type=SI, name=name)
    if stored is None:
        raise errors.InstanceNotFound(f"Stack instance {name} not found")
    if if_revision is not None and stored.revision != if_revision:
        raise errors.PreconditionFailed(
            f"stack instance {name} is at revision {stored.revision}, not {if_revision}",
            current_revision=stored.revision,
        )
    prepared = await prepare(ports, request, stored)
    if not prepared.body:
        raise errors.PlacementFailed(prepared.answer["detail"], explanation=prepared.answer["explanation"])
    new = documents.validate(prepared.body, doc_type=SI)
    task_id = str(prepared.payload.get("task_id") or ulid(ports.clock.now()))
    payload = prepared.payload or {"stack_instance": name, "document_only": True}
    payload["source"] = dict(source)
    spec = broker_base.ItemSpec(
        max_attempts=ports.task_max_attempts,
        queue=TASKS_QUEUE,
        kind="document_update" if prepared.document_only else "update",
        payload=payload,
        unique_key=instances.unique_key(name),
        id=task_id,
    )

    async def write(tx: Transaction) -> int:
        await hosting.fill(tx, prepared.hosts, new, prepared.base_params, consume=True)
        result = await tx.put(
            doc_type=SI,
            name=name,
            body=new,
            subject=subject,
            if_revision=stored.revision,
            references=document_cases.references(new),
            task_id=task_id,
        )
        return result.document.revision

    revision = await instances.start(ports, name, spec, write)
    return instances.Started(body=UPDATING, task_id=task_id, revision=revision)


async def plan_update(ports: Ports, body: object) -> dict[str, Any]:
    """``POST /stack_instances/plan`` for an update: the answer of ``prepare``, nothing written.

    Raises:
        InstanceNotFound: no such instance. And everything ``prepare`` raises.
    """
    request = parse_request(body, operation="update", plan=True)
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type=SI, name=request.stack_instance_name)
    if stored is None:
        raise errors.InstanceNotFound(f"Stack instance {request.stack_instance_name} not found")
    return (await prepare(ports, request, stored)).answer


RESTORING = "stack instance restored, restoring in progress"


async def restore(
    ports: Ports,
    name: str,
    desired: Mapping[str, Any],
    *,
    subject: str,
    source: Mapping[str, Any],
    restored_from: int | None,
) -> instances.Started:
    """Restore a stack instance to an earlier revision or snapshot body, and converge to it (§4.8).

    The desired state is written as a new revision (``action: restore``) with a ``restore`` task that deletes
    the steps not in it and runs the others unless unchanged.

    Raises:
        InstanceNotFound: the instance does not exist now. PlacementFailed: a restored target is no longer
        valid (or a SIT policy objects). InstanceBusy, and everything ``prepare`` raises.
    """
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type=SI, name=name)
    if stored is None:
        raise errors.InstanceNotFound(f"Stack instance {name} not found")
    request = InstanceRequest(stack_instance_name=name)
    prepared = await prepare(ports, request, stored, desired=desired)
    if not prepared.body:
        raise errors.PlacementFailed(prepared.answer["detail"], explanation=prepared.answer["explanation"])
    new = documents.validate(prepared.body, doc_type=SI)
    payload = {**prepared.payload, "source": dict(source)}
    task_id = str(payload["task_id"])
    spec = broker_base.ItemSpec(
        max_attempts=ports.task_max_attempts,
        queue=TASKS_QUEUE,
        kind="restore",
        payload=payload,
        unique_key=instances.unique_key(name),
        id=task_id,
    )

    async def write(tx: Transaction) -> int:
        await hosting.fill(tx, prepared.hosts, new, prepared.base_params, consume=True)
        result = await tx.put(
            doc_type=SI,
            name=name,
            body=new,
            subject=subject,
            action="restore",
            if_revision=stored.revision,
            references=document_cases.references(new),
            task_id=task_id,
            restored_from=restored_from,
        )
        return result.document.revision

    revision = await instances.start(ports, name, spec, write)
    return instances.Started(body={"result": RESTORING}, task_id=task_id, revision=revision)


async def restore_revision(
    ports: Ports, name: str, revision: int, *, subject: str, source: Mapping[str, Any]
) -> instances.Started:
    """``POST /documents/stack_instance/{name}/restore``: converge to revision ``revision``.

    Raises:
        DocumentNotFound, RevisionNotFound: no such revision (or a deletion). And as ``restore``.
    """
    async with ports.store.transaction(readonly=True) as tx:
        entry = await tx.revision(doc_type=SI, name=name, revision=revision)
    if entry.body is None:
        raise errors.RevisionNotFound(SI, name, revision)
    return await restore(ports, name, entry.body, subject=subject, source=source, restored_from=revision)
