"""``GET /metrics`` in Prometheus text format, and the problem responses documented on every operation."""

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from tests import factories

from stackl.broker.base import ItemSpec
from stackl.usecases.tasks import TASKS_QUEUE


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.asyncio
async def test_metrics_count_requests_by_route_and_report_the_cluster_state(
    app: FastAPI, api: httpx.AsyncClient
) -> None:
    assert (await api.post("/documents", json=[factories.environment(), factories.zone()])).status_code == 200
    assert (await api.get("/documents/zone/dmz")).status_code == 200
    assert (await api.get("/documents/zone/nope")).status_code == 404
    await app.state.ports.broker.enqueue(ItemSpec(queue=TASKS_QUEUE, kind="create"))
    response = await api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    route = "/documents/{type}/{name}"
    assert (
        found[("stackl_http_requests_total", (("method", "GET"), ("route", route), ("status", "200")))] >= 1
    )
    assert (
        found[("stackl_http_requests_total", (("method", "GET"), ("route", route), ("status", "404")))] >= 1
    )
    assert found[("stackl_http_request_duration_seconds_count", (("method", "GET"), ("route", route)))] >= 2
    assert found[("stackl_tasks_total", (("kind", "create"), ("state", "queued")))] == 1
    assert found[("stackl_queue_depth", (("queue", "tasks"), ("state", "queued")))] == 1
    assert ("stackl_queue_oldest_age_seconds", (("queue", "tasks"),)) in found
    assert found[("stackl_agents", (("state", "online"),))] == 0
    assert found[("stackl_documents", (("type", "zone"),))] == 1
    assert ("stackl_events_subscribers", ()) in found
    names = {name for name, _ in found}
    assert {
        "stackl_placement_duration_seconds_count",
        "stackl_policy_evaluation_duration_seconds_count",
    } <= names


@pytest.mark.asyncio
async def test_placements_are_timed(api: httpx.AsyncClient) -> None:
    from tests.unit.usecases.test_instances import example_documents, request

    assert (await api.post("/documents", json=example_documents())).status_code == 200
    before = samples((await api.get("/metrics")).text).get(
        ("stackl_placements_total", (("result", "placed"),)), 0
    )
    response = await api.post("/stack_instances/plan", json=request())
    assert response.status_code == 200, response.text
    after = samples((await api.get("/metrics")).text)[("stackl_placements_total", (("result", "placed"),))]
    assert after == before + 1


def test_every_operation_documents_the_problem_responses(app: FastAPI) -> None:
    schema = app.openapi()
    assert "Problem" in schema["components"]["schemas"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status in ("400", "404", "405", "422"):
                content = operation["responses"][status]["content"]
                assert "application/problem+json" in content, (method, path, status)
    assert "/metrics" in schema["paths"]
    assert "/events" in schema["paths"]
    assert "/drift" in schema["paths"]


@pytest.mark.asyncio
async def test_405_allows_every_method_documented_for_the_path(api: httpx.AsyncClient) -> None:
    response = await api.request("OPTIONS", "/documents/zone")
    assert response.status_code == 405
    assert {m.strip() for m in response.headers["Allow"].split(",")} >= {"GET", "POST"}
    assert response.headers["content-type"] == "application/problem+json"
