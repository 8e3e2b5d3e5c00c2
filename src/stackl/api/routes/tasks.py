"""Task routes (api.md §B.3): list the tasks, read one (long-poll with ``?wait=``), cancel one."""

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from stackl.api.deps import PortsDep, SubjectDep
from stackl.api.responses import respond
from stackl.usecases import task_control, task_queries

router = APIRouter(prefix="/tasks", tags=["tasks"])


@router.get("")
async def list_tasks(
    request: Request,
    ports: PortsDep,
    stack_instance: Annotated[str | None, Query(description="only this instance's tasks")] = None,
    state: Annotated[str | None, Query(description="only tasks in this state")] = None,
    kind: Annotated[str | None, Query(description="create, update, delete…")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Tasks, newest first."""
    tasks = await task_queries.list_tasks(
        ports, stack_instance=stack_instance, state=state, kind=kind, limit=limit
    )
    return respond(request, {"items": tasks})


@router.get("/{task_id}")
async def get_task(
    request: Request,
    ports: PortsDep,
    task_id: str,
    wait: Annotated[float, Query(ge=0, le=30, description="long-poll: seconds to wait for a change")] = 0,
    include: Annotated[str, Query(description="plan,steps")] = "",
) -> Response:
    """One task; ``?wait=`` answers when it changes, at most 30 s later."""
    include_steps = "steps" in {part.strip() for part in include.split(",")}
    return respond(
        request, await task_queries.get_task(ports, task_id, wait_s=wait, include_steps=include_steps)
    )


@router.post("/{task_id}/cancel", status_code=202)
async def cancel_task(request: Request, ports: PortsDep, subject: SubjectDep, task_id: str) -> Response:
    """Cancel a task: a queued one at once, a running one within seconds (its jobs are stopped)."""
    return respond(request, await task_control.cancel(ports, task_id, by=subject), status=202)
