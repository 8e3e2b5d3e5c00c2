"""The web UI's routes on the in-memory adapters: pages, fragments, masking, escaping, errors, CSRF, restore."""

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from tests import factories

from stackl.api.ui.common import aggregate_status
from stackl.datastore.agents import AgentInstance, JobAttempt, LogLine
from stackl.usecases.ports import Ports

ORIGIN = {"Origin": "http://stackl.test"}
SECRET = "hunter2-very-secret"
ESTATE = [
    factories.environment(secrets={"registry_token": "dG9rZW4tdmFsdWU="}),
    factories.location(),
    factories.zone(),
    factories.functional_requirement(),
    factories.service(),
    factories.stack_application_template(),
    factories.stack_infrastructure_template(),
]
FORM = {
    "stack_instance_name": "shop",
    "stack_application_template": "web_shop",
    "stack_infrastructure_template": "main",
    "params": "owner: team-a\n",
    "secrets": f"db_password: {SECRET}\n",
    "service_params": "",
    "replicas": "",
    "tags": "",
}


async def seed(api: httpx.AsyncClient, *docs: dict[str, Any]) -> None:
    response = await api.post("/documents", json=list(docs))
    assert response.status_code == 200, response.text


async def deploy(api: httpx.AsyncClient, **changes: str) -> httpx.Response:
    await seed(api, *ESTATE)
    return await api.post("/ui/plan/deploy", data={**FORM, **changes}, headers=ORIGIN)


def html(response: httpx.Response, status: int = 200) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    return response.text


async def test_dashboard_lists_instances_tasks_and_agents(api: httpx.AsyncClient, ports: Ports) -> None:
    now = datetime.now(UTC)
    for name, seen in (("bru-agent", now), ("old-agent", now - timedelta(hours=1))):
        await ports.agents.register(
            AgentInstance(
                instance_id=f"{name}-1",
                name=name,
                hostname="h",
                version="1",
                protocol=1,
                executors=["local"],
                tools={},
                labels={},
                max_jobs=1,
                registered_at=seen,
                last_seen=seen,
                free_slots=1,
            )
        )
    empty = html(await api.get("/ui"))
    assert "1 online of 2" in empty
    assert "No stack instances yet" in empty
    assert 'href="/ui/static/htmx-2.0.11.min.js"' not in empty  # a script, not a link
    assert 'src="/ui/static/htmx-2.0.11.min.js"' in empty
    assert (await deploy(api)).status_code == 303
    page = html(await api.get("/ui"))
    assert 'href="/ui/instances/shop"' in page
    assert "in_progress" in page
    assert "create" in page  # the task
    fragment = html(await api.get("/ui/fragments/dashboard"))
    assert fragment.lstrip().startswith('<div id="dashboard-live"')
    assert (await api.get("/ui/", follow_redirects=False)).status_code == 308


async def test_plan_shows_placement_and_steps_then_deploys(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    form = html(await api.get("/ui/plan?sat=web_shop"))
    assert "<option selected>web_shop</option>" in form
    assert "<option>main</option>" in form
    assert "Deploy" not in form
    planned = html(await api.post("/ui/plan", data=FORM, headers=ORIGIN))
    assert factories.TARGET in planned
    assert "web/0/vm" in planned  # the step plan
    assert "chosen" in planned  # the explanation
    assert 'formaction="/ui/plan/deploy"' in planned
    deployed = await api.post("/ui/plan/deploy", data=FORM, headers=ORIGIN)
    assert deployed.status_code == 303
    assert deployed.headers["location"] == "/ui/instances/shop"
    again = html(await api.post("/ui/plan/deploy", data=FORM, headers=ORIGIN), 422)
    assert "already exists" in again


async def test_plan_form_errors_name_the_field(api: httpx.AsyncClient) -> None:
    await seed(api, *ESTATE)
    bad_yaml = html(await api.post("/ui/plan", data={**FORM, "params": "a: [1"}, headers=ORIGIN), 422)
    assert "params is not valid YAML" in bad_yaml
    not_mapping = html(await api.post("/ui/plan", data={**FORM, "replicas": "- 1"}, headers=ORIGIN), 422)
    assert "replicas must be a YAML mapping" in not_mapping
    missing = html(
        await api.post("/ui/plan", data={**FORM, "stack_application_template": "nope"}, headers=ORIGIN), 422
    )
    assert "nope" in missing
    unknown_alias = html(await api.post("/ui/plan", data={**FORM, "replicas": "db: 2"}, headers=ORIGIN), 422)
    assert "unknown service alias" in unknown_alias


async def test_instance_page_masks_secrets(api: httpx.AsyncClient) -> None:
    assert (await deploy(api)).status_code == 303
    page = html(await api.get("/ui/instances/shop"))
    assert SECRET not in page
    assert "dG9rZW4tdmFsdWU=" not in page  # the environment's secret reached the replica: masked too
    assert "db_password" in page
    assert "********" in page
    assert "team-a" in page  # parameters are shown
    assert "Placement explanation" in page
    assert "Why each target of web was chosen or rejected" in page
    assert '<span class="badge ok">chosen</span>' in page
    assert 'hx-get="/ui/instances/shop/live"' in page
    live = html(await api.get("/ui/instances/shop/live"))
    assert SECRET not in live
    assert "in_progress" in live
    document = html(await api.get("/ui/documents/stack_instance/shop"))
    assert SECRET not in document
    assert "restore" not in document.split("Revision history")[1]  # instances restore through tasks


async def test_unknown_instance_is_a_404_page(api: httpx.AsyncClient) -> None:
    page = html(await api.get("/ui/instances/nothing-here"), 404)
    assert "Stack instance &#39;nothing-here&#39; not found" in page
    assert "<h1>Not found</h1>" in page
    assert html(await api.get("/ui/instances/nothing-here/live"), 404)
    assert html(await api.get("/ui/documents/zone/nothing-here"), 404)
    assert html(await api.get("/ui/documents?type=no_such_type"), 404)
    assert html(await api.get("/ui/static/pages.py"), 404)
    assert html(await api.get("/ui/static/..%2Fpages.py"), 404)


async def test_user_content_is_escaped(api: httpx.AsyncClient) -> None:
    evil = "<script>alert(1)</script>"
    env = factories.environment(description=evil, params={evil: evil})
    await seed(api, env)
    listing = html(await api.get("/ui/documents?type=environment"))
    assert evil not in listing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing
    page = html(await api.get("/ui/documents/environment/production"))
    assert evil not in page
    assert "&lt;script&gt;" in page
    missing = html(await api.get("/ui/instances/<script>alert(1)<%2Fscript>"), 404)
    assert "<script>alert" not in missing
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in missing
    search = html(await api.get("/ui/documents", params={"type": "environment", "name": evil}))
    assert evil not in search


async def test_history_diff_and_restore(api: httpx.AsyncClient) -> None:
    await seed(api, factories.zone(description="first"))
    await seed(api, factories.zone(description="second"))
    page = html(await api.get("/ui/documents/zone/dmz"))
    assert "Current revision 2" in page
    assert 'aria-label="Restore revision 1"' in page
    assert 'aria-label="Restore revision 2"' not in page  # the current one
    old = html(await api.get("/ui/documents/zone/dmz?revision=1"))
    assert "description: first" in old
    diff = html(await api.get("/ui/documents/zone/dmz/diff?from=1&to=2"))
    assert '<span class="del">-description: first</span>' in diff
    assert '<span class="add">+description: second</span>' in diff

    refused = html(await api.post("/ui/documents/zone/dmz/restore", data={"revision": "1"}), 403)
    assert "Origin" in refused
    cross = await api.post(
        "/ui/documents/zone/dmz/restore", data={"revision": "1"}, headers={"Origin": "http://evil.test"}
    )
    assert cross.status_code == 403
    restored = await api.post("/ui/documents/zone/dmz/restore", data={"revision": "1"}, headers=ORIGIN)
    assert restored.status_code == 303, restored.text
    assert restored.headers["location"] == "/ui/documents/zone/dmz?restored=1"
    after = html(await api.get(restored.headers["location"]))
    assert "Revision 1 restored as revision 3" in after
    assert "description: first" in after
    assert "restore of 1" in after
    referer = await api.post(
        "/ui/documents/zone/dmz/restore",
        data={"revision": "2"},
        headers={"Referer": "http://stackl.test/ui/documents/zone/dmz"},
    )
    assert referer.status_code == 303
    bad = html(await api.post("/ui/documents/zone/dmz/restore", data={"revision": "x"}, headers=ORIGIN), 422)
    assert "choose the revision" in bad


async def test_deleted_document_keeps_its_history(api: httpx.AsyncClient) -> None:
    await seed(api, factories.zone(description="first"))
    assert (await api.delete("/documents/zone/dmz")).status_code == 204
    page = html(await api.get("/ui/documents/zone/dmz"))
    assert "This document was deleted" in page
    assert 'aria-label="Restore revision 1"' in page


@pytest.fixture
def ports(app: FastAPI) -> Ports:
    ports: Ports = app.state.ports
    return ports


async def test_step_log_shows_each_attempt(api: httpx.AsyncClient, ports: Ports) -> None:
    now = datetime(2025, 5, 1, 10, 0, tzinfo=UTC)
    status = factories.status_entry(status="READY", job_id="job-1", attempt=1)
    instance = factories.stack_instance(status=[status])
    async with ports.store.transaction() as tx:
        await tx.put(doc_type="stack_instance", name="shop", body=instance, subject="test")
    await ports.agents.record_claim(
        JobAttempt(job_id="job-1", attempt=1, agent="common", instance_id="i-1", claimed_at=now)
    )
    lines = [
        LogLine("job-1", 1, 1, now, "stdout", "TASK [configure] <b>ok</b>"),
        LogLine("job-1", 1, 2, now, "stderr", "warning: something"),
    ]
    await ports.agents.append_logs("job-1", 1, lines, max_bytes=1 << 20, at=now)
    page = html(await api.get("/ui/instances/shop"))
    log_url = f"/ui/instances/shop/steps/{status['service']}/0/{status['functional_requirement']}/log"
    assert f'href="{log_url}"' in page
    log = html(await api.get(log_url))
    assert "Attempt 1" in log
    assert "TASK [configure] &lt;b&gt;ok&lt;/b&gt;" in log
    assert '<span class="stderr">' in log
    assert "hx-trigger" not in log  # a finished step is not polled
    assert html(await api.get(log_url + "?fragment=true")).lstrip().startswith('<div id="step-log"')
    assert html(await api.get("/ui/instances/shop/steps/nope/0/vm/log"), 404)


async def test_static_files(api: httpx.AsyncClient) -> None:
    script = await api.get("/ui/static/htmx-2.0.11.min.js")
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
    assert "0BSD" in script.text[:300]
    css = await api.get("/ui/static/stackl.css")
    assert css.headers["content-type"].startswith("text/css")


def test_aggregate_status() -> None:
    assert aggregate_status([]) == "EMPTY"
    assert aggregate_status([{"status": "READY"}, {"status": "SKIPPED"}]) == "READY"
    assert aggregate_status([{"status": "READY"}, {"status": "FAILED"}]) == "FAILED"
    assert aggregate_status([{"status": "FAILED"}, {"status": "in_progress"}]) == "in_progress"
    assert aggregate_status([{"status": "SKIPPED"}]) == "SKIPPED"
