"""Policies: compile checks on template writes and ad-hoc evaluation (api.md §B.5, lifecycle.md §3.12).

A policy template is compiled when it is written (a syntax error is a 422 with line and column, not a failure
at the first deployment), and any policy, stored or pasted, can be evaluated against an input — the
``POST /policies/evaluate`` that STACKL 0.5 promised. The engine is CPU-bound and synchronous, so calls run in a
worker thread and never block the event loop. Evaluations take any viewer's Rego, so they are rate-limited per
caller (``admit_evaluation``) and run on ``Ports.evaluation_engine``: in a server, worker processes that are
killed when a call overruns its time or memory limit.
"""

import asyncio
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from stackl import errors
from stackl.datastore.base import StoredDocument
from stackl.policy.base import Policy
from stackl.usecases.ports import Ports

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_][A-Za-z0-9_.]*)", re.MULTILINE)
_RULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The answer of ``POST /policies/evaluate``."""

    defined: bool
    result: Any
    package: str
    template_revision: int | None
    duration_ms: float


async def check_template(ports: Ports, body: Mapping[str, Any]) -> None:
    """Compile a policy template's source; raise ``PolicyError`` located at ``policy`` when it is not usable."""
    name, source = body.get("name"), body.get("policy")
    if not isinstance(name, str) or not isinstance(source, str):
        return
    try:
        await asyncio.to_thread(ports.policies.check, name, source)
    except errors.PolicyError as exc:
        raise errors.PolicyError(
            exc.message,
            policy=name,
            errors=[{"loc": ["policy"], "msg": exc.message, "type": "policy_error"}],
        ) from None


def as_policy(stored: StoredDocument) -> Policy:
    """The engine's view of a stored policy template revision."""
    outputs = stored.body.get("outputs") or []
    return Policy(
        name=stored.name,
        revision=stored.revision,
        source=str(stored.body.get("policy", "")),
        outputs=tuple(str(o) for o in outputs),
    )


async def load_template(ports: Ports, name: str, revision: int | None = None) -> Policy:
    """A stored policy template (current or a given revision) as an engine policy.

    Raises:
        DocumentNotFound, RevisionNotFound: no such template or revision.
    """
    async with ports.store.transaction(readonly=True) as tx:
        if revision is None:
            stored = await tx.get(doc_type="policy_template", name=name)
            if stored is None:
                raise errors.DocumentNotFound("policy_template", name)
            return as_policy(stored)
        entry = await tx.revision(doc_type="policy_template", name=name, revision=revision)
    if entry.body is None:
        raise errors.RevisionNotFound("policy_template", name, revision)
    return Policy(
        name=name,
        revision=entry.revision,
        source=str(entry.body.get("policy", "")),
        outputs=tuple(str(o) for o in entry.body.get("outputs") or []),
    )


def admit_evaluation(ports: Ports, caller: str) -> None:
    """Take one of ``caller``'s evaluation tokens (``Ports.evaluation_limits``), before anything is read.

    Raises:
        RateLimited: the caller has used its burst and must wait ``retry_after_s``.
    """
    limits = ports.evaluation_limits
    if limits is None:
        return
    wait_s = limits.take(caller, now=ports.clock.monotonic())
    if wait_s > 0:
        raise errors.RateLimited(
            f"too many policy evaluations by {caller}: at most {limits.burst} at once and "
            f"{limits.per_minute:g} a minute; try again in {math.ceil(wait_s)} s",
            retry_after_s=round(wait_s, 3),
        )


def _invalid(field: str, msg: str) -> errors.InvalidDocument:
    return errors.InvalidDocument(
        f"{field}: {msg}", errors=[{"loc": ["body", field], "msg": msg, "type": "value_error"}]
    )


async def evaluate(ports: Ports, request: Mapping[str, Any]) -> Evaluation:
    """Evaluate ``rule`` or ``query`` of a pasted ``policy`` or a stored ``template`` against ``input``.

    Raises:
        InvalidDocument: the request is not one of the accepted shapes (each field named).
        DocumentNotFound, RevisionNotFound: unknown template or revision.
        PolicyError: the policy does not compile, fails at evaluation or exceeds the time limit.
    """
    allowed = {"policy", "template", "revision", "rule", "query", "input", "data"}
    unknown = sorted(set(request) - allowed)
    if unknown:
        raise errors.InvalidDocument(
            f"unknown field {', '.join(unknown)}",
            errors=[{"loc": ["body", k], "msg": "unknown field", "type": "extra_forbidden"} for k in unknown],
        )
    source, template = request.get("policy"), request.get("template")
    if (source is None) == (template is None):
        raise _invalid("policy", "give either policy (Rego source) or template (a template name)")
    rule, query = request.get("rule"), request.get("query")
    if (rule is None) == (query is None):
        raise _invalid("rule", "give either rule (a rule name) or query (a Rego expression)")
    if rule is not None and (not isinstance(rule, str) or not _RULE.match(rule)):
        raise _invalid("rule", "must be a rule name such as solutions")
    if query is not None and (not isinstance(query, str) or not query.strip()):
        raise _invalid("query", "must be a non-empty Rego expression")
    input_doc = request.get("input", {})
    data = request.get("data")
    if not isinstance(input_doc, dict):
        raise _invalid("input", "must be an object")
    if data is not None and not isinstance(data, dict):
        raise _invalid("data", "must be an object")
    revision = request.get("revision")
    if revision is not None and (
        template is None or isinstance(revision, bool) or not isinstance(revision, int) or revision < 1
    ):
        raise _invalid("revision", "must be a positive revision number of the given template")

    if template is not None:
        if not isinstance(template, str):
            raise _invalid("template", "must be a template name")
        policy = await load_template(ports, template, revision)
        template_revision: int | None = policy.revision
    else:
        if not isinstance(source, str) or not source.strip():
            raise _invalid("policy", "must be Rego source text")
        match = _PACKAGE.search(source)
        if match is None:
            raise errors.PolicyError(
                "the policy declares no package",
                errors=[{"loc": ["body", "policy"], "msg": "declares no package", "type": "policy_error"}],
            )
        policy = Policy(name=match.group(1), revision=0, source=source)
        template_revision = None
    engine, timeout_s = ports.evaluation_engine, ports.policy_timeout_s  # killable processes in production
    if rule is not None:
        decision = await asyncio.to_thread(
            engine.evaluate, policy, rule, input_doc, data=data, timeout_s=timeout_s
        )
    else:
        decision = await asyncio.to_thread(
            engine.query, policy, str(query), input_doc, data=data, timeout_s=timeout_s
        )
    return Evaluation(
        defined=decision.defined,
        result=decision.value if decision.defined else None,
        package=policy.name,
        template_revision=template_revision,
        duration_ms=round(decision.duration_ms, 3),
    )
