"""Ad-hoc policy evaluation (api.md §B.5): what STACKL 0.5 promised and never shipped.

``POST /policies/evaluate`` runs a rule or a query of a pasted Rego source or a stored template (any revision)
against an input, in the same embedded engine and with the same 0.5 compatibility as placement uses, so a
policy author can try a template before a deployment depends on it.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from stackl import errors
from stackl.api import bodies
from stackl.api.deps import CallerDep, PortsDep, SettingsDep
from stackl.api.responses import respond
from stackl.usecases import policies as policy_cases

router = APIRouter(prefix="/policies", tags=["policies"])

EVALUATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "policy": {"type": "string", "description": "Rego source (or template)"},
                        "template": {"type": "string", "description": "a policy template name (or policy)"},
                        "revision": {"type": "integer", "minimum": 1},
                        "rule": {"type": "string", "description": "rule of the policy's package (or query)"},
                        "query": {"type": "string", "description": "a Rego expression (or rule)"},
                        "input": {"type": "object"},
                        "data": {"type": "object"},
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}


@router.post(
    "/evaluate",
    openapi_extra=EVALUATE_BODY,
    responses={429: {"description": "too many evaluations by this caller; see Retry-After"}},
)
async def evaluate_policy(
    request: Request, ports: PortsDep, settings: SettingsDep, caller: CallerDep
) -> Response:
    """Evaluate a rule or query of a policy (pasted or stored) against an input.

    Each subject may make ``STACKL_POLICY__EVALUATION_BURST`` calls at once and
    ``STACKL_POLICY__EVALUATIONS_PER_MINUTE`` a minute; beyond, 429 with ``Retry-After``.
    """
    policy_cases.admit_evaluation(ports, caller.name)  # before the body is read: a refusal costs nothing
    body = await bodies.read_document(request, limit=settings.server.max_body_bytes)
    if not isinstance(body, dict):
        raise errors.InvalidDocument(
            "the body must be an object",
            errors=[{"loc": ["body"], "msg": "must be an object", "type": "type"}],
        )
    result = await policy_cases.evaluate(ports, body)
    return respond(
        request,
        {
            "defined": result.defined,
            "result": result.result,
            "package": result.package,
            "template_revision": result.template_revision,
            "duration_ms": result.duration_ms,
        },
    )
