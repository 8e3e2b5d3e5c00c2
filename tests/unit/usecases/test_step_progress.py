"""Step progress is not a revision (issue 15, defect 7): a task of N steps writes O(1) instance revisions.

Before, every status change of a step stored a full copy of the instance: a task of N steps on an instance of
N services wrote ~3N revisions of N services each. Now the request writes one revision, each step change is a
progress row that reads apply, and the task's end writes one revision holding the final statuses.

Each test plays worker and agent by hand, one activation at a time: nothing sleeps.
"""

from typing import Any

import pytest
from tests import factories
from tests.unit.usecases.test_instances import make_ports

from stackl.domain import step_progress
from stackl.usecases import documents as document_cases
from stackl.usecases import (
    events,
    instance_create,
    instance_delete,
    instance_outputs,
    operations,
    task_queries,
)
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE, TaskLease

SI = "stack_instance"
AGENT_QUEUE = "agent:bru-agent"


def documents(services: int) -> list[dict[str, Any]]:
    """``services`` aliases, each running FR ``vm`` (which reports ``ip``) then FR ``app``."""
    invocation = {"generic": factories.invocation("shell")}
    return [
        factories.environment(),
        factories.location(),
        factories.zone(),
        factories.functional_requirement("vm", params={}, invocation=invocation, outputs={"ip": "ip.value"}),
        factories.functional_requirement("app", params={}, invocation=invocation),
        factories.service("svc", functional_requirements=["vm", "app"], resource_requirements={}),
        factories.stack_application_template(
            "many", services=[{"name": f"s{i}", "service": "svc"} for i in range(services)]
        ),
        factories.stack_infrastructure_template("prod"),
    ]


def request(name: str = "big") -> dict[str, Any]:
    return {
        "stack_instance_name": name,
        "stack_application_template": "many",
        "stack_infrastructure_template": "prod",
    }


async def activate(ports: Ports) -> bool:
    """Claim the ready task and run one activation of it; False when no task was ready."""
    claimed = await ports.broker.claim(queues=[TASKS_QUEUE], owner="worker-1")
    if not claimed:
        return False
    [item] = claimed
    await operations.run_task(
        ports, TaskLease(item=item, owner="worker-1", epoch=item.lease_epoch, broker=ports.broker)
    )
    return True


async def answer_jobs(ports: Ports) -> int:
    """Finish every queued job READY (FR ``vm`` reports its replica's ip); how many there were."""
    jobs = await ports.broker.claim(queues=[AGENT_QUEUE], owner="agent-1", lease_s=60, limit=1000)
    for job in jobs:
        outputs = (
            {"ip": f"10.0.0.{job.payload['replica']}"}
            if job.payload["functional_requirement"] == "vm"
            else {}
        )
        result = {"status": "READY", "error_message": "", "outputs": outputs}
        await ports.broker.complete(job.id, owner="agent-1", epoch=job.lease_epoch, result=result)
    return len(jobs)


async def run_to_end(ports: Ports, task_id: str) -> dict[str, Any]:
    await answer_jobs(ports)  # a job already dispatched: its end wakes the task
    while await activate(ports):
        await answer_jobs(ports)
    item = await ports.broker.get(task_id)
    assert item is not None
    assert item.final
    return {"state": item.state, "result": item.result}


async def revisions(ports: Ports, name: str = "big") -> list[tuple[int, str]]:
    async with ports.store.transaction(readonly=True) as tx:
        page = await tx.history(doc_type=SI, name=name)
    return [(entry.revision, entry.action) for entry in reversed(page.items)]


async def current(ports: Ports, name: str = "big") -> Any:
    async with ports.store.transaction(readonly=True) as tx:
        return await tx.get(doc_type=SI, name=name), await tx.progress(doc_type=SI, name=name)


@pytest.mark.asyncio
@pytest.mark.parametrize("services", [1, 3, 12])
async def test_a_deployment_writes_two_revisions_whatever_its_size(services: int) -> None:
    ports = make_ports()
    await document_cases.apply_many(ports, documents(services), subject="test")
    started = await instance_create.create(ports, request(), subject="alice", source={})
    ended = await run_to_end(ports, str(started.task_id))
    assert ended["state"] == "succeeded", ended
    assert len(ended["result"]["steps"]) == 2 * services
    assert await revisions(ports) == [(1, "create"), (2, "status")]  # the request, the outcome
    stored, rows = await current(ports)
    assert rows == []  # the outcome holds them
    assert {entry["status"] for entry in stored.body["status"]} == {"READY"}
    assert all(entry["task_id"] == started.task_id for entry in stored.body["status"])
    # What each change recorded survives the next change of the same step (one row per step).
    assert all(
        e["job_id"] and e["input_hash"] and e["started_at"] and e["finished_at"]
        for e in stored.body["status"]
    )
    assert all(record["input_hash"] for record in stored.body["steps"].values())
    # The outputs reached the instance and, refreshed at the end, every replica's displayed parameters.
    replica = stored.body["services"][f"s{services - 1}"][0]
    assert replica["outputs"] == {"ip": "10.0.0.0"}
    assert replica["provisioning_parameters"]["ip"] == "10.0.0.0"
    assert set(stored.body["steps"]) == {f"s{i}/0/{fr}" for i in range(services) for fr in ("vm", "app")}


@pytest.mark.asyncio
async def test_live_statuses_show_while_the_task_runs_without_new_revisions() -> None:
    ports = make_ports()
    await document_cases.apply_many(ports, documents(2), subject="test")
    started = await instance_create.create(ports, request(), subject="alice", source={})
    hub = events.EventHub(ports)
    await hub.poll()  # baseline
    await activate(ports)  # dispatches s0's vm, parks
    await answer_jobs(ports)
    await activate(ports)  # records s0/vm READY, dispatches s0's app
    stored, rows = await current(ports)
    assert stored.revision == 1  # no revision yet: the request's
    assert [row.key for row in rows] == ["s0/0/vm", "s0/0/app"]
    assert stored.progress_seq == max(row.seq for row in rows)
    by_step = {
        step_progress.progress_key((e["service"], e["replica"], e["functional_requirement"])): e
        for e in stored.body["status"]
    }
    assert by_step["s0/0/vm"]["status"] == "READY"
    assert by_step["s0/0/app"]["status"] == "in_progress"
    assert by_step["s0/0/app"]["job_id"]
    item = await ports.broker.get(str(started.task_id))
    assert item is not None
    view = await task_queries.task_view(ports, item)
    assert (view["progress"]["ready"], view["progress"]["running"]) == (1, 1)
    assert await task_queries.instance_task(ports, "big") == {
        "id": started.task_id,
        "kind": "create",
        "state": "running",
    }

    found = await hub.poll()
    steps = [(e.data["step"], e.data["status"]) for e in found if e.kind == "step.updated"]
    assert steps == [("s0/0/vm", "READY")]  # a dispatch changes no watched field (status was in_progress)
    assert [e.kind for e in found if e.kind.startswith("outputs")] == ["outputs.updated"]
    assert not [e for e in found if e.kind.startswith("document.")]  # progress is no revision

    await run_to_end(ports, str(started.task_id))
    rest = await hub.poll()
    # The outcome revision: the steps changed since the last poll, once each, and one document event.
    steps = sorted((e.data["step"], e.data["status"]) for e in rest if e.kind == "step.updated")
    assert steps == [("s0/0/app", "READY"), ("s1/0/app", "READY"), ("s1/0/vm", "READY")]
    assert [e.kind for e in rest if e.kind.startswith("document.")] == ["document.updated"]


@pytest.mark.asyncio
async def test_servers_polling_at_other_times_give_a_progress_change_the_same_id() -> None:
    ports = make_ports()
    await document_cases.apply_many(ports, documents(2), subject="test")
    await instance_create.create(ports, request(), subject="alice", source={})
    often, seldom = events.EventHub(ports), events.EventHub(ports)
    await often.poll()
    await seldom.poll()
    await activate(ports)  # s0/vm dispatched
    await answer_jobs(ports)
    await activate(ports)  # s0/vm READY, s0/app dispatched
    first = await often.poll()
    await answer_jobs(ports)
    await activate(ports)  # s0/app READY, s1/vm dispatched
    later = await often.poll()
    once = await seldom.poll()

    def steps(found: list[events.Event]) -> list[tuple[str, str, str]]:
        return [(e.data["step"], e.data["status"], e.id) for e in found if e.kind == "step.updated"]

    assert [s[:2] for s in steps([*first, *later])] == [("s0/0/vm", "READY"), ("s0/0/app", "READY")]
    assert steps(once) == steps([*first, *later])  # same changes, same ids


@pytest.mark.asyncio
async def test_a_delete_removes_the_document_and_its_progress() -> None:
    ports = make_ports()
    await document_cases.apply_many(ports, documents(3), subject="test")
    started = await instance_create.create(ports, request(), subject="alice", source={})
    await run_to_end(ports, str(started.task_id))
    deleting = await instance_delete.delete(ports, "big", force=False, subject="alice", source={})
    ended = await run_to_end(ports, str(deleting.task_id))
    assert ended["state"] == "succeeded", ended
    assert [action for _, action in await revisions(ports)] == ["create", "status", "status", "delete"]
    stored, rows = await current(ports)
    assert (stored, rows) == (None, [])


@pytest.mark.asyncio
async def test_outputs_posted_between_activations_reach_the_next_job() -> None:
    """The copy a process keeps between activations is not reused once another writer made a revision."""
    ports = make_ports()
    await document_cases.apply_many(ports, documents(2), subject="test")
    await instance_create.create(ports, request(), subject="alice", source={})
    await activate(ports)  # s0/vm dispatched; the process keeps the instance
    stored, _ = await current(ports)
    target = stored.body["services"]["s1"][0]["infrastructure_target"]
    posted = {
        "stack_instance": "big",
        "service": "s1",
        "infrastructure_target": target,
        "outputs": {"dns": "x"},
    }
    await instance_outputs.add_outputs(ports, posted, subject="alice")
    await answer_jobs(ports)
    await activate(ports)  # s0/vm READY, s0/app dispatched with the posted outputs
    [job] = await ports.broker.claim(queues=[AGENT_QUEUE], owner="agent-1", lease_s=60)
    assert job.payload["functional_requirement"] == "app"
    assert job.payload["provisioning_parameters"]["dns"] == "x"
