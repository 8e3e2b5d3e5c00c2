"""``/docs`` and ``/redoc`` come with their assets from this server: no CDN, no inline script."""

import re

import httpx
import pytest

from stackl.api.routes import apidocs

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("path", ["/docs", "/redoc"])
async def test_the_pages_load_nothing_from_elsewhere_and_run_no_inline_script(
    api: httpx.AsyncClient, path: str
) -> None:
    page = await api.get(path)
    assert page.status_code == 200
    assert "text/html" in page.headers["content-type"]
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert not re.search(r"(src|href|spec-url)=\"(https?:)?//", page.text)  # every asset is on this server
    assert not re.search(r"<script>|<script [^>]*>[^<]", page.text)  # scripts are files, never inline
    assets = re.findall(r"(?:src|href)=\"(/docs/assets/[^\"]+)\"", page.text)
    assert assets
    for asset in assets:
        served = await api.get(asset)
        assert served.status_code == 200, asset
        assert len(served.content) > 1000 or asset.endswith("docs-init.js")
        assert served.headers["cache-control"] == "public, max-age=86400"


async def test_swagger_ui_is_started_from_a_file_that_reads_the_schema_path(api: httpx.AsyncClient) -> None:
    init = await api.get(f"{apidocs.ASSETS}/docs-init.js")
    assert init.headers["content-type"].startswith("text/javascript")
    assert "SwaggerUIBundle(" in init.text
    assert 'data-openapi="/openapi.json"' in (await api.get("/docs")).text


async def test_an_unknown_asset_is_404_and_no_path_reaches_the_file_system(api: httpx.AsyncClient) -> None:
    assert (await api.get(f"{apidocs.ASSETS}/nope.js")).status_code == 404
    assert (await api.get(f"{apidocs.ASSETS}/..%2F..%2Fconfig.py")).status_code == 404
