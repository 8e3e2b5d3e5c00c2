"""``stackl server``: migrate, open the ports, serve the API, the worker loop and the embedded agent.

Wiring only: settings from flags and the environment, logging, adapters through bootstrap, the app factory,
uvicorn. A split deployment turns parts off (``--no-worker``, ``--no-agent``), picks the embedded agent's
executor (``--agent-executor``) and serves HTTPS (``--tls-cert``/``--tls-key``); every flag is also a
``STACKL_SERVER__*`` setting. Heavy imports happen inside the command so that ``stackl --help`` stays fast.
"""

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from stackl.config import Settings, is_loopback
from stackl.processes.common import build_settings, exit_for

if TYPE_CHECKING:
    import ssl

    import uvicorn

    from stackl.domain.auth import Subject
    from stackl.usecases.ports import Ports


def server(
    host: Annotated[str | None, typer.Option(help="bind address [default: 127.0.0.1]")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port [default: 8080]")] = None,
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
    worker: Annotated[
        bool | None, typer.Option("--worker/--no-worker", help="run the worker loop in this process")
    ] = None,
    agent: Annotated[
        bool | None, typer.Option("--agent/--no-agent", help="run the embedded agent 'common'")
    ] = None,
    agent_executor: Annotated[
        str | None,
        typer.Option("--agent-executor", help="embedded agent's executor: local, docker, kubernetes, mock"),
    ] = None,
    tls_cert: Annotated[
        Path | None, typer.Option("--tls-cert", dir_okay=False, help="PEM certificate: serve HTTPS")
    ] = None,
    tls_key: Annotated[
        Path | None, typer.Option("--tls-key", dir_okay=False, help="PEM key of --tls-cert")
    ] = None,
) -> None:
    """Run the STACKL API server (embedded SQLite by default)."""
    given = {
        "host": host,
        "port": port,
        "worker": worker,
        "agent": agent,
        "agent_executor": agent_executor,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
    }
    overrides: dict[str, object] = {
        "server": {"upgrade": upgrade} | {key: value for key, value in given.items() if value is not None}
    }
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url:
        overrides["database"] = {"url": database_url}
    if auth is not None or insecure:
        overrides["auth"] = {"enabled": auth, "insecure": insecure}
    if log_level:
        overrides["logging"] = {"level": log_level}
    settings = build_settings(overrides)  # exit 2: --no-auth on a non-loopback address without --insecure
    for name, path in (("tls_cert", settings.server.tls_cert), ("tls_key", settings.server.tls_key)):
        if path is not None and not path.is_file():
            typer.echo(f"error: server.{name}: {path}: no such file", err=True)
            raise typer.Exit(2)
    with exit_for():
        asyncio.run(_serve(settings))


async def _serve(settings: Settings) -> None:
    import structlog
    import uvicorn

    from stackl import bootstrap
    from stackl.api import bodies
    from stackl.api.app import create_app
    from stackl.processes import http

    log = structlog.get_logger("stackl.server")
    if settings.server.upgrade:
        await bootstrap.upgrade_schema(settings)
    else:
        await bootstrap.require_current_schema(settings)
    async with bootstrap.open_ports(settings) as ports:
        agent_token, internal = _embedded_agent_credential(settings)
        if settings.auth_enabled:
            await _first_admin_token(settings, ports, log)
        elif not is_loopback(settings.server.host):
            log.warning(
                "auth_disabled", host=settings.server.host, detail="--insecure: anyone may call the API"
            )
        app = create_app(settings, ports, internal_subjects=internal)
        http.quiet_accept_errors(asyncio.get_running_loop(), log)
        if not bodies.HAS_LIBYAML:
            log.warning("yaml_libyaml_missing", detail="PyYAML without libyaml: YAML bodies parse ~4x slower")
        server = uvicorn.Server(http.uvicorn_config(app, settings.server, log, **_tls_options(settings)))
        where = settings.database_url if settings.database.url else str(settings.data_dir / "stackl.db")
        log.info(
            "server_started",
            api=f"{_scheme(settings)}://{settings.server.host}:{settings.server.port}",
            database=ports.store.kind,
            data=where.split("@")[-1],
        )
        # uvicorn re-raises the stop signal once it has shut down gracefully; a handler that does nothing
        # keeps that re-raise from killing the process, so a SIGTERM stop exits 0 like a clean shutdown.
        signal.signal(signal.SIGTERM, lambda _signum, _frame: None)
        async with _in_process_worker(settings, ports, server):
            if settings.server.agent:
                await _serve_with_agent(settings, server, token=agent_token)
            else:
                await server.serve()
        log.info("server_stopped")


def _scheme(settings: Settings) -> str:
    return "https" if settings.server.tls_cert is not None else "http"


def _tls_options(settings: Settings) -> dict[str, Any]:
    """The HTTPS options of uvicorn for ``--tls-cert``/``--tls-key`` (the settings check they come together)."""
    if settings.server.tls_cert is None:
        return {}
    return {"ssl_certfile": str(settings.server.tls_cert), "ssl_keyfile": str(settings.server.tls_key)}


def _loopback_tls(settings: Settings) -> "ssl.SSLContext | bool":
    """How the embedded agent verifies its own server over loopback.

    Plain HTTP: nothing to verify. HTTPS: the server's own certificate is the only trust anchor (pinned, so a
    partial chain is accepted) and the host name is not checked, because the agent dials 127.0.0.1 while the
    certificate names the public host.
    """
    if settings.server.tls_cert is None:
        return True
    import ssl

    context = ssl.create_default_context(cafile=str(settings.server.tls_cert))
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    context.check_hostname = False
    return context


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


def _embedded_agent_credential(settings: Settings) -> tuple[str | None, dict[str, "Subject"]]:
    """A random token for the embedded agent ``common``, valid in this process only and never stored."""
    from stackl.domain import auth
    from stackl.usecases import tokens as token_cases

    if not (settings.auth_enabled and settings.server.agent):
        return None, {}
    secret = token_cases.new_secret()
    subject = auth.Subject(name="agent:common", roles=(auth.Role.agent,), agent="common")
    return secret, {auth.token_hash(secret): subject}


ADMIN_TOKEN_FILE = "admin.token"  # noqa: S105 - a file name


async def _first_admin_token(settings: Settings, ports: "Ports", log: Any) -> None:
    """With auth on and no usable admin token, create one into ``<data_dir>/admin.token`` (0600).

    The path is printed, never the token. A token file left from an earlier start is kept as it is.
    """
    from stackl.domain.auth import Role
    from stackl.usecases import tokens as token_cases

    if await token_cases.has_usable(ports, Role.admin):
        return
    created = await token_cases.issue(
        ports, subject="admin", role=Role.admin, description="created at the first start", created_by="stackl"
    )
    path = settings.data_dir / ADMIN_TOKEN_FILE

    def write() -> None:
        settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(created.secret + "\n")

    await asyncio.to_thread(write)
    log.info("admin_token_created", path=str(path), token_id=created.record.id)


async def _serve_with_agent(
    settings: Settings, server: "uvicorn.Server", *, token: str | None = None
) -> None:
    """Serve the API and run the embedded agent ``common`` against it, over loopback HTTP.

    The agent speaks the same protocol as any other (agents.md: "the same protocol"); it starts once the
    API answers and is stopped, without waiting for its jobs, as soon as uvicorn begins to shut down:
    unfinished results stay in ``<data_dir>/agent/results`` and are re-sent at the next start.
    """
    import structlog

    from stackl.agent.protocol import AgentProtocol
    from stackl.agent.runner import AgentRunner
    from stackl.processes.agent import build_executor, previous_instance

    log = structlog.get_logger("stackl.server")
    data_dir = settings.data_dir / "agent"
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True, mode=0o700)
    executor = build_executor(
        settings.server.agent_executor,
        data_dir=data_dir,
        automation_dirs=[settings.data_dir / "automation"],
        secret_handler="plain",  # noqa: S106 - a handler name
    )
    stop, force = asyncio.Event(), asyncio.Event()
    host = "127.0.0.1" if settings.server.host in ("0.0.0.0", "", "::") else settings.server.host  # noqa: S104
    url = f"{_scheme(settings)}://{host}:{settings.server.port}"

    async def embedded() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        async with AgentProtocol(url, "common", token=token, verify=_loopback_tls(settings)) as protocol:
            runner = AgentRunner(
                name="common", protocol=protocol, executor=executor, data_dir=data_dir, shutdown_timeout_s=0
            )
            # What a killed previous run left (tool process groups, job directories) goes first.
            start = getattr(executor, "start", None)  # the mock executor leaves nothing to clean up
            if start is not None:
                await start(
                    agent="common",
                    instance_id=runner.instance_id,
                    previous_instance_id=previous_instance(data_dir),
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
