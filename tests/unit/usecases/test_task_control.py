"""Cancelling tasks (lifecycle.md §5.7) on the in-memory ports."""

import pytest
from tests.unit.usecases import test_instances
from tests.unit.usecases.test_instances import (
    SOURCE,
    example_documents,
    instance,
    load,
    request,
    run_with_agent,
)

from stackl import errors
from stackl.usecases import instance_create, instance_delete, task_control, task_queries
from stackl.usecases.ports import Ports


@pytest.fixture
def ports() -> Ports:
    return test_instances.make_ports()


@pytest.mark.asyncio
async def test_a_queued_task_is_cancelled_at_once_and_its_steps_skipped(ports: Ports) -> None:
    await load(ports, example_documents())
    started = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    view = await task_control.cancel(ports, str(started.task_id), by="bob")
    assert view["state"] == "cancelled"
    body = await instance(ports)
    assert body is not None
    assert {(e["status"], e["error_message"]) for e in body["status"]} == {
        ("SKIPPED", "not run: task cancelled")
    }
    with pytest.raises(errors.Conflict):
        await task_control.cancel(ports, str(started.task_id), by="bob")
    with pytest.raises(errors.TaskNotFound):
        await task_control.cancel(ports, "01NOPE", by="bob")
    # The instance is free again: it can be deleted.
    deleted = await instance_delete.delete(ports, "shop-prod", force=False, subject="bob", source=SOURCE)
    assert deleted.task_id is not None


@pytest.mark.asyncio
async def test_a_finished_task_cannot_be_cancelled(ports: Ports) -> None:
    await load(ports, example_documents())
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    task = await run_with_agent(ports, outputs={})
    with pytest.raises(errors.Conflict):
        await task_control.cancel(ports, task.id, by="bob")
    view = await task_queries.get_task(ports, task.id)
    assert view["state"] == "succeeded"
