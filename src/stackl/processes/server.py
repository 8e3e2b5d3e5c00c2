"""``stackl server``: migrate the schema, open the ports, serve the API (and, later, the worker and agent).

Wiring only: settings from flags and the environment, logging, adapters through bootstrap, the app factory,
uvicorn. Heavy imports happen inside the command so that ``stackl --help`` stays fast.
"""

import asyncio
import signal
from pathlib import Path
from typing import Annotated

import typer

from stackl.config import Settings
from stackl.processes.common import build_settings, exit_for


def server(
    host: Annotated[str, typer.Option(help="bind address")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8080,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="data directory (default ~/.stackl/data)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    ] = None,
    auth: Annotated[bool | None, typer.Option("--auth/--no-auth", help="require API tokens")] = None,
    insecure: Annotated[bool, typer.Option(help="allow a non-loopback bind without auth")] = False,
    upgrade: Annotated[bool, typer.Option("--upgrade/--no-upgrade", help="apply migrations at start")] = True,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error")] = None,
) -> None:
    """Run the STACKL API server (embedded SQLite by default)."""
    overrides: dict[str, object] = {"server": {"host": host, "port": port, "upgrade": upgrade}}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url:
        overrides["database"] = {"url": database_url}
    if auth is not None or insecure:
        overrides["auth"] = {"enabled": auth, "insecure": insecure}
    if log_level:
        overrides["logging"] = {"level": log_level}
    settings = build_settings(overrides)
    if settings.auth_enabled:
        # API tokens are not implemented yet: serving an open API on a reachable address must be a choice.
        typer.echo(
            "error: authentication is not available in this version; bind to a loopback address, "
            "or pass --no-auth --insecure to serve without it",
            err=True,
        )
        raise typer.Exit(2)
    with exit_for():
        asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import structlog
    import uvicorn

    from stackl import bootstrap, errors
    from stackl.api.app import create_app
    from stackl.datastore import migrate

    log = structlog.get_logger("stackl.server")
    if settings.server.upgrade:
        await bootstrap.upgrade_schema(settings)
    else:
        current, head = await migrate.current_revision(settings.database_url)
        if current != head:
            raise errors.StoreUnavailable(
                f"database schema is at {current}, not {head}: run stackl db upgrade"
            )
    async with bootstrap.open_ports(settings) as ports:
        app = create_app(settings, ports)
        config = uvicorn.Config(
            app,
            host=settings.server.host,
            port=settings.server.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=30,
            lifespan="off",
        )
        server = uvicorn.Server(config)
        where = settings.database_url if settings.database.url else str(settings.data_dir / "stackl.db")
        log.info(
            "server_started",
            api=f"http://{settings.server.host}:{settings.server.port}",
            database=ports.store.kind,
            data=where.split("@")[-1],
        )
        # uvicorn re-raises the stop signal once it has shut down gracefully; a handler that does nothing
        # keeps that re-raise from killing the process, so a SIGTERM stop exits 0 like a clean shutdown.
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
        await server.serve()
        log.info("server_stopped")
