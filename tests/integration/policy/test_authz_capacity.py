"""The attack of issue 15 (defect 2) on the real engines: runaway evaluations by a viewer.

In-process (how evaluations ran before they moved to worker processes, and how placements still run): with one
policy thread and a 0.2 s limit, a runaway comprehension (every pair of two 2,000-element ranges: seconds of
CPU, little memory) overruns, and that engine reports itself unavailable while the overrunning call still
holds its thread; an admin's and an agent's requests are decided all the same, by the authorization engine's
own thread. As bootstrap wires a server: the overrunning evaluation's worker process is killed, one that grows
past the memory limit is stopped, and the next evaluation answers at once.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stackl import bootstrap
from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.auth import Role
from stackl.policy.isolated import ProcessPolicyEngine
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

RUNAWAY = {
    "policy": "package runaway\n",
    "query": "count([a | some a in numbers.range(1, 2000); some b in numbers.range(1, 2000); a == b])",
}
GROWING = {
    "policy": "package runaway\n",
    "query": "count([[a, b] | some a in numbers.range(1, 4000); some b in numbers.range(1, 4000)])",
}
SMALL = {"policy": "package small\nx := 1\n", "rule": "x"}


@pytest.fixture(params=["opa", "regopy"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        auth={"enabled": True},
        policy={
            "engine": request.param,
            "threads": 1,
            "timeout_s": 0.2,
            "evaluation_processes": 1,
            "evaluation_memory_mb": 192,
        },
    )


@pytest.fixture
async def ports(settings: Settings) -> AsyncIterator[Ports]:
    """As bootstrap wires a server: users' evaluations in a worker process."""
    await bootstrap.upgrade_schema(settings)
    async with bootstrap.open_ports(settings) as ports:
        yield ports


@pytest.fixture
async def in_process(settings: Settings) -> AsyncIterator[Ports]:
    """Users' evaluations on the in-process engine (as placements run), authorization on its own."""
    policies = bootstrap.policy_engine(settings)
    authz = bootstrap.policy_engine(settings, purpose="authz")
    try:
        async with InMemoryDocumentStore() as store:
            yield Ports(
                store=store,
                broker=InMemoryBroker(),
                policies=policies,
                authz_policies=authz,
                agents=InMemoryAgentRegistry(),
                policy_timeout_s=settings.policy.timeout_s,
            )
    finally:
        policies.close()
        authz.close()


@pytest.fixture
async def api(settings: Settings, ports: Ports) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings, ports)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://stackl.test"
    ) as client:
        yield client


async def bearer(ports: Ports, role: Role, *, agent: str | None = None) -> dict[str, str]:
    created = await token_cases.issue(
        ports, subject=f"{role.value}-user", role=role, agent=agent, created_by="t"
    )
    return {"Authorization": f"Bearer {created.secret}"}


async def test_access_is_decided_while_runaway_evaluations_hold_the_policy_threads(
    settings: Settings, in_process: Ports
) -> None:
    app = create_app(settings, in_process)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as api:
        await _runaways_hold_the_threads(api, in_process)


async def _runaways_hold_the_threads(api: httpx.AsyncClient, ports: Ports) -> None:
    viewer, admin = await bearer(ports, Role.viewer), await bearer(ports, Role.admin)
    agent = await bearer(ports, Role.agent, agent="edge")

    overran = await api.post("/policies/evaluate", json=RUNAWAY, headers=viewer)
    assert overran.status_code == 422, overran.text
    assert overran.json()["detail"] == "policy runaway did not finish within 0.2 s"
    held = await api.post("/policies/evaluate", json=RUNAWAY, headers=viewer)
    assert held.status_code == 503, held.text  # the overrunning call still holds the only user-policy thread

    listed = await api.get("/documents", headers=admin)
    assert listed.status_code == 200, listed.text
    registered = await api.post(
        "/agents/register", json={"name": "edge", "instance_id": "i-1"}, headers=agent
    )
    assert registered.status_code == 200, registered.text
    refused = await api.get("/auth/tokens", headers=viewer)
    assert refused.status_code == 403, refused.text
    assert refused.json()["reasons"] == ["role viewer may not read token"]


async def test_overrunning_evaluations_are_stopped_and_the_server_answers(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    viewer, admin = await bearer(ports, Role.viewer), await bearer(ports, Role.admin)
    overran = await api.post("/policies/evaluate", json=RUNAWAY, headers=viewer)
    assert overran.status_code == 422, overran.text
    assert overran.json()["detail"] == "policy runaway did not finish within 0.2 s"
    assert (await api.post("/policies/evaluate", json=SMALL, headers=viewer)).json()["result"] == 1

    grown = await api.post("/policies/evaluate", json={**GROWING, "input": {}}, headers=viewer)
    assert grown.status_code == 422, grown.text
    assert grown.json()["detail"] in (
        "policy runaway was stopped: it ran out of memory (limit 192 MiB)",
        "policy runaway did not finish within 0.2 s",  # a slow machine: stopped by the clock first
    )
    assert (await api.get("/documents", headers=admin)).status_code == 200
    assert (await api.post("/policies/evaluate", json=SMALL, headers=viewer)).json()["result"] == 1
    engine = ports.evaluation_engine
    assert isinstance(engine, ProcessPolicyEngine)
    assert (engine.started, engine.killed) == (3, 2)  # both runaways' workers killed, each replaced
