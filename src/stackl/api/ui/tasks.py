"""The task page: one operation's steps, attempts, errors, logs and timeline, and the button that cancels it.

``GET /tasks/{id}`` answers JSON (and 401 in a browser under ``--auth``); operators need a page: what the task
is doing now, which step failed and why (the first line of its message, the full output one click away), how
long each step waited and ran, and a way to stop it. The live part is a fragment htmx refreshes every two
seconds while the task runs; the page is complete without JavaScript. Cancel is a POST form (same-origin
checked, like every UI write) that runs the same use case as ``POST /tasks/{id}/cancel``.
"""

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from stackl.api.deps import PortsDep, SubjectDep
from stackl.api.ui import pictures
from stackl.api.ui.common import UIRoute, render, same_origin
from stackl.api.ui.instances import bars
from stackl.usecases import task_control, task_queries
from stackl.usecases.ports import Ports

router = APIRouter(prefix="/tasks", route_class=UIRoute)

TaskId = Annotated[str, Path(max_length=64)]
ACTIVE = ("queued", "running", "rolling_back", "cancelling")


def _label(step_id: str) -> str:
    """``web/0/nginx`` → ``web[0]/nginx`` (as the instance page and the CLI name steps)."""
    parts = step_id.split("/")
    return f"{parts[0]}[{parts[1]}]/{parts[2]}" if len(parts) == 3 else step_id


def _log_url(instance: str, step_id: str) -> str | None:
    parts = step_id.split("/")
    if len(parts) != 3 or not instance:
        return None
    return "/ui/instances/" + "/".join(quote(p, safe="") for p in (instance, "steps", *parts)) + "/log"


async def _live(ports: Ports, task_id: str) -> dict[str, Any]:
    task = await task_queries.get_task(ports, task_id, include_steps=True)
    instance = str(task.get("stack_instance") or "")
    steps = [
        {
            **step,
            "label": _label(str(step.get("id", ""))),
            "message": (str(step.get("error_message") or "").strip().splitlines() or [""])[0],
            "log_url": _log_url(instance, str(step.get("id", ""))) if step.get("job_id") else None,
        }
        for step in task.get("steps") or []
    ]
    timeline = pictures.timeline(
        await bars(ports, steps), ports.clock.now(), f"Timeline of task {task_id} ({task.get('kind')})"
    )
    found = task.get("result")
    result: dict[str, Any] = found if isinstance(found, dict) else {}
    return {
        "task": task,
        "steps": steps,
        "timeline": timeline,
        "active": task.get("state") in ACTIVE,
        "outcome": (str(result.get("error_message") or task.get("error") or "").strip().splitlines() or [""])[
            0
        ],
    }


@router.get("/{task_id}", name="ui_task")
async def task_page(request: Request, ports: PortsDep, task_id: TaskId) -> Response:
    """One task: state, steps and their attempts, timeline, errors, logs; cancel while it runs."""
    return render(
        request,
        "task.html",
        live=await _live(ports, task_id),
        cancelled=request.query_params.get("cancelled"),
    )


@router.get("/{task_id}/live", name="ui_task_live")
async def task_live(request: Request, ports: PortsDep, task_id: TaskId) -> Response:
    """The refreshed part of the task page."""
    return render(request, "task_live.html", live=await _live(ports, task_id))


@router.post("/{task_id}/cancel", name="ui_task_cancel", dependencies=[Depends(same_origin)])
async def cancel_task(ports: PortsDep, subject: SubjectDep, task_id: TaskId) -> Response:
    """Ask the task to stop (its running jobs are stopped, steps not started are skipped), then show it."""
    await task_control.cancel(ports, task_id, by=subject)
    return RedirectResponse(f"/ui/tasks/{quote(task_id, safe='')}?cancelled=1", status_code=303)
