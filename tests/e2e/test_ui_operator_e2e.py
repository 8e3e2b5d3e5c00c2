"""What an operator sees and does in the web UI, in a real browser: the topology and timeline of the deployed
demo instance, the placement matrix of the plan page (operator experience, item 3), and a running task stopped
from its task page (item 4).

The instance is the demo's (``examples/web_shop.instance.yml``), deployed by the server's embedded agent with
the real example playbooks; the pictures are read as the browser shows them (SVG elements and their titles).
"""

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, expect
from tests import factories
from tests.e2e.conftest import ServerProcess, wait_until
from tests.e2e.test_ui_e2e import (  # noqa: F401 - fixtures shared with the other browser tests
    DEPLOY_TIMEOUT_MS,
    README_SCREENSHOT,
    browser,
    live_server,
    page,
    screenshots_on_failure,
)

from stackl.processes.demo import examples_dir

pytestmark = pytest.mark.browser


def deploy_demo(server: ServerProcess, tmp_path: Path) -> None:
    manifest = yaml.safe_load((examples_dir() / "web_shop.instance.yml").read_text(encoding="utf-8"))
    body = {"stack_instance_name": "demo", **manifest}
    body["params"] = {**body.get("params", {}), "output_dir": str(tmp_path / "out")}
    created = httpx.post(f"{server.url}/stack_instances", json=body, timeout=30)
    assert created.status_code in (200, 201, 202), created.text

    def ready() -> bool:
        found = httpx.get(f"{server.url}/stack_instances/demo", timeout=10).json()
        return bool(found.get("status")) and all(s["status"] == "READY" for s in found["status"])

    wait_until(ready, timeout_s=DEPLOY_TIMEOUT_MS / 1000, what="the demo instance READY")


def test_topology_and_timeline_of_the_demo_instance(
    page: Page,  # noqa: F811 - the shared fixture
    live_server: ServerProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    deploy_demo(live_server, tmp_path)
    with screenshots_on_failure(page, live_server, "pictures"):
        page.goto(f"{live_server.url}/ui/instances/demo")
        topology = page.locator("#topology svg")
        expect(topology).to_be_visible()
        expect(topology.locator("g.pic-node")).to_have_count(2)
        expect(topology.locator("g.pic-node[data-node='db/0']")).to_have_attribute("data-status", "READY")
        expect(topology.locator("g.pic-node[data-node='web/0']")).to_have_attribute("data-status", "READY")
        edge = topology.locator("path.pic-edge")
        expect(edge).to_have_count(1)  # the web step is configured with the database step's outputs
        expect(edge.locator("title")).to_contain_text("db[0] → web[0]")

        timeline = page.locator("#timeline svg")
        expect(timeline.locator("g.pic-bar")).to_have_count(2)
        for step in ("db[0]/postgres_config", "web[0]/nginx_config"):
            bar = timeline.locator(f"g.pic-bar[data-step='{step}']")
            expect(bar).to_have_attribute("data-status", "READY")
            expect(bar.locator("rect.st-ready")).to_have_count(1)  # it ran
            expect(bar.locator("title")).to_contain_text("waited")
        expect(page.locator("#timeline figcaption")).to_contain_text("succeeded")


def test_placement_matrix_on_the_plan_page(
    page: Page,  # noqa: F811 - the shared fixture
    live_server: ServerProcess,  # noqa: F811
) -> None:
    with screenshots_on_failure(page, live_server, "matrix"):
        page.goto(f"{live_server.url}/ui/plan")
        page.get_by_label("Instance name").fill("matrix")
        page.get_by_label("Application template (SAT)").select_option("web_shop")
        page.get_by_label("Infrastructure template (SIT)").select_option("local")
        page.get_by_role("button", name="Plan").click()
        matrix = page.locator("#placement-matrix svg")
        expect(matrix).to_be_visible()
        expect(matrix.locator("rect.pic-cell[data-result='chosen']")).to_have_count(2)  # db and web
        cell = matrix.locator("rect.pic-cell[data-alias='web'][data-result='chosen']")
        expect(cell.locator("title")).to_contain_text("web on ")
        if README_SCREENSHOT:  # docs/images/placement-matrix.png
            page.locator("#placement-matrix").screenshot(
                path=str(Path(README_SCREENSHOT) / "placement-matrix.png")
            )


def slow_documents() -> list[dict[str, Any]]:
    return [
        factories.environment(),
        factories.location(agent="common"),
        factories.zone(),
        factories.functional_requirement(
            "long_job",
            params={},
            invocation={
                "generic": {"tool": "shell", "command": '[ "$STACKL_ACTION" = delete ] || sleep 600'}
            },
        ),
        factories.service("slow", functional_requirements=["long_job"], resource_requirements={}),
        factories.stack_application_template("slow_app", services=[{"name": "work", "service": "slow"}]),
        factories.stack_infrastructure_template("prod"),
    ]


def test_cancel_a_running_task_then_delete_with_force_from_the_instance_page(
    page: Page,  # noqa: F811 - the shared fixture
    server: ServerProcess,
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert client.post("/documents", json=slow_documents()).status_code == 200
        request = {
            "stack_instance_name": "slow",
            "stack_application_template": "slow_app",
            "stack_infrastructure_template": "prod",
        }
        created = client.post("/stack_instances", json=request)
        assert created.status_code == 200, created.text
        task_id = created.headers["stackl-task-id"]
    with screenshots_on_failure(page, server, "cancel"):
        page.goto(f"{server.url}/ui/tasks/{task_id}")
        step = page.locator("#task-steps tr[data-step='work/0/long_job']")
        expect(step).to_contain_text("running", timeout=60_000)  # the page follows the task by itself
        page.get_by_role("button", name="Cancel this task").click()
        page.wait_for_url(f"{server.url}/ui/tasks/{task_id}?cancelled=1")
        expect(page.get_by_role("status").first).to_contain_text("Cancel requested")
        expect(page.locator("#task-state")).to_have_text("cancelled", timeout=60_000)
        expect(step).to_contain_text("cancelled")
        expect(page.get_by_role("button", name="Cancel this task")).to_have_count(0)

        # The step did not finish: the instance page offers a retry and a forced delete, and says why.
        page.goto(f"{server.url}/ui/instances/slow")
        expect(page.get_by_role("button", name="Retry failed steps")).to_be_visible()
        expect(
            page.locator("#actions-heading + p, section[aria-labelledby='actions-heading']")
        ).to_contain_text("Some steps failed: with force")
        expect(page.get_by_label("force")).to_be_checked()
        page.get_by_role("button", name="Delete this instance").click()
        page.wait_for_url(f"{server.url}/ui/tasks/*")
        expect(page.locator("#task-state")).to_have_text("succeeded", timeout=60_000)
        assert httpx.get(f"{server.url}/stack_instances/slow", timeout=10).status_code == 404


# The elements that stick out on the right, innermost first: what a failure should name.
WIDEST = """[...document.querySelectorAll('body *')]
  .filter(e => e.getBoundingClientRect().right > 391 && ![...e.children].some(
      c => c.getBoundingClientRect().right > 391))
  .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"""


def test_pages_fit_a_phone_screen(
    browser: Browser,  # noqa: F811 - the shared fixture
    live_server: ServerProcess,  # noqa: F811
    tmp_path: Path,
) -> None:
    """At 390 px wide nothing scrolls the page sideways: wide tables and pictures scroll inside their box."""
    deploy_demo(live_server, tmp_path)
    [task] = httpx.get(f"{live_server.url}/tasks", timeout=10).json()["items"][:1]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone = context.new_page()
    try:
        for path in (
            "/ui",
            "/ui/instances/demo",
            f"/ui/tasks/{task['id']}",
            "/ui/plan",
            "/ui/documents?type=service",
            "/ui/documents/stack_application_template/web_shop",
        ):
            phone.goto(live_server.url + path)
            width = phone.evaluate("document.documentElement.scrollWidth")
            wide = phone.evaluate(WIDEST) if width > 390 else []
            assert width <= 390, f"{path} is {width} px wide at 390 px: {wide}"
    finally:
        context.close()
