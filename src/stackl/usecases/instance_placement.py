"""Placement and step plan of a stack instance, inside the request (lifecycle.md §3.1, §4.1).

``plan_create`` answers ``POST /stack_instances/plan`` for a create (api.md §B.2; ``instance_plans.plan``
picks the operation): from the resolved request (`instance_requests.resolve`) it builds the placement engine's
input, runs the engine (native constraints and Rego policies) in a worker thread, evaluates service policies
for the step plan, and answers with the placement, its explanation and the plan. It writes nothing and
consumes no counter; an infeasible placement is an answer (``feasible: false``), not an error. A create and an
update's apply phase build on `plan_sync` and on the replica bodies and step records it yields.
"""

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackl import errors
from stackl.domain import documents, parameters, plans, step_plans
from stackl.domain.configs import Stage
from stackl.domain.instances import parse_request
from stackl.placement import engine as placement
from stackl.placement.rules import service_filter
from stackl.usecases.instance_requests import OVERRIDE_POLICIES, Context, resolve
from stackl.usecases.ports import Ports


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
    frs_of = {
        alias: [
            str(fr)
            for fr in ctx.loaded.body("service", ctx.service_of[alias]).get("functional_requirements", [])
        ]
        for alias in ctx.aliases
    }
    fr_bodies = {fr: ctx.loaded.body("functional_requirement", fr) for frs in frs_of.values() for fr in frs}
    step_plan = step_plans.create_step_plan(
        groups, ctx.aliases, result.targets, ctx.capabilities, frs_of, fr_bodies, decisions
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
        "invocation": step_plans.invocation_of(fr_body, replica["cloud_provider"]),
        "outputs_spec": dict(fr_body.get("outputs", {}) or {}),
    }
