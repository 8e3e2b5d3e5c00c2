"""The agent protocol's use cases (spec/agents.md §1-4) on the in-memory store, broker and registry.

A manual clock moves leases and liveness forward without sleeping; claims use ``wait=0``.
"""

from typing import Any

import pytest
from tests.clocks import ManualClock
from tests.unit.hiccups import HiccupBroker, HiccupStore

from stackl import errors
from stackl.broker.base import ItemSpec
from stackl.broker.memory import InMemoryBroker
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases import agent_claims, agent_registry, agent_reports, agents
from stackl.usecases.ports import Ports

SECRET = "s3cr3t-value-42"
NAME = "bru-agent"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def ports(clock: ManualClock) -> Ports:
    return Ports(
        store=InMemoryDocumentStore(clock=clock),
        broker=InMemoryBroker(clock),
        policies=StaticPolicyEngine(),
        agents=InMemoryAgentRegistry(),
        clock=clock,
    )


def payload(**extra: Any) -> dict[str, Any]:
    return {
        "task_id": "T1",
        "action": "create",
        "stack_instance": "shop",
        "service": "web",
        "replica": 0,
        "functional_requirement": "nginx",
        "tool": "shell",
        "invocation": {"command": "true", "retries": 0},
        "secrets": {"token": SECRET},
        **extra,
    }


async def enqueue(ports: Ports, name: str = NAME, **extra: Any) -> str:
    item = await ports.broker.enqueue(
        ItemSpec(queue=agents.queue_of(name), kind="job", payload=payload(**extra), max_attempts=3)
    )
    return item.id


async def register(ports: Ports, instance_id: str = "I1", **extra: Any) -> dict[str, Any]:
    return await agent_registry.register(
        ports, agent_registry.Registration(name=NAME, instance_id=instance_id, tools={"shell": "sh"}, **extra)
    )


def ready(attempt: int, **extra: Any) -> agent_reports.JobResult:
    return agent_reports.JobResult(attempt=attempt, status="READY", exit_code=0, **extra)


async def test_register_answers_the_timings_and_is_idempotent(ports: Ports) -> None:
    first = await register(ports)
    assert first["heartbeat_interval_s"] == 10
    assert first["lease_s"] == 60
    assert first["limits"]["event_batch_bytes"] == 262144
    assert await register(ports) == first
    assert [i.instance_id for i in await ports.agents.instances(name=NAME)] == ["I1"]


async def test_an_unsupported_protocol_is_a_conflict_with_reason(ports: Ports) -> None:
    with pytest.raises(errors.ProtocolUnsupported) as caught:
        await register(ports, protocol=2)
    assert caught.value.extra() == {"reason": "protocol"}


async def test_claim_start_events_result_completes_the_job(ports: Ports) -> None:
    job_id = await enqueue(ports)
    await register(ports)
    jobs = await agent_claims.claim(ports, NAME, instance_id="I1", wait=0, max_jobs=2)
    assert [(j["job_id"], j["attempt"], j["lease_s"]) for j in jobs] == [(job_id, 1, 60)]
    assert jobs[0]["secrets"] == {"token": SECRET}  # the payload is the one place secrets leave
    await agent_reports.start(ports, NAME, job_id, instance_id="I1", attempt=1)
    answer = await agent_reports.events(
        ports,
        NAME,
        job_id,
        instance_id="I1",
        attempt=1,
        lines=[
            agent_reports.Event(seq=1, text=f"token is {SECRET}"),
            agent_reports.Event(seq=2, text="done"),
        ],
    )
    assert answer == {"stored_seq": 2, "stop_streaming": False, "cancel": None}
    again = await agent_reports.events(
        ports, NAME, job_id, instance_id="I1", attempt=1, lines=[agent_reports.Event(seq=2, text="done")]
    )
    assert again["stored_seq"] == 2
    lines = await ports.agents.logs(job_id)
    assert [line.line for line in lines] == ["token is ********", "done"]

    outcome = ready(1, outputs={"url": f"http://x/{SECRET}"})
    assert await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=outcome) == {
        "accepted": True
    }
    assert await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=outcome) == {
        "accepted": False,
        "reason": "duplicate",
    }
    item = await ports.broker.get(job_id)
    assert item is not None
    assert item.state == "succeeded"
    assert item.result["outputs"] == {"url": "http://x/********"}
    assert SECRET not in repr(item.result)


async def test_claim_is_empty_for_another_name_or_missing_tool(ports: Ports) -> None:
    await enqueue(ports, tool="terraform")
    await enqueue(ports, name="other")
    await register(ports)
    assert await agent_claims.claim(ports, NAME, instance_id="I1", wait=0) == []
    with pytest.raises(errors.AgentNotFound):
        await agent_claims.claim(ports, NAME, instance_id="unknown", wait=0)


async def test_a_superseded_attempt_is_refused_with_its_reason(ports: Ports, clock: ManualClock) -> None:
    job_id = await enqueue(ports)
    await register(ports, "I1")
    await register(ports, "I2")
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    await agent_reports.start(ports, NAME, job_id, instance_id="I1", attempt=1)
    clock.advance(61)  # I1's lease lapses; I2 takes the next attempt
    jobs = await agent_claims.claim(ports, NAME, instance_id="I2", wait=0)
    assert jobs[0]["attempt"] == 2
    with pytest.raises(errors.LeaseLost) as caught:
        await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=ready(1))
    assert caught.value.extra() == {"reason": "superseded"}
    with pytest.raises(errors.LeaseLost):
        await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=ready(2))
    with pytest.raises(errors.JobNotFound):
        await agent_reports.result(ports, NAME, job_id, instance_id="I2", outcome=ready(3))
    assert await agent_reports.result(ports, NAME, job_id, instance_id="I2", outcome=ready(2)) == {
        "accepted": True
    }


async def test_heartbeat_extends_leases_and_delivers_cancel_and_abandon(
    ports: Ports, clock: ManualClock
) -> None:
    job_id = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    await agent_reports.start(ports, NAME, job_id, instance_id="I1", attempt=1)
    for _ in range(3):
        clock.advance(40)
        answer = await agent_registry.heartbeat(
            ports, NAME, instance_id="I1", free_slots=0, running=[agent_registry.Running(job_id, 1)]
        )
        assert answer == {"cancel": [], "abandon": []}
    await ports.broker.cancel(job_id, by="alice")
    answer = await agent_registry.heartbeat(
        ports, NAME, instance_id="I1", free_slots=0, running=[agent_registry.Running(job_id, 1)]
    )
    assert answer["cancel"] == [{"job_id": job_id, "attempt": 1, "reason": "cancelled by alice"}]
    answer = await agent_registry.heartbeat(
        ports, NAME, instance_id="I1", free_slots=0, running=[agent_registry.Running("nope", 1)]
    )
    assert answer["abandon"] == [{"job_id": "nope", "attempt": 1, "reason": "unknown job"}]


async def test_a_job_lost_in_transit_is_requeued_without_counting(ports: Ports, clock: ManualClock) -> None:
    job_id = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    clock.advance(5)
    await agent_registry.heartbeat(ports, NAME, instance_id="I1", free_slots=1, running=[])
    assert (await ports.broker.get(job_id)).state == "running"  # type: ignore[union-attr]
    clock.advance(11)
    await agent_registry.heartbeat(ports, NAME, instance_id="I1", free_slots=1, running=[])
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.lease_expiries, item.max_attempts) == ("queued", 0, 4)


async def test_registering_with_the_previous_instance_requeues_its_jobs(ports: Ports) -> None:
    job_id = await enqueue(ports)
    await register(ports, "OLD")
    await agent_claims.claim(ports, NAME, instance_id="OLD", wait=0)
    await agent_reports.start(ports, NAME, job_id, instance_id="OLD", attempt=1)
    await register(ports, "NEW", previous_instance_id="OLD")
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.lease_expiries) == ("queued", 1)
    jobs = await agent_claims.claim(ports, NAME, instance_id="NEW", wait=0)
    assert jobs[0]["attempt"] == 2
    with pytest.raises(errors.LeaseLost):
        await agent_reports.result(ports, NAME, job_id, instance_id="OLD", outcome=ready(1))


async def test_release_before_and_after_start(ports: Ports) -> None:
    first = await enqueue(ports)
    second = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0, max_jobs=2)
    await agent_reports.release(ports, NAME, first, instance_id="I1", attempt=1, started=False)
    await agent_reports.release(ports, NAME, first, instance_id="I1", attempt=1, started=False)  # idempotent
    await agent_reports.start(ports, NAME, second, instance_id="I1", attempt=1)
    await agent_reports.release(ports, NAME, second, instance_id="I1", attempt=1, started=True)
    a, b = await ports.broker.get(first), await ports.broker.get(second)
    assert a is not None
    assert b is not None
    assert (a.state, a.lease_expiries, b.state, b.lease_expiries) == ("queued", 0, "queued", 1)


async def test_a_failed_tool_is_retried_while_retries_last(ports: Ports) -> None:
    job_id = await enqueue(ports, invocation={"command": "false", "retries": 1})
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    failed = agent_reports.JobResult(
        attempt=1, status="FAILED", exit_code=1, error_message=f"exit 1\n{SECRET}"
    )
    await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=failed)
    item = await ports.broker.get(job_id)
    assert item is not None
    assert item.state == "queued"
    assert SECRET not in repr((item.result, item.error))
    assert item.result["error_message"] == "exit 1\n********"


async def test_events_over_the_batch_limit_are_refused(ports: Ports) -> None:
    job_id = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    big = [agent_reports.Event(seq=n, text="x" * 16000) for n in range(20)]
    with pytest.raises(errors.PayloadTooLarge):
        await agent_reports.events(ports, NAME, job_id, instance_id="I1", attempt=1, lines=big)


async def test_agent_list_states(ports: Ports, clock: ManualClock) -> None:
    await enqueue(ports, name="ghost")
    job_id = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    await agent_reports.start(ports, NAME, job_id, instance_id="I1", attempt=1)
    listed = {a["name"]: a for a in await agent_registry.list_agents(ports)}
    assert listed["ghost"]["state"] == "never_seen"
    assert listed["ghost"]["queued_jobs"] == 1
    mine = listed[NAME]
    assert mine["state"] == "online"
    assert mine["running_jobs"][0]["step"] == "web/0/nginx"
    assert mine["instances"][0]["tools"] == {"shell": "sh"}
    clock.advance(31)
    assert (await agent_registry.get_agent(ports, NAME))["state"] == "offline"
    await agent_registry.delete_agent(ports, NAME)
    with pytest.raises(errors.AgentNotFound):
        await agent_registry.delete_agent(ports, NAME)
    assert SECRET not in repr(await agent_registry.list_agents(ports))


async def test_deregister_makes_the_agent_offline_at_once(ports: Ports) -> None:
    await register(ports)
    await agent_registry.deregister(ports, NAME, instance_id="I1")
    assert (await agent_registry.get_agent(ports, NAME))["state"] == "offline"


async def test_a_result_may_carry_the_start_and_the_last_events(ports: Ports) -> None:
    job_id = await enqueue(ports)
    await register(ports)
    assert "result_with_events" in (await register(ports))["features"]
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    lines = [agent_reports.Event(seq=1, text=f"token is {SECRET}"), agent_reports.Event(seq=2, text="done")]
    outcome = ready(1, start=True, events=lines)
    assert await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=outcome) == {
        "accepted": True
    }
    record = await ports.agents.get_attempt(job_id, 1)
    assert record is not None
    assert record.started_at is not None
    assert record.result is not None
    assert [line.line for line in await ports.agents.logs(job_id)] == ["token is ********", "done"]
    again = await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=outcome)
    assert again == {"accepted": False, "reason": "duplicate"}
    item = await ports.broker.get(job_id)
    assert item is not None
    assert "secrets" not in item.payload  # final: the clear secrets are gone from the queue


async def test_events_may_carry_the_start(ports: Ports) -> None:
    job_id = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    answer = await agent_reports.events(
        ports, NAME, job_id, instance_id="I1", attempt=1, lines=[], start=True
    )
    assert answer["stored_seq"] == 0
    record = await ports.agents.get_attempt(job_id, 1)
    assert record is not None
    assert record.started_at is not None


# --- a store hiccup is not an abandon (issue 12, item 3) --------------------------------------------------
@pytest.fixture
def hiccup(clock: ManualClock) -> tuple[Ports, HiccupStore, HiccupBroker]:
    store, broker = HiccupStore(clock=clock), HiccupBroker(clock)
    ports = Ports(
        store=store, broker=broker, policies=StaticPolicyEngine(), agents=InMemoryAgentRegistry(), clock=clock
    )
    return ports, store, broker


async def test_an_unreachable_broker_fails_the_heartbeat_and_abandons_nothing(
    hiccup: tuple[Ports, HiccupStore, HiccupBroker], clock: ManualClock
) -> None:
    ports, _, broker = hiccup
    job_id = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    await agent_reports.start(ports, NAME, job_id, instance_id="I1", attempt=1)
    running = [agent_registry.Running(job_id, 1)]
    for down in ("heartbeat", "get"):  # the lease renewal itself, or reading the job first
        broker.down = {down}
        with pytest.raises(errors.BrokerUnavailable):
            await agent_registry.heartbeat(ports, NAME, instance_id="I1", free_slots=0, running=running)
    broker.down = set()
    clock.advance(40)  # the next heartbeat, well within the 60 s lease: the job is still this instance's
    answer = await agent_registry.heartbeat(ports, NAME, instance_id="I1", free_slots=0, running=running)
    assert answer == {"cancel": [], "abandon": []}
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.attempt, item.lease_owner) == ("running", 1, "I1")
    assert await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=ready(1)) == {
        "accepted": True
    }


async def test_a_lost_lease_is_still_abandoned_with_its_reason(
    hiccup: tuple[Ports, HiccupStore, HiccupBroker], clock: ManualClock
) -> None:
    ports, _, _ = hiccup
    job_id = await enqueue(ports)
    await register(ports)
    await register(ports, "I2")
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    clock.advance(61)  # I1's lease lapses; I2 takes attempt 2
    await agent_claims.claim(ports, NAME, instance_id="I2", wait=0)
    answer = await agent_registry.heartbeat(
        ports,
        NAME,
        instance_id="I1",
        free_slots=0,
        running=[agent_registry.Running(job_id, 1), agent_registry.Running(job_id, 3)],
    )
    assert answer["abandon"] == [
        {"job_id": job_id, "attempt": 1, "reason": "superseded"},
        {"job_id": job_id, "attempt": 3, "reason": "unknown job"},
    ]


async def test_a_result_during_a_store_hiccup_is_unavailable_and_accepted_once_resent(
    hiccup: tuple[Ports, HiccupStore, HiccupBroker],
) -> None:
    ports, store, broker = hiccup
    job_id = await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    store.down = True
    with pytest.raises(errors.StoreUnavailable):
        await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=ready(1, start=True))
    store.down, broker.down = False, {"complete"}
    with pytest.raises(errors.BrokerUnavailable):
        await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=ready(1, start=True))
    record = await ports.agents.get_attempt(job_id, 1)
    assert record is not None
    assert record.result is None  # nothing of the refused calls stayed
    broker.down = set()
    assert await agent_reports.result(
        ports, NAME, job_id, instance_id="I1", outcome=ready(1, start=True)
    ) == {"accepted": True}
    again = await agent_reports.result(ports, NAME, job_id, instance_id="I1", outcome=ready(1, start=True))
    assert again == {"accepted": False, "reason": "duplicate"}
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.attempt) == ("succeeded", 1)


async def test_start_events_release_and_claim_during_a_hiccup_are_unavailable(
    hiccup: tuple[Ports, HiccupStore, HiccupBroker],
) -> None:
    ports, _, broker = hiccup
    job_id = await enqueue(ports)
    await enqueue(ports)
    await register(ports)
    await agent_claims.claim(ports, NAME, instance_id="I1", wait=0)
    broker.down = {"*"}
    calls = [
        agent_reports.start(ports, NAME, job_id, instance_id="I1", attempt=1),
        agent_reports.events(
            ports, NAME, job_id, instance_id="I1", attempt=1, lines=[agent_reports.Event(seq=1, text="x")]
        ),
        agent_reports.release(ports, NAME, job_id, instance_id="I1", attempt=1, started=False),
        agent_claims.claim(ports, NAME, instance_id="I1", wait=0),
    ]
    for call in calls:
        with pytest.raises(errors.BrokerUnavailable):
            await call
    broker.down = set()
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.attempt, item.lease_owner) == ("running", 1, "I1")  # still this instance's
    await agent_reports.start(ports, NAME, job_id, instance_id="I1", attempt=1)
    record = await ports.agents.get_attempt(job_id, 1)
    assert record is not None
    assert record.started_at is not None
