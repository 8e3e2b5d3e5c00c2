"""The reconciler: steps left ``in_progress`` by a task that ended (or vanished) become FAILED with the reason.

The regression it guards (security round 2, defect 6): a task failed while the database was unreachable left
its instance's steps ``in_progress`` with no task to finish them, until the instance was re-applied by hand.
"""

import copy
from typing import Any

import pytest
from tests.unit.usecases.test_instances import SOURCE, instance, load, make_ports, request

from stackl.usecases import instance_create, reconcile, task_queries
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE


@pytest.fixture
def ports() -> Ports:
    return make_ports()


def stuck(body: dict[str, Any] | None) -> list[dict[str, Any]]:
    assert body is not None
    return [entry for entry in body["status"] if entry["status"] == "in_progress"]


async def expire_last_attempt(ports: Ports, task_id: str) -> None:
    """What the broker does to a task whose lease expired on its last attempt: fail it, with no worker there."""
    [item] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1")
    assert item.id == task_id
    await ports.broker.fail(item.id, owner="worker-1", epoch=item.lease_epoch, error="lease expired 5 times")


@pytest.mark.asyncio
async def test_steps_of_a_task_that_ended_without_finishing_them_become_failed_with_the_reason(
    ports: Ports,
) -> None:
    await load(ports)
    started = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    before = stuck(await instance(ports))
    assert before  # the request marked every step in_progress for its task
    await expire_last_attempt(ports, str(started.task_id))

    assert await reconcile.repair_orphaned_steps(ports) == ["shop-prod"]

    body = await instance(ports)
    assert stuck(body) == []
    assert body is not None
    repaired = [e for e in body["status"] if e["status"] == "FAILED"]
    assert len(repaired) == len(before)
    for entry in repaired:
        assert entry["task_id"] == started.task_id
        assert entry["error_message"] == (
            f"task {started.task_id} ended failed without finishing this step: lease expired 5 times"
        )
    assert task_queries.instance_state(body, None) == "FAILED"  # it can be re-applied
    assert await reconcile.repair_orphaned_steps(ports) == []  # idempotent


@pytest.mark.asyncio
async def test_a_live_task_keeps_its_steps(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    before = await instance(ports)

    assert await reconcile.repair_orphaned_steps(ports) == []  # queued: its worker has not come yet
    [item] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1")
    assert await reconcile.repair_orphaned_steps(ports) == []  # running

    assert await instance(ports) == before
    assert item.state == "running"


@pytest.mark.asyncio
async def test_steps_of_a_cancelled_or_vanished_task_are_repaired_and_live_ones_left_alone(
    ports: Ports,
) -> None:
    await load(ports)
    cancelled = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    await instance_create.create(ports, request("shop-test"), subject="alice", source=SOURCE)
    await instance_create.create(ports, request("shop-live"), subject="alice", source=SOURCE)
    await ports.broker.cancel(str(cancelled.task_id), by="alice")  # final before any worker ran it
    async with ports.store.transaction() as tx:  # a task no broker knows (a database restored from backup)
        stored = await tx.get(doc_type="stack_instance", name="shop-test")
        assert stored is not None
        body = copy.deepcopy(stored.body)
        for entry in body["status"]:
            entry["task_id"] = "t-vanished"
        await tx.put(doc_type="stack_instance", name="shop-test", body=body, subject="test", action="status")

    assert sorted(await reconcile.repair_orphaned_steps(ports)) == ["shop-prod", "shop-test"]

    prod, test = await instance(ports), await instance(ports, "shop-test")
    assert stuck(prod) == stuck(test) == []
    assert prod is not None
    assert test is not None
    assert {e["error_message"] for e in prod["status"] if e["status"] == "FAILED"} == {
        f"task {cancelled.task_id} ended cancelled without finishing this step: cancelled by alice"
    }
    assert {e["error_message"] for e in test["status"] if e["status"] == "FAILED"} == {
        "task t-vanished no longer exists; this step never finished (repaired by the worker)"
    }
    assert stuck(await instance(ports, "shop-live"))  # its task is still queued
