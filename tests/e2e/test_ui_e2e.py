"""The web UI in a real browser: Playwright drives Debian's chromium against a live ``stackl server``.

The server runs on SQLite with its embedded worker and agent, the example documents applied and the example
playbooks linked as ``<data dir>/automation`` (as ``stackl demo`` does). The deployment is real: Ansible runs.

On failure, screenshots of the current page and of the main pages are saved under ``test-artifacts/ui/``.
With ``UI_README_SCREENSHOT=<dir>`` the instance page after the deploy is saved as ``<dir>/instance-page.png``
(how ``docs/images/instance-page.png`` is made).
"""

import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from tests.e2e.conftest import ServerProcess

from stackl.processes.demo import examples_dir, load_examples

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "ui"
README_SCREENSHOT = os.environ.get("UI_README_SCREENSHOT")  # read at import: the suite cleans the environment
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--metrics-recording-only",
    "--no-default-browser-check",
]
DEPLOY_TIMEOUT_MS = 240_000


@pytest.fixture
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install installs Debian's chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1440, "height": 900})  # a laptop screen
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def live_server(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> ServerProcess:
    """A server with the example documents applied and the example playbooks where its agent looks."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "automation").symlink_to(examples_dir() / "automation", target_is_directory=True)
    server = server_factory(data_dir=data_dir)
    applied = httpx.post(
        f"{server.url}/documents", json=load_examples(examples_dir() / "documents"), timeout=30
    )
    assert applied.status_code == 200, applied.text
    return server


@contextmanager
def screenshots_on_failure(page: Page, server: ServerProcess, name: str) -> Iterator[None]:
    """Re-raise any failure after saving the current page and the main pages as screenshots."""
    try:
        yield
    except BaseException:
        where = ARTIFACTS / name
        where.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(where / "failure.png"), full_page=True)
        for label, path in (
            ("dashboard", "/ui"),
            ("instance", "/ui/instances/demo"),
            ("documents", "/ui/documents?type=service"),
            ("plan", "/ui/plan"),
        ):
            try:
                page.goto(server.url + path)
                page.screenshot(path=str(where / f"{label}.png"), full_page=True)
            except Exception:  # noqa: S112 - best effort: the first failure is the one to report
                continue
        (where / "server.log").write_text(server.log())
        raise


def readme_screenshot(page: Page, name: str) -> None:
    """Save the page for the documentation when ``UI_README_SCREENSHOT`` names a directory."""
    if README_SCREENSHOT:
        Path(README_SCREENSHOT).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(README_SCREENSHOT) / name))


def test_plan_deploy_watch_log_and_explanation(
    page: Page, live_server: ServerProcess, tmp_path: Path
) -> None:
    url = live_server.url
    with screenshots_on_failure(page, live_server, "deploy"):
        page.goto(f"{url}/ui")
        expect(page.get_by_role("heading", name="Dashboard")).to_be_visible()
        expect(page.locator("#dashboard-live")).to_contain_text("No stack instances yet")
        expect(page.get_by_role("row", name=re.compile("common"))).to_contain_text("online")

        page.get_by_role("navigation", name="Main").get_by_role("link", name="Plan and deploy").click()
        page.get_by_label("Instance name").fill("demo")
        page.get_by_label("Application template (SAT)").select_option("web_shop")
        page.get_by_label("Infrastructure template (SIT)").select_option("local")
        output_dir = tmp_path / "data" / "demo-output"
        page.get_by_label("Parameters").first.fill(f"owner: platform-team\noutput_dir: {output_dir}\n")
        page.get_by_label("Service parameters").fill("web:\n  listen_port: 8081\n")
        page.get_by_role("button", name="Plan").click()
        readme_screenshot(page, "plan-page.png")

        placement = page.locator("#placement")
        expect(placement).to_contain_text("development.local.default")
        expect(page.locator("#step-plan")).to_contain_text("web/0/nginx_config")
        expect(page.locator("#step-plan")).to_contain_text("ansible")
        page.get_by_role("button", name="Deploy demo").click()

        page.wait_for_url(f"{url}/ui/instances/demo")
        expect(page.get_by_role("heading", name="Stack instance demo")).to_be_visible()
        # The status fragment is polled: READY arrives without a reload.
        expect(page.locator("#aggregate-status")).to_have_text("READY", timeout=DEPLOY_TIMEOUT_MS)
        steps = page.locator("#steps")
        expect(steps.locator("tr[data-step='db/0/postgres_config']")).to_contain_text("READY")
        expect(steps.locator("tr[data-step='web/0/nginx_config']")).to_contain_text("READY")
        expect(page.locator("#instance-live")).to_contain_text("http://localhost:8081")  # web_url output
        expect(page.locator("#instance-live")).to_contain_text("succeeded")  # task history
        assert "listen 8081;" in (output_dir / "nginx.conf").read_text()
        readme_screenshot(page, "instance-page.png")

        # The placement explanation: why the target was chosen.
        explanation = page.locator("details.explain[data-alias='web']")
        explanation.locator("summary").click()
        expect(explanation.get_by_role("table")).to_be_visible()
        expect(explanation).to_contain_text("chosen")
        expect(explanation).to_contain_text("resources")

        # A step's log.
        page.get_by_role("link", name="Log of web[0] nginx_config").click()
        expect(page.get_by_role("heading", name=re.compile("Log of web"))).to_be_visible()
        log = page.locator("pre.log").first
        expect(log).to_contain_text("PLAY")
        expect(page.locator("#step-log")).to_contain_text("READY")
        readme_screenshot(page, "step-log.png")
        page.goto(f"{url}/ui")
        expect(page.locator("#dashboard-live")).to_contain_text("READY")
        readme_screenshot(page, "dashboard.png")


def test_roll_a_document_back_from_its_history(page: Page, live_server: ServerProcess) -> None:
    url = live_server.url
    with screenshots_on_failure(page, live_server, "rollback"):
        doc = httpx.get(f"{url}/documents/service/webserver", timeout=10).json()
        doc.pop("metadata")
        doc["description"] = "Changed by hand <b>oops</b>"
        replaced = httpx.put(f"{url}/documents/service/webserver", json=doc, timeout=10)
        assert replaced.status_code == 200, replaced.text

        page.goto(f"{url}/ui/documents")
        page.get_by_role("navigation", name="Document types").get_by_role("link", name="service").click()
        page.get_by_role("link", name="webserver").click()
        yaml_view = page.locator("pre.yaml")
        expect(yaml_view).to_contain_text("Changed by hand <b>oops</b>")  # shown as text, not markup
        history = page.locator("#history")
        expect(history.locator("tr[data-revision]")).to_have_count(2)

        page.get_by_role("link", name="Changes of revision 2").click()
        expect(page.locator("pre.diff .del")).to_contain_text("The shop's web front end")
        expect(page.locator("pre.diff .add")).to_contain_text("Changed by hand")
        page.go_back()

        page.get_by_role("button", name="Restore revision 1").click()
        expect(page.get_by_role("status")).to_contain_text("Revision 1 restored as revision 3")
        expect(yaml_view).to_contain_text("The shop's web front end")
        expect(history.locator("tr[data-revision='3']")).to_contain_text("restore of 1")
    current = httpx.get(f"{url}/documents/service/webserver", timeout=10).json()
    assert current["description"] == "The shop's web front end"
    assert current["metadata"]["revision"] == 3


def test_sign_in_and_out_with_a_server_side_session(
    browser: Browser, page: Page, server_factory: Callable[..., ServerProcess]
) -> None:
    """Issue 15, defect 11: the cookie is a session, not the token, and signing out makes any copy worthless."""
    server = server_factory("--auth")
    token = (server.data_dir / "admin.token").read_text().strip()
    with screenshots_on_failure(page, server, "sessions"):
        page.goto(f"{server.url}/ui/documents")
        expect(page).to_have_url(re.compile(r"/ui/login\?next="))
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(re.compile(r"/ui/documents$"))
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        (cookie,) = [c for c in page.context.cookies() if c["name"] == "stackl_session"]
        assert cookie["value"] != token
        assert token not in cookie["value"]
        assert (cookie["httpOnly"], cookie["sameSite"], cookie["path"]) == (True, "Strict", "/ui")
        assert cookie["expires"] > 0  # not a cookie for ever: it ends with the session at the latest

        thief = browser.new_context()
        try:
            thief.add_cookies(
                [{"name": "stackl_session", "value": cookie["value"], "url": server.url + "/ui"}]
            )
            stolen = thief.new_page()
            stolen.goto(f"{server.url}/ui/documents")
            expect(stolen).to_have_url(re.compile(r"/ui/documents$"))  # a copy works while the session lives

            page.get_by_role("button", name="Sign out").click()
            expect(page).to_have_url(re.compile(r"/ui/login$"))
            assert not [c for c in page.context.cookies() if c["name"] == "stackl_session"]
            page.goto(f"{server.url}/ui/documents")
            expect(page).to_have_url(re.compile(r"/ui/login\?next="))

            stolen.goto(f"{server.url}/ui/documents")  # the copy died with the session
            expect(stolen).to_have_url(re.compile(r"/ui/login\?next="))
        finally:
            thief.close()
        replay = httpx.get(
            f"{server.url}/ui/documents", headers={"Cookie": f"stackl_session={cookie['value']}"}, timeout=10
        )
        assert replay.status_code == 303
        assert (
            httpx.get(
                f"{server.url}/documents", headers={"Cookie": f"stackl_session={cookie['value']}"}, timeout=10
            ).status_code
            == 401
        )
