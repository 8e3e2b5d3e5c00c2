"""PUT /stack_instances, POST /tasks/{id}/cancel and the update plan over HTTP (api.md A.8, B.2, B.3)."""

import httpx
from tests.unit.api.test_placement_api import CREATE, ESTATE, seed


async def test_put_starts_an_update_task_and_cancel_ends_it(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    created = await api.post("/stack_instances", json=CREATE)
    assert created.status_code == 200, created.text
    busy = await api.put("/stack_instances", json={"stack_instance_name": "shop", "params": {"a": 1}})
    assert busy.status_code == 409
    assert busy.json()["code"] == "instance_busy"
    cancelled = await api.post(f"/tasks/{created.headers['Stackl-Task-Id']}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["state"] == "cancelled"
    again = await api.post(f"/tasks/{created.headers['Stackl-Task-Id']}/cancel")
    assert again.status_code == 409

    response = await api.put("/stack_instances", json={"stack_instance_name": "shop", "params": {"a": 1}})
    assert response.status_code == 200, response.text
    assert response.json() == "Stack instance updating"
    assert response.headers["Location"] == f"/tasks/{response.headers['Stackl-Task-Id']}"
    task = (await api.get(response.headers["Location"])).json()
    assert task["kind"] == "update"
    instance = (await api.get("/stack_instances/shop")).json()
    assert instance["instance_params"] == {"a": 1}
    assert "steps" not in instance  # the 0.5 view carries 0.5 fields only


async def test_put_errors_name_the_problem(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    assert (await api.put("/stack_instances", json={"stack_instance_name": "ghost"})).status_code == 404
    await api.post("/stack_instances", json=CREATE)
    bad = await api.put("/stack_instances", json={"stack_instance_name": "shop", "replicas": {"web": -1}})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "replicas", "web"]
    stale = await api.put(
        "/stack_instances", json={"stack_instance_name": "shop"}, headers={"If-Match": '"99"'}
    )
    assert stale.status_code == 412
    assert (await api.post("/tasks/01NOPE/cancel")).status_code == 404


async def test_restoring_an_instance_revision_starts_a_restore_task(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    created = await api.post("/stack_instances", json=CREATE)
    await api.post(f"/tasks/{created.headers['Stackl-Task-Id']}/cancel")
    updated = await api.put("/stack_instances", json={"stack_instance_name": "shop", "params": {"a": 1}})
    await api.post(f"/tasks/{updated.headers['Stackl-Task-Id']}/cancel")
    restored = await api.post("/documents/stack_instance/shop/restore", json={"revision": 1})
    assert restored.status_code == 200, restored.text
    task = (await api.get(restored.headers["Location"])).json()
    assert task["kind"] == "restore"
    assert restored.json()["instance_params"] == {}
    history = (await api.get("/documents/stack_instance/shop/revisions")).json()["items"]
    assert history[0]["action"] == "restore"
    assert history[0]["restored_from"] == 1
    missing = await api.post("/documents/stack_instance/shop/restore", json={"revision": 99})
    assert missing.status_code == 404
