"""``POST /policies/evaluate`` is rate-limited per subject (issue 15, defect 2): 429 problem+json, Retry-After.

The buckets run on the injected ManualClock: time moves only when the test says so.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from tests.clocks import ManualClock

from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.auth import Role
from stackl.domain.rate_limits import TokenBuckets
from stackl.policy.rego import RegoPolicyEngine
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

EVALUATION = {"policy": "package p\nx := 1", "rule": "x"}


@pytest.fixture(scope="module")
def rego() -> Iterator[RegoPolicyEngine]:
    engine = RegoPolicyEngine(max_workers=1)
    yield engine
    engine.close()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def ports(rego: RegoPolicyEngine, clock: ManualClock) -> AsyncIterator[Ports]:
    async with InMemoryDocumentStore(clock=clock) as store:
        yield Ports(
            store=store,
            broker=InMemoryBroker(clock=clock),
            policies=StaticPolicyEngine(),
            authz_policies=rego,
            agents=InMemoryAgentRegistry(),
            clock=clock,
            evaluation_limits=TokenBuckets(per_minute=6, burst=2),  # a token every 10 s
        )


@pytest.fixture
async def api(ports: Ports, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", auth={"enabled": True}), ports)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://stackl.test"
    ) as client:
        yield client


async def bearer(ports: Ports, subject: str, role: Role = Role.viewer) -> dict[str, str]:
    created = await token_cases.issue(ports, subject=subject, role=role, created_by="test")
    return {"Authorization": f"Bearer {created.secret}"}


async def test_a_caller_beyond_its_burst_gets_429_with_retry_after(
    api: httpx.AsyncClient, ports: Ports, clock: ManualClock
) -> None:
    mallory, alice = await bearer(ports, "mallory"), await bearer(ports, "alice")
    for _ in range(2):
        assert (await api.post("/policies/evaluate", json=EVALUATION, headers=mallory)).status_code == 200

    refused = await api.post("/policies/evaluate", json=EVALUATION, headers=mallory)
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "10"
    problem = refused.json()
    assert problem["code"] == "rate_limited"
    assert problem["retry_after_s"] == 10.0
    assert problem["detail"] == (
        "too many policy evaluations by mallory: at most 2 at once and 6 a minute; try again in 10 s"
    )
    # Refused before the body is read: a malformed one costs the server nothing either.
    garbage = await api.post("/policies/evaluate", content=b"{not json", headers=mallory)
    assert garbage.status_code == 429

    assert (await api.post("/policies/evaluate", json=EVALUATION, headers=alice)).status_code == 200

    clock.advance(4.0)
    again = await api.post("/policies/evaluate", json=EVALUATION, headers=mallory)
    assert again.headers["retry-after"] == "6"
    clock.advance(6.0)
    assert (await api.post("/policies/evaluate", json=EVALUATION, headers=mallory)).status_code == 200


async def test_other_requests_of_a_limited_caller_are_not_limited(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    mallory = await bearer(ports, "mallory")
    for _ in range(3):
        await api.post("/policies/evaluate", json=EVALUATION, headers=mallory)
    assert (await api.get("/documents", headers=mallory)).status_code == 200
    plan = await api.post("/stack_instances/plan", json={}, headers=mallory)
    assert plan.status_code == 422  # judged on its body, not refused by the evaluation limit
