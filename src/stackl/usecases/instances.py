"""Stack-instance planning: references, targets, placement and the step plan, inside the request.

``plan`` is ``POST /stack_instances/plan`` (api.md §B.2): it validates the request, loads every document it
reaches in one read transaction, computes the SIT's targets, runs the placement engine (native constraints and
Rego policies) in a worker thread, evaluates service policies for the step plan, and answers with the placement,
its explanation and the plan. It writes nothing and consumes no counter; an infeasible placement is an answer
(``feasible: false``), not an error. Create, update and delete reuse these steps with the lifecycle issue.
"""

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackl import errors
from stackl.datastore.base import StoredDocument
from stackl.domain import documents, parameters, plans, targets
from stackl.domain.configs import Stage
from stackl.domain.instances import InstanceRequest, parse_request
from stackl.placement import engine as placement
from stackl.placement.rules import service_filter
from stackl.policy.base import Policy
from stackl.usecases import policies as policy_cases
from stackl.usecases.ports import Ports

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


def placement_request(ctx: Context, *, evaluated_at: str, timeout_s: float) -> placement.PlacementRequest:
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


def _plan_sync(ports: Ports, ctx: Context, *, evaluated_at: str) -> dict[str, Any]:
    """Placement and step plan of a create; runs in a worker thread (the policy engine is synchronous)."""
    timeout_s = ports.policy_timeout_s
    request = placement_request(ctx, evaluated_at=evaluated_at, timeout_s=timeout_s)
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
    try:
        result = placement.place(request, ports.policies)
    except errors.PlacementFailed as exc:
        answer.update(feasible=False, detail=exc.message, explanation=exc.explanation)
        return answer
    answer["placement"] = {
        alias: {"service": ctx.service_of[alias], "targets": list(result.targets.get(alias, []))}
        for alias in ctx.aliases
    }
    answer["explanation"] = result.explanation
    stages = ctx.request.stages or [Stage.model_validate(stage) for stage in ctx.sat.body.get("stages", [])]
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
        invocation = fr_bodies[fr].get("invocation", {})
        chosen = invocation.get(cloud_provider) or invocation.get(targets.DEFAULT_CLOUD_PROVIDER)
        return str(chosen["tool"]) if isinstance(chosen, dict) and chosen.get("tool") else None

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
    return answer


async def plan(ports: Ports, body: object) -> dict[str, Any]:
    """``POST /stack_instances/plan``.

    Raises:
        InvalidDocument: the body is invalid (fields named). MissingReferences: documents are missing.
        InstanceNotFound: update or delete of an instance that does not exist.
        PolicyError: a policy failed (with the explanation so far). PolicyEngineUnavailable.
    """
    request = parse_request(body, plan=True)
    operation = request.operation
    async with ports.store.transaction(readonly=True) as tx:
        existing = await tx.get(doc_type="stack_instance", name=request.stack_instance_name)
    if operation is None:
        operation = "create" if existing is None else "update"
    if operation != "create":
        if existing is None:
            raise errors.InstanceNotFound(f"Stack instance {request.stack_instance_name} not found")
        raise errors.InvalidInput(
            f"planning an {operation} needs the stack-instance lifecycle, which this server does not run yet"
        )
    if existing is not None:
        raise errors.InvalidInput("Stack instance already exists")
    request = parse_request(body, operation="create", plan=True)
    ctx = await resolve(ports, request)
    evaluated_at = ports.clock.now().isoformat().replace("+00:00", "Z")
    return await asyncio.to_thread(_plan_sync, ports, ctx, evaluated_at=evaluated_at)
