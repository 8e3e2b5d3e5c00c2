"""Stack-instance routes of the new API (api.md §B.2); the 0.5 paths live in ``api/legacy``.

``POST /stack_instances/plan`` is a separate path rather than a ``?dry_run`` flag on the 0.5 create: the plan has
its own response shape, a misspelt flag on a mutating endpoint would deploy for real, and planning needs only the
viewer role.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from stackl.api import bodies
from stackl.api.deps import PortsDep, SettingsDep
from stackl.api.responses import respond
from stackl.usecases import instance_plans

router = APIRouter(prefix="/stack_instances", tags=["stack instances"])

PLAN_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["stack_instance_name"],
                    "properties": {
                        "stack_instance_name": {"type": "string"},
                        "operation": {"type": "string", "enum": ["create", "update", "delete"]},
                        "stack_infrastructure_template": {"type": "string"},
                        "stack_application_template": {"type": "string"},
                        "params": {"type": "object"},
                        "secrets": {"type": "object"},
                        "service_params": {"type": "object"},
                        "service_secrets": {"type": "object"},
                        "tags": {"type": "object"},
                        "replicas": {
                            "type": "object",
                            "additionalProperties": {"type": "integer", "minimum": 0},
                        },
                        "services": {"type": "array", "items": {"type": "object"}},
                        "stages": {"type": "array", "items": {"type": "object"}},
                    },
                }
            },
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}


@router.post("/plan", openapi_extra=PLAN_BODY)
async def plan_stack_instance(request: Request, ports: PortsDep, settings: SettingsDep) -> Response:
    """Placement, its explanation and the step plan of a create; nothing is written."""
    body = await bodies.read_document(request, limit=settings.server.max_body_bytes)
    return respond(request, await instance_plans.plan(ports, body))
