"""The event-driven task engine on the in-memory ports (lifecycle.md §5; architecture: tasks wait without a worker).

Each test plays worker and agent by hand, one activation at a time, on a manual clock: nothing sleeps and
nothing runs in the background, so every interleaving is the one written here.
"""

from datetime import timedelta
from typing import Any

import pytest
from tests.clocks import ManualClock
from tests.unit.usecases.test_instances import (
    SOURCE,
    drive,
    fake_agent,
    instance,
    load,
    make_ports,
    request,
)

from stackl import errors
from stackl.broker.base import Item
from stackl.domain import documents
from stackl.domain.jobs import Job
from stackl.usecases import instance_create, operations, task_control, task_queries, updates
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE, TaskLease

AGENT_QUEUE = "agent:bru-agent"


@pytest.fixture
def ports() -> Ports:
    return make_ports()


async def activate(ports: Ports, owner: str = "worker-1") -> TaskLease:
    """Claim the one ready task and run one activation of it; its lease."""
    [item] = await ports.broker.claim(queues=[TASKS_QUEUE], owner=owner)
    lease = TaskLease(item=item, owner=owner, epoch=item.lease_epoch, broker=ports.broker)
    await operations.run_task(ports, lease)
    return lease


async def take_job(ports: Ports) -> Item:
    [job] = await ports.broker.claim(queues=[AGENT_QUEUE], owner="agent-1", lease_s=60)
    return job


async def finish_job(ports: Ports, job: Item, outputs: dict[str, Any] | None = None) -> None:
    result = {"status": "READY", "error_message": "", "outputs": outputs or {}}
    await ports.broker.complete(job.id, owner="agent-1", epoch=job.lease_epoch, result=result)


async def task(ports: Ports, task_id: str) -> Item:
    item = await ports.broker.get(task_id)
    assert item is not None
    return item


@pytest.mark.asyncio
async def test_a_waiting_task_holds_no_worker_and_its_jobs_end_wakes_it(ports: Ports) -> None:
    await load(ports)
    started = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    lease = await activate(ports)
    parked = await task(ports, lease.item.id)
    assert parked.state == "queued"  # given back: no worker holds it
    assert parked.lease_until is None
    assert lease.item.started_at is not None
    assert parked.available_at == lease.item.started_at + timedelta(seconds=7200)  # its timer: the deadline
    assert await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-2") == []  # nothing polls it
    view = await task_queries.get_task(ports, str(started.task_id))
    assert view["state"] == "running"  # as users see it
    assert view["progress"]["running"] == 1

    db = await take_job(ports)
    assert db.parent_id == lease.item.id
    await finish_job(ports, db, {"db_host": "10.0.0.5"})
    await activate(ports, owner="worker-2")  # woken: records db, dispatches web, parks again
    web = await take_job(ports)
    assert web.payload["provisioning_parameters"]["db_host"] == "10.0.0.5"
    await finish_job(ports, web)
    await activate(ports)
    done = await task(ports, lease.item.id)
    assert done.state == "succeeded"
    assert [s["state"] for s in done.result["steps"]] == ["ready", "ready"]


@pytest.mark.asyncio
async def test_cancelling_a_waiting_task_stops_its_running_job_then_ends_it(ports: Ports) -> None:
    await load(ports)
    started = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    await activate(ports)
    db = await take_job(ports)
    view = await task_control.cancel(ports, str(started.task_id), by="bob")
    assert view["state"] == "cancelling"
    await activate(ports)  # woken by the cancel: asks the running job to stop, then waits for it
    asked = await ports.broker.get(db.id)
    assert asked is not None
    assert asked.cancel_requested is not None
    assert (await task(ports, str(started.task_id))).state == "queued"
    # The agent stops the tool and confirms; that wakes the task, which ends cancelled.
    result = {"status": "FAILED", "error_message": "cancelled", "outputs": {}, "cancelled": True}
    await ports.broker.complete(
        db.id, owner="agent-1", epoch=db.lease_epoch, result=result, state="cancelled"
    )
    await activate(ports)
    ended = await task(ports, str(started.task_id))
    assert ended.state == "cancelled"
    assert ended.result["error_message"] == "cancelled by bob"
    body = await instance(ports)
    assert body is not None
    assert [(e["status"], e["error_message"]) for e in body["status"]] == [
        ("FAILED", "cancelled by bob"),
        ("SKIPPED", "not run: task cancelled"),
    ]


@pytest.mark.asyncio
async def test_a_task_whose_agent_never_answers_fails_at_its_deadline(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    lease = await activate(ports)  # dispatched db; no agent ever claims it
    clock = ports.clock
    assert isinstance(clock, ManualClock)
    clock.advance(7201)
    await activate(ports)  # the timer woke it: the queued job is withdrawn, the task fails
    ended = await task(ports, lease.item.id)
    assert ended.state == "failed"
    assert ended.result["error_message"] == "timed out after 7200 s (task timeout)"
    assert [s["state"] for s in ended.result["steps"]] == ["failed", "skipped"]
    [job] = await ports.broker.list(queue=AGENT_QUEUE)
    assert job.state == "cancelled"


@pytest.mark.asyncio
async def test_a_worker_that_lost_the_task_writes_nothing(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    [item] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1", lease_s=30)
    stale = TaskLease(item=item, owner="worker-1", epoch=item.lease_epoch, broker=ports.broker)
    await ports.broker.release(item.id, owner="worker-1", epoch=item.lease_epoch, started=True)  # lapsed
    await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-2")  # and taken over
    before = await instance(ports)
    with pytest.raises(errors.LeaseLost):
        await operations.run_task(ports, stale)
    assert await instance(ports) == before  # no status written
    assert await ports.broker.list(queue=AGENT_QUEUE) == []  # and no job enqueued


@pytest.mark.asyncio
async def test_a_tasks_history_is_not_rewritten_by_a_later_task(ports: Ports) -> None:
    await load(ports)
    created = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    agent = fake_agent(ports, outputs={"postgres_vm": {"db_host": "h"}})
    first = await drive_with(ports, agent)
    assert first.id == created.task_id
    await updates.update(
        ports, {"stack_instance_name": "shop-prod", "force_rerun": True}, subject="bob", source=SOURCE
    )
    second = await drive_with(ports, fake_agent(ports, outputs={}, fail={"nginx"}))
    assert second.state == "failed"
    first_view = await task_queries.get_task(ports, first.id, include_steps=True)
    assert first_view["progress"]["ready"] == 2
    assert [s["state"] for s in first_view["steps"]] == ["ready", "ready"]  # not the update's outcome
    second_view = await task_queries.get_task(ports, second.id, include_steps=True)
    assert [s["state"] for s in second_view["steps"]] == ["ready", "failed"]


@pytest.mark.asyncio
async def test_a_failed_create_rolled_back_keeps_what_it_did_in_its_record(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(rollback=True), subject="alice", source=SOURCE)
    ended = await drive_with(ports, fake_agent(ports, outputs={}, fail={"nginx"}))
    assert ended.state == "failed"
    assert ended.result["rolled_back"] is True
    assert ended.result["document_removed"] is True
    assert ended.result["error_message"] == "1 step(s) failed: web/0/nginx; rolled back"
    assert [s["state"] for s in ended.result["steps"]] == ["ready", "failed"]  # not "ready, skipped"
    assert await instance(ports) is None


@pytest.mark.asyncio
async def test_an_instance_rolling_back_is_a_valid_document_and_its_task_resumes_the_rollback(
    ports: Ports,
) -> None:
    await load(ports)
    await instance_create.create(ports, request(rollback=True), subject="alice", source=SOURCE)
    first = await activate(ports)
    await finish_job(ports, await take_job(ports), {"db_host": "h"})
    await activate(ports)
    web = await take_job(ports)
    failed = {"status": "FAILED", "error_message": "nginx exited with code 2", "outputs": {}}
    await ports.broker.fail(web.id, owner="agent-1", epoch=web.lease_epoch, error="x", result=failed)
    await activate(ports)  # the main phase failed: the rollback starts, its delete of db dispatched
    body = await instance(ports)
    assert body is not None
    assert body["rolling_back"] == first.item.id
    assert body["rollback_record"]["failed_steps"] == ["web/0/nginx"]
    documents.validate(body, doc_type="stack_instance")  # readable through the API while it rolls back
    view = await task_queries.get_task(ports, first.item.id)
    assert view["state"] == "rolling_back"
    delete_db = await take_job(ports)
    assert delete_db.payload["action"] == "delete"
    await finish_job(ports, delete_db)
    await activate(ports, owner="worker-2")  # another worker ends it with the main phase's outcome
    ended = await task(ports, first.item.id)
    assert ended.result["error_message"] == "1 step(s) failed: web/0/nginx; rolled back"
    assert [s["state"] for s in ended.result["steps"]] == ["ready", "failed"]


@pytest.mark.asyncio
async def test_every_job_the_runner_enqueues_is_one_the_agent_model_reads(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    lease = await activate(ports)
    item = await take_job(ports)
    job = Job.model_validate(
        {**item.payload, "job_id": item.id, "attempt": item.attempt}
    )  # the agent's parse
    assert (job.task_id, job.action, job.service, job.functional_requirement) == (
        lease.item.id,
        "create",
        "db",
        "postgres_vm",
    )
    assert job.input_hash
    assert job.secrets  # in clear for the agent only (the in-memory ports have no secret box)


async def drive_with(ports: Ports, agent: Any) -> Item:
    """Drive the ready task to its end with ``agent`` (a ``fake_agent`` coroutine) answering its jobs."""
    import asyncio

    [item] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1")
    running = asyncio.ensure_future(agent)
    try:
        return await drive(
            ports, TaskLease(item, owner="worker-1", epoch=item.lease_epoch, broker=ports.broker)
        )
    finally:
        running.cancel()


def test_a_job_that_does_not_fit_the_model_is_refused_by_field_never_by_value() -> None:
    from stackl.usecases.task_runner import TaskRun

    payload = {"action": "explode", "stack_instance": "s", "service": "db", "functional_requirement": "vm",
               "tool": "shell", "secrets": {"db_password": "hunter2-secret"}}  # fmt: skip
    with pytest.raises(errors.InvalidInput) as caught:
        TaskRun._check_job({"id": "db/0/vm"}, payload)
    assert "action" in caught.value.message
    assert "hunter2" not in caught.value.message
    assert "explode" not in caught.value.message
