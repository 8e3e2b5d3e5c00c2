"""Agent routes while the database cannot be reached: 503 with Retry-After, never an abandon (issue 12, item 3).

The in-process API runs on ``HiccupStore`` / ``HiccupBroker``; a test switches the database "off" for the
calls it is about and checks the problem body, then "on" again and checks that the agent's retry of the very
same call is answered as if nothing had happened.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.unit.hiccups import HiccupBroker, HiccupStore

from stackl.api.app import create_app
from stackl.broker.base import ItemSpec
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases import agents
from stackl.usecases.ports import Ports

NAME = "bru-agent"
INSTANCE = "01JNM2ZK4T8W3X6Y9A1B5C7D2E"


@pytest.fixture
async def ports() -> AsyncIterator[Ports]:
    async with HiccupStore() as store:
        yield Ports(
            store=store, broker=HiccupBroker(), policies=StaticPolicyEngine(), agents=InMemoryAgentRegistry()
        )


@pytest.fixture
async def api(ports: Ports, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings(data_dir=tmp_path / "data"), ports)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://stackl.test"
    ) as client:
        yield client


def broker_of(ports: Ports) -> HiccupBroker:
    assert isinstance(ports.broker, HiccupBroker)
    return ports.broker


def store_of(ports: Ports) -> HiccupStore:
    assert isinstance(ports.store, HiccupStore)
    return ports.store


async def running_job(ports: Ports, api: httpx.AsyncClient) -> str:
    """A job claimed by the agent's instance, as the agent would have it."""
    spec = ItemSpec(
        queue=agents.queue_of(NAME), kind="job", payload={"tool": "shell", "invocation": {}}, max_attempts=3
    )
    job_id = (await ports.broker.enqueue(spec)).id
    registered = await api.post(
        "/agents/register", json={"name": NAME, "instance_id": INSTANCE, "tools": {"shell": "sh"}}
    )
    assert registered.status_code == 200, registered.text
    claimed = await api.post(f"/agents/{NAME}/claim", json={"instance_id": INSTANCE, "wait": 0})
    assert [job["job_id"] for job in claimed.json()["jobs"]] == [job_id]
    return job_id


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    body: dict[str, Any] = response.json()
    assert body["code"] == "unavailable"
    assert "abandon" not in body


async def test_a_heartbeat_while_the_broker_is_down_is_a_503_and_the_next_one_keeps_the_job(
    ports: Ports, api: httpx.AsyncClient
) -> None:
    job_id = await running_job(ports, api)
    beat = {"instance_id": INSTANCE, "free_slots": 0, "running": [{"job_id": job_id, "attempt": 1}]}
    broker_of(ports).down = {"heartbeat"}
    assert_unavailable(await api.post(f"/agents/{NAME}/heartbeat", json=beat))
    broker_of(ports).down = set()
    answer = await api.post(f"/agents/{NAME}/heartbeat", json=beat)
    assert answer.status_code == 200
    assert answer.json() == {"cancel": [], "abandon": []}


async def test_a_result_while_the_store_is_down_is_a_503_and_its_retry_is_accepted_once(
    ports: Ports, api: httpx.AsyncClient
) -> None:
    job_id = await running_job(ports, api)
    result = {"instance_id": INSTANCE, "attempt": 1, "status": "READY", "exit_code": 0, "start": True}
    store_of(ports).down = True
    assert_unavailable(await api.post(f"/agents/{NAME}/jobs/{job_id}/result", json=result))
    batch = {"results": [result | {"job_id": job_id}]}
    assert_unavailable(await api.post(f"/agents/{NAME}/results", json=batch))  # the whole call: all resent
    store_of(ports).down = False
    accepted = await api.post(f"/agents/{NAME}/results", json=batch)
    assert accepted.json()["results"] == [{"job_id": job_id, "attempt": 1, "status": 200, "accepted": True}]
    again = await api.post(f"/agents/{NAME}/jobs/{job_id}/result", json=result)
    assert again.json() == {"accepted": False, "reason": "duplicate"}
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.attempt) == ("succeeded", 1)


async def test_start_events_release_and_claim_while_the_broker_is_down_are_503s(
    ports: Ports, api: httpx.AsyncClient
) -> None:
    job_id = await running_job(ports, api)
    attempt = {"instance_id": INSTANCE, "attempt": 1}
    broker_of(ports).down = {"*"}
    job = f"/agents/{NAME}/jobs/{job_id}"
    assert_unavailable(await api.post(f"{job}/start", json=attempt))
    assert_unavailable(await api.post(f"{job}/events", json=attempt | {"events": [{"seq": 1, "text": "x"}]}))
    assert_unavailable(await api.post(f"{job}/release", json=attempt | {"started": True}))
    assert_unavailable(await api.post(f"/agents/{NAME}/claim", json={"instance_id": INSTANCE, "wait": 0}))
    broker_of(ports).down = set()
    assert (await api.post(f"{job}/start", json=attempt)).status_code == 200
    item = await ports.broker.get(job_id)
    assert item is not None
    assert (item.state, item.lease_owner) == ("running", INSTANCE)
