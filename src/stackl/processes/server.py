"""``stackl server``: migrate, open the ports, serve the API, the worker loop and the embedded agent.

Wiring only: settings from flags and the environment, logging, adapters through bootstrap, the app factory,
uvicorn. Heavy imports happen inside the command so that ``stackl --help`` stays fast.
"""

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stackl.config import Settings
from stackl.processes.common import build_settings, exit_for

if TYPE_CHECKING:
    import uvicorn

    from stackl.usecases.ports import Ports


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

    from stackl import bootstrap
    from stackl.api.app import create_app

    log = structlog.get_logger("stackl.server")
    if settings.server.upgrade:
        await bootstrap.upgrade_schema(settings)
    else:
        await bootstrap.require_current_schema(settings)
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
        async with _in_process_worker(settings, ports, server):
            if settings.server.agent:
                await _serve_with_agent(settings, server)
            else:
                await server.serve()
        log.info("server_stopped")


@asynccontextmanager
async def _in_process_worker(
    settings: Settings, ports: "Ports", server: "uvicorn.Server"
) -> AsyncIterator[None]:
    """Run the worker loop next to the API when ``settings.server.worker`` is on (the embedded default).

    Its graceful stop starts as soon as uvicorn begins to shut down and is awaited before the ports close:
    running tasks get ``worker.shutdown_timeout_s`` to finish, the rest are released for the next start (or
    another worker) to resume.
    """
    if not settings.server.worker:
        yield
        return
    from stackl.processes.worker import serve_worker

    stop = asyncio.Event()

    async def watch() -> None:
        while not server.should_exit:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.1)
        stop.set()

    # Not a TaskGroup: an error in the body must still stop the worker gracefully, not cancel it.
    watcher = asyncio.create_task(watch())
    worker = asyncio.create_task(serve_worker(settings, ports, stop))
    try:
        yield
    finally:
        stop.set()
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        await worker  # a failure of the worker loop surfaces here, before the ports close


async def _serve_with_agent(settings: Settings, server: "uvicorn.Server") -> None:
    """Serve the API and run the embedded agent ``common`` against it, over loopback HTTP.

    The agent speaks the same protocol as any other (agents.md: "the same protocol"); it starts once the
    API answers and is stopped, without waiting for its jobs, as soon as uvicorn begins to shut down:
    unfinished results stay in ``<data_dir>/agent/results`` and are re-sent at the next start.
    """
    import structlog

    from stackl.agent.protocol import AgentProtocol
    from stackl.agent.runner import AgentRunner
    from stackl.processes.agent import build_executor

    log = structlog.get_logger("stackl.server")
    data_dir = settings.data_dir / "agent"
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
    executor = build_executor(
        "local",
        data_dir=data_dir,
        automation_dirs=[settings.data_dir / "automation"],
        secret_handler="plain",  # noqa: S106 - a handler name
    )
    stop, force = asyncio.Event(), asyncio.Event()
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "", "::") else settings.server.host  # noqa: S104
    url = f"http://{host}:{settings.server.port}"

    async def embedded() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        async with AgentProtocol(url, "common") as protocol:
            runner = AgentRunner(
                name="common", protocol=protocol, executor=executor, data_dir=data_dir, shutdown_timeout_s=0
            )
            await runner.run(stop, force)

    async def watch() -> None:
        while not server.should_exit:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.1)
        stop.set()
        force.set()

    async with asyncio.TaskGroup() as group:
        group.create_task(watch())
        agent = group.create_task(embedded())
        try:
            await server.serve()
        finally:
            server.should_exit = True
        try:
            async with asyncio.timeout(10):
                await agent
        except TimeoutError:
            log.warning("embedded_agent_stop_timed_out")
            agent.cancel()
