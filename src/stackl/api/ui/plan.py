"""The plan page: pick a SAT, a SIT and parameters, see the placement and the step plan, then deploy.

One form serves both steps: "Plan" posts it to ``/ui/plan`` (``instance_plans.plan``: nothing is written), and
once a feasible plan is shown, "Deploy" posts the same fields to ``/ui/plan/deploy`` (``instance_create.create``),
which redirects to the new instance's page. Parameters are typed as YAML mappings.
"""

from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import RedirectResponse, Response

from stackl import errors
from stackl.api import problems
from stackl.api.deps import PortsDep, SubjectDep
from stackl.api.ui import pictures
from stackl.api.ui.common import UIRoute, read_form, render, same_origin
from stackl.api.ui.instances import explanation_view
from stackl.usecases import documents as document_cases
from stackl.usecases import instance_create, instance_plans
from stackl.usecases.ports import Ports

router = APIRouter(prefix="/plan", route_class=UIRoute)

MAPPING_FIELDS = ("params", "service_params", "secrets", "replicas", "tags")
TEXT_FIELDS = ("stack_instance_name", "stack_application_template", "stack_infrastructure_template")


def _body(form: dict[str, str]) -> dict[str, Any]:
    """The create body of the form's fields.

    Raises:
        InvalidInput: a YAML field does not parse or is not a mapping (every such field named).
    """
    body: dict[str, Any] = {key: form.get(key, "").strip() for key in TEXT_FIELDS}
    problems_found: list[errors.ErrorItem] = []
    for key in MAPPING_FIELDS:
        text = form.get(key, "").strip()
        if not text:
            continue
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problems_found.append(
                {"loc": ["form", key], "msg": f"is not valid YAML{where}", "type": "malformed"}
            )
            continue
        if value is None:
            continue
        if not isinstance(value, dict):
            problems_found.append({"loc": ["form", key], "msg": "must be a YAML mapping", "type": "type"})
            continue
        body[key] = value
    if problems_found:
        raise errors.InvalidInput(
            "; ".join(f"{p['loc'][-1]} {p['msg']}" for p in problems_found), errors=problems_found
        )
    return body


async def _choices(ports: Ports) -> dict[str, list[str]]:
    sats = await document_cases.list_all(ports, "stack_application_template")
    sits = await document_cases.list_all(ports, "stack_infrastructure_template")
    return {"sats": [d.name for d in sats], "sits": [d.name for d in sits]}


async def _page(
    request: Request,
    ports: Ports,
    form: dict[str, str],
    *,
    answer: dict[str, Any] | None = None,
    error: errors.StacklError | None = None,
) -> Response:
    status = problems.status_of(error) if error is not None else 200
    explained = answer.get("explanation") if answer else getattr(error, "explanation", None)
    view = explanation_view(explained) if isinstance(explained, dict) else []
    return render(
        request,
        "plan.html",
        await _choices(ports),
        status=status,
        form=form,
        answer=answer,
        explanation=view,
        matrix=pictures.placement_matrix(view) if view else "",
        error=error,
    )


@router.get("", name="ui_plan")
async def plan_form(
    request: Request,
    ports: PortsDep,
    sat: Annotated[str | None, Query(max_length=200)] = None,
    sit: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The empty form (``?sat=`` and ``?sit=`` preselect the templates)."""
    form = {"stack_application_template": sat or "", "stack_infrastructure_template": sit or ""}
    return await _page(request, ports, form)


@router.post("", name="ui_plan_submit", dependencies=[Depends(same_origin)])
async def plan_submit(request: Request, ports: PortsDep) -> Response:
    """Plan the create: placement, explanation and steps; nothing is written."""
    form = await read_form(request)
    try:
        answer = await instance_plans.plan(ports, _body(form))
    except (errors.InvalidInput, errors.Conflict) as exc:
        return await _page(request, ports, form, error=exc)
    return await _page(request, ports, form, answer=answer)


@router.post("/deploy", name="ui_plan_deploy", dependencies=[Depends(same_origin)])
async def plan_deploy(request: Request, ports: PortsDep, subject: SubjectDep) -> Response:
    """Create the instance and start its task, then show the instance page."""
    form = await read_form(request)
    source = {
        "subject": subject,
        "request_id": problems.request_id(request),
        "operation_id": "ui_deploy",
        "via": "ui",
    }
    try:
        body = _body(form)
        await instance_create.create(ports, body, subject=subject, source=source)
    except (errors.InvalidInput, errors.Conflict) as exc:
        return await _page(request, ports, form, error=exc)
    return RedirectResponse(f"/ui/instances/{quote(body['stack_instance_name'], safe='')}", status_code=303)
