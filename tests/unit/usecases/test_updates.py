"""Updates of stack instances on the in-memory ports: diff by input hash, scale, add/remove, rollback (§4.3-4.5)."""

import asyncio
from typing import Any

import pytest
from tests import factories
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
from stackl.broker.base import Item
from stackl.usecases import instance_create, instance_plans, updates
from stackl.usecases.ports import Ports


@pytest.fixture
def ports() -> Ports:
    return test_instances.make_ports()


OUTPUTS = {"postgres_vm": {"db_host": "10.20.0.15"}, "nginx": {"web_url": "http://x"}}


def zones(*names: str) -> list[dict[str, Any]]:
    """Extra zones and a SIT ``prod`` over all of them (dmz first)."""
    docs: list[dict[str, Any]] = [factories.zone(name) for name in names]
    targets = [{"environment": "production", "location": "brussels", "zone": z} for z in ("dmz", *names)]
    docs.append(factories.stack_infrastructure_template("prod", infrastructure_targets=targets))
    return docs


async def deployed(ports: Ports, docs: list[dict[str, Any]] | None = None, **extra: Any) -> dict[str, Any]:
    more = docs or []
    replaced = {(d["type"], d["name"]) for d in more}
    await load(ports, [*(d for d in example_documents() if (d["type"], d["name"]) not in replaced), *more])
    await instance_create.create(ports, request(**extra), subject="alice", source=SOURCE)
    task = await run_with_agent(ports, outputs=OUTPUTS)
    assert task.state == "succeeded", task.result
    body = await instance(ports)
    assert body is not None
    return body


async def update(
    ports: Ports, seen: list[Item] | None = None, fail: frozenset[str] = frozenset(), **body: Any
) -> Item:
    started = await updates.update(
        ports, {"stack_instance_name": "shop-prod", **body}, subject="bob", source=SOURCE
    )
    assert started.body == "Stack instance updating"
    return await run_with_agent(ports, outputs=OUTPUTS, seen=seen, fail=fail)


def statuses(body: dict[str, Any]) -> dict[str, tuple[str, str | None]]:
    return {
        f"{e['service']}/{e['replica']}/{e['functional_requirement']}": (e["status"], e.get("action"))
        for e in body["status"]
    }


@pytest.mark.asyncio
async def test_repeating_the_same_update_runs_no_job(ports: Ports) -> None:
    await deployed(ports)
    seen: list[Item] = []
    task = await update(ports, seen, params={"owner": "team-a"}, service_params={"web": {"listen_port": 80}})
    assert task.state == "succeeded"
    assert seen == []
    assert [s["decision"] for g in task.payload["groups"] for s in g["steps"]] == ["unchanged", "unchanged"]
    body = await instance(ports)
    assert body is not None
    assert statuses(body) == {"db/0/postgres_vm": ("READY", "create"), "web/0/nginx": ("READY", "create")}


@pytest.mark.asyncio
async def test_a_changed_parameter_reruns_only_the_affected_step(ports: Ports) -> None:
    await deployed(ports)
    seen: list[Item] = []
    task = await update(ports, seen, service_params={"web": {"listen_port": 8443}})
    assert task.state == "succeeded"
    assert [(i.payload["functional_requirement"], i.payload["action"]) for i in seen] == [("nginx", "update")]
    assert seen[0].payload["provisioning_parameters"]["listen_port"] == 8443
    assert seen[0].payload["provisioning_parameters"]["db_host"] == "10.20.0.15"  # layer 10 from db
    body = await instance(ports)
    assert body is not None
    assert statuses(body)["web/0/nginx"] == ("READY", "update")
    assert body["instance_params"] == {"owner": "team-a"}  # merged, not replaced


@pytest.mark.asyncio
async def test_force_rerun_runs_every_step(ports: Ports) -> None:
    await deployed(ports)
    seen: list[Item] = []
    await update(ports, seen, force_rerun=True)
    assert sorted(i.payload["functional_requirement"] for i in seen) == ["nginx", "postgres_vm"]


@pytest.mark.asyncio
async def test_scale_up_then_down(ports: Ports) -> None:
    await deployed(ports, zones("zone-b", "zone-c"))
    seen: list[Item] = []
    await update(ports, seen, replicas={"web": 3})
    assert sorted((i.payload["replica"], i.payload["action"]) for i in seen) == [(1, "create"), (2, "create")]
    body = await instance(ports)
    assert body is not None
    assert [r["infrastructure_target"] for r in body["services"]["web"]] == [
        "production.brussels.dmz",
        "production.brussels.zone-b",
        "production.brussels.zone-c",
    ]
    seen.clear()
    task = await update(ports, seen, replicas={"web": 1})
    assert task.state == "succeeded"
    assert sorted((i.payload["replica"], i.payload["action"]) for i in seen) == [(1, "delete"), (2, "delete")]
    body = await instance(ports)
    assert body is not None
    assert len(body["services"]["web"]) == 1
    assert sorted(statuses(body)) == ["db/0/postgres_vm", "web/0/nginx"]


@pytest.mark.asyncio
async def test_removing_a_service_tears_it_down(ports: Ports) -> None:
    await load(ports, example_documents())
    extra = [{"name": "cache", "service": "nginx"}]
    await instance_create.create(ports, request(services=extra), subject="alice", source=SOURCE)
    await run_with_agent(ports, outputs=OUTPUTS)
    seen: list[Item] = []
    task = await update(ports, seen, services=[])
    assert task.state == "succeeded"
    assert [(i.payload["service"], i.payload["action"]) for i in seen] == [("cache", "delete")]
    body = await instance(ports)
    assert body is not None
    assert "cache" not in body["services"]
    assert body["extra_services"] == []


@pytest.mark.asyncio
async def test_disable_invocation_writes_the_document_only(ports: Ports) -> None:
    await deployed(ports)
    started = await updates.update(
        ports,
        {"stack_instance_name": "shop-prod", "params": {"owner": "team-b"}, "disable_invocation": True},
        subject="bob",
        source=SOURCE,
    )
    item = await ports.broker.get(str(started.task_id))
    assert item is not None
    assert item.kind == "document_update"
    body = await instance(ports)
    assert body is not None
    assert body["instance_params"]["owner"] == "team-b"
    assert all(e["status"] == "READY" for e in body["status"])
    with pytest.raises(errors.InstanceBusy):  # its task has not ended yet
        await updates.update(ports, {"stack_instance_name": "shop-prod"}, subject="bob", source=SOURCE)


@pytest.mark.asyncio
async def test_disable_invocation_cannot_scale(ports: Ports) -> None:
    await deployed(ports, zones("zone-b"))
    with pytest.raises(errors.InvalidInput) as caught:
        await updates.update(
            ports,
            {"stack_instance_name": "shop-prod", "replicas": {"web": 2}, "disable_invocation": True},
            subject="bob",
            source=SOURCE,
        )
    assert caught.value.errors[0]["loc"] == ["body", "replicas"]


@pytest.mark.asyncio
async def test_update_of_an_unknown_instance_is_404_and_if_match_412(ports: Ports) -> None:
    with pytest.raises(errors.InstanceNotFound):
        await updates.update(ports, {"stack_instance_name": "nope"}, subject="bob", source=SOURCE)
    await deployed(ports)
    with pytest.raises(errors.PreconditionFailed):
        await updates.update(
            ports, {"stack_instance_name": "shop-prod"}, subject="bob", source=SOURCE, if_revision=1
        )


@pytest.mark.asyncio
async def test_failed_create_with_rollback_leaves_no_trace(ports: Ports) -> None:
    await load(ports, example_documents())
    await instance_create.create(ports, request(rollback=True), subject="alice", source=SOURCE)
    seen: list[Item] = []
    task = await run_with_agent(ports, outputs=OUTPUTS, fail={"nginx"}, seen=seen)
    assert task.state == "failed"
    assert task.result is not None
    assert task.result["rolled_back"] is True
    assert [(i.payload["functional_requirement"], i.payload["action"]) for i in seen] == [
        ("postgres_vm", "create"),
        ("nginx", "create"),
        ("postgres_vm", "delete"),
    ]
    assert await instance(ports) is None


@pytest.mark.asyncio
async def test_failed_update_with_rollback_restores_the_revision_before(ports: Ports) -> None:
    before = await deployed(ports, zones("zone-b"))
    seen: list[Item] = []
    task = await update(ports, seen, fail=frozenset({"nginx"}), replicas={"web": 2}, rollback=True)
    assert task.state == "failed"
    assert task.result is not None
    assert task.result["rolled_back"] is True
    body = await instance(ports)
    assert body is not None
    assert len(body["services"]["web"]) == 1
    assert statuses(body) == statuses(before)


@pytest.mark.asyncio
async def test_plan_of_an_update_and_a_delete(ports: Ports) -> None:
    await deployed(ports, zones("zone-b"))
    async with ports.store.transaction(readonly=True) as tx:
        before = await tx.get(doc_type="stack_instance", name="shop-prod")
    answer = await instance_plans.plan(ports, {"stack_instance_name": "shop-prod", "replicas": {"web": 2}})
    assert answer["operation"] == "update"
    assert answer["changes"]["replicas"] == {"web": {"from": 1, "to": 2}}
    decisions = {s["id"]: (s["action"], s["decision"]) for g in answer["plan"] for s in g["steps"]}
    assert decisions == {
        "db/0/postgres_vm": ("update", "unchanged"),
        "web/0/nginx": ("update", "unchanged"),
        "web/1/nginx": ("create", "run"),
    }
    answer = await instance_plans.plan(ports, {"stack_instance_name": "shop-prod", "operation": "delete"})
    assert [s["id"] for g in answer["plan"] for s in g["steps"]] == ["web/0/nginx", "db/0/postgres_vm"]
    async with ports.store.transaction(readonly=True) as tx:
        stored = await tx.get(doc_type="stack_instance", name="shop-prod")
    assert stored is not None
    assert before is not None
    assert stored.revision == before.revision  # plans write nothing


@pytest.mark.asyncio
async def test_restoring_a_revision_converges_to_it(ports: Ports) -> None:
    await deployed(ports, zones("zone-b"), replicas={"web": 2})
    async with ports.store.transaction(readonly=True) as tx:
        two = await tx.get(doc_type="stack_instance", name="shop-prod")
    assert two is not None
    await update(ports, replicas={"web": 1}, params={"owner": "team-b"})
    started = await updates.restore_revision(ports, "shop-prod", two.revision, subject="bob", source=SOURCE)
    assert started.body == {"result": updates.RESTORING}
    seen: list[Item] = []
    task = await run_with_agent(ports, outputs=OUTPUTS, seen=seen)
    assert task.kind == "restore"
    assert task.state == "succeeded", task.result
    assert sorted((i.payload["service"], i.payload["replica"], i.payload["action"]) for i in seen) == [
        ("db", 0, "update"),  # owner is back to team-a: db's inputs changed
        ("web", 0, "update"),
        ("web", 1, "create"),
    ]
    body = await instance(ports)
    assert body is not None
    assert body["instance_params"] == {"owner": "team-a"}
    assert [r["infrastructure_target"] for r in body["services"]["web"]] == [
        "production.brussels.dmz",
        "production.brussels.zone-b",
    ]


@pytest.mark.asyncio
async def test_host_names_with_counters_are_global_kept_and_appended(ports: Ports) -> None:
    template = {"stackl_hostname": "bru-web{ri}-{counter(web, 8000)}", "instances": 2}
    await deployed(ports, zones("zone-b"), replicas={"web": 2}, service_params={"web": template})
    body = await instance(ports)
    assert body is not None
    assert [r["hosts"] for r in body["services"]["web"]] == [
        ["bru-web01-8000", "bru-web01-8001"],
        ["bru-web02-8002", "bru-web02-8003"],
    ]
    assert body["services"]["web"][1]["provisioning_parameters"]["machine_names"] == [
        "bru-web02-8002",
        "bru-web02-8003",
    ]
    # A plan shows names without consuming a counter; an update keeps names and appends new ones.
    await instance_plans.plan(
        ports, {"stack_instance_name": "shop-prod", "service_params": {"web": {**template, "instances": 3}}}
    )
    seen: list[Item] = []
    await update(ports, seen, service_params={"web": {**template, "instances": 3}})
    body = await instance(ports)
    assert body is not None
    assert [r["hosts"] for r in body["services"]["web"]] == [
        ["bru-web01-8000", "bru-web01-8001", "bru-web01-8004"],
        ["bru-web02-8002", "bru-web02-8003", "bru-web02-8005"],
    ]
    assert sorted(i.payload["hosts"][-1] for i in seen) == ["bru-web01-8004", "bru-web02-8005"]
    # The same update again: names and inputs unchanged, nothing runs.
    seen.clear()
    await update(ports, seen, service_params={"web": {**template, "instances": 3}})
    assert seen == []


async def agent_failing_once(ports: Ports, fr: str, seen: list[Item]) -> None:
    """Finish every job READY, except the first update job of ``fr``, which fails."""
    failed = False
    while True:
        for item in await ports.broker.claim(queues=["agent:bru-agent"], owner="a", lease_s=60):
            seen.append(item)
            if (
                item.payload["functional_requirement"] == fr
                and item.payload["action"] == "update"
                and not failed
            ):
                failed = True
                result = {"status": "FAILED", "error_message": "boom", "outputs": {}}
                await ports.broker.fail(item.id, owner="a", epoch=item.lease_epoch, error="x", result=result)
            else:
                result = {
                    "status": "READY",
                    "error_message": "",
                    "outputs": OUTPUTS.get(item.payload["functional_requirement"], {}),
                }
                await ports.broker.complete(item.id, owner="a", epoch=item.lease_epoch, result=result)
        await asyncio.sleep(0.01)


@pytest.mark.asyncio
async def test_update_rollback_reapplies_old_inputs_and_recreates_what_it_deleted(ports: Ports) -> None:
    before = await deployed(ports, zones("zone-b"), replicas={"web": 2})
    await updates.update(
        ports,
        {
            "stack_instance_name": "shop-prod",
            "params": {"owner": "team-b"},
            "replicas": {"web": 1},
            "rollback": True,
        },
        subject="bob",
        source=SOURCE,
    )
    seen: list[Item] = []
    lease = await test_instances.claim_task(ports)
    agent = asyncio.create_task(agent_failing_once(ports, "nginx", seen))
    try:
        task = await test_instances.drive(ports, lease)
    finally:
        agent.cancel()
    assert task.state == "failed"
    assert task.result is not None
    assert task.result["rolled_back"] is True, task.result
    jobs = [
        (
            i.payload["service"],
            i.payload["replica"],
            i.payload["action"],
            i.payload["provisioning_parameters"]["owner"],
        )
        for i in seen
    ]
    assert jobs == [
        ("web", 1, "delete", "team-a"),  # removal phase
        ("db", 0, "update", "team-b"),
        ("web", 0, "update", "team-b"),  # fails: rollback
        ("web", 1, "create", "team-a"),  # re-created as it was
        ("db", 0, "update", "team-a"),  # re-applied with revision_before's inputs
        ("web", 0, "update", "team-a"),
    ]
    body = await instance(ports)
    assert body is not None
    assert body["instance_params"] == {"owner": "team-a"}
    assert len(body["services"]["web"]) == 2
    assert {k: v[0] for k, v in statuses(body).items()} == {k: v[0] for k, v in statuses(before).items()}
    assert "rolling_back" not in body or body["rolling_back"] is None
