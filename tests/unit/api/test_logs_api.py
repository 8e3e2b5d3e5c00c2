"""The log routes on the in-memory ports: a task with two steps, their jobs and attempts, and stored lines."""

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stackl.broker.base import ItemSpec
from stackl.datastore.agents import JobAttempt, LogLine
from stackl.usecases.ports import Ports

T0 = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
TASK = "01TASKCREATE0000000000000A"
OTHER_TASK = "01TASKUPDATE0000000000000B"
DB_JOB, WEB_JOB = "01JOBDB0000000000000000001", "01JOBWEB000000000000000002"
STEPS = [
    {"id": "db/0/postgres_vm", "service": "db", "replica": 0, "functional_requirement": "postgres_vm"},
    {"id": "web/0/nginx", "service": "web", "replica": 0, "functional_requirement": "nginx"},
]


def ports_of(app: FastAPI) -> Ports:
    ports: Ports = app.state.ports
    return ports


async def add_task(ports: Ports, task_id: str, *, final: bool) -> None:
    steps = [{**s, "agent": "common", "infrastructure_target": "production.brussels.dmz"} for s in STEPS]
    spec = ItemSpec(
        queue="tasks",
        kind="create",
        id=task_id,
        payload={"stack_instance": "shop", "groups": [{"stage": "db", "steps": steps}]},
    )
    await ports.broker.enqueue(spec)
    if final:
        [claimed] = await ports.broker.claim(queues=["tasks"], owner="w")
        await ports.broker.complete(claimed.id, owner="w", epoch=claimed.lease_epoch)


async def add_job(
    ports: Ports, job_id: str, task_id: str, step: dict[str, Any], lines: list[list[str]]
) -> None:
    """A job of ``step`` with one attempt per entry of ``lines`` (each a list of ``stream:text``)."""
    payload = {
        "task_id": task_id,
        "stack_instance": "shop",
        "service": step["service"],
        "replica": step["replica"],
        "functional_requirement": step["functional_requirement"],
        "infrastructure_target": "production.brussels.dmz",
    }
    await ports.broker.enqueue(ItemSpec(queue="agent:common", kind="job", id=job_id, payload=payload))
    for attempt, texts in enumerate(lines, start=1):
        await ports.agents.record_claim(JobAttempt(job_id, attempt, "common", "i-1", T0))
        batch = [
            LogLine(job_id, attempt, seq, T0, *text.split(":", 1)) for seq, text in enumerate(texts, start=1)
        ]
        await ports.agents.append_logs(job_id, attempt, batch, max_bytes=10**6, at=T0)


@pytest.fixture
async def seeded(app: FastAPI) -> Ports:
    ports = ports_of(app)
    await add_task(ports, TASK, final=True)
    await add_job(
        ports, DB_JOB, TASK, STEPS[0], [["stdout:db one", "stderr:db ****** two"], ["stdout:db retry"]]
    )
    await add_job(ports, WEB_JOB, TASK, STEPS[1], [["stdout:web one"]])
    return ports


async def test_task_logs_in_dispatch_order_with_step_and_attempt(
    seeded: Ports, api: httpx.AsyncClient
) -> None:
    page = (await api.get(f"/tasks/{TASK}/logs")).json()
    assert [
        (item["step"], item["attempt"], item["seq"], item["stream"], item["line"]) for item in page["items"]
    ] == [
        ("db/0/postgres_vm", 1, 1, "stdout", "db one"),
        ("db/0/postgres_vm", 1, 2, "stderr", "db ****** two"),
        ("db/0/postgres_vm", 2, 1, "stdout", "db retry"),
        ("web/0/nginx", 1, 1, "stdout", "web one"),
    ]
    first = page["items"][0]
    assert first["task_id"] == TASK
    assert first["job_id"] == DB_JOB
    assert first["time"] == "2025-05-01T10:00:00.000Z"
    assert first["infrastructure_target"] == "production.brussels.dmz"
    assert page["finished"] is True
    assert page["more"] is False


async def test_cursor_pages_and_resumes(seeded: Ports, api: httpx.AsyncClient) -> None:
    first = (await api.get(f"/tasks/{TASK}/logs", params={"limit": 3})).json()
    assert len(first["items"]) == 3
    assert first["more"] is True
    second = (await api.get(f"/tasks/{TASK}/logs", params={"cursor": first["next_cursor"]})).json()
    assert [i["line"] for i in second["items"]] == ["web one"]
    # A line appended later to a stream already read is still served after that cursor.
    await seeded.agents.append_logs(
        DB_JOB, 2, [LogLine(DB_JOB, 2, 2, T0, "stdout", "db late")], max_bytes=10**6, at=T0
    )
    third = (await api.get(f"/tasks/{TASK}/logs", params={"cursor": second["next_cursor"]})).json()
    assert [i["line"] for i in third["items"]] == ["db late"]


async def test_filters(seeded: Ports, api: httpx.AsyncClient) -> None:
    web = (await api.get(f"/tasks/{TASK}/logs", params={"service": "web"})).json()
    assert [i["line"] for i in web["items"]] == ["web one"]
    fr = (await api.get(f"/tasks/{TASK}/logs", params={"functional_requirement": "postgres_vm"})).json()
    assert len(fr["items"]) == 3
    none = (await api.get(f"/tasks/{TASK}/logs", params={"target": "elsewhere"})).json()
    assert none["items"] == []


async def test_step_log_all_attempts_or_one(seeded: Ports, api: httpx.AsyncClient) -> None:
    path = f"/tasks/{TASK}/steps/db/0/postgres_vm/log"
    assert [i["attempt"] for i in (await api.get(path)).json()["items"]] == [1, 1, 2]
    assert [i["line"] for i in (await api.get(path, params={"attempt": 2})).json()["items"]] == ["db retry"]


async def test_unknown_task_step_and_instance_are_404_naming_them(
    seeded: Ports, api: httpx.AsyncClient
) -> None:
    missing = await api.get("/tasks/01NOPE/logs")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert missing.json()["detail"] == "task 01NOPE not found"
    step = await api.get(f"/tasks/{TASK}/steps/db/1/postgres_vm/log")
    assert step.status_code == 404
    assert step.json()["detail"] == f"task {TASK} has no step db/1/postgres_vm"
    instance = await api.get("/stack_instances/nope/logs")
    assert instance.status_code == 404
    assert instance.json()["detail"] == "stack instance nope not found"
    foreign = await api.get("/stack_instances/shop/logs", params={"task": "01NOPE"})
    assert foreign.status_code == 404
    assert foreign.json()["detail"] == "task 01NOPE is not a task of stack instance shop"


async def test_bad_cursor_is_400(seeded: Ports, api: httpx.AsyncClient) -> None:
    response = await api.get(f"/tasks/{TASK}/logs", params={"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["code"] == "malformed"


async def test_instance_logs_cover_every_task_or_one(seeded: Ports, api: httpx.AsyncClient) -> None:
    await add_task(seeded, OTHER_TASK, final=True)
    await add_job(seeded, "01JOBWEB000000000000000009", OTHER_TASK, STEPS[1], [["stdout:web again"]])
    every = (await api.get("/stack_instances/shop/logs")).json()
    assert [i["line"] for i in every["items"]][-2:] == ["web one", "web again"]
    one = (await api.get("/stack_instances/shop/logs", params={"task": OTHER_TASK})).json()
    assert [i["line"] for i in one["items"]] == ["web again"]
    by_service = (await api.get("/stack_instances/shop/logs", params={"service": "db"})).json()
    assert len(by_service["items"]) == 3


async def test_text_plain(seeded: Ports, api: httpx.AsyncClient) -> None:
    response = await api.get(
        f"/tasks/{TASK}/logs", params={"service": "web"}, headers={"Accept": "text/plain"}
    )
    assert response.text == "2025-05-01T10:00:00.000Z web/nginx@production.brussels.dmz | web one\n"
    assert response.headers["Stackl-Next-Cursor"]


async def test_follow_streams_server_sent_events_until_the_task_ends(
    seeded: Ports, api: httpx.AsyncClient
) -> None:
    response = await api.get(f"/tasks/{TASK}/logs", params={"follow": "true"})
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [block for block in response.text.split("\n\n") if block]
    logs = [json.loads(b.split("data: ", 1)[1]) for b in events if "event: log" in b]
    assert [line["line"] for line in logs] == ["db one", "db ****** two", "db retry", "web one"]
    assert events[-1].startswith("event: end")


async def test_wait_returns_at_once_for_a_finished_task(seeded: Ports, api: httpx.AsyncClient) -> None:
    first = (await api.get(f"/tasks/{TASK}/logs")).json()
    again = await api.get(f"/tasks/{TASK}/logs", params={"cursor": first["next_cursor"], "wait": 30})
    assert again.json()["items"] == []


async def test_wait_holds_an_empty_page_of_an_active_task(app: FastAPI, api: httpx.AsyncClient) -> None:
    ports = ports_of(app)
    await add_task(ports, TASK, final=False)
    await add_job(ports, DB_JOB, TASK, STEPS[0], [[]])
    started = datetime.now(UTC)
    page = (await api.get(f"/tasks/{TASK}/logs", params={"wait": 0.6})).json()
    assert page["items"] == []
    assert page["finished"] is False
    assert (datetime.now(UTC) - started).total_seconds() >= 0.5
