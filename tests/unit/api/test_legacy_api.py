"""The STACKL 0.5 document paths: same paths, operationIds, bodies and texts, with the fixes of api.md Part A."""

from typing import Any

import httpx
import pytest
from tests import factories

LEGACY_OPERATIONS = {
    ("get", "/infrastructure_base/{infrastructure_base_type}"): "get_infrastructure_base_by_type",
    (
        "get",
        "/infrastructure_base/{infrastructure_base_type}/{infrastructure_base_name}",
    ): "get_infrastructure_base_by_type_and_name",
    ("post", "/infrastructure_base"): "post_infrastructure_base",
    ("put", "/infrastructure_base"): "put_infrastructure_base",
    (
        "delete",
        "/infrastructure_base/{infrastructure_base_type}/{infrastructure_base_name}",
    ): "delete_infrastructure_base",
    ("get", "/functional_requirements"): "get_functional_requirements",
    ("get", "/functional_requirements/{name}"): "get_functional_requirement_by_name",
    ("post", "/functional_requirements"): "post_functional_requirement",
    ("put", "/functional_requirements"): "put_functional_requirement",
    ("delete", "/functional_requirements/{name}"): "delete_functional_requirement",
    ("get", "/services"): "get_services",
    ("get", "/services/{name}"): "get_service_by_name",
    ("post", "/services"): "post_service",
    ("put", "/services"): "put_service",
    ("delete", "/services/{name}"): "delete_service",
    ("get", "/stack_application_templates"): "get_stack_application_templates",
    ("get", "/stack_application_templates/{name}"): "get_stack_application_template_by_name",
    ("post", "/stack_application_templates"): "post_stack_application_template",
    ("put", "/stack_application_templates"): "put_stack_application_template",
    ("delete", "/stack_application_templates/{name}"): "delete_stack_application_template",
    ("get", "/stack_infrastructure_templates"): "get_stack_infrastructure_templates",
    ("get", "/stack_infrastructure_templates/{name}"): "get_stack_infrastructure_template_by_name",
    ("post", "/stack_infrastructure_templates"): "post_stack_infrastructure_template",
    ("put", "/stack_infrastructure_templates"): "put_stack_infrastructure_template",
    ("delete", "/stack_infrastructure_templates/{name}"): "delete_stack_infrastructure_template",
    ("get", "/policy_templates"): "get_policy_templates",
    ("get", "/policy_templates/{policy_name}"): "get_policy_template_by_name",
    ("put", "/policy_templates"): "put_policy_template",
    ("post", "/policy_templates"): "post_policy_template",
    ("delete", "/policy_templates/{name}"): "delete_policy_template",
    ("post", "/snapshots/{type_name}/{name}"): "create_snapshot",
    ("get", "/snapshots/{name}"): "get_snapshot",
    ("get", "/snapshots/{type_name}/{name}"): "get_snapshots",
    ("post", "/snapshots/restore/{name}"): "restore_snapshot",
    ("post", "/snapshots/restore/{type_name}/{name}"): "restore_latest_snapshot",
    ("delete", "/snapshots/{name}"): "delete_snapshot",
    ("get", "/about"): "get_hostname",
}


def assert_no_nulls(value: Any, where: str = "") -> None:
    """The 0.5 client rejects null anywhere in a document."""
    assert value is not None, f"null at {where or 'root'}"
    if isinstance(value, dict):
        for key, item in value.items():
            assert_no_nulls(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_no_nulls(item, f"{where}[{index}]")


async def test_every_0_5_operation_has_its_path_and_operation_id(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    found = {
        (method, path): op["operationId"] for path, ops in spec["paths"].items() for method, op in ops.items()
    }
    for key, operation_id in LEGACY_OPERATIONS.items():
        assert found.get(key) == operation_id, key


async def test_infrastructure_base_round_trip(api: httpx.AsyncClient) -> None:
    doc = factories.environment(name="production")
    stored = await api.post("/infrastructure_base", json=doc)
    assert stored.status_code == 200, stored.text
    assert stored.headers["etag"] == '"1"'
    body = stored.json()
    assert "metadata" not in body
    assert "packages" not in body  # an extension field: absent from the 0.5 view
    assert_no_nulls(body)
    listed = (await api.get("/infrastructure_base/environment")).json()
    assert [d["name"] for d in listed] == ["production"]
    one = await api.get("/infrastructure_base/environment/production")
    assert one.json() == body
    gone = await api.delete("/infrastructure_base/environment/production")
    assert gone.json() == {"result": "deleted environment production"}
    missing = await api.get("/infrastructure_base/environment/production")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "Document not found"


async def test_infrastructure_base_type_rules(api: httpx.AsyncClient) -> None:
    wrong = await api.get("/infrastructure_base/galaxy")
    assert wrong.status_code == 400
    assert wrong.json()["detail"] == "type has to be environment, location or zone"
    untyped = {k: v for k, v in factories.environment(name="x").items() if k != "type"}
    assert (await api.post("/infrastructure_base", json=untyped)).status_code == 422
    bad = await api.post("/infrastructure_base", json={**untyped, "type": "service"})
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["loc"] == ["body", "type"]
    assert (await api.delete("/infrastructure_base/zone/nope")).status_code == 404


async def test_extension_fields_survive_0_5_writes(api: httpx.AsyncClient) -> None:
    await api.post("/documents/environment", json={**factories.environment(name="prod"), "packages": ["vm"]})
    legacy_view = (await api.get("/infrastructure_base/environment/prod")).json()
    legacy_view["description"] = "edited by a 0.5 client"
    assert (await api.put("/infrastructure_base", json=legacy_view)).status_code == 200
    full = (await api.get("/documents/environment/prod")).json()
    assert full["packages"] == ["vm"]
    assert full["description"] == "edited by a 0.5 client"


@pytest.mark.parametrize(
    ("path", "factory", "not_found", "deleted"),
    [
        (
            "/functional_requirements",
            factories.functional_requirement,
            "FR not found",
            "deleted functional requirement {name}",
        ),
        ("/services", factories.service, "Service not found", "deleted service"),
        (
            "/stack_application_templates",
            factories.stack_application_template,
            "SAT not found",
            "Deleted SAT",
        ),
        (
            "/stack_infrastructure_templates",
            factories.stack_infrastructure_template,
            "SIT not found",
            "Deleted sit",
        ),
        (
            "/policy_templates",
            factories.policy_template,
            "Policy template not found",
            "deleted policy template",
        ),
    ],
)
async def test_document_groups(
    api: httpx.AsyncClient, path: str, factory: Any, not_found: str, deleted: str
) -> None:
    doc = factory()
    name = doc["name"]
    for method in ("post", "put"):
        stored = await api.request(method.upper(), path, json=doc)
        assert stored.status_code == 200, stored.text
        assert_no_nulls(stored.json())
        assert "metadata" not in stored.json()
    assert [d["name"] for d in (await api.get(path)).json()] == [name]
    assert (await api.get(f"{path}/{name}")).json()["name"] == name
    assert (await api.delete(f"{path}/{name}")).json() == {"result": deleted.format(name=name)}
    missing = await api.get(f"{path}/{name}")
    assert missing.status_code == 404
    assert missing.json()["detail"] == not_found
    assert (await api.delete(f"{path}/{name}")).status_code == 404
    unknown_field = await api.post(path, json={**doc, "colour": "blue"})
    assert unknown_field.status_code == 422
    assert unknown_field.json()["errors"][0]["loc"] == ["body", "colour"]


async def test_policy_template_outputs_null_comes_back_null(api: httpx.AsyncClient) -> None:
    """0.5's model kept `outputs: null`, and 0.5's own API tests compare the answer with what they sent."""
    doc = {**factories.policy_template(name="hasparams"), "description": "d", "outputs": None}
    for method in ("PUT", "POST"):
        stored = await api.request(method, "/policy_templates", json=doc)
        assert stored.status_code == 200, stored.text
        assert stored.json() == doc
    assert (await api.get("/policy_templates/hasparams")).json()["outputs"] is None
    assert (await api.get("/policy_templates")).json()[0]["outputs"] is None
    assert (await api.get("/documents/policy_template/hasparams")).json()["outputs"] is None
    listed = await api.put("/policy_templates", json={**doc, "outputs": ["zone"]})
    assert listed.json()["outputs"] == ["zone"]
    omitted = await api.put("/policy_templates", json={k: v for k, v in doc.items() if k != "outputs"})
    assert omitted.json()["outputs"] == []  # absent is the default, as before
    wrong = await api.put("/policy_templates", json={**doc, "outputs": "zone"})
    assert wrong.status_code == 422
    assert wrong.json()["errors"][0]["loc"] == ["body", "outputs"]


async def test_sit_capabilities_are_computed_on_read(api: httpx.AsyncClient) -> None:
    await api.post(
        "/documents",
        json=[
            {**factories.environment(name="production"), "params": {"domain": "example.com"}},
            {**factories.location(name="brussels"), "agent": "bru-agent"},
            {**factories.zone(name="zone-a"), "resources": {"cpu": 32}, "secrets": {"k": "hidden-value"}},
            factories.stack_infrastructure_template(
                name="prod-bru",
                infrastructure_targets=[
                    {"environment": "production", "location": "brussels", "zone": "zone-a"}
                ],
            ),
        ],
    )
    sit = await api.get("/stack_infrastructure_templates/prod-bru")
    assert "hidden-value" not in sit.text
    capability = sit.json()["infrastructure_capabilities"]["production.brussels.zone-a"]
    assert capability["agent"] == "bru-agent"
    assert capability["provisioning_parameters"]["domain"] == "example.com"
    assert capability["resources"]["cpu"] == "32"  # the zone wins over the environment
    assert capability["secrets"] == {"k": "********"}
    stored = (await api.get("/documents/stack_infrastructure_template/prod-bru")).json()
    assert stored["metadata"]["revision"] == 1  # reading never rewrites the stored SIT


async def test_snapshots(api: httpx.AsyncClient) -> None:
    doc = factories.stack_application_template(name="web_shop", description="the original")
    await api.post("/stack_application_templates", json=doc)
    first = await api.post("/snapshots/stack_application_template/web_shop", json={"description": "before"})
    assert first.status_code == 200, first.text
    snap_name = first.json()["name"]
    assert snap_name.startswith("stack_application_template_web_shop_")
    assert first.headers["location"] == f"/snapshots/{snap_name}"
    second = await api.post("/snapshots/stack_application_template/web_shop")
    assert second.json()["name"] != snap_name  # same second: a suffix keeps names unique

    await api.put("/stack_application_templates", json={**doc, "description": "changed"})
    assert (await api.post(f"/snapshots/restore/{snap_name}")).json() == {
        "result": f"snapshot {snap_name} restored"
    }
    assert (await api.get("/stack_application_templates/web_shop")).json()["description"] == "the original"

    listed = (await api.get("/snapshots/stack_application_template/web_shop")).json()
    assert len(listed) == 2
    assert (await api.get("/snapshots/stack_application_template/web_sho")).json() == []  # exact match
    assert (await api.get(f"/snapshots/{snap_name}")).json()["snapshot"]["name"] == "web_shop"
    latest = await api.post("/snapshots/restore/stack_application_template/web_shop")
    assert latest.status_code == 200
    assert (await api.delete(f"/snapshots/{snap_name}")).json() == {"result": f"deleted snapshot {snap_name}"}
    assert (await api.get(f"/snapshots/{snap_name}")).status_code == 404
    assert (await api.delete(f"/snapshots/{snap_name}")).status_code == 404
    assert (await api.post("/snapshots/restore/nope")).status_code == 404
    assert (await api.post("/snapshots/service/nope")).status_code == 404
    assert (await api.post("/snapshots/galaxy/nope")).status_code == 422


async def test_about_is_a_json_string(api: httpx.AsyncClient) -> None:
    about = await api.get("/about")
    assert isinstance(about.json(), str)
    assert about.json()
