"""``GET /events`` (api.md B.10): the server-sent-events stream of changes, filterable and resumable.

``Accept: text/event-stream`` (or ``?follow=true``) streams: ``retry: 3000`` first, then one message per event
(``id``, ``event: <kind>``, ``data: <event JSON>``), a comment line every 15 s, and ``event: reset`` first when
the cursor is older than what this server has kept. Any other ``Accept`` answers one JSON page of the events
after the cursor (``?wait=`` long-polls for the first one), which is what scripts and tests use.
"""

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from stackl.usecases import events

router = APIRouter(tags=["events"])

KEEPALIVE_S = 15.0
MAX_STREAM_S = 3600.0  # a stream ends after an hour; the client reconnects with Last-Event-ID


def hub_of(request: Request) -> events.EventHub:
    """The process's one event hub, created (and started) on first use."""
    hub: events.EventHub | None = getattr(request.app.state, "event_hub", None)
    if hub is None:
        hub = events.EventHub(request.app.state.ports)
        request.app.state.event_hub = hub
    hub.start()
    return hub


@router.get(
    "/events",
    responses={
        200: {
            "description": "server-sent events (``text/event-stream``), or a JSON page of events",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    },
)
async def stream_events(
    request: Request,
    kind: Annotated[
        list[str] | None, Query(description="event kinds (repeatable; ``task.*`` allowed)")
    ] = None,
    stack_instance: Annotated[str | None, Query(description="only this stack instance's events")] = None,
    type: Annotated[str | None, Query(description="only events on resources of this type")] = None,
    name: Annotated[str | None, Query(description="only events on resources of this name")] = None,
    after: Annotated[str | None, Query(description="resume after this event id")] = None,
    follow: Annotated[bool, Query(description="stream even without Accept: text/event-stream")] = False,
    wait: Annotated[float, Query(ge=0, le=30, description="JSON page: seconds to wait for an event")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000, description="JSON page: at most this many events")] = 100,
    last_event_id: Annotated[str | None, Header(description="SSE resume cursor")] = None,
) -> Response:
    """Changes to documents, tasks, steps and agents as they happen."""
    flt = events.parse_filter(kind or [], stack_instance, type, name)
    cursor = events.valid_cursor(after or last_event_id)
    hub = hub_of(request)
    if follow or "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(
            _stream(request, hub, flt, cursor),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return JSONResponse(await _page(hub, flt, cursor, wait_s=wait, limit=limit))


async def _page(
    hub: events.EventHub, flt: events.EventFilter, cursor: str | None, *, wait_s: float, limit: int
) -> dict[str, object]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while True:
        if hub.started_at is None:
            await hub.poll()
        reset, found = hub.since(cursor or "0" * 16)
        items = [e for _, e in found if flt.matches(e)][:limit]
        if items or loop.time() >= deadline:
            break
        await asyncio.sleep(min(0.25, max(0.0, deadline - loop.time())))
    next_cursor = items[-1].id if items else cursor
    return {
        "items": [e.as_json() for e in items],
        "next_cursor": next_cursor,
        "reset": bool(cursor) and reset,
    }


async def _stream(
    request: Request, hub: events.EventHub, flt: events.EventFilter, cursor: str | None
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    ends = loop.time() + MAX_STREAM_S
    yield "retry: 3000\n\n"
    if hub.started_at is None:
        await hub.poll()
    reset, _ = hub.since(cursor)
    if cursor is not None and reset:
        yield f"event: reset\ndata: {json.dumps({'after': cursor})}\n\n"
    async for event in hub.follow(flt, after=cursor, keepalive_s=KEEPALIVE_S):
        if event is None:
            yield ": keep-alive\n\n"
        else:
            yield events.sse(event)
        if loop.time() >= ends or await request.is_disconnected():
            return
