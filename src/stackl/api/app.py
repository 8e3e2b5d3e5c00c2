"""The app factory: builds the API (0.5 paths and new ones) around ports that are already open.

Nothing here opens a database or reads the environment: ``processes.server`` (or a test) opens the ports and
passes them in, so the same app runs on the in-memory fakes, SQLite or PostgreSQL.
"""

from fastapi import FastAPI
from fastapi.routing import APIRoute

from stackl import __version__
from stackl.api import problems
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
from stackl.api.middleware import RequestContextMiddleware
from stackl.api.routes import agents, documents, health, instances, logs, policies, tasks
from stackl.api.ui import pages as ui
from stackl.config import Settings
from stackl.usecases.ports import Ports


def _operation_id(route: APIRoute) -> str:
    """OperationId = the route function's name, as STACKL 0.5 (the released client calls them by name)."""
    return route.name


def create_app(settings: Settings, ports: Ports) -> FastAPI:
    """Build the API around open ports."""
    app = FastAPI(
        title="STACKL",
        version=__version__,
        description="Model infrastructure, describe applications, automate their orchestration.",
        generate_unique_id_function=_operation_id,
    )
    app.state.settings, app.state.ports = settings, ports
    problems.install(app)
    for module in (
        health,
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
        ui,
    ):
        app.include_router(module.router)
    app.add_middleware(RequestContextMiddleware, clock=ports.clock)
    return app
