"""The app factory: builds the API (0.5 paths and new ones) around ports that are already open.

Nothing here opens a database or reads the environment: ``processes.server`` (or a test) opens the ports and
passes them in, so the same app runs on the in-memory fakes, SQLite or PostgreSQL. Every API router carries
``deps.access`` (authentication and authorization); the UI router carries ``ui.common.ui_access`` instead.
"""

from collections.abc import Mapping

from fastapi import Depends, FastAPI
from fastapi.routing import APIRoute

from stackl import __version__
from stackl.api import deps, metrics, openapi, problems
from stackl.api.legacy import (
    about,
    functional_requirements,
    infrastructure_base,
    policy_templates,
    services,
    snapshots,
    stack_application_templates,
    stack_infrastructure_templates,
    stack_instances,
)
from stackl.api.limits import BodyLimitMiddleware
from stackl.api.middleware import RequestContextMiddleware
from stackl.api.routes import (
    agents,
    apidocs,
    audit,
    documents,
    drift,
    events,
    health,
    instances,
    logs,
    policies,
    tasks,
    tokens,
)
from stackl.api.ui import common as ui_common
from stackl.api.ui import pages as ui
from stackl.config import Settings
from stackl.domain.auth import Subject
from stackl.usecases.ports import Ports


def _operation_id(route: APIRoute) -> str:
    """OperationId = the route function's name, as STACKL 0.5 (the released client calls them by name)."""
    return route.name


def create_app(
    settings: Settings, ports: Ports, *, internal_subjects: Mapping[str, Subject] | None = None
) -> FastAPI:
    """Build the API around open ports.

    Args:
        settings: the process settings (auth on or off, limits).
        ports: the open adapters.
        internal_subjects: in-process credentials by token hash (the embedded agent's), never stored.
    """
    app = FastAPI(
        title="STACKL",
        version=__version__,
        description="Model infrastructure, describe applications, automate their orchestration.",
        generate_unique_id_function=_operation_id,
        docs_url=None,  # served from the package by routes.apidocs: no CDN, so /docs works offline
        redoc_url=None,
    )
    ports = metrics.instrument(ports)
    app.state.settings, app.state.ports = settings, ports
    app.state.internal_subjects = dict(internal_subjects or {})
    problems.install(app)
    access = [Depends(deps.access)]
    openapi.install(app)
    for module in (
        health,
        metrics,
        events,
        drift,
        about,
        infrastructure_base,
        functional_requirements,
        services,
        stack_application_templates,
        stack_infrastructure_templates,
        policy_templates,
        snapshots,
        documents,
        instances,
        stack_instances,
        tasks,
        logs,
        policies,
        agents,
        tokens,
        audit,
    ):
        app.include_router(module.router, dependencies=access)
    app.include_router(apidocs.router)
    app.include_router(ui_common.login_router)  # before the UI router, whose catch-all would shadow it
    app.include_router(ui.router)
    # Innermost of ours (added first): a refused body is answered with the request id, before any route,
    # dependency or the UI reads it.
    app.add_middleware(
        BodyLimitMiddleware,
        max_body_bytes=settings.server.max_body_bytes,
        body_read_timeout_s=settings.server.body_read_timeout_s,
    )
    app.add_middleware(
        RequestContextMiddleware,
        clock=ports.clock,
        ports=ports,
        token_path_prefix=settings.auth.token_path_prefix,
    )
    app.add_middleware(metrics.MetricsMiddleware)
    return app
