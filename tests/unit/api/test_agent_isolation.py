"""Agent isolation holds whatever the authorization policy says (issue 15, defect 1).

The attack: with a permissive user ``authorization`` template (``default allow := true``), a token bound to
agent A registered, claimed, started, reported and deregistered as agent B, got B's job with its secret and
made B's step READY with a forged result. The name binding is now checked in code on every agent route, an
instance id cannot be taken over by another name, and a job call is accepted only from the instance holding
the job's current attempt.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stackl.api.app import create_app
from stackl.broker.base import ItemSpec
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.auth import Role
from stackl.policy.rego import RegoPolicyEngine
from stackl.usecases import agents
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

PERMISSIVE = "package authorization\nimport rego.v1\ndefault allow := true\n"
SECRET = "B-only-secret-7f3a"
VICTIM, ATTACKER = "agent-b", "agent-a"
B_INSTANCE, A_INSTANCE = "01JNM2ZK4T8W3X6Y9A1B5C7D2B", "01JNM2ZK4T8W3X6Y9A1B5C7D2A"


@pytest.fixture(scope="module")
def engine() -> Iterator[RegoPolicyEngine]:
    policies = RegoPolicyEngine(max_workers=1)
    yield policies
    policies.close()


@pytest.fixture
async def ports(engine: RegoPolicyEngine) -> AsyncIterator[Ports]:
    async with InMemoryDocumentStore() as store:
        yield Ports(store=store, broker=InMemoryBroker(), policies=engine, agents=InMemoryAgentRegistry())


@pytest.fixture
def app(ports: Ports, tmp_path: Path) -> FastAPI:
    return create_app(Settings(data_dir=tmp_path / "data", auth={"enabled": True}), ports)


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
        yield client


async def bearer(ports: Ports, role: Role, *, agent: str | None = None) -> dict[str, str]:
    created = await token_cases.issue(
        ports, subject=f"{role.value}-{agent or 'user'}", role=role, agent=agent, created_by="test"
    )
    return {"Authorization": f"Bearer {created.secret}"}


async def permissive(api: httpx.AsyncClient, ports: Ports) -> None:
    template = {"name": "authorization", "type": "policy_template", "policy": PERMISSIVE}
    admin = await bearer(ports, Role.admin)
    assert (await api.put("/policy_templates", json=template, headers=admin)).status_code == 200


def registration(name: str, instance_id: str) -> dict[str, object]:
    return {"name": name, "instance_id": instance_id, "hostname": "h", "version": "1", "protocol": 1}


async def victim_job(
    ports: Ports, api: httpx.AsyncClient, victim: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """A job of agent B with a secret, claimed by B's own instance; the job id and the claimed payload."""
    spec = ItemSpec(
        queue=agents.queue_of(VICTIM),
        kind="job",
        payload={"tool": "shell", "invocation": {}, "secrets": {"password": SECRET}},
        max_attempts=3,
    )
    job_id = (await ports.broker.enqueue(spec)).id
    assert (
        await api.post("/agents/register", json=registration(VICTIM, B_INSTANCE), headers=victim)
    ).is_success
    claimed = await api.post(
        f"/agents/{VICTIM}/claim", json={"instance_id": B_INSTANCE, "wait": 0}, headers=victim
    )
    assert claimed.status_code == 200, claimed.text
    return job_id, claimed.json()["jobs"][0]


async def test_an_agent_token_cannot_act_for_another_agent_even_under_a_permissive_policy(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    await permissive(api, ports)
    attacker = await bearer(ports, Role.agent, agent=ATTACKER)
    victim = await bearer(ports, Role.agent, agent=VICTIM)
    spec = ItemSpec(
        queue=agents.queue_of(VICTIM),
        kind="job",
        payload={"tool": "shell", "invocation": {}, "secrets": {"password": SECRET}},
        max_attempts=3,
    )
    job_id = (await ports.broker.enqueue(spec)).id
    assert (
        await api.post("/agents/register", json=registration(VICTIM, B_INSTANCE), headers=victim)
    ).is_success
    attempt = {"instance_id": B_INSTANCE, "attempt": 1}
    result = {**attempt, "status": "READY", "exit_code": 0, "outputs": {"pwned": True}}
    calls = [
        ("/agents/register", registration(VICTIM, A_INSTANCE)),
        (f"/agents/{VICTIM}/heartbeat", {"instance_id": B_INSTANCE, "free_slots": 1, "running": []}),
        (f"/agents/{VICTIM}/claim", {"instance_id": B_INSTANCE, "wait": 0}),
        (f"/agents/{VICTIM}/jobs/{job_id}/start", attempt),
        (f"/agents/{VICTIM}/jobs/{job_id}/events", {**attempt, "events": [{"seq": 1, "text": "x"}]}),
        (f"/agents/{VICTIM}/jobs/{job_id}/result", result),
        (f"/agents/{VICTIM}/results", {"results": [{**result, "job_id": job_id}]}),
        (f"/agents/{VICTIM}/jobs/{job_id}/release", {**attempt, "started": False}),
        (f"/agents/{VICTIM}/deregister", {"instance_id": B_INSTANCE}),
    ]
    for path, body in calls:
        refused = await api.post(path, json=body, headers=attacker)
        assert refused.status_code == 403, (path, refused.text)
        assert refused.json()["reasons"] == [
            f"an agent token for {ATTACKER!r} may not act for agent {VICTIM!r}"
        ]
        assert SECRET not in refused.text
    for method, path in (("GET", "/agents"), ("GET", f"/agents/{VICTIM}"), ("DELETE", f"/agents/{VICTIM}")):
        assert (await api.request(method, path, headers=attacker)).status_code == 403, path
    # nothing happened to B: its job is still queued, its instance still registered under its name
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.attempt) == ("queued", 0)
    instance = await ports.agents.get_instance(B_INSTANCE)
    assert instance is not None
    assert (instance.name, instance.deregistered_at) == (VICTIM, None)
    # the attacker's own agent still works, and it may see itself
    assert (
        await api.post("/agents/register", json=registration(ATTACKER, A_INSTANCE), headers=attacker)
    ).is_success
    assert (await api.get(f"/agents/{ATTACKER}", headers=attacker)).status_code == 200


async def test_a_user_token_cannot_act_as_an_agent_even_under_a_permissive_policy(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    await permissive(api, ports)
    operator = await bearer(ports, Role.operator)
    refused = await api.post(
        f"/agents/{VICTIM}/claim", json={"instance_id": B_INSTANCE, "wait": 0}, headers=operator
    )
    assert refused.status_code == 403
    assert refused.json()["reasons"] == [
        "only an agent token bound to this agent (or an admin) may act for it"
    ]
    assert (
        await api.post("/agents/register", json=registration(VICTIM, B_INSTANCE), headers=operator)
    ).status_code == 403
    # what the policy grants a user outside the protocol still stands
    assert (await api.get("/agents", headers=operator)).status_code == 200


async def test_an_instance_id_cannot_be_taken_over_by_another_agent(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    victim = await bearer(ports, Role.agent, agent=VICTIM)
    attacker = await bearer(ports, Role.agent, agent=ATTACKER)
    assert (
        await api.post("/agents/register", json=registration(VICTIM, B_INSTANCE), headers=victim)
    ).is_success
    taken = await api.post("/agents/register", json=registration(ATTACKER, B_INSTANCE), headers=attacker)
    assert taken.status_code == 409, taken.text
    assert taken.json()["reason"] == "instance_taken"
    instance = await ports.agents.get_instance(B_INSTANCE)
    assert instance is not None
    assert instance.name == VICTIM
    # re-registering one's own instance stays idempotent
    assert (
        await api.post("/agents/register", json=registration(VICTIM, B_INSTANCE), headers=victim)
    ).is_success


async def test_only_the_instance_holding_the_attempt_may_report_on_the_job(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    await permissive(api, ports)
    victim = await bearer(ports, Role.agent, agent=VICTIM)
    job_id, payload = await victim_job(ports, api, victim)
    assert payload["secrets"] == {"password": SECRET}  # B's own instance gets its job, as it must
    # another instance of the same name (a second host, or a stolen token of B) does not hold the attempt
    other = "01JNM2ZK4T8W3X6Y9A1B5C7D2C"
    assert (await api.post("/agents/register", json=registration(VICTIM, other), headers=victim)).is_success
    forged = {"instance_id": other, "attempt": 1, "status": "READY", "exit_code": 0, "outputs": {"pwned": 1}}
    base = f"/agents/{VICTIM}/jobs/{job_id}"
    for path, body in (
        (f"{base}/start", {"instance_id": other, "attempt": 1}),
        (f"{base}/events", {"instance_id": other, "attempt": 1, "events": [{"seq": 1, "text": "x"}]}),
        (f"{base}/result", forged),
        (f"{base}/release", {"instance_id": other, "attempt": 1, "started": True}),
    ):
        lost = await api.post(path, json=body, headers=victim)
        assert (lost.status_code, lost.json()["reason"]) == (409, "lease_lost"), path
    beat = await api.post(
        f"/agents/{VICTIM}/heartbeat",
        json={"instance_id": other, "free_slots": 1, "running": [{"job_id": job_id, "attempt": 1}]},
        headers=victim,
    )
    assert beat.json()["abandon"] == [{"job_id": job_id, "attempt": 1, "reason": "lease_lost"}]
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.lease_owner) == ("running", B_INSTANCE)
    # the holder's own result is the one that counts
    own = {**forged, "instance_id": B_INSTANCE, "outputs": {"ok": 1}}
    accepted = await api.post(f"{base}/result", json=own, headers=victim)
    assert accepted.json() == {"accepted": True}
    done = await ports.broker.get(job_id)
    assert done is not None
    assert done.state == "succeeded"
    assert done.result is not None
    assert done.result["outputs"] == {"ok": 1}
