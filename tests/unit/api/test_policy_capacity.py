"""Access decisions never wait behind users' policy evaluations (issue 15, defect 2).

A viewer's evaluations that never end hold every thread of the policy engine that runs users' policies; the
authorization policy runs on an engine of its own, so an admin's and an agent's requests still get their
answers. The held engine is a fake that models the real one's bound: a fixed number of threads, each held by
a call until the test releases it, and ``PolicyEngineUnavailable`` once all are held.
"""

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.domain.auth import Role
from stackl.errors import PolicyEngineUnavailable
from stackl.policy.base import DEFAULT_TIMEOUT_S, Policy, PolicyDecision, PolicyEngine, PolicyInfo
from stackl.policy.rego import RegoPolicyEngine
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

THREADS = 2
RUNAWAY = {"policy": "package runaway\nx := 1", "rule": "x"}


class HeldEngine(PolicyEngine):
    """``threads`` policy threads; a call on package ``runaway`` holds its thread until ``release`` is set.

    Other calls go to ``inner`` on a free thread; with every thread held, a call fails at once as the real
    engine's does (``PolicyEngineUnavailable``). ``held`` is set, on the test's loop, when all are held.
    """

    def __init__(self, inner: PolicyEngine, threads: int, loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.free = threading.BoundedSemaphore(threads)
        self.threads, self.holding = threads, 0
        self.release = threading.Event()
        self.held = asyncio.Event()
        self._loop = loop
        self._lock = threading.Lock()

    def check(self, name: str, source: str) -> PolicyInfo:
        return self.inner.check(name, source)

    def _run(self, policy: Policy, call: Any) -> PolicyDecision:
        if not self.free.acquire(blocking=False):
            raise PolicyEngineUnavailable(f"all {self.threads} policy threads are busy")
        try:
            if policy.name == "runaway":
                with self._lock:
                    self.holding += 1
                    if self.holding == self.threads:
                        self._loop.call_soon_threadsafe(self.held.set)
                self.release.wait()
                return PolicyDecision(defined=True, value=1, duration_ms=0.0)
            decision: PolicyDecision = call()
            return decision
        finally:
            self.free.release()

    def evaluate(
        self,
        policy: Policy,
        rule: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._run(policy, lambda: self.inner.evaluate(policy, rule, input_doc, data=data))

    def query(
        self,
        policy: Policy,
        query: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._run(policy, lambda: self.inner.query(policy, query, input_doc, data=data))


@pytest.fixture(scope="module")
def rego() -> Iterator[RegoPolicyEngine]:
    engine = RegoPolicyEngine(max_workers=1)
    yield engine
    engine.close()


@pytest.fixture
async def held(rego: RegoPolicyEngine) -> AsyncIterator[HeldEngine]:
    engine = HeldEngine(rego, THREADS, asyncio.get_running_loop())
    yield engine
    engine.release.set()  # whatever the test did, no thread stays held


@pytest.fixture
async def ports(held: HeldEngine, rego: RegoPolicyEngine) -> AsyncIterator[Ports]:
    async with InMemoryDocumentStore() as store:
        yield Ports(
            store=store,
            broker=InMemoryBroker(),
            policies=held,
            authz_policies=rego,
            agents=InMemoryAgentRegistry(),
        )


@pytest.fixture
async def api(ports: Ports, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path / "data", auth={"enabled": True}), ports)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://stackl.test"
    ) as client:
        yield client


async def bearer(ports: Ports, role: Role, *, agent: str | None = None) -> dict[str, str]:
    created = await token_cases.issue(
        ports, subject=f"{role.value}-user", role=role, agent=agent, created_by="t"
    )
    return {"Authorization": f"Bearer {created.secret}"}


async def test_held_evaluations_do_not_delay_access_decisions(
    api: httpx.AsyncClient, ports: Ports, held: HeldEngine
) -> None:
    viewer, admin = await bearer(ports, Role.viewer), await bearer(ports, Role.admin)
    agent = await bearer(ports, Role.agent, agent="edge")
    runaways = [
        asyncio.create_task(api.post("/policies/evaluate", json=RUNAWAY, headers=viewer))
        for _ in range(THREADS)
    ]
    await held.held.wait()  # every user-policy thread is now held by a viewer's evaluation

    one_more = await api.post("/policies/evaluate", json=RUNAWAY, headers=viewer)
    assert one_more.status_code == 503, one_more.text  # the users' engine is full...
    listed = await api.get("/documents", headers=admin)
    assert listed.status_code == 200, listed.text  # ...yet an admin's request is decided and answered,
    tokens = await api.get("/auth/tokens", headers=admin)
    assert tokens.status_code == 200, tokens.text
    registered = await api.post(
        "/agents/register", json={"name": "edge", "instance_id": "i-1"}, headers=agent
    )
    assert registered.status_code in (200, 201), registered.text  # and so is an agent's
    refused = await api.get("/auth/tokens", headers=viewer)
    assert refused.status_code == 403, refused.text  # decided by the policy, not failed closed
    assert refused.json()["reasons"] == ["role viewer may not read token"]

    held.release.set()
    answers = await asyncio.gather(*runaways)
    assert [a.status_code for a in answers] == [200] * THREADS
    assert all(a.json()["result"] == 1 for a in answers)
