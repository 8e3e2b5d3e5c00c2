"""What the instance and plan pages show an operator: a failed step's cause on one line with the full output one
click away; the topology and timeline pictures; the placement matrix."""

import copy

import httpx
import pytest
from fastapi import FastAPI
from tests.unit.api.test_ui import FORM, ORIGIN, deploy, html

from stackl.usecases.ports import Ports

CAUSE = "ansible-playbook exited with code 2: task \"Configure\" failed on web_0: 'db_host' is undefined"


@pytest.fixture
def ports(app: FastAPI) -> Ports:
    found: Ports = app.state.ports
    return found


async def test_the_message_cell_shows_the_cause_and_links_the_full_output(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    assert (await deploy(api)).status_code == 303
    async with ports.store.transaction() as tx:
        stored = await tx.get(doc_type="stack_instance", name="shop")
        assert stored is not None
        body = copy.deepcopy(stored.body)
        entry = body["status"][0]
        tail = "\n".join(f"PLAY RECAP line {n}" for n in range(200))
        entry.update(status="FAILED", error_message=f"{CAUSE}\n{tail}", job_id="01JOB")
        await tx.put(doc_type="stack_instance", name="shop", body=body, subject="t", action="status")

    page = html(await api.get("/ui/instances/shop"))
    cell = page.split('class="message">', 1)[1].split("</td>", 1)[0]
    assert "db_host" in cell
    assert "PLAY RECAP" not in page  # the 3,400 px tall page of before
    assert ">full output</a>" in cell
    assert 'href="/ui/instances/shop/steps/' in cell


async def test_the_instance_page_draws_the_topology_and_the_timeline(api: httpx.AsyncClient) -> None:
    assert (await deploy(api)).status_code == 303
    page = html(await api.get("/ui/instances/shop"))
    topology = page.split('<figure id="topology">', 1)[1].split("</figure>", 1)[0]
    assert '<svg class="picture topology"' in topology
    assert 'data-node="' in topology
    assert 'data-status="in_progress"' in topology  # nothing ran: no agent in these tests
    timeline = page.split('<figure id="timeline">', 1)[1].split("</figure>", 1)[0]
    assert "Timeline of task" in timeline
    live = html(await api.get("/ui/instances/shop/live"))  # the polled fragment redraws them
    assert '<svg class="picture topology"' in live


async def test_the_plan_page_draws_the_placement_matrix(api: httpx.AsyncClient) -> None:
    assert (await deploy(api)).status_code == 303
    page = html(await api.post("/ui/plan", data={**FORM, "stack_instance_name": "other"}, headers=ORIGIN))
    matrix = page.split('<figure id="placement-matrix">', 1)[1].split("</figure>", 1)[0]
    assert '<svg class="picture matrix"' in matrix
    assert 'data-result="chosen"' in matrix
