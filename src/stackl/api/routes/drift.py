"""Model drift (``usecases/drift.py``): which stack instances no longer match their model.

Each report carries the update that would bring the instance back. Read-only: applying it is an explicit
``PUT /stack_instances`` of the instance.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from stackl import errors
from stackl.api.deps import PortsDep
from stackl.api.responses import respond
from stackl.usecases import drift

router = APIRouter(tags=["drift"])


@router.get("/drift")
async def list_drift(
    request: Request,
    ports: PortsDep,
    stack_instance: Annotated[
        list[str] | None, Query(description="only these instances (repeatable)")
    ] = None,
    type: Annotated[
        str | None, Query(description="with ``name``: the changed document whose dependents to check")
    ] = None,
    name: Annotated[str | None, Query(description="with ``type``: the changed document's name")] = None,
    all: Annotated[bool, Query(description="list instances without drift too")] = False,
) -> Response:
    """Re-evaluate the placement and step inputs of stack instances; list the drifted ones."""
    if (type is None) != (name is None):
        raise errors.Malformed(
            "type and name go together",
            errors=[
                {"loc": ["query", "type" if type is None else "name"], "msg": "missing", "type": "missing"}
            ],
        )
    changed = (type, name) if type is not None and name is not None else None
    reports = await drift.check_many(ports, names=stack_instance, changed=changed, include_clean=all)
    body: dict[str, Any] = {"items": reports}
    return respond(request, body)


@router.get("/stack_instances/{name}/drift")
async def get_stack_instance_drift(request: Request, ports: PortsDep, name: str) -> Response:
    """One instance's drift report (``drifted``, ``reasons`` and the proposed update ``plan``)."""
    return respond(request, await drift.check(ports, name))
