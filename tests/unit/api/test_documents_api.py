"""The generic /documents API: writes, reads, revisions, conditional requests, bulk apply, errors."""

import json
from typing import Any

import httpx
import yaml
from tests import factories


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    assert isinstance(body["detail"], str)
    assert body["request_id"]
    return body


async def test_create_get_replace_delete_round_trip(api: httpx.AsyncClient) -> None:
    created = await api.post("/documents/environment", json=factories.environment(name="production"))
    assert created.status_code == 201, created.text
    assert created.headers["etag"] == '"1"'
    assert created.headers["location"] == "/documents/environment/production"
    body = created.json()
    assert body["metadata"]["revision"] == 1
    assert body["metadata"]["created_by"] == "local"
    assert body["metadata"]["deleted"] is False

    got = await api.get("/documents/environment/production")
    assert got.json() == body

    changed = {**factories.environment(name="production"), "description": "changed"}
    replaced = await api.put("/documents/environment/production", json=changed)
    assert replaced.status_code == 200
    assert replaced.json()["metadata"]["revision"] == 2
    assert replaced.json()["description"] == "changed"

    deleted = await api.delete("/documents/environment/production")
    assert deleted.status_code == 204
    problem(await api.get("/documents/environment/production"), 404, "not_found")


async def test_create_existing_is_409_and_replace_missing_is_404(api: httpx.AsyncClient) -> None:
    doc = factories.zone(name="dmz")
    assert (await api.post("/documents/zone", json=doc)).status_code == 201
    problem(await api.post("/documents/zone", json=doc), 409, "already_exists")
    problem(await api.put("/documents/zone/other", json={**doc, "name": "other"}), 404, "not_found")


async def test_put_name_must_match_path(api: httpx.AsyncClient) -> None:
    await api.post("/documents/zone", json=factories.zone(name="dmz"))
    body = problem(await api.put("/documents/zone/dmz", json=factories.zone(name="other")), 422, "validation")
    assert body["errors"][0]["loc"] == ["body", "name"]


async def test_unchanged_write_makes_no_revision(api: httpx.AsyncClient) -> None:
    doc = factories.zone(name="dmz")
    await api.post("/documents/zone", json=doc)
    again = await api.put("/documents/zone/dmz", json=doc)
    assert again.json()["metadata"]["revision"] == 1
    history = (await api.get("/documents/zone/dmz/revisions")).json()
    assert [e["revision"] for e in history["items"]] == [1]


async def test_if_match_stale_is_412_and_if_none_match_gives_304(api: httpx.AsyncClient) -> None:
    doc = factories.zone(name="dmz")
    await api.post("/documents/zone", json=doc)
    await api.put("/documents/zone/dmz", json={**doc, "description": "v2"})
    stale = await api.put(
        "/documents/zone/dmz", json={**doc, "description": "v3"}, headers={"If-Match": '"1"'}
    )
    assert problem(stale, 412, "precondition_failed")["current_revision"] == 2
    fresh = await api.put(
        "/documents/zone/dmz", json={**doc, "description": "v3"}, headers={"If-Match": '"2"'}
    )
    assert fresh.status_code == 200
    cached = await api.get("/documents/zone/dmz", headers={"If-None-Match": '"3"'})
    assert cached.status_code == 304
    problem(await api.put("/documents/zone/dmz", json=doc, headers={"If-Match": "three"}), 400, "malformed")


async def test_history_diff_and_restore(api: httpx.AsyncClient) -> None:
    doc = factories.environment(name="production")
    await api.post("/documents/environment", json=doc)
    await api.put(
        "/documents/environment/production", json={**doc, "params": {"dns_domain": "new.example.com"}}
    )
    history = (await api.get("/documents/environment/production/revisions")).json()["items"]
    assert [(e["revision"], e["action"]) for e in history] == [(2, "update"), (1, "create")]

    diff = (await api.get("/documents/environment/production/revisions/1/diff/latest")).json()
    assert diff["from"] == 1
    assert diff["to"] == 2
    assert any(op["path"].startswith("/params") for op in diff["patch"])
    assert "new.example.com" in diff["text"]
    text = await api.get(
        "/documents/environment/production/revisions/1/diff/2", headers={"Accept": "text/x-diff"}
    )
    assert text.headers["content-type"].startswith("text/x-diff")
    assert "+++" in text.text

    restored = await api.post("/documents/environment/production/restore", json={"revision": 1})
    assert restored.status_code == 200, restored.text
    assert restored.json()["metadata"]["revision"] == 3
    assert restored.json()["params"] == doc["params"]
    history = (await api.get("/documents/environment/production/revisions")).json()["items"]
    assert history[0]["action"] == "restore"
    assert history[0]["restored_from"] == 1

    old = await api.get("/documents/environment/production", params={"revision": 2})
    assert old.json()["params"] == {"dns_domain": "new.example.com"}


async def test_secrets_are_masked_and_survive_round_trips(api: httpx.AsyncClient) -> None:
    doc = {**factories.environment(name="production"), "secrets": {"vcenter_password": "s3cr3t-value"}}
    created = await api.post("/documents/environment", json=doc)
    assert "s3cr3t-value" not in created.text
    read = (await api.get("/documents/environment/production")).json()
    assert read["secrets"] == {"vcenter_password": "********"}
    read.pop("metadata")
    read["description"] = "round trip"
    await api.put("/documents/environment/production", json=read)
    await api.put(
        "/documents/environment/production", json={**read, "secrets": {"vcenter_password": "other"}}
    )
    diff = await api.get("/documents/environment/production/revisions/1/diff/latest")
    history = await api.get("/documents/environment/production/revisions")
    for response in (diff, history, await api.get("/documents/environment")):
        assert "s3cr3t-value" not in response.text
        assert "other" not in response.text.replace("another", "")


async def test_patch_merges_and_validates(api: httpx.AsyncClient) -> None:
    await api.post("/documents/environment", json=factories.environment(name="production"))
    patched = await api.patch(
        "/documents/environment/production",
        content=json.dumps({"params": {"extra": 1}, "description": "patched"}),
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["params"]["extra"] == 1
    assert patched.json()["description"] == "patched"
    bad = await api.patch("/documents/environment/production", json={"colour": "blue"})
    assert problem(bad, 422, "validation")["errors"][0]["loc"] == ["body", "colour"]
    renamed = await api.patch("/documents/environment/production", json={"name": "other"})
    problem(renamed, 422, "validation")
    yaml_patch = await api.patch(
        "/documents/environment/production", content="a: 1", headers={"Content-Type": "application/yaml"}
    )
    problem(yaml_patch, 415, "unsupported_media_type")


async def test_yaml_in_and_out(api: httpx.AsyncClient) -> None:
    text = yaml.safe_dump(factories.zone(name="dmz"))
    created = await api.post("/documents/zone", content=text, headers={"Content-Type": "application/yaml"})
    assert created.status_code == 201, created.text
    as_yaml = await api.get("/documents/zone/dmz", headers={"Accept": "application/yaml"})
    assert as_yaml.headers["content-type"].startswith("application/yaml")
    assert yaml.safe_load(as_yaml.text)["name"] == "dmz"


async def test_bad_bodies_are_4xx_naming_the_problem(api: httpx.AsyncClient) -> None:
    broken = await api.post(
        "/documents/zone", content='{"name": "dmz",\n "type": }', headers={"Content-Type": "application/json"}
    )
    assert "line 2" in problem(broken, 400, "malformed")["errors"][0]["msg"]
    bad_yaml = await api.post(
        "/documents/zone", content="name: [dmz\n", headers={"Content-Type": "application/yaml"}
    )
    assert "line" in problem(bad_yaml, 400, "malformed")["errors"][0]["msg"]
    problem(
        await api.post("/documents/zone", content="x", headers={"Content-Type": "text/plain"}),
        415,
        "unsupported_media_type",
    )
    problem(await api.post("/documents/zone", content=""), 400, "malformed")
    problem(await api.post("/documents/widget", json={"name": "x"}), 404, "not_found")
    problem(await api.get("/documents/widget/x"), 404, "not_found")
    bad_name = await api.post("/documents/zone", json={**factories.zone(name="dmz"), "name": "a.b"})
    assert problem(bad_name, 422, "validation")["errors"][0]["loc"] == ["body", "name"]
    wrong_type = await api.post("/documents/zone", json={**factories.zone(name="dmz"), "type": "location"})
    problem(wrong_type, 422, "validation")
    problem(await api.post("/documents/zone", json=[1, 2]), 422, "validation")
    problem(await api.get("/documents", params={"limit": "many"}), 400, "malformed")
    problem(await api.get("/documents", params={"cursor": "garbage!"}), 400, "malformed")


async def test_payload_too_large(api: httpx.AsyncClient) -> None:
    huge = {**factories.zone(name="dmz"), "params": {"blob": "x" * (1024 * 1024 + 10)}}
    problem(await api.post("/documents/zone", json=huge), 413, "payload_too_large")


async def test_stack_instances_and_snapshots_are_not_raw_writable(api: httpx.AsyncClient) -> None:
    problem(await api.post("/documents/stack_instance", json={"name": "x"}), 405, "method_not_allowed")
    problem(await api.post("/documents/snapshot", json={"name": "x"}), 405, "method_not_allowed")


async def test_referenced_delete_is_409_unless_forced(api: httpx.AsyncClient) -> None:
    await api.post("/documents/functional_requirement", json=factories.functional_requirement(name="nginx"))
    await api.post(
        "/documents/service",
        json=factories.service(name="webserver", functional_requirements=["vm", "nginx"]),
    )
    refused = problem(await api.delete("/documents/functional_requirement/nginx"), 409, "referenced")
    assert refused["referrers"] == [
        {"type": "service", "name": "webserver", "path": "functional_requirements[1]"}
    ]
    assert refused["errors"][0]["loc"] == ["references", "service", "webserver"]
    forced = await api.delete("/documents/functional_requirement/nginx", params={"force": "true"})
    assert forced.status_code == 204
    assert "webserver" in forced.headers["stackl-warning"]


async def test_dangling_references_are_warnings(api: httpx.AsyncClient) -> None:
    created = await api.post(
        "/documents/service", json=factories.service(name="webserver", functional_requirements=["vm"])
    )
    assert created.status_code == 201
    assert "functional_requirement 'vm' does not exist" in created.headers["stackl-warning"]


async def test_bulk_apply_is_atomic_and_reports_each_document(api: httpx.AsyncClient) -> None:
    docs = [
        factories.service(name="webserver", functional_requirements=["nginx"]),
        factories.functional_requirement(name="nginx"),
    ]
    applied = await api.post("/documents", json=docs)
    assert applied.status_code == 200, applied.text
    results = applied.json()["results"]
    assert [(r["index"], r["type"], r["action"], r["revision"]) for r in results] == [
        (0, "service", "created", 1),
        (1, "functional_requirement", "created", 1),
    ]
    assert results[0]["warnings"] == []  # the FR arrived in the same batch

    again = (await api.post("/documents", json=docs)).json()["results"]
    assert [r["action"] for r in again] == ["unchanged", "unchanged"]

    invalid = [factories.zone(name="new-zone"), {"name": "x", "type": "functional_requirement", "colour": 1}]
    body = problem(await api.post("/documents", json=invalid), 422, "validation")
    assert all(e["loc"][:2] == ["body", 1] for e in body["errors"])
    problem(await api.get("/documents/zone/new-zone"), 404, "not_found")


async def test_bulk_apply_dry_run_and_yaml_stream(api: httpx.AsyncClient) -> None:
    text = "\n---\n".join(yaml.safe_dump(d) for d in (factories.zone(name="a"), factories.zone(name="b")))
    dry = await api.post(
        "/documents", content=text, params={"dry_run": "true"}, headers={"Content-Type": "application/yaml"}
    )
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True
    assert [r["action"] for r in dry.json()["results"]] == ["created", "created"]
    assert dry.json()["results"][0]["patch"]
    problem(await api.get("/documents/zone/a"), 404, "not_found")
    refused = await api.post("/documents", json=[{"name": "x", "type": "stack_instance"}])
    problem(refused, 422, "validation")


async def test_listing_pages_and_filters(api: httpx.AsyncClient) -> None:
    await api.post("/documents", json=[factories.zone(name=f"z{i:02d}") for i in range(7)])
    await api.post("/documents/environment", json=factories.environment(name="production"))
    names: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3, "type": "zone"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/documents", params=params)).json()
        names.extend(i["name"] for i in page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert names == [f"z{i:02d}" for i in range(7)]
    filtered = (await api.get("/documents/zone", params={"name": "03"})).json()["items"]
    assert [d["name"] for d in filtered] == ["z03"]


async def test_health_and_version(api: httpx.AsyncClient) -> None:
    assert (await api.get("/healthz")).json() == {"status": "ok"}
    ready = await api.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    version = (await api.get("/version")).json()
    assert version["compat"] == "0.5"
    assert version["database"] == "memory"


async def test_request_id_is_echoed_or_generated(api: httpx.AsyncClient) -> None:
    echoed = await api.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await api.get("/documents/zone/nope")
    assert generated.json()["request_id"] == generated.headers["x-request-id"]


async def test_values_json_cannot_hold_are_refused_not_500(api: httpx.AsyncClient) -> None:
    cases = [
        ("application/json", b'{"name": "e1", "params": {"a": NaN}}'),
        ("application/json", b'{"name": "e1", "params": {"a": Infinity}}'),
        ("application/yaml", b"name: e1\nparams: {a: .nan}\n"),
        ("application/yaml", b"name: e1\nparams: {a: !!binary aGVsbG8=}\n"),
        ("application/yaml", b"name: e1\nparams: {a: !!set {x, y}}\n"),
    ]
    for content_type, body in cases:
        response = await api.post(
            "/documents/environment", content=body, headers={"Content-Type": content_type}
        )
        assert response.status_code == 400, (body, response.text)
        assert response.json()["code"] == "malformed"


async def test_non_ascii_digits_are_no_revision_numbers(api: httpx.AsyncClient) -> None:
    await api.post("/documents/environment", json={"name": "e1"})
    response = await api.put(
        "/documents/environment/e1",
        json={"name": "e1"},
        headers=[(b"If-Match", b"\xb2")],  # latin-1 "²", which str.isdigit() accepts
    )
    assert response.status_code == 400, response.text
    assert (await api.get("/documents/environment/e1/revisions/%C2%B2/diff/latest")).status_code == 400
