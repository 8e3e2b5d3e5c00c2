"""What the instance and plan pages show an operator: a failed step's cause on one line with the full output one
click away; the topology and timeline pictures; the placement matrix."""

import copy

import httpx
import pytest
from fastapi import FastAPI
from tests.unit.api.test_ui import FORM, ORIGIN, deploy, html

from stackl.api.ui.common import ENV
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


async def test_the_task_page_shows_steps_and_cancels_the_task(api: httpx.AsyncClient, ports: Ports) -> None:
    assert (await deploy(api)).status_code == 303
    [item] = await ports.broker.list(queue="tasks")
    page = html(await api.get(f"/ui/tasks/{item.id}"))
    assert f'Task <span class="name">{item.id}</span>' in page
    assert 'id="task-steps"' in page
    assert "Cancel this task" in page  # queued: it can be stopped
    assert 'hx-get="/ui/tasks/' in page  # and it refreshes while active
    assert '<svg class="picture timeline"' in page or "No step has been dispatched" in page

    refused = await api.post(f"/ui/tasks/{item.id}/cancel")  # no Origin: a cross-site form is refused
    assert refused.status_code == 403
    done = await api.post(f"/ui/tasks/{item.id}/cancel", headers=ORIGIN)
    assert done.status_code == 303
    assert done.headers["location"] == f"/ui/tasks/{item.id}?cancelled=1"
    after = html(await api.get(done.headers["location"]))
    assert "Cancel requested" in after
    assert "Cancel this task" not in after  # final now
    assert (await ports.broker.get(item.id)).state == "cancelled"  # type: ignore[union-attr]
    again = await api.post(f"/ui/tasks/{item.id}/cancel", headers=ORIGIN)
    assert again.status_code == 409  # already final: said on an error page, not a 500


async def test_an_unknown_task_is_a_404_page(api: httpx.AsyncClient) -> None:
    page = html(await api.get("/ui/tasks/01NOSUCHTASK"), status=404)
    assert "01NOSUCHTASK" in page


async def test_task_links_lead_to_the_task_page(api: httpx.AsyncClient, ports: Ports) -> None:
    assert (await deploy(api)).status_code == 303
    [item] = await ports.broker.list(queue="tasks")
    assert f'href="/ui/tasks/{item.id}"' in html(await api.get("/ui/instances/shop"))
    assert f'href="/ui/tasks/{item.id}"' in html(await api.get("/ui"))


async def cancelled_deploy(api: httpx.AsyncClient, ports: Ports) -> str:
    """The instance ``shop`` whose create task was cancelled before it ran: no step ran, so it is FAILED."""
    assert (await deploy(api)).status_code == 303
    [item] = await ports.broker.list(queue="tasks")
    assert (await api.post(f"/ui/tasks/{item.id}/cancel", headers=ORIGIN)).status_code == 303
    return item.id


async def test_retry_update_rollback_and_delete_from_the_instance_page(
    api: httpx.AsyncClient, ports: Ports
) -> None:
    await cancelled_deploy(api, ports)
    page = html(await api.get("/ui/instances/shop"))
    assert "Retry failed steps" in page
    assert "Some steps failed: with force" in page  # delete explains force, preselected

    retried = await api.post("/ui/instances/shop/retry", headers=ORIGIN)
    assert retried.status_code == 303
    retry_task = retried.headers["location"].rsplit("/", 1)[1]
    assert (await ports.broker.get(retry_task)).kind == "update"  # type: ignore[union-attr]
    busy = await api.post("/ui/instances/shop/retry", headers=ORIGIN)  # a task runs: refused, said why
    assert busy.status_code == 409
    assert "busy" in busy.text.lower() or "task" in busy.text.lower()
    await api.post(f"/ui/tasks/{retry_task}/cancel", headers=ORIGIN)

    bad = await api.post("/ui/instances/shop/update", data={"params": "owner: [unclosed"}, headers=ORIGIN)
    assert bad.status_code == 422
    assert "params is not valid YAML" in bad.text
    updated = await api.post(
        "/ui/instances/shop/update", data={"params": "owner: team-b\n", "force_rerun": "on"}, headers=ORIGIN
    )
    assert updated.status_code == 303
    update_task = await ports.broker.get(updated.headers["location"].rsplit("/", 1)[1])
    assert update_task is not None
    assert update_task.payload["options"]["force_rerun"] is True
    await api.post(f"/ui/tasks/{update_task.id}/cancel", headers=ORIGIN)

    page = html(await api.get("/ui/instances/shop"))
    before = update_task.payload["revision_before"]
    assert f"Roll back to revision {before}" in page
    rolled = await api.post("/ui/instances/shop/rollback", data={"revision": str(before)}, headers=ORIGIN)
    assert rolled.status_code == 303
    restore_task = await ports.broker.get(rolled.headers["location"].rsplit("/", 1)[1])
    assert restore_task is not None
    assert restore_task.kind == "restore"
    await api.post(f"/ui/tasks/{restore_task.id}/cancel", headers=ORIGIN)
    nonsense = await api.post("/ui/instances/shop/rollback", data={"revision": "10" * 20}, headers=ORIGIN)
    assert nonsense.status_code == 422

    deleted = await api.post("/ui/instances/shop/delete", data={"force": "on"}, headers=ORIGIN)
    assert deleted.status_code == 303
    delete_task = await ports.broker.get(deleted.headers["location"].rsplit("/", 1)[1])
    assert delete_task is not None
    assert delete_task.kind == "delete"
    assert delete_task.payload["options"]["force"] is True


async def test_instance_actions_refuse_a_cross_site_form(api: httpx.AsyncClient, ports: Ports) -> None:
    await cancelled_deploy(api, ports)
    for action in ("retry", "update", "rollback", "delete"):
        assert (await api.post(f"/ui/instances/shop/{action}")).status_code == 403, action


async def test_the_plan_page_says_what_to_create_first_when_there_is_nothing_to_plan(
    api: httpx.AsyncClient,
) -> None:
    empty = html(await api.get("/ui/plan"))
    assert 'id="nothing-to-plan"' in empty
    assert "this server has neither" in empty
    assert "stack infrastructure template" in empty
    assert (await deploy(api)).status_code == 303  # loads the templates
    assert 'id="nothing-to-plan"' not in html(await api.get("/ui/plan"))


def test_progress_counts_unchanged_steps() -> None:
    macro = ENV.get_template("macros.html").module.progress  # type: ignore[attr-defined]
    task = {"progress": {"ready": 1, "unchanged": 3, "failed": 0}}
    assert str(macro(task)).strip() == "1 ready, 3 unchanged"
