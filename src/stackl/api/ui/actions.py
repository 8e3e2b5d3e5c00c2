"""What an operator can do to a stack instance from its page: update, retry, roll back, delete.

Each action is a POST form (same-origin checked, like every UI write) that calls the use case its REST
counterpart calls, so the rules are the same (an instance busy with a task is refused with 409, a form field
that does not parse is named), then opens the page of the task it started:

- **Update parameters**: the given parameters and service parameters are merged over the instance's (as
  ``PUT /stack_instances``); only steps whose inputs changed run, or every step with "re-run every step".
- **Retry failed steps**: an update that changes nothing, so exactly the steps whose last run was not READY
  run again.
- **Roll back**: restore an earlier revision (``POST /documents/stack_instance/{name}/restore``), which
  converges the infrastructure to it (the revision before the last task, by default).
- **Delete**: the delete task; with "force", every delete step runs despite failures and the instance is
  removed (needed when some steps failed, since their delete may fail too).
"""

from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from stackl import errors
from stackl.api import problems
from stackl.api.deps import PortsDep, SubjectDep
from stackl.api.ui.common import UIRoute, read_form, same_origin
from stackl.usecases import instance_delete, updates
from stackl.usecases.instances import Started

router = APIRouter(prefix="/instances", route_class=UIRoute)

Name = Annotated[str, Path(max_length=200)]


def _source(request: Request, subject: str, operation: str) -> dict[str, Any]:
    return {
        "subject": subject,
        "request_id": problems.request_id(request),
        "operation_id": operation,
        "via": "ui",
    }


def _to_task(started: Started, name: str) -> Response:
    if started.task_id is None:  # nothing to run (a document-only change): back to the instance
        return RedirectResponse(f"/ui/instances/{quote(name, safe='')}", status_code=303)
    return RedirectResponse(f"/ui/tasks/{quote(str(started.task_id), safe='')}", status_code=303)


def _mapping(form: dict[str, str], field: str) -> dict[str, Any]:
    """A form field typed as a YAML mapping (empty: no change).

    Raises:
        InvalidInput: it does not parse, or is not a mapping (the field named).
    """
    text = form.get(field, "").strip()
    if not text:
        return {}
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise errors.InvalidInput(
            f"{field} is not valid YAML{where}",
            errors=[{"loc": ["form", field], "msg": f"not valid YAML{where}", "type": "yaml"}],
        ) from None
    if not isinstance(value, dict):
        raise errors.InvalidInput(
            f"{field} must be a mapping",
            errors=[{"loc": ["form", field], "msg": "must be a mapping of names to values", "type": "type"}],
        )
    return value


@router.post("/{name}/update", name="ui_instance_update", dependencies=[Depends(same_origin)])
async def update_instance(request: Request, ports: PortsDep, subject: SubjectDep, name: Name) -> Response:
    """Merge the given parameters over the instance's and run what changed."""
    form = await read_form(request)
    body = {
        "stack_instance_name": name,
        "params": _mapping(form, "params"),
        "service_params": _mapping(form, "service_params"),
        "force_rerun": form.get("force_rerun") == "on",
    }
    started = await updates.update(
        ports, body, subject=subject, source=_source(request, subject, "ui_instance_update")
    )
    return _to_task(started, name)


@router.post("/{name}/retry", name="ui_instance_retry", dependencies=[Depends(same_origin)])
async def retry_instance(request: Request, ports: PortsDep, subject: SubjectDep, name: Name) -> Response:
    """Run again the steps whose last run did not end READY (an update that changes nothing)."""
    started = await updates.update(
        ports,
        {"stack_instance_name": name},
        subject=subject,
        source=_source(request, subject, "ui_instance_retry"),
    )
    return _to_task(started, name)


@router.post("/{name}/rollback", name="ui_instance_rollback", dependencies=[Depends(same_origin)])
async def rollback_instance(request: Request, ports: PortsDep, subject: SubjectDep, name: Name) -> Response:
    """Converge to an earlier revision of the instance."""
    form = await read_form(request)
    raw = form.get("revision", "").strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        raise errors.InvalidInput(
            "choose the revision to roll back to",
            errors=[{"loc": ["form", "revision"], "msg": "must be a revision number", "type": "value"}],
        )
    started = await updates.restore_revision(
        ports, name, int(raw), subject=subject, source=_source(request, subject, "ui_instance_rollback")
    )
    return _to_task(started, name)


@router.post("/{name}/delete", name="ui_instance_delete", dependencies=[Depends(same_origin)])
async def delete_instance(request: Request, ports: PortsDep, subject: SubjectDep, name: Name) -> Response:
    """Run the delete task (with ``force``: despite failed steps)."""
    form = await read_form(request)
    started = await instance_delete.delete(
        ports,
        name,
        force=form.get("force") == "on",
        subject=subject,
        source=_source(request, subject, "ui_instance_delete"),
    )
    return _to_task(started, name)
