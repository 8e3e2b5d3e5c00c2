"""The interactive API docs (``/docs``: Swagger UI, ``/redoc``: ReDoc), served from the installed packages.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, so ``/docs`` was blank on a machine without internet
(most servers of a platform team). The assets come from ``fastapi-offline`` (a small, maintained package whose
only content we use is its ``static/`` folder: Swagger UI 5 and ReDoc 2 builds) and are served by this router
with long cache lifetimes. The pages carry no inline script, so a strict Content-Security-Policy holds:
Swagger UI starts from ``docs-init.js`` (ours, next to the UI's static files) and ReDoc from its custom element.
Like ``/openapi.json``, the pages are public: they show the schema, never data.
"""

import functools
from html import escape
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path
from fastapi.responses import HTMLResponse, Response

from stackl import errors

router = APIRouter(include_in_schema=False)

ASSETS = "/docs/assets"
_TYPES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "redoc.standalone.js": "text/javascript; charset=utf-8",
    "favicon.png": "image/png",
    "docs-init.js": "text/javascript; charset=utf-8",
}
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'none'; "
    "base-uri 'none'; form-action 'self'"
)
_HEADERS = {"Content-Security-Policy": _CSP, "X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"}


@functools.cache
def _asset(name: str) -> bytes:
    """One asset's bytes, read once on first use (the bundles are ~1 MB each: not at import)."""
    if name == "docs-init.js":
        return resources.files("stackl.api.ui").joinpath("static", name).read_bytes()
    return resources.files("fastapi_offline").joinpath("static", name).read_bytes()


def _page(title: str, head: str, body: str) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="icon" type="image/png" href="{ASSETS}/favicon.png">{head}</head>'
        f"<body>{body}</body></html>"
    )
    return HTMLResponse(html, headers=_HEADERS)


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """Swagger UI: try the API from the browser."""
    return _page(
        "STACKL API - Swagger UI",
        f'<link rel="stylesheet" href="{ASSETS}/swagger-ui.css">',
        f'<div id="swagger-ui" data-openapi="/openapi.json"></div>'
        f'<script src="{ASSETS}/swagger-ui-bundle.js"></script>'
        f'<script src="{ASSETS}/docs-init.js"></script>',
    )


@router.get("/redoc")
async def redoc() -> HTMLResponse:
    """ReDoc: the API reference as one readable page."""
    return _page(
        "STACKL API - ReDoc",
        "",
        f'<redoc spec-url="/openapi.json"></redoc><script src="{ASSETS}/redoc.standalone.js"></script>',
    )


@router.get(ASSETS + "/{name}")
async def asset(name: Annotated[str, Path(max_length=100)]) -> Response:
    """A Swagger UI or ReDoc file (a fixed set of names: no path reaches the file system)."""
    if name not in _TYPES:
        raise errors.NotFound(f"no API docs asset {name!r}")
    return Response(
        _asset(name),
        media_type=_TYPES[name],
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )
