"""STACKL 0.5 ``/snapshots`` (api.md §A.10): named copies of a document revision, and their restore.

The two ``/snapshots/restore/…`` routes are declared first so they win over ``/snapshots/{type_name}/{name}``.
"""

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from stackl import errors
from stackl.api import bodies
from stackl.api.deps import PortsDep, SettingsDep, SubjectDep
from stackl.api.legacy.common import respond_result
from stackl.api.responses import respond
from stackl.domain import revisions
from stackl.domain.stored import StoredDocument
from stackl.schemas import legacy
from stackl.usecases import documents as document_cases
from stackl.usecases import snapshots as snapshot_cases
from stackl.usecases import updates
from stackl.usecases.ports import Ports

router = APIRouter(prefix="/snapshots", tags=["snapshots"])

CREATE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": False,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "description": {"type": "string"},
                        "revision": {"type": "integer", "minimum": 1},
                    },
                    "additionalProperties": False,
                }
            }
        },
    }
}


@router.post("/restore/{name}")
async def restore_snapshot(ports: PortsDep, subject: SubjectDep, name: str) -> Response:
    """Write the snapshot's copy back as a new revision of its source document.

    A stack instance's snapshot starts a ``restore`` task converging the infrastructure to it.
    """
    snap = await _instance_snapshot(ports, name)
    if snap is not None:
        started = await updates.restore(
            ports,
            str(snap.body["source"]["name"]),
            snap.body["snapshot"],
            subject=subject,
            source={"subject": subject, "via": "restore"},
            restored_from=snap.body["source"].get("revision"),
        )
        headers = {"Location": f"/tasks/{started.task_id}", "Stackl-Task-Id": str(started.task_id)}
        return respond_result(updates.RESTORING, headers=headers)
    snap, _ = await snapshot_cases.restore(ports, name, subject=subject)
    return respond_result(f"snapshot {snap.name} restored")


async def _instance_snapshot(ports: Ports, name: str) -> StoredDocument | None:
    """The snapshot ``name`` when it copies a stack instance (whose restore is a task), else None."""
    try:
        snap = await document_cases.get(ports, "snapshot", name)
    except errors.DocumentNotFound:
        return None
    return snap if snap.body.get("source", {}).get("type") == "stack_instance" else None


@router.post("/restore/{type_name}/{name}")
async def restore_latest_snapshot(
    request: Request, ports: PortsDep, subject: SubjectDep, type_name: str, name: str
) -> Response:
    """Restore the newest snapshot of a document; answers with that snapshot."""
    latest = await snapshot_cases.latest_of(ports, type_name, name)
    if type_name == "stack_instance":
        started = await updates.restore(
            ports,
            name,
            latest.body["snapshot"],
            subject=subject,
            source={"subject": subject, "via": "restore"},
            restored_from=latest.body["source"].get("revision"),
        )
        headers = {"Location": f"/tasks/{started.task_id}", "Stackl-Task-Id": str(started.task_id)}
        return respond(request, legacy.to_legacy(latest.body), revision=latest.revision, headers=headers)
    snap, _ = await snapshot_cases.restore(ports, latest.name, subject=subject)
    return respond(request, legacy.to_legacy(snap.body), revision=snap.revision)


def _options(body: Any) -> dict[str, Any]:
    if body is None:
        return {}
    problems: list[errors.ErrorItem] = []
    if not isinstance(body, dict):
        raise errors.InvalidDocument(errors=[{"loc": ["body"], "msg": "must be an object", "type": "object"}])
    for key in body:
        if key not in ("name", "description", "revision"):
            problems.append({"loc": ["body", key], "msg": "unknown field", "type": "extra_forbidden"})
    for key in ("name", "description"):
        if body.get(key) is not None and not isinstance(body[key], str):
            problems.append({"loc": ["body", key], "msg": "must be a string", "type": "string"})
    rev = body.get("revision")
    if rev is not None and (
        not isinstance(rev, int) or isinstance(rev, bool) or not 1 <= rev <= revisions.MAX_REVISION
    ):
        problems.append({"loc": ["body", "revision"], "msg": "must be a revision number", "type": "int"})
    if problems:
        raise errors.InvalidDocument(errors=problems)
    return body


@router.post("/{type_name}/{name}", openapi_extra=CREATE_BODY)
async def create_snapshot(
    request: Request, ports: PortsDep, settings: SettingsDep, subject: SubjectDep, type_name: str, name: str
) -> Response:
    """Copy the current (or a given) revision of a document into a new, immutable snapshot."""
    options = _options(
        await bodies.read_document(request, limit=settings.server.max_body_bytes, optional=True)
    )
    snap = await snapshot_cases.create(
        ports,
        type_name,
        name,
        subject=subject,
        snapshot_name=options.get("name"),
        description=options.get("description"),
        revision=options.get("revision"),
    )
    return respond(
        request,
        legacy.to_legacy(snap.body),
        revision=snap.revision,
        headers={"Location": f"/snapshots/{snap.name}"},
    )


@router.get("/{name}")
async def get_snapshot(request: Request, ports: PortsDep, name: str) -> Response:
    """One snapshot."""
    snap = await snapshot_cases.get(ports, name)
    return respond(request, legacy.to_legacy(snap.body), revision=snap.revision)


@router.get("/{type_name}/{name}")
async def get_snapshots(request: Request, ports: PortsDep, type_name: str, name: str) -> Response:
    """The snapshots of one document (exact type and name), newest first."""
    snaps = await snapshot_cases.of_document(ports, type_name, name)
    return respond(request, [legacy.to_legacy(s.body) for s in snaps])


@router.delete("/{name}")
async def delete_snapshot(ports: PortsDep, subject: SubjectDep, name: str) -> Response:
    """Delete a snapshot."""
    await snapshot_cases.delete(ports, name, subject=subject)
    return respond_result(f"deleted snapshot {name}")
