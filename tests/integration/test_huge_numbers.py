"""Numbers too large for the database are a 4xx naming the field, on SQLite and PostgreSQL (issue 15, defect 8).

On the in-memory store a revision of 10**30 is merely absent; on SQL it used to reach the driver, which
cannot bind an integer beyond the column's 32 or 64 bits, and the request failed with a 500.
"""

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from tests import factories
from tests.integration import adapters

from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.policy.static import StaticPolicyEngine
from stackl.usecases.ports import Ports

HUGE = str(10**30)


@pytest.fixture(params=["sqlite", "postgresql"])
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with adapters.open_store(request.param, tmp_path) as store:
        ports = Ports(
            store=store,
            broker=InMemoryBroker(),
            policies=StaticPolicyEngine(),
            agents=InMemoryAgentRegistry(),
        )
        app = create_app(Settings(data_dir=tmp_path / "data"), ports)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
            created = await client.post("/documents/zone", json=factories.zone(name="dmz"))
            assert created.status_code == 201, created.text
            yield client


def assert_names(response: httpx.Response, loc: list[object]) -> None:
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["errors"][0]["loc"] == loc


async def test_if_match_beyond_the_column(api: httpx.AsyncClient) -> None:
    response = await api.put(
        "/documents/zone/dmz", json=factories.zone(name="dmz"), headers={"If-Match": HUGE}
    )
    assert_names(response, ["header", "If-Match"])


async def test_revision_query_beyond_the_column(api: httpx.AsyncClient) -> None:
    response = await api.get("/documents/zone/dmz", params={"revision": HUGE})
    assert_names(response, ["query", "revision"])


async def test_diff_to_a_revision_beyond_the_column(api: httpx.AsyncClient) -> None:
    response = await api.get(f"/documents/zone/dmz/revisions/1/diff/{HUGE}")
    assert_names(response, ["path", "b"])


async def test_restore_of_a_revision_beyond_the_column(api: httpx.AsyncClient) -> None:
    response = await api.post("/documents/zone/dmz/restore", json={"revision": 10**30})
    assert_names(response, ["body", "revision"])


async def test_a_5000_digit_integer_in_a_body(api: httpx.AsyncClient) -> None:
    body = json.dumps(factories.zone(name="big"))[:-1] + ', "params": {"n": 1' + "0" * 5000 + "}}"
    response = await api.post("/documents/zone", content=body, headers={"Content-Type": "application/json"})
    assert_names(response, ["body", "params", "n"])


async def test_the_largest_revision_number_is_merely_absent(api: httpx.AsyncClient) -> None:
    response = await api.get("/documents/zone/dmz", params={"revision": str(2**31 - 1)})
    assert response.status_code == 404
