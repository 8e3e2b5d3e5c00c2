"""Stack-instance planning: references, targets, placement and the step plan, inside the request.

``plan_create`` answers ``POST /stack_instances/plan`` for a create (api.md §B.2; ``instance_plans.plan``
picks the operation): it validates the request, loads every document it reaches in one read transaction,
computes the SIT's targets, runs the placement engine (native constraints and Rego policies) in a worker thread,
evaluates service policies for the step plan, and answers with the placement, its explanation and the plan. It
writes nothing and consumes no counter; an infeasible placement is an answer (``feasible: false``), not an
error. Create, update (``updates``, which builds on this module) and delete reuse these steps with the lifecycle
issue.
"""

import asyncio
import copy
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackl import errors
from stackl.broker import base as broker_base
from stackl.datastore.base import StoredDocument, Transaction
from stackl.domain import documents, parameters, plans, targets
from stackl.domain.configs import Stage
from stackl.domain.ids import ulid
from stackl.domain.instances import InstanceRequest, parse_request
from stackl.placement import engine as placement
from stackl.placement.rules import service_filter
from stackl.policy.base import Policy
from stackl.usecases import documents as document_cases
from stackl.usecases import hosting
from stackl.usecases import policies as policy_cases
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

OVERRIDE_POLICIES = ("orchestration", "replicas")


@dataclass
class Loaded:
    """Every document a request reaches, keyed by (type, name), and what is missing."""

    docs: dict[tuple[str, str], StoredDocument] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)

    def body(self, doc_type: str, name: str) -> dict[str, Any]:
        return self.docs[(doc_type, name)].body

    def has(self, doc_type: str, name: str) -> bool:
        return (doc_type, name) in self.docs


@dataclass(frozen=True)
class Context:
    """The resolved request: aliases in order, their services and FRs, targets and policies."""

    request: InstanceRequest
    sat: StoredDocument
    sit: StoredDocument
    aliases: list[str]
    service_of: dict[str, str]
    loaded: Loaded
    capabilities: dict[str, dict[str, Any]]
    policies: dict[str, Policy]


async def _load(ports: Ports, keys: Sequence[tuple[str, str]], loaded: Loaded) -> None:
    wanted = [k for k in dict.fromkeys(keys) if k not in loaded.docs and k not in loaded.missing]
    if not wanted:
        return
    async with ports.store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=wanted)
    loaded.docs.update(found)
    loaded.missing.extend(k for k in wanted if k not in found)


def _alias_problems(
    request: InstanceRequest, sat_aliases: list[str]
) -> tuple[list[str], list[errors.ErrorItem]]:
    """Aliases in order (SAT, then extras) and the request fields naming unknown or clashing aliases."""
    problems: list[errors.ErrorItem] = []
    aliases = list(sat_aliases)
    for index, extra in enumerate(request.services or []):
        if extra.name in aliases:
            problems.append(
                {
                    "loc": ["body", "services", index, "name"],
                    "msg": f"alias {extra.name!r} is already a service of the stack application template",
                    "type": "duplicate",
                }
            )
        else:
            aliases.append(extra.name)
    for field_name in ("service_params", "service_secrets", "replicas"):
        for alias in getattr(request, field_name):
            if alias not in aliases:
                problems.append(
                    {
                        "loc": ["body", field_name, alias],
                        "msg": f"unknown service alias {alias!r}",
                        "type": "alias",
                    }
                )
    return aliases, problems


async def resolve(ports: Ports, request: InstanceRequest) -> Context:
    """Load and check everything the request reaches.

    Raises:
        MissingReferences: every missing document at once (lifecycle.md §3.1 step 1).
        InvalidDocument: request fields naming unknown aliases.
    """
    sat_name, sit_name = request.stack_application_template, request.stack_infrastructure_template
    if sat_name is None or sit_name is None:  # parse_request requires them for a create
        raise errors.InvalidInput("a create names its stack application and infrastructure templates")
    loaded = Loaded()
    await _load(
        ports, [("stack_application_template", sat_name), ("stack_infrastructure_template", sit_name)], loaded
    )
    sat_body = (
        loaded.body("stack_application_template", sat_name)
        if loaded.has("stack_application_template", sat_name)
        else {}
    )
    sit_body = (
        loaded.body("stack_infrastructure_template", sit_name)
        if loaded.has("stack_infrastructure_template", sit_name)
        else {}
    )
    sat_services = [(str(s["name"]), str(s["service"])) for s in sat_body.get("services", [])]
    aliases, problems = _alias_problems(request, [alias for alias, _ in sat_services])
    if problems:
        raise errors.InvalidDocument(f"{'; '.join(p['msg'] for p in problems)}", errors=problems)
    service_of = dict(sat_services) | {extra.name: extra.service for extra in request.services or []}

    # Services, then their FRs and policies; the SIT's infrastructure documents; SAT policies.
    await _load(ports, [("service", s) for s in service_of.values()], loaded)
    keys: list[tuple[str, str]] = []
    for service in dict.fromkeys(service_of.values()):
        if loaded.has("service", service):
            body = loaded.body("service", service)
            keys += [("functional_requirement", fr) for fr in body.get("functional_requirements", [])]
            keys += [("policy_template", p["name"]) for p in body.get("service_policies", [])]
    for entry in sit_body.get("infrastructure_targets", []):
        keys += [(level, str(entry[level])) for level in targets.LEVELS]
    keys += [("policy_template", name) for name in sat_body.get("policies", {})]
    await _load(ports, keys, loaded)

    docs = {key: stored.body for key, stored in loaded.docs.items()}
    capabilities, _ = targets.capabilities(sit_body, docs)
    target_policies = {name for cap in capabilities.values() for name in cap.get("policies", {})}
    await _load(ports, [("policy_template", name) for name in sorted(target_policies)], loaded)
    # The 0.5 override templates are optional: their absence is no missing reference.
    async with ports.store.transaction(readonly=True) as tx:
        overrides = await tx.get_many(keys=[("policy_template", name) for name in OVERRIDE_POLICIES])
    loaded.docs.update(overrides)

    if loaded.missing:
        raise errors.MissingReferences(sorted(set(loaded.missing), key=_reference_order))
    policies = {
        name: policy_cases.as_policy(stored)
        for (doc_type, name), stored in loaded.docs.items()
        if doc_type == "policy_template"
    }
    return Context(
        request=request,
        sat=loaded.docs[("stack_application_template", sat_name)],
        sit=loaded.docs[("stack_infrastructure_template", sit_name)],
        aliases=aliases,
        service_of=service_of,
        loaded=loaded,
        capabilities=capabilities,
        policies=policies,
    )


_REFERENCE_ORDER = (
    "stack_infrastructure_template",
    "stack_application_template",
    "service",
    "functional_requirement",
    "environment",
    "location",
    "zone",
    "policy_template",
)


def _reference_order(key: tuple[str, str]) -> tuple[int, str]:
    return (_REFERENCE_ORDER.index(key[0]) if key[0] in _REFERENCE_ORDER else 99, key[1])


def placement_request(
    ctx: Context,
    *,
    evaluated_at: str,
    timeout_s: float,
    existing: Mapping[str, Sequence[str]] | None = None,
) -> placement.PlacementRequest:
    """The placement engine's input for a resolved request."""
    request, loaded = ctx.request, ctx.loaded
    services = []
    for alias in ctx.aliases:
        service = loaded.body("service", ctx.service_of[alias])
        frs = [str(fr) for fr in service.get("functional_requirements", [])]
        fr_bodies = [loaded.body("functional_requirement", fr) for fr in frs]
        services.append(
            placement.ServiceSpec(
                alias=alias,
                service=ctx.service_of[alias],
                resource_requirements=service.get("resource_requirements", {}),
                functional_requirements=frs,
                invocations={fr: body.get("invocation", {}) for fr, body in zip(frs, fr_bodies, strict=True)},
                params=parameters.service_params(
                    [body.get("params", {}) for body in fr_bodies],
                    service.get("params", {}),
                    request.params,
                    request.service_params.get(alias, {}),
                ),
            )
        )
    sat_uses = [
        placement.SatPolicyUse(policy=ctx.policies[name], attributes=attributes)
        for name, items in ctx.sat.body.get("policies", {}).items()
        for attributes in items
    ]
    return placement.PlacementRequest(
        stack_instance=request.stack_instance_name,
        services=services,
        targets=dict(ctx.capabilities),
        required_tags=request.tags or {},
        replicas=dict(request.replicas),
        sat_policies=sat_uses,
        policies=ctx.policies,
        user_parameters=request.params,
        existing=dict(existing or {}),
        overrides={name: ctx.policies[name] for name in OVERRIDE_POLICIES if name in ctx.policies},
        inputs_meta={
            "stack_infrastructure_template": {"name": ctx.sit.name, "revision": ctx.sit.revision},
            "stack_application_template": {"name": ctx.sat.name, "revision": ctx.sat.revision},
            "policy_templates": {name: policy.revision for name, policy in sorted(ctx.policies.items())},
            "required_tags": request.tags or {},
            "replicas": {alias: request.replicas.get(alias, 1) for alias in ctx.aliases},
        },
        evaluated_at=evaluated_at,
        policy_timeout_s=timeout_s,
    )


def _service_decisions(
    ports: Ports,
    ctx: Context,
    placed: Mapping[str, Sequence[str]],
    *,
    action: str,
    timeout_s: float,
) -> tuple[dict[tuple[str, int, str], tuple[str, str]], list[str]]:
    """Service policies (``filter``) per replica: which FRs are skipped, and notes (lifecycle.md §3.9)."""
    decisions: dict[tuple[str, int, str], tuple[str, str]] = {}
    notes: list[str] = []
    masked_instance = documents.mask_secrets(
        {
            "name": ctx.request.stack_instance_name,
            "type": "stack_instance",
            "stack_application_template": ctx.sat.name,
            "stack_infrastructure_template": ctx.sit.name,
            "instance_params": ctx.request.params,
            "service_params": ctx.request.service_params,
        }
    )
    for alias in ctx.aliases:
        service = ctx.loaded.body("service", ctx.service_of[alias])
        uses = service.get("service_policies", [])
        if not uses:
            continue
        frs = [str(fr) for fr in service.get("functional_requirements", [])]
        for replica, target in enumerate(placed.get(alias, ())):
            results: dict[str, Any] = {}
            for use in uses:
                policy = ctx.policies[use["name"]]
                input_doc = {
                    "inputs": use.get("inputs", {}),
                    "functional_requirements": frs,
                    "infrastructure_target": target,
                    "service": alias,
                    "action": action,
                    "stack_instance": masked_instance,
                    "replica": replica,
                    "cloud_provider": ctx.capabilities[target]["cloud_provider"],
                }
                decision = ports.policies.evaluate(policy, "filter", input_doc, timeout_s=timeout_s)
                results[policy.name] = decision.value if decision.defined else None
            run, skipped, filter_notes = service_filter(frs, results)
            notes.extend(f"{alias}[{replica}]: {note}" for note in filter_notes)
            for fr in frs:
                if fr in skipped:
                    decisions[(alias, replica, fr)] = (
                        "skip",
                        f"skipped by service policy {', '.join(skipped[fr])}",
                    )
                elif fr in run:
                    decisions[(alias, replica, fr)] = ("run", "new replica")
    return decisions, notes


@dataclass
class Planned:
    """A create's placement and step plan, with what the request needs to write the instance."""

    answer: dict[str, Any]
    placed: placement.Placement | None = None
    groups: list[plans.StepGroup] = field(default_factory=list)
    stages: list[Stage] = field(default_factory=list)
    fr_bodies: dict[str, dict[str, Any]] = field(default_factory=dict)
    frs_of: dict[str, list[str]] = field(default_factory=dict)


def plan_sync(
    ports: Ports,
    ctx: Context,
    *,
    evaluated_at: str,
    existing: Mapping[str, Sequence[str]] | None = None,
    stages: Sequence[Stage] | None = None,
) -> Planned:
    """Placement and step plan of a create (or an update's apply phase, given the ``existing`` targets).

    Runs in a worker thread (the policy engine is synchronous).
    """
    timeout_s = ports.policy_timeout_s
    request = placement_request(ctx, evaluated_at=evaluated_at, timeout_s=timeout_s, existing=existing)
    name = ctx.request.stack_instance_name
    answer: dict[str, Any] = {
        "operation": "create",
        "stack_instance": name,
        "feasible": True,
        "detail": "",
        "placement": {},
        "explanation": {},
        "changes": {
            "services_added": list(ctx.aliases),
            "services_removed": [],
            "replicas": {a: {"from": 0, "to": ctx.request.replicas.get(a, 1)} for a in ctx.aliases},
            "params_changed": [],
        },
        "plan": [],
        "warnings": [],
    }
    started, outcome = time.perf_counter(), "error"
    try:
        result = placement.place(request, ports.policies)
        outcome = "placed"
    except errors.PlacementFailed as exc:
        outcome = "infeasible"
        answer.update(feasible=False, detail=exc.message, explanation=exc.explanation)
        return Planned(answer=answer)
    finally:
        if ports.placement_observer is not None:
            ports.placement_observer(outcome, time.perf_counter() - started)
    answer["placement"] = {
        alias: {"service": ctx.service_of[alias], "targets": list(result.targets.get(alias, []))}
        for alias in ctx.aliases
    }
    answer["explanation"] = result.explanation
    if stages is None:
        stages = ctx.request.stages or [Stage.model_validate(s) for s in ctx.sat.body.get("stages", [])]
    groups = plans.stage_groups(ctx.aliases, [(s.name, s.services) for s in stages])
    decisions, notes = _service_decisions(ports, ctx, result.targets, action="create", timeout_s=timeout_s)
    replicas = {
        alias: [
            plans.ReplicaPlacement(
                target=t,
                agent=str(ctx.capabilities[t]["agent"]),
                cloud_provider=str(ctx.capabilities[t]["cloud_provider"]),
            )
            for t in result.targets.get(alias, [])
        ]
        for alias in ctx.aliases
    }
    frs_of = {
        alias: [
            str(fr)
            for fr in ctx.loaded.body("service", ctx.service_of[alias]).get("functional_requirements", [])
        ]
        for alias in ctx.aliases
    }
    fr_bodies = {fr: ctx.loaded.body("functional_requirement", fr) for frs in frs_of.values() for fr in frs}

    def tool_of(fr: str, cloud_provider: str) -> str | None:
        chosen = invocation_of(fr_bodies[fr], cloud_provider)
        return str(chosen["tool"]) if chosen is not None and chosen.get("tool") else None

    def decide(alias: str, replica: int, fr: str) -> tuple[str, str]:
        return decisions.get((alias, replica, fr), ("run", "new replica"))

    step_plan = plans.create_plan(
        groups,
        replicas,
        frs_of,
        {fr: bool(body.get("as_group", False)) for fr, body in fr_bodies.items()},
        tool_of,
        decide,
    )
    answer["plan"] = [group.view() for group in step_plan]
    answer["warnings"] = notes
    return Planned(
        answer=answer,
        placed=result,
        groups=step_plan,
        stages=list(stages),
        fr_bodies=fr_bodies,
        frs_of=frs_of,
    )


def invocation_of(fr_body: Mapping[str, Any], cloud_provider: str) -> dict[str, Any] | None:
    """The FR's invocation for ``cloud_provider``, else its ``generic`` one, else None (lifecycle.md §4.1)."""
    invocation = fr_body.get("invocation", {})
    if not isinstance(invocation, Mapping):
        return None
    chosen = invocation.get(cloud_provider) or invocation.get(targets.DEFAULT_CLOUD_PROVIDER)
    return dict(chosen) if isinstance(chosen, Mapping) else None


async def plan_create(ports: Ports, body: object) -> dict[str, Any]:
    """``POST /stack_instances/plan`` for a create: placement and step plan, nothing written.

    Raises:
        InvalidDocument: the body is invalid (fields named). MissingReferences: documents are missing.
        PolicyError: a policy failed (with the explanation so far). PolicyEngineUnavailable.
    """
    request = parse_request(body, operation="create", plan=True)
    ctx = await resolve(ports, request)
    evaluated_at = ports.clock.now().isoformat().replace("+00:00", "Z")
    planned = await asyncio.to_thread(plan_sync, ports, ctx, evaluated_at=evaluated_at)
    return planned.answer


async def plan_delete(ports: Ports, stored: StoredDocument) -> dict[str, Any]:
    """``POST /stack_instances/plan`` for a delete: the delete plan of ``stored`` (lifecycle.md §4.4).

    Writes nothing.
    """
    frs = sorted({str(e["functional_requirement"]) for e in stored.body.get("status", [])})
    async with ports.store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=[("functional_requirement", fr) for fr in frs])
    groups = delete_groups(stored.body, {key[1]: doc.body for key, doc in found.items()})
    keep = ("id", "service", "replica", "infrastructure_target", "functional_requirement", "action", "tool")
    return {
        "operation": "delete",
        "stack_instance": stored.name,
        "feasible": True,
        "detail": "",
        "placement": {},
        "explanation": {},
        "changes": {"services_added": [], "services_removed": list(stored.body.get("services", {}))},
        "plan": [
            {
                "stage": g["stage"],
                "steps": [
                    {k: s[k] for k in keep}
                    | {"agent": s["agent"], "decision": s["decision"], "reason": s["reason"]}
                    for s in g["steps"]
                ],
            }
            for g in groups
        ],
        "warnings": [],
    }


# --- create and delete (lifecycle.md §4.2, §4.4) --------------------------------------------------------
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


def rfc3339_now(ports: Ports) -> str:
    return ports.clock.now().isoformat().replace("+00:00", "Z")


def replica_body(
    ctx: Context, planned: Planned, alias: str, index: int, target: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One replica of the new instance (documents.md §9.2) and its parameters of layers 1-8.

    Host names (layer 9) are rendered in the writing transaction (`hosting.fill`).
    """
    assert planned.placed is not None  # noqa: S101 - only called for a feasible placement
    request = ctx.request
    service_name = ctx.service_of[alias]
    service = ctx.loaded.body("service", service_name)
    frs = planned.frs_of[alias]
    fr_bodies = [planned.fr_bodies[fr] for fr in frs]
    capability = ctx.capabilities[target]
    opa_outputs = dict(planned.placed.outputs.get(alias, {}).get(target, {}))
    params = parameters.replica_params(
        capability.get("provisioning_parameters"),
        [body.get("params", {}) for body in fr_bodies],
        service.get("params", {}),
        request.params,
        request.service_params.get(alias, {}),
        opa_outputs,
    )
    secrets = parameters.replica_secrets(
        capability.get("secrets"),
        [body.get("secrets", {}) for body in fr_bodies],
        service.get("secrets", {}),
        request.secrets,
        request.service_secrets.get(alias, {}),
    )
    replica = {
        "infrastructure_target": target,
        "service": service_name,
        "agent": str(capability["agent"]),
        "cloud_provider": str(capability["cloud_provider"]),
        "provisioning_parameters": params,
        "secrets": secrets,
        "hosts": [],
        "resources": dict(service.get("resource_requirements", {})),
        "tags": dict(capability.get("tags", {})),
        "opa_outputs": opa_outputs,
        "outputs": {},
    }
    return replica, params


def step_record(
    ctx: Context, planned: Planned, step: plans.PlannedStep, replicas: Mapping[str, list[dict[str, Any]]]
) -> dict[str, Any]:
    """What the task needs to run one step: the plan entry, resolved invocation and output spec."""
    replica = replicas[step.service][step.replica]
    fr_body = planned.fr_bodies[step.functional_requirement]
    return step.view() | {
        "cloud_provider": replica["cloud_provider"],
        "service_document": ctx.service_of[step.service],
        "as_group": bool(fr_body.get("as_group", False)),
        "invocation": invocation_of(fr_body, replica["cloud_provider"]),
        "outputs_spec": dict(fr_body.get("outputs", {}) or {}),
    }


def status_entry(step: Mapping[str, Any], task_id: str) -> dict[str, Any]:
    status, message = "in_progress", ""
    if step["decision"] == "skip":
        status, message = "SKIPPED", str(step["reason"])
    elif step.get("tool") is None:
        status, message = "FAILED", str(step["reason"])
    return {
        "service": step["service"],
        "functional_requirement": step["functional_requirement"],
        "infrastructure_target": step["infrastructure_target"],
        "status": status,
        "error_message": message,
        "replica": step["replica"],
        "action": step["action"],
        "task_id": task_id,
    }


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
        "status": [status_entry(step, task_id) for group in groups for step in group["steps"]],
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


def delete_groups(
    body: Mapping[str, Any], fr_bodies: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The delete plan of a stored instance: groups reversed, FRs reversed, replicas in parallel (§4.4).

    A step that never started a job (no ``job_id`` in its status) is removed without a job: decision
    ``remove``.
    """
    services: dict[str, list[dict[str, Any]]] = body.get("services", {})
    stages = [(str(s["name"]), list(s.get("services", []))) for s in body.get("stages", [])]
    groups = plans.stage_groups(list(services), stages)
    entries: dict[str, list[dict[str, Any]]] = {}
    for entry in body.get("status", []):
        entries.setdefault(str(entry["service"]), []).append(entry)
    out: list[dict[str, Any]] = []
    for stage, aliases in reversed(groups):
        steps: list[dict[str, Any]] = []
        for alias in reversed(aliases):
            replicas = services.get(alias, [])
            for entry in reversed(entries.get(alias, [])):
                index = int(entry.get("replica") or 0)
                replica = replicas[index] if index < len(replicas) else (replicas[0] if replicas else {})
                fr = str(entry["functional_requirement"])
                fr_body = fr_bodies.get(fr)
                cloud_provider = str(replica.get("cloud_provider", targets.DEFAULT_CLOUD_PROVIDER))
                invocation = invocation_of(fr_body, cloud_provider) if fr_body is not None else None
                started = bool(entry.get("job_id")) or entry.get("status") == "READY"
                decision, reason = ("run", "delete") if started else ("remove", "no job ever started")
                if decision == "run" and invocation is None:
                    reason = (
                        f"functional requirement {fr} not found"
                        if fr_body is None
                        else f"no invocation for cloud provider {cloud_provider}"
                    )
                steps.append(
                    {
                        "id": f"{alias}/{index}/{fr}",
                        "service": alias,
                        "replica": index,
                        "infrastructure_target": entry["infrastructure_target"],
                        "functional_requirement": fr,
                        "action": "delete",
                        "tool": str(invocation["tool"]) if invocation else None,
                        "agent": str(replica.get("agent", targets.DEFAULT_AGENT)),
                        "decision": decision,
                        "reason": reason,
                        "cloud_provider": cloud_provider,
                        "service_document": str(replica.get("service", "")),
                        "as_group": "," in str(entry["infrastructure_target"]),
                        "invocation": invocation,
                        "outputs_spec": {},
                    }
                )
        if steps:
            out.append({"stage": stage, "steps": steps})
    return out


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
    groups = delete_groups(stored.body, fr_bodies)
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
