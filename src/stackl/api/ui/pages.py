"""The web UI under ``/ui``: the router the app includes, the dashboard and the static files.

Every UI route calls the same use cases as the REST API; the instance pages, the documents browser and the
plan page live in the modules beside this one, and are included here under one router that carries the
access dependency (``common.ui_access``) and the HTML error pages (``common.UIRoute``).
"""

from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse, Response

from stackl import errors
from stackl.api.deps import PortsDep
from stackl.api.ui import actions, documents, instances, plan, tasks
from stackl.api.ui.common import PREFIX, UIRoute, aggregate_status, render, ui_access
from stackl.usecases import agent_registry, task_queries
from stackl.usecases import documents as document_cases

STATIC_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}
# The static files are read once, at import: a fixed set of names, so no path ever reaches the file system.
STATIC: dict[str, tuple[bytes, str]] = {
    entry.name: (entry.read_bytes(), STATIC_TYPES[suffix])
    for entry in resources.files("stackl.api.ui").joinpath("static").iterdir()
    if (suffix := "." + entry.name.rsplit(".", 1)[-1]) in STATIC_TYPES
}

router = APIRouter(
    prefix=PREFIX,
    tags=["ui"],
    route_class=UIRoute,
    dependencies=[Depends(ui_access)],
    include_in_schema=False,
)


@router.get("", name="ui_dashboard")
async def dashboard(request: Request, ports: PortsDep) -> Response:
    """Instances with their aggregate status, recent tasks, agents online and offline."""
    return render(request, "dashboard.html", await _dashboard(ports))


@router.get("/", include_in_schema=False)
async def dashboard_slash() -> Response:
    return RedirectResponse(PREFIX, status_code=308)


@router.get("/fragments/dashboard", name="ui_dashboard_fragment")
async def dashboard_fragment(request: Request, ports: PortsDep) -> Response:
    """The live part of the dashboard (htmx polls it)."""
    return render(request, "dashboard_live.html", await _dashboard(ports))


async def _dashboard(ports: PortsDep) -> dict[str, object]:
    stored = await document_cases.list_all(ports, "stack_instance")
    summaries = []
    for doc in stored:
        entries = doc.body.get("status", [])
        counts: dict[str, int] = {}
        for entry in entries:
            counts[str(entry.get("status"))] = counts.get(str(entry.get("status")), 0) + 1
        summaries.append(
            {
                "name": doc.name,
                "sat": doc.body.get("stack_application_template", ""),
                "sit": doc.body.get("stack_infrastructure_template", ""),
                "status": aggregate_status(entries),
                "counts": counts,
                "updated_at": doc.updated_at,
            }
        )
    agents = await agent_registry.list_agents(ports)
    return {
        "instances": summaries,
        "tasks": await task_queries.list_tasks(ports, limit=10),
        "agents": agents,
        "online": sum(1 for a in agents if a["state"] == "online"),
    }


@router.get("/static/{name}", name="ui_static")
async def static(name: Annotated[str, Path(max_length=100)]) -> Response:
    """A vendored script or the style sheet (cached for a day; the file names carry versions)."""
    if name not in STATIC:
        raise errors.NotFound(f"no static file {name!r}")
    content, media_type = STATIC[name]
    return Response(
        content,
        media_type=media_type,
        headers={"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"},
    )


for _module in (instances, actions, documents, plan, tasks):
    router.include_router(_module.router)


@router.get("/{rest:path}", name="ui_not_found")
async def not_found(rest: str) -> Response:
    """Any other path under /ui: the HTML 404 page (registered last)."""
    raise errors.NotFound(f"no page at /ui/{rest}")
