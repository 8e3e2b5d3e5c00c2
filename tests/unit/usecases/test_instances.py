"""Create and delete of stack instances, and their tasks, on the in-memory ports (lifecycle.md §4, §5)."""

import asyncio
from typing import Any

import pytest
from tests import factories
from tests.clocks import ManualClock

from stackl import errors
from stackl.broker.base import Item
from stackl.broker.memory import InMemoryBroker
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases import documents as document_cases
from stackl.usecases import instance_create, instance_delete, operations
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE, TaskLease

SOURCE = {"subject": "alice", "via": "api"}


@pytest.fixture
def ports() -> Ports:
    return make_ports()


def make_ports() -> Ports:
    """In-memory ports on a clock that ticks 1 ms per reading."""
    clock = ManualClock()
    return Ports(
        store=InMemoryDocumentStore(clock=clock),
        broker=InMemoryBroker(clock),
        policies=StaticPolicyEngine(),
        agents=InMemoryAgentRegistry(),
        clock=clock,
    )


def example_documents(*, db_memory: str = "4GiB") -> list[dict[str, Any]]:
    """A two-service application: ``db`` reports ``db_host``, ``web`` consumes it (the §6 example, small)."""
    return [
        factories.environment(secrets={"registry_token": "dG9rZW4="}),
        factories.location(),
        factories.zone(),
        factories.functional_requirement(
            "postgres_vm",
            params={"vm_size": "medium"},
            invocation={"generic": factories.invocation("terraform")},
            outputs={"db_host": "db_host.value"},
        ),
        factories.functional_requirement(
            "nginx", params={}, invocation={"generic": factories.invocation("ansible")}
        ),
        factories.service(
            "postgres",
            functional_requirements=["postgres_vm"],
            params={"pg_version": "15"},
            secrets={"db_password": "c3VwZXJzZWNyZXQ="},
            resource_requirements={"memory": db_memory, "cpu": "1"},
        ),
        factories.service(
            "nginx",
            functional_requirements=["nginx"],
            params={"listen_port": 8080},
            resource_requirements={"memory": "512MiB", "cpu": "500m"},
        ),
        factories.stack_application_template(
            "shop",
            services=[{"name": "db", "service": "postgres"}, {"name": "web", "service": "nginx"}],
        ),
        factories.stack_infrastructure_template("prod"),
    ]


def request(name: str = "shop-prod", **extra: Any) -> dict[str, Any]:
    return {
        "stack_instance_name": name,
        "stack_application_template": "shop",
        "stack_infrastructure_template": "prod",
        "params": {"owner": "team-a"},
        "service_params": {"web": {"listen_port": 80}},
        **extra,
    }


async def load(ports: Ports, docs: list[dict[str, Any]] | None = None) -> None:
    await document_cases.apply_many(ports, docs or example_documents(), subject="test")


async def instance(ports: Ports, name: str = "shop-prod") -> dict[str, Any] | None:
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type="stack_instance", name=name)
    return stored.body if stored else None


async def claim_task(ports: Ports) -> TaskLease:
    [item] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1", lease_s=30)
    return TaskLease(item=item, owner="worker-1", epoch=item.lease_epoch, broker=ports.broker)


async def fake_agent(
    ports: Ports,
    outputs: dict[str, dict[str, Any]],
    fail: frozenset[str] | set[str] = frozenset(),
    seen: list[Item] | None = None,
) -> None:
    """Claim every job of ``bru-agent`` and finish it: READY with ``outputs[fr]``, or FAILED for ``fail``."""
    while True:
        for item in await ports.broker.claim(queues=["agent:bru-agent"], owner="agent-1", lease_s=60):
            if seen is not None:
                seen.append(item)
            fr = item.payload["functional_requirement"]
            if fr in fail:
                result = {"status": "FAILED", "error_message": f"{fr} exited with code 2", "outputs": {}}
                await ports.broker.fail(
                    item.id, owner="agent-1", epoch=item.lease_epoch, error="x", result=result
                )
            else:
                result = {"status": "READY", "error_message": "", "outputs": outputs.get(fr, {})}
                await ports.broker.complete(item.id, owner="agent-1", epoch=item.lease_epoch, result=result)
        await asyncio.sleep(0.01)


async def drive(ports: Ports, lease: TaskLease, *, timeout_s: float = 10) -> Item:
    """Activate the task until it ends, as workers do: run it, and claim it again each time it is woken.

    A task that parks with nothing left to wake it never becomes claimable again: the timeout fails the test.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            await operations.run_task(ports, lease)
            task = await ports.broker.get(lease.item.id)
            assert task is not None
            if task.final:
                return task
            assert task.state == "queued"  # parked: it holds no worker while its jobs run
            while not (claimed := await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1")):
                await ports.broker.wait(queues=[TASKS_QUEUE], timeout_s=1)
            lease = TaskLease(
                item=claimed[0], owner="worker-1", epoch=claimed[0].lease_epoch, broker=ports.broker
            )


async def run_with_agent(ports: Ports, **agent: Any) -> Item:
    lease = await claim_task(ports)
    worker = asyncio.create_task(fake_agent(ports, **agent))
    try:
        return await drive(ports, lease)
    finally:
        worker.cancel()


async def test_create_writes_the_instance_and_its_task_together(ports: Ports) -> None:
    await load(ports)
    started = await instance_create.create(ports, request(), subject="alice", source=SOURCE)

    assert started.body == {
        "db": {"service": "postgres", "targets": ["production.brussels.dmz"]},
        "web": {"service": "nginx", "targets": ["production.brussels.dmz"]},
    }
    body = await instance(ports)
    assert body is not None
    assert [(s["service"], s["functional_requirement"], s["status"]) for s in body["status"]] == [
        ("db", "postgres_vm", "in_progress"),
        ("web", "nginx", "in_progress"),
    ]
    assert all(s["task_id"] == started.task_id and s["action"] == "create" for s in body["status"])
    assert body["placement"]["services"]  # the explanation is stored
    db = body["services"]["db"][0]
    assert db["agent"] == "bru-agent"
    assert db["cloud_provider"] == "vmw"
    assert db["provisioning_parameters"]["vm_size"] == "medium"
    assert db["provisioning_parameters"]["owner"] == "team-a"
    assert db["secrets"] == {"registry_token": "dG9rZW4=", "db_password": "c3VwZXJzZWNyZXQ="}
    assert body["services"]["web"][0]["provisioning_parameters"]["listen_port"] == 80
    task = await ports.broker.get(str(started.task_id))
    assert task is not None
    assert task.kind == "create"
    assert task.state == "queued"
    assert task.unique_key == "instance:shop-prod"
    assert "c3VwZXJzZWNyZXQ=" not in str(task.payload)  # secrets stay in the instance only


async def test_create_of_an_existing_instance_is_422(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    with pytest.raises(errors.InstanceExists) as caught:
        await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    assert caught.value.message == "Stack instance already exists"
    assert caught.value.code == "already_exists"


async def test_a_second_mutation_while_a_task_is_active_is_busy(ports: Ports) -> None:
    await load(ports)
    started = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    with pytest.raises(errors.InstanceBusy) as caught:
        await instance_delete.delete(ports, "shop-prod", force=False, subject="alice", source=SOURCE)
    assert caught.value.task_id == started.task_id
    assert caught.value.task_kind == "create"
    body = await instance(ports)
    assert body is not None
    assert all(s["action"] == "create" for s in body["status"])


async def test_an_infeasible_placement_is_422_with_its_explanation(ports: Ports) -> None:
    await load(ports, example_documents(db_memory="1TiB"))
    with pytest.raises(errors.PlacementFailed) as caught:
        await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    assert caught.value.explanation
    assert await instance(ports) is None
    assert await ports.broker.list(queue=TASKS_QUEUE) == []


async def test_delete_of_an_unknown_instance_answers_as_0_5(ports: Ports) -> None:
    started = await instance_delete.delete(ports, "nope", force=False, subject="alice", source=SOURCE)
    assert started.body == {"result": "Stack instance nope can't be deleted because it does not exist"}
    assert started.task_id is None


async def test_create_runs_the_steps_and_outputs_feed_the_next_step(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    seen: list[Item] = []
    task = await run_with_agent(
        ports,
        outputs={"postgres_vm": {"db_host": "10.20.0.15"}, "nginx": {"web_url": "http://x:80"}},
        seen=seen,
    )

    assert task.state == "succeeded", task.error
    assert task.result["failed_steps"] == []
    db_job, web_job = (item.payload for item in seen)
    assert db_job["functional_requirement"] == "postgres_vm"
    assert "db_host" not in db_job["provisioning_parameters"]
    assert db_job["secrets"] == {"registry_token": "dG9rZW4=", "db_password": "c3VwZXJzZWNyZXQ="}
    assert db_job["invocation"]["outputs"] == {"db_host": "db_host.value"}
    assert db_job["service_document"] == "postgres"
    assert db_job["cloud_provider"] == "vmw"
    assert web_job["provisioning_parameters"]["db_host"] == "10.20.0.15"
    assert web_job["secrets"] == {"registry_token": "dG9rZW4="}
    body = await instance(ports)
    assert body is not None
    assert [s["status"] for s in body["status"]] == ["READY", "READY"]
    assert body["instance_outputs"] == {"db_host": "10.20.0.15", "web_url": "http://x:80"}
    assert body["services"]["db"][0]["outputs"] == {"db_host": "10.20.0.15"}
    assert body["services"]["db"][0]["provisioning_parameters"]["web_url"] == "http://x:80"
    assert body["status"][0]["job_id"] == seen[0].id
    assert body["status"][0]["attempt"] == 1


async def test_a_failed_step_skips_the_later_aliases_and_fails_the_task(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    task = await run_with_agent(ports, outputs={}, fail={"postgres_vm"})

    assert task.state == "failed"
    assert task.result["failed_steps"] == ["db/0/postgres_vm"]
    body = await instance(ports)
    assert body is not None
    assert [(s["status"], s["error_message"]) for s in body["status"]] == [
        ("FAILED", "postgres_vm exited with code 2"),
        ("SKIPPED", "not run: db failed"),
    ]


async def test_a_resumed_task_skips_the_steps_already_ready(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    lease = await claim_task(ports)
    await operations.run_task(ports, lease)  # dispatches db, then parks
    [db] = await ports.broker.claim(queues=["agent:bru-agent"], owner="agent-1")
    result = {"status": "READY", "error_message": "", "outputs": {"db_host": "h"}}
    await ports.broker.complete(db.id, owner="agent-1", epoch=db.lease_epoch, result=result)
    # The worker that claimed the woken task dies before recording anything: its lease lapses.
    [woken] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1")
    await ports.broker.release(woken.id, owner="worker-1", epoch=woken.lease_epoch, started=True)
    [resumed] = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-2")
    assert resumed.lease_expiries == 1
    agent = asyncio.create_task(fake_agent(ports, outputs={}))
    try:
        task = await drive(
            ports, TaskLease(resumed, owner="worker-2", epoch=resumed.lease_epoch, broker=ports.broker)
        )
    finally:
        agent.cancel()
    # db's job ran once: the resumed task recorded its result instead of dispatching it again.
    assert [
        i.payload["functional_requirement"] for i in await ports.broker.list(queue="agent:bru-agent")
    ] == [
        "postgres_vm",
        "nginx",
    ]
    assert task.state == "succeeded"


async def test_delete_runs_the_steps_in_reverse_and_removes_the_document(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    await run_with_agent(ports, outputs={"postgres_vm": {"db_host": "h"}})
    started = await instance_delete.delete(ports, "shop-prod", force=False, subject="alice", source=SOURCE)
    assert started.body == {"result": "Stack instance shop-prod is being deleted"}
    body = await instance(ports)
    assert body is not None
    assert all(s["action"] == "delete" for s in body["status"])
    seen: list[Item] = []
    task = await run_with_agent(ports, outputs={}, seen=seen)

    assert task.state == "succeeded", task.error
    assert task.result["document_removed"] is True
    assert [item.payload["functional_requirement"] for item in seen] == ["nginx", "postgres_vm"]
    assert all(item.payload["action"] == "delete" for item in seen)
    assert await instance(ports) is None


async def test_a_failed_delete_keeps_the_document_unless_forced(ports: Ports) -> None:
    await load(ports)
    await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    await run_with_agent(ports, outputs={})
    await instance_delete.delete(ports, "shop-prod", force=False, subject="alice", source=SOURCE)
    task = await run_with_agent(ports, outputs={}, fail={"nginx"})
    assert task.state == "failed"
    body = await instance(ports)
    assert body is not None
    assert [(s["service"], s["status"]) for s in body["status"]] == [("db", "SKIPPED"), ("web", "FAILED")]

    await instance_delete.delete(ports, "shop-prod", force=True, subject="alice", source=SOURCE)
    task = await run_with_agent(ports, outputs={}, fail={"nginx"})
    assert task.state == "failed"
    assert task.result["forced"] is True
    assert task.result["document_removed"] is True
    assert await instance(ports) is None


async def test_a_task_the_worker_gives_up_leaves_no_step_in_progress(ports: Ports) -> None:
    await load(ports)
    started = await instance_create.create(ports, request(), subject="alice", source=SOURCE)
    task = await ports.broker.get(str(started.task_id))
    assert task is not None
    assert task.max_attempts == ports.task_max_attempts  # a lost worker's task is resumed, not failed
    await operations.give_up(ports, task, "worker lost 5 times")
    body = await instance(ports)
    assert body is not None
    assert {(s["status"], s["error_message"]) for s in body["status"]} == {
        ("FAILED", "task create failed: worker lost 5 times")
    }
