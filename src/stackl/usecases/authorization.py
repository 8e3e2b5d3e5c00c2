"""Authorization: every request is decided by the Rego rule ``allow`` of the ``authorization`` policy.

The policy is the shipped default (``policy/defaults/authorization.rego``: roles → actions, spec/api.md §B.8)
unless a policy template named ``authorization`` exists, which then replaces it. It runs on the authorization
engine (``Ports.authz_engine``): the same kind of engine as placement, but with threads of its own, so
decisions never queue behind users' policy evaluations or placements, however long those overrun. An optional
set rule ``reasons`` becomes the 403's ``reasons``.

Instance operations carry ``environments``: the environments of the targets the instance occupies, and for
create and update also those it will occupy (the placement of a plan of the request). Only a user policy can
look at them (the default does not), so the plan is made only when a user policy exists.

Two safety rules hold whatever a user policy says: an evaluation that fails denies (fail closed), and an admin
may always read, replace or delete the ``authorization`` template itself, so a bad policy cannot lock every
admin out.
"""

import asyncio
import functools
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

import structlog

from stackl import errors
from stackl.domain import auth
from stackl.domain.auth import AccessRequest, Role
from stackl.policy.base import Policy, PolicyEngine
from stackl.usecases.policies import as_policy
from stackl.usecases.ports import Ports

POLICY_NAME = "authorization"
TEMPLATE_TYPE = "policy_template"
log = structlog.get_logger(__name__)


@functools.cache
def default_policy() -> Policy:
    """The shipped policy (revision 0; a user template has revision ≥ 1)."""
    source = (resources.files("stackl.policy") / "defaults" / f"{POLICY_NAME}.rego").read_text("utf-8")
    return Policy(name=POLICY_NAME, revision=0, source=source)


async def current_policy(ports: Ports) -> tuple[Policy, bool]:
    """The policy in force and whether it is a user template."""
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type=TEMPLATE_TYPE, name=POLICY_NAME)
    if stored is None:
        return default_policy(), False
    return as_policy(stored), True


def _always_allowed(request: AccessRequest) -> bool:
    return (
        Role.admin in request.subject.roles
        and request.resource.type == TEMPLATE_TYPE
        and request.resource.name == POLICY_NAME
    )


def _decide_all(
    engine: PolicyEngine, policy: Policy, inputs: Sequence[Mapping[str, Any]], timeout_s: float
) -> list[tuple[bool, list[str]]]:
    """Evaluate ``allow`` (and on a refusal ``reasons``) for each input, in one worker thread."""
    answers: list[tuple[bool, list[str]]] = []
    for input_doc in inputs:
        try:
            allowed = engine.evaluate(policy, "allow", input_doc, timeout_s=timeout_s)
            if allowed.defined and allowed.value is True:
                answers.append((True, []))
                continue
            found = engine.evaluate(policy, "reasons", input_doc, timeout_s=timeout_s)
        except errors.PolicyError as exc:
            answers.append((False, [f"the authorization policy failed: {exc.message}"]))
            continue
        reasons = found.value if found.defined and isinstance(found.value, list) else []
        answers.append((False, sorted(str(r) for r in reasons)))
    return answers


async def authorize(ports: Ports, requests: Sequence[AccessRequest], *, policy: Policy | None = None) -> None:
    """Decide each request; all must be allowed.

    Raises:
        Forbidden: one was refused (its ``reasons``, or a generic one).
        PolicyEngineUnavailable: the engine cannot serve.
    """
    pending = [r for r in requests if not _always_allowed(r)]
    if not pending:
        return
    if policy is None:
        policy, _ = await current_policy(ports)
    inputs = [auth.policy_input(r) for r in pending]
    answers = await asyncio.to_thread(_decide_all, ports.authz_engine, policy, inputs, ports.policy_timeout_s)
    for request, (allowed, reasons) in zip(pending, answers, strict=True):
        if not allowed:
            what = f"{request.resource.type} {request.resource.name}".strip()
            raise errors.Forbidden(
                f"{request.subject.name} may not {request.action.value} {what}",
                reasons=reasons or [f"denied by the {POLICY_NAME} policy"],
            )


def environments_of(body: Mapping[str, Any] | None) -> set[str]:
    """The environments of the targets a stored stack instance occupies."""
    found: set[str] = set()
    services = (body or {}).get("services")
    if not isinstance(services, Mapping):
        return found
    for replicas in services.values():
        for replica in replicas if isinstance(replicas, list) else []:
            target = replica.get("infrastructure_target") if isinstance(replica, Mapping) else None
            if isinstance(target, str) and target:
                found.add(auth.environment_of(target))
    return found


def _planned_targets(answer: Mapping[str, Any]) -> Iterable[str]:
    placement = answer.get("placement")
    for entry in placement.values() if isinstance(placement, Mapping) else []:
        targets = entry.get("targets") if isinstance(entry, Mapping) else None
        yield from (t for t in targets or [] if isinstance(t, str))


async def instance_environments(ports: Ports, name: str, body: object | None = None) -> tuple[str, ...]:
    """The environments an instance operation touches: where it is now, and where ``body`` would place it.

    ``body`` is a create or update request; an invalid one contributes nothing (the operation itself will
    refuse it with the right error).
    """
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type="stack_instance", name=name) if name else None
    found = environments_of(stored.body if stored is not None else None)
    if body is not None:
        from stackl.usecases import instance_plans  # here: planning is heavy and rarely needed

        try:
            answer = await instance_plans.plan(ports, body)
        except errors.StacklError as exc:
            log.debug("authorization_plan_failed", error=exc.message)
        else:
            found.update(auth.environment_of(t) for t in _planned_targets(answer))
    return tuple(sorted(found))


async def authorize_placement(ports: Ports, request: AccessRequest, targets: Iterable[str]) -> None:
    """The second decision of a create or update, once the placement is known (for use cases that place).

    Raises:
        Forbidden: refused for the environments of ``targets``.
    """
    policy, custom = await current_policy(ports)
    if not custom:
        return
    environments = set(request.environments) | {auth.environment_of(t) for t in targets}
    await authorize(
        ports,
        [
            AccessRequest(
                subject=request.subject,
                method=request.method,
                path=request.path,
                action=request.action,
                resource=request.resource,
                environments=tuple(sorted(environments)),
                extra=request.extra,
            )
        ],
        policy=policy,
    )
