"""The attack of issue 15 (defect 2) on the real engines as bootstrap wires them: runaway evaluations overrun.

With one policy thread and a 0.2 s limit, a viewer's runaway comprehension (every pair of two 2,000-element
ranges: seconds of CPU, little memory) overruns, and the users' engine reports itself unavailable while the
overrunning call still holds its thread; an admin's and an agent's requests are decided all the same, by the
authorization engine's own thread.
"""

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from stackl import bootstrap
from stackl.api.app import create_app
from stackl.config import Settings
from stackl.domain.auth import Role
from stackl.usecases import tokens as token_cases
from stackl.usecases.ports import Ports

RUNAWAY = {
    "policy": "package runaway\n",
    "query": "count([a | some a in numbers.range(1, 2000); some b in numbers.range(1, 2000); a == b])",
}


@pytest.fixture(params=["opa", "regopy"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        auth={"enabled": True},
        policy={"engine": request.param, "threads": 1, "timeout_s": 0.2},
    )


@pytest.fixture
async def ports(settings: Settings) -> AsyncIterator[Ports]:
    await bootstrap.upgrade_schema(settings)
    async with bootstrap.open_ports(settings) as ports:
        yield ports


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
    api: httpx.AsyncClient, ports: Ports
) -> None:
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
