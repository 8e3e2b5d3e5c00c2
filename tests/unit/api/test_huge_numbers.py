"""Huge numbers in a plan and in conditional headers are a 4xx naming the field (issue 15, defect 8).

``replicas: {web: 10**30}`` reached the placement engine, whose ``islice`` cannot take it: a 500. The
revision numbers are covered on SQL stores by tests/integration/test_huge_numbers.py.
"""

import httpx
import pytest
from tests import factories
from tests.unit.api.test_placement_api import CREATE, ESTATE, seed

MAX_REPLICAS = 10_000  # stackl.domain.instances.MAX_REPLICAS, spelled out: the bound is part of the contract


@pytest.mark.parametrize("count", [10**30, 2**63, MAX_REPLICAS + 1])
async def test_replicas_beyond_the_bound_are_a_422_naming_the_alias(
    api: httpx.AsyncClient, count: int
) -> None:
    await seed(api, *ESTATE)
    response = await api.post("/stack_instances/plan", json={**CREATE, "replicas": {"web": count}})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "replicas", "web"]


async def test_the_replica_bound_itself_is_accepted(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    response = await api.post("/stack_instances/plan", json={**CREATE, "replicas": {"web": MAX_REPLICAS}})
    assert response.status_code == 200, response.text
    assert response.json()["feasible"] is False  # one target for 10,000 replicas: an answer, not an error


@pytest.mark.parametrize("value", [str(10**30), "9" * 5000, "2147483648"])
async def test_an_if_match_beyond_any_revision_is_a_400_naming_the_header(
    api: httpx.AsyncClient, value: str
) -> None:
    await api.post("/documents/zone", json=factories.zone(name="dmz"))
    response = await api.put(
        "/documents/zone/dmz", json=factories.zone(name="dmz"), headers={"If-Match": value}
    )
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["loc"] == ["header", "If-Match"]
