"""``/docs`` (Swagger UI) and ``/redoc`` render in a real browser with every request off this server refused.

Operator experience, item 5: the pages used to load their scripts from a CDN and stayed blank without internet.
The browser here may only reach the server under test: any other request is aborted and recorded, and the test
fails if there was one. Rendering is checked on what each tool draws from ``/openapi.json``.
"""

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Route, expect, sync_playwright
from tests.e2e.conftest import ServerProcess
from tests.e2e.test_ui_e2e import CHROMIUM, CHROMIUM_ARGS

pytestmark = pytest.mark.browser


@pytest.fixture
def offline_page(server: ServerProcess) -> Iterator[tuple[Page, list[str]]]:
    """A page whose requests to anything but the server are aborted (and listed)."""
    refused: list[str] = []
    own = urlsplit(server.url).netloc

    def only_the_server(route: Route) -> None:
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
        )
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.route("**/*", only_the_server)
        page = context.new_page()
        page.set_default_timeout(20_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        yield page, refused
        context.close()
        browser.close()
    assert errors == [], errors  # no script error (a CSP refusal of the start script would show here)


def test_swagger_ui_renders_the_api_without_internet(
    server: ServerProcess, offline_page: tuple[Page, list[str]]
) -> None:
    page, refused = offline_page
    page.goto(f"{server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("STACKL", timeout=60_000)
    expect(page.locator(".opblock-summary-path", has_text="/stack_instances").first).to_be_visible()
    assert page.locator(".opblock").count() > 50  # every operation, from /openapi.json
    assert refused == []


def test_redoc_renders_the_api_without_internet(
    server: ServerProcess, offline_page: tuple[Page, list[str]]
) -> None:
    page, refused = offline_page
    page.goto(f"{server.url}/redoc")
    expect(page.locator("h1", has_text="STACKL").first).to_be_visible(timeout=60_000)  # a large schema
    expect(page.get_by_text("/stack_instances", exact=False).first).to_be_attached()
    assert refused == []
