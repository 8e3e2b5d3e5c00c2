"""``GET /events``: changes derived from the durable data, filters, resume by id, and the SSE framing."""

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests import factories

from stackl.broker.base import ItemSpec
from stackl.usecases import events
from stackl.usecases.tasks import TASKS_QUEUE


@pytest.fixture
async def hub(app: FastAPI, api: httpx.AsyncClient) -> AsyncIterator[events.EventHub]:
    assert (await api.get("/events")).status_code == 200  # creates the hub and records the baseline
    found: events.EventHub = app.state.event_hub
    yield found
    await found.stop()


async def page(api: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await api.get("/events", params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.asyncio
async def test_document_writes_become_events_in_order(api: httpx.AsyncClient, hub: events.EventHub) -> None:
    assert (await api.post("/documents", json=[factories.environment(), factories.zone()])).status_code == 200
    await hub.poll()
    assert (await api.put("/documents/zone/dmz", json=factories.zone(tags={"a": "b"}))).status_code == 200
    assert (await api.delete("/documents/zone/dmz")).status_code in (200, 204)  # both seen by one poll
    await hub.poll()
    body = await page(api, type="zone")
    assert [(e["kind"], e["data"]["revision"]) for e in body["items"]] == [
        ("document.created", 1),
        ("document.updated", 2),
        ("document.deleted", 3),
    ]
    first = body["items"][0]
    assert first["resource"] == {"type": "zone", "name": "dmz"}
    assert set(first) == {"id", "time", "kind", "subject", "resource", "task_id", "data"}
    # resume after the first: the rest only
    rest = await page(api, type="zone", after=first["id"])
    assert [e["id"] for e in rest["items"]] == [e["id"] for e in body["items"][1:]]
    # kind filters, with a prefix
    assert [e["kind"] for e in (await page(api, kind="document.deleted"))["items"]] == ["document.deleted"]
    assert len((await page(api, kind="document.*", name="production"))["items"]) == 1


@pytest.mark.asyncio
async def test_task_transitions_are_events(
    app: FastAPI, api: httpx.AsyncClient, hub: events.EventHub
) -> None:
    broker = app.state.ports.broker
    item = await broker.enqueue(ItemSpec(queue=TASKS_QUEUE, kind="noop", payload={"stack_instance": "shop"}))
    await hub.poll()
    [claimed] = await broker.claim(queues=[TASKS_QUEUE], owner="w", lease_s=30)
    await hub.poll()
    await broker.complete(item.id, owner="w", epoch=claimed.lease_epoch, result={})
    await hub.poll()
    body = await page(api, kind="task.*", stack_instance="shop")
    assert [e["kind"] for e in body["items"]] == ["task.queued", "task.started", "task.succeeded"]
    assert {e["task_id"] for e in body["items"]} == {item.id}


def test_event_ids_are_the_same_for_the_same_change() -> None:
    from datetime import UTC, datetime

    moment = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    a = events.make_event(moment, "document.created", key="zone|dmz|1", resource=("zone", "dmz"))
    b = events.make_event(moment, "document.created", key="zone|dmz|1", resource=("zone", "dmz"))
    c = events.make_event(moment, "document.created", key="zone|dmz|2", resource=("zone", "dmz"))
    assert a.id == b.id != c.id
    assert events.valid_cursor(a.id) == a.id


@pytest.mark.asyncio
async def test_bad_filters_and_cursors_are_400(api: httpx.AsyncClient, hub: events.EventHub) -> None:
    response = await api.get("/events", params={"kind": "nope"})
    assert response.status_code == 400
    assert response.json()["code"] == "malformed"
    assert (await api.get("/events", params={"after": "garbage"})).status_code == 400
    assert (await api.get("/events", headers={"Last-Event-ID": "x-y"})).status_code == 400


@pytest.mark.asyncio
async def test_followers_get_live_events_as_sse(api: httpx.AsyncClient, hub: events.EventHub) -> None:
    # httpx's ASGI transport buffers whole responses, so the follower is driven directly here (the e2e test
    # reads the real stream over HTTP).
    follower = hub.follow(events.EventFilter(kinds=("document.*",)), after=None, keepalive_s=0.05)
    assert await anext(follower) is None  # keep-alive while nothing happens
    assert hub.subscribers == 1
    assert (await api.post("/documents", json=[factories.environment()])).status_code == 200
    await hub.poll()
    event = await anext(follower)
    assert event is not None
    assert event.kind == "document.created"
    text = events.sse(event)
    assert text.startswith(f"id: {event.id}\nevent: document.created\ndata: {{")
    assert json.loads(text.split("data: ", 1)[1])["resource"] == {"type": "environment", "name": "production"}
    await follower.aclose()  # type: ignore[attr-defined]
    assert hub.subscribers == 0
