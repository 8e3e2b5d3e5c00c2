"""POST /stack_instances/plan and POST /policies/evaluate on the in-memory store with the fake policy engine."""

import httpx
from tests import factories

ESTATE = [
    factories.environment(),
    factories.location(),
    factories.zone(),
    factories.functional_requirement(),
    factories.service(),
    factories.stack_application_template(),
    factories.stack_infrastructure_template(),
]
CREATE = {
    "stack_instance_name": "shop",
    "stack_infrastructure_template": "main",
    "stack_application_template": "web_shop",
}


async def seed(api: httpx.AsyncClient, *docs: dict[str, object]) -> None:
    response = await api.post("/documents", json=list(docs))
    assert response.status_code == 200, response.text


async def test_plan_of_a_create(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    response = await api.post("/stack_instances/plan", json=CREATE)
    assert response.status_code == 200, response.text
    plan = response.json()
    assert plan["operation"] == "create"
    assert plan["feasible"] is True
    assert plan["placement"] == {"web": {"service": "webserver", "targets": [factories.TARGET]}}
    assert plan["explanation"]["services"]["web"]["candidates"][factories.TARGET]["result"] == "chosen"
    assert plan["explanation"]["inputs"]["stack_application_template"] == {"name": "web_shop", "revision": 1}
    assert plan["plan"] == [
        {
            "stage": "web",
            "steps": [
                {
                    "id": "web/0/vm",
                    "service": "web",
                    "replica": 0,
                    "infrastructure_target": factories.TARGET,
                    "functional_requirement": "vm",
                    "action": "create",
                    "tool": "terraform",
                    "agent": "bru-agent",
                    "decision": "run",
                    "reason": "new replica",
                }
            ],
        }
    ]
    # Nothing was written.
    assert (await api.get("/documents/stack_instance/shop")).status_code == 404


async def test_an_infeasible_plan_is_an_answer_not_an_error(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    plan = (await api.post("/stack_instances/plan", json={**CREATE, "replicas": {"web": 2}})).json()
    assert plan["feasible"] is False
    assert plan["detail"] == 'Not enough targets for services {"web"}'
    assert plan["plan"] == []
    hungry = (await api.post("/stack_instances/plan", json={**CREATE, "tags": {"network": "core"}})).json()
    assert hungry["feasible"] is False
    assert hungry["detail"] == 'Could not find a target for services {"web"}'


async def test_every_missing_reference_is_listed_at_once(api: httpx.AsyncClient) -> None:
    await seed(api, factories.stack_application_template(), factories.stack_infrastructure_template())
    response = await api.post("/stack_instances/plan", json=CREATE)
    assert response.status_code == 422
    problem = response.json()
    assert problem["code"] == "missing_references"
    assert problem["detail"].splitlines() == [
        "Service: webserver does not exist",
        "Environment: production does not exist",
        "Location: brussels does not exist",
        "Zone: dmz does not exist",
    ]


async def test_bad_plan_bodies_name_the_field(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    response = await api.post("/stack_instances/plan", json={**CREATE, "replicas": {"nope": 1}})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "replicas", "nope"]
    response = await api.post("/stack_instances/plan", json={"stack_instance_name": "shop"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["errors"]] == [
        ["body", "stack_infrastructure_template"],
        ["body", "stack_application_template"],
    ]
    response = await api.post(
        "/stack_instances/plan", json={**CREATE, "services": [{"name": "web", "service": "webserver"}]}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "services", 0, "name"]


async def test_update_or_delete_plan_of_an_unknown_instance_is_404(api: httpx.AsyncClient) -> None:
    for operation in ("update", "delete"):
        response = await api.post(
            "/stack_instances/plan", json={"stack_instance_name": "ghost", "operation": operation}
        )
        assert response.status_code == 404, response.text


async def test_evaluate_validates_its_request(api: httpx.AsyncClient) -> None:
    cases = [
        ({"rule": "allow"}, ["body", "policy"]),
        ({"policy": "package p\nallow = true", "template": "x", "rule": "allow"}, ["body", "policy"]),
        ({"policy": "package p\nallow = true"}, ["body", "rule"]),
        ({"policy": "package p\nallow = true", "rule": "a b"}, ["body", "rule"]),
        ({"policy": "package p\nallow = true", "rule": "allow", "input": []}, ["body", "input"]),
        ({"policy": "package p\nallow = true", "rule": "allow", "surprise": 1}, ["body", "surprise"]),
        # a boolean is no revision number
        ({"template": "t", "revision": True, "rule": "allow"}, ["body", "revision"]),
    ]
    for body, loc in cases:
        response = await api.post("/policies/evaluate", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["loc"] == loc, body
    response = await api.post("/policies/evaluate", json={"template": "ghost", "rule": "allow"})
    assert response.status_code == 404
