"""Model drift on the in-memory ports: a changed model flags the instances depending on it, and nothing else."""

from typing import Any

import pytest
from tests import factories
from tests.unit.usecases import test_instances
from tests.unit.usecases.test_instances import example_documents, instance, load
from tests.unit.usecases.test_updates import deployed

from stackl.usecases import drift
from stackl.usecases.ports import Ports


@pytest.fixture
def ports() -> Ports:
    return test_instances.make_ports()


def _doc(doc_type: str, name: str) -> dict[str, Any]:
    return next(d for d in example_documents() if d["type"] == doc_type and d["name"] == name)


@pytest.mark.asyncio
async def test_a_deployed_instance_has_no_drift(ports: Ports) -> None:
    await deployed(ports)
    report = await drift.check(ports, "shop-prod")
    assert report["drifted"] is False, report
    assert report["reasons"] == []
    assert await drift.check_many(ports) == []
    assert [r["stack_instance"] for r in await drift.check_many(ports, include_clean=True)] == ["shop-prod"]


@pytest.mark.asyncio
async def test_a_changed_service_parameter_flags_its_steps_with_a_plan(ports: Ports) -> None:
    await deployed(ports)
    before = await instance(ports)
    await load(ports, [{**_doc("service", "postgres"), "params": {"pg_version": "16"}}])
    [report] = await drift.check_many(ports, changed=("service", "postgres"))
    assert report["drifted"] is True
    assert report["reasons"] == ["db/0/postgres_vm: inputs changed"]
    steps = [s for g in report["plan"] for s in g["steps"]]
    assert {(s["id"], s["decision"]) for s in steps} == {
        ("db/0/postgres_vm", "run"),
        ("web/0/nginx", "unchanged"),
    }
    assert await instance(ports) == before  # nothing written


@pytest.mark.asyncio
async def test_a_zone_no_longer_fitting_makes_the_placement_drift(ports: Ports) -> None:
    await deployed(ports)
    await load(ports, [factories.zone(resources={"memory": "1GiB", "cpu": 1})])
    report = await drift.check(ports, "shop-prod")
    assert report["drifted"] is True
    assert report["reasons"][0].startswith("placement: "), report


@pytest.mark.asyncio
async def test_dependents_follow_references_transitively(ports: Ports) -> None:
    await deployed(ports)
    assert await drift.dependents(ports, "zone", "dmz") == ["shop-prod"]
    assert await drift.dependents(ports, "functional_requirement", "nginx") == ["shop-prod"]
    assert await drift.dependents(ports, "zone", "elsewhere") == []
    await load(ports, [{**_doc("service", "postgres"), "params": {"pg_version": "16"}}])
    assert await drift.check_many(ports, changed=("zone", "elsewhere")) == []
