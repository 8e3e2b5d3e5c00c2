"""The three formulations of STACKL 0.5's ``allowedrepositories`` policy, through the API, on both engines.

Each is written with ``PUT /policy_templates`` and then used by a zone of a placement (``POST
/stack_instances/plan``): the answer must be OPA's (an image outside the repositories infringes, an image inside
does not). The in-memory store keeps the test fast; the engines are the real ones.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests import factories
from tests.integration.policy.test_rego_engine import ENGINES, make_engine

from stackl.api.app import create_app
from stackl.broker.memory import InMemoryBroker
from stackl.config import Settings
from stackl.datastore.agents_memory import InMemoryAgentRegistry
from stackl.datastore.memory import InMemoryDocumentStore
from stackl.usecases.ports import Ports

POLICY = """package allowedrepositories
infringement[{"msg": msg}] {
  invocation := input.services[_].functional_requirements[fr][_]
  %s
  not any(satisfied)
  msg := sprintf("image %%v of %%v is not from an allowed repository", [invocation.image, fr])
}
"""
FORMULATIONS = {
    "unify": "satisfied := [good | repo = input.parameters.repositories[_]; "
    "good = startswith(invocation.image, repo)]",
    "wildcard-argument": "satisfied := [good | good := startswith(invocation.image, "
    "input.parameters.repositories[_])]",
    "assign": "satisfied := [good | repo := input.parameters.repositories[_]; "
    "good := startswith(invocation.image, repo)]",
}
CREATE = {
    "stack_instance_name": "shop",
    "stack_infrastructure_template": "main",
    "stack_application_template": "web_shop",
}


@pytest.fixture(params=ENGINES)
async def api(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    engine = make_engine(request.param)
    try:
        async with InMemoryDocumentStore() as store:
            app = create_app(
                Settings(data_dir=tmp_path / "data"),
                Ports(store=store, broker=InMemoryBroker(), policies=engine, agents=InMemoryAgentRegistry()),
            )
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://stackl.test") as client:
                yield client
    finally:
        engine.close()


async def _plan(api: httpx.AsyncClient, image: str) -> dict[str, Any]:
    fr = factories.functional_requirement(invocation={"generic": factories.invocation(image=image)})
    zone = factories.zone(
        policies={"allowedrepositories": {"repositories": ["registry.example.com/", "quay.io/"]}}
    )
    estate = [
        factories.environment(),
        factories.location(),
        zone,
        fr,
        factories.service(),
        factories.stack_application_template(),
        factories.stack_infrastructure_template(),
    ]
    response = await api.post("/documents", json=estate)
    assert response.status_code == 200, response.text
    response = await api.post("/stack_instances/plan", json=CREATE)
    assert response.status_code == 200, response.text
    plan: dict[str, Any] = response.json()
    return plan


@pytest.mark.parametrize("formulation", FORMULATIONS)
async def test_each_formulation_gives_opas_answer(api: httpx.AsyncClient, formulation: str) -> None:
    template = factories.policy_template("allowedrepositories", policy=POLICY % FORMULATIONS[formulation])
    response = await api.put("/policy_templates", json=template)
    assert response.status_code in (200, 201), response.text

    inside = await _plan(api, "quay.io/shop/vm:1")
    assert inside["feasible"] is True, inside

    outside = await _plan(api, "docker.io/shop/vm:1")
    assert outside["feasible"] is False
    assert "image docker.io/shop/vm:1 of vm is not from an allowed repository" in str(outside)
