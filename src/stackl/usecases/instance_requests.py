"""Resolve a create request: load every document it reaches and check it names them all (lifecycle.md §3.1).

A create (and an update's apply phase, and a plan) starts from the request and the documents it reaches: the
SAT and SIT, their services, FRs, targets and policy templates. ``resolve`` loads them in read transactions,
checks the request's aliases against the SAT, reports every missing reference at once, and answers a
`Context` the placement and the step plan are computed from. It writes nothing.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from stackl import errors
from stackl.datastore.base import StoredDocument
from stackl.domain import targets
from stackl.domain.instances import InstanceRequest, alias_problems, reference_order
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
    aliases, problems = alias_problems(request, [alias for alias, _ in sat_services])
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
        raise errors.MissingReferences(sorted(set(loaded.missing), key=reference_order))
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
