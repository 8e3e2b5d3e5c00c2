"""STACKL 0.5 ``/stack_instances`` and ``/outputs`` (api.md §A.8, §A.9).

Reads answer the 0.5 view (secrets masked, no ``state``/``task``/``placement``). A create or delete answers the
0.5 body with ``Location: /tasks/{id}`` and ``Stackl-Task-Id``; with ``Prefer: respond-async`` it answers 202
with the task. An update (PUT) answers ``"Stack instance updating"``; ``If-Match`` guards it.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from stackl import errors
from stackl.api import bodies
from stackl.api.deps import IfMatchDep, PortsDep, SettingsDep, SubjectDep
from stackl.api.problems import request_id
from stackl.api.responses import respond
from stackl.schemas import legacy
from stackl.usecases import documents as document_cases
from stackl.usecases import (
    instance_create,
    instance_delete,
    instance_outputs,
    instances,
    task_queries,
    updates,
)
from stackl.usecases.ports import Ports

router = APIRouter(tags=["stack instances"])

BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "object"}},
        },
    }
}


def _source(request: Request, subject: str, operation_id: str) -> dict[str, Any]:
    via = "cli" if "stackl" in request.headers.get("user-agent", "").lower() else "api"
    return {"subject": subject, "request_id": request_id(request), "operation_id": operation_id, "via": via}


async def _started(request: Request, ports: Ports, started: instances.Started) -> Response:
    if started.task_id is None:
        return respond(request, started.body)
    headers = {"Location": f"/tasks/{started.task_id}", "Stackl-Task-Id": started.task_id}
    if "respond-async" in request.headers.get("prefer", ""):
        task = await task_queries.get_task(ports, started.task_id)
        return respond(request, task, status=202, headers=headers, revision=started.revision)
    return respond(request, started.body, headers=headers, revision=started.revision)


@router.get("/stack_instances", name="get_stack_instances")
async def get_stack_instances(
    request: Request,
    ports: PortsDep,
    name: Annotated[str | None, Query(description="only names containing this (case-sensitive)")] = None,
) -> Response:
    """Every stack instance (0.5 view); ``name`` filters by substring."""
    items = await document_cases.list_all(ports, "stack_instance", name_contains=name)
    return respond(request, [legacy.to_legacy(d.body) for d in items])


@router.get("/stack_instances/{name}", name="get_stack_instance")
async def get_stack_instance(request: Request, ports: PortsDep, name: str) -> Response:
    """One stack instance (0.5 view)."""
    try:
        stored = await document_cases.get(ports, "stack_instance", name)
    except errors.DocumentNotFound as exc:
        raise errors.InstanceNotFound("Stack instance not found") from exc
    return respond(request, legacy.to_legacy(stored.body), revision=stored.revision)


@router.post("/stack_instances", name="post_stack_instance", openapi_extra=BODY)
async def post_stack_instance(
    request: Request, ports: PortsDep, settings: SettingsDep, subject: SubjectDep
) -> Response:
    """Create a stack instance: the placement map, and the task in ``Location``."""
    body = await bodies.read_document(request, limit=settings.server.max_body_bytes)
    started = await instance_create.create(
        ports, body, subject=subject, source=_source(request, subject, "post_stack_instance")
    )
    return await _started(request, ports, started)


@router.put("/stack_instances", name="put_stack_instance", openapi_extra=BODY)
async def put_stack_instance(
    request: Request, ports: PortsDep, settings: SettingsDep, subject: SubjectDep, if_revision: IfMatchDep
) -> Response:
    """Update a stack instance: merge, re-place, and run only the steps whose inputs changed."""
    body = await bodies.read_document(request, limit=settings.server.max_body_bytes)
    started = await updates.update(
        ports,
        body,
        subject=subject,
        source=_source(request, subject, "put_stack_instance"),
        if_revision=if_revision,
    )
    return await _started(request, ports, started)


@router.delete("/stack_instances/{name}", name="delete_stack_instance")
async def delete_stack_instance(
    request: Request,
    ports: PortsDep,
    subject: SubjectDep,
    name: str,
    force: Annotated[bool, Query(description="run every delete step despite failures, then remove")] = False,
) -> Response:
    """Delete a stack instance: its delete steps run as a task, then the document is removed."""
    started = await instance_delete.delete(
        ports, name, force=force, subject=subject, source=_source(request, subject, "delete_stack_instance")
    )
    return await _started(request, ports, started)


@router.post("/outputs", name="add_outputs", openapi_extra=BODY, tags=["outputs"])
async def add_outputs(
    request: Request, ports: PortsDep, settings: SettingsDep, subject: SubjectDep
) -> Response:
    """Merge outputs into an instance and one replica (lifecycle.md §4.6); allowed while a task runs."""
    body = await bodies.read_document(request, limit=settings.server.max_body_bytes)
    stored = await instance_outputs.add_outputs(ports, body, subject=subject)
    return respond(request, legacy.to_legacy(stored.body), revision=stored.revision)
