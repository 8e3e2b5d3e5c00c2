"""Log routes (api.md §B.2, §B.3): a task's log, one step's, and an instance's (every task, or one).

JSON pages by default (``{items, next_cursor, more, finished}``, ``usecases/logs.py``); ``Accept: text/plain``
gives one ``<time> <service>/<fr>@<target> | <line>`` row per line; ``?follow=true`` or
``Accept: text/event-stream`` streams ``event: log`` messages (the ``id`` of a page's last line is the cursor
to resume from, also read from ``Last-Event-ID``). A task's stream ends with ``event: end`` once the task is
final and every line was sent; an instance's stream follows until the client goes away.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import PlainTextResponse, Response, StreamingResponse

from stackl.api.deps import PortsDep
from stackl.api.responses import respond
from stackl.domain.instances import MAX_REPLICAS
from stackl.usecases import logs

router = APIRouter(tags=["logs"])

Page = dict[str, Any]
Fetch = Callable[[str | None, float], Awaitable[Page]]

STREAM_WAIT_S = 15.0  # each long-poll of a stream; an empty one sends a keep-alive comment

Cursor = Annotated[str | None, Query(description="position returned as next_cursor by the previous page")]
Limit = Annotated[int, Query(ge=1, le=logs.MAX_LIMIT, description="lines per page")]
Wait = Annotated[
    float, Query(ge=0, le=60, description="long-poll: seconds to wait for a line (capped at 30)")
]
Follow = Annotated[bool, Query(description="stream the lines as server-sent events")]
Service = Annotated[str | None, Query(description="only this alias")]
Fr = Annotated[str | None, Query(description="only this functional requirement")]
Target = Annotated[str | None, Query(description="only this infrastructure target")]


def _wants_stream(request: Request, follow: bool) -> bool:
    return follow or "text/event-stream" in request.headers.get("accept", "")


def _wants_text(request: Request) -> bool:
    accept = request.headers.get("accept", "")
    return "text/plain" in accept and "application/json" not in accept


async def _answer(
    request: Request, fetch: Fetch, *, cursor: str | None, wait: float, follow: bool, until_finished: bool
) -> Response:
    """The page as JSON or text, or the stream of pages as server-sent events."""
    if not _wants_stream(request, follow):
        page = await fetch(cursor, wait)
        if _wants_text(request):
            text = "".join(f"{logs.text_line(line)}\n" for line in page["items"])
            return PlainTextResponse(text, headers={"Stackl-Next-Cursor": page["next_cursor"]})
        return respond(request, page)
    first = await fetch(
        cursor or request.headers.get("last-event-id") or None, 0.0
    )  # errors answer as problems

    async def events() -> AsyncIterator[str]:
        yield "retry: 3000\n\n"
        page = first
        while True:
            for index, line in enumerate(page["items"]):
                last = index == len(page["items"]) - 1
                head = f"id: {page['next_cursor']}\n" if last else ""
                yield f"{head}event: log\ndata: {json.dumps(line, separators=(',', ':'))}\n\n"
            if until_finished and page["finished"] and not page["more"]:
                yield f"event: end\ndata: {json.dumps({'next_cursor': page['next_cursor']})}\n\n"
                return
            if not page["items"]:
                yield ": keep-alive\n\n"
            if await request.is_disconnected():
                return
            page = await fetch(page["next_cursor"], 0.0 if page["more"] else STREAM_WAIT_S)

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.get("/tasks/{task_id}/logs", name="get_task_logs")
async def get_task_logs(
    request: Request,
    ports: PortsDep,
    task_id: str,
    service: Service = None,
    functional_requirement: Fr = None,
    target: Target = None,
    cursor: Cursor = None,
    limit: Limit = logs.DEFAULT_LIMIT,
    wait: Wait = 0,
    follow: Follow = False,
) -> Response:
    """The log lines of a task's jobs, in dispatch order; ``?wait=`` holds an empty page."""
    where = logs.LogFilter(service=service, functional_requirement=functional_requirement, target=target)

    async def fetch(position: str | None, wait_s: float) -> Page:
        return await logs.task_logs(ports, task_id, where=where, cursor=position, limit=limit, wait_s=wait_s)

    return await _answer(request, fetch, cursor=cursor, wait=wait, follow=follow, until_finished=True)


@router.get("/tasks/{task_id}/steps/{alias}/{replica}/{functional_requirement}/log", name="get_step_log")
async def get_step_log(
    request: Request,
    ports: PortsDep,
    task_id: str,
    alias: str,
    replica: Annotated[int, Path(ge=0, le=MAX_REPLICAS)],
    functional_requirement: str,
    attempt: Annotated[int | None, Query(ge=1, le=2**31, description="only this attempt")] = None,
    cursor: Cursor = None,
    limit: Annotated[int, Query(ge=1, le=logs.MAX_LIMIT)] = logs.MAX_LIMIT,
    wait: Wait = 0,
    follow: Follow = False,
) -> Response:
    """One step's log: every attempt, or ``?attempt=``."""

    async def fetch(position: str | None, wait_s: float) -> Page:
        return await logs.step_log(
            ports,
            task_id,
            alias,
            replica,
            functional_requirement,
            attempt=attempt,
            cursor=position,
            limit=limit,
            wait_s=wait_s,
        )

    return await _answer(request, fetch, cursor=cursor, wait=wait, follow=follow, until_finished=True)


@router.get("/stack_instances/{name}/logs", name="get_stack_instance_logs", tags=["stack instances"])
async def get_stack_instance_logs(
    request: Request,
    ports: PortsDep,
    name: str,
    task: Annotated[str | None, Query(description="only this task's lines")] = None,
    service: Service = None,
    functional_requirement: Fr = None,
    target: Target = None,
    cursor: Cursor = None,
    limit: Limit = logs.DEFAULT_LIMIT,
    wait: Wait = 0,
    follow: Follow = False,
) -> Response:
    """The log lines of the instance's tasks, oldest task first; ``?follow=true`` streams them."""
    where = logs.LogFilter(service=service, functional_requirement=functional_requirement, target=target)

    async def fetch(position: str | None, wait_s: float) -> Page:
        return await logs.instance_logs(
            ports, name, task_id=task, where=where, cursor=position, limit=limit, wait_s=wait_s
        )

    return await _answer(
        request, fetch, cursor=cursor, wait=wait, follow=follow, until_finished=task is not None
    )
