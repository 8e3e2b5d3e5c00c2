"""``stackl worker``: a process that runs tasks from the database's ``tasks`` queue; wiring only.

Settings come from flags and ``STACKL_*`` variables (the same database settings as ``stackl server``); the
worker never migrates: it refuses to start (exit 7) while the schema is behind, like ``stackl server
--no-upgrade``, because the server process owns migrations. SIGTERM/SIGINT start a graceful stop (running
tasks get ``worker.shutdown_timeout_s`` to finish, the rest are released for another worker); a second
signal skips the wait. Exit 0 after a graceful stop. Heavy imports stay inside the functions, so ``stackl
--help`` stays fast. ``serve_worker`` is also what the server runs in-process.
"""

import asyncio
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from stackl.config import Settings
from stackl.processes.common import build_settings, exit_for, shutdown_signals

if TYPE_CHECKING:
    from stackl.usecases.ports import Ports


def worker(
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="tasks run at once (default 4)")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="data directory (default ~/.stackl/data)")
    ] = None,
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the data dir)")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning or error")] = None,
) -> None:
    """Run a worker: claim tasks from the database and run them."""
    overrides: dict[str, object] = {}
    if concurrency is not None:
        overrides["worker"] = {"concurrency": concurrency}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url:
        overrides["database"] = {"url": database_url}
    if log_level:
        overrides["logging"] = {"level": log_level}
    settings = build_settings(overrides)
    with exit_for():
        asyncio.run(_serve(settings))


def owner_name(role: str = "worker") -> str:
    """A lease owner naming this process: ``worker@host:pid`` (the broker stores it on every lease)."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


async def _serve(settings: Settings) -> None:
    import structlog

    from stackl import bootstrap, errors

    log = structlog.get_logger("stackl.worker")
    if not settings.database.url and not (settings.data_dir / "stackl.db").exists():
        raise errors.StoreUnavailable(
            f"no database in {settings.data_dir}: start stackl server (or run stackl db upgrade) first"
        )
    await bootstrap.require_current_schema(settings)
    stop, force = shutdown_signals(log, "worker")
    async with bootstrap.open_ports(settings) as ports:
        await serve_worker(settings, ports, stop, force)


async def serve_worker(
    settings: Settings, ports: "Ports", stop: asyncio.Event, force: asyncio.Event | None = None
) -> None:
    """Run a WorkerRunner with the settings' concurrency and lease until ``stop``, then stop gracefully."""
    from stackl.usecases import reconcile
    from stackl.worker.handlers import default_give_up, default_handlers
    from stackl.worker.runner import WorkerRunner

    runner = WorkerRunner(
        ports,
        default_handlers(),
        give_up=default_give_up(),
        owner=owner_name(),
        concurrency=settings.worker.concurrency,
        lease_s=settings.worker.lease_s,
        heartbeat_s=settings.worker.lease_s / 3,
        max_lease_expiries=settings.tasks.max_lease_expiries,
        shutdown_timeout_s=settings.worker.shutdown_timeout_s,
        reconcile=reconcile.repair_orphaned_steps,
        reconcile_s=settings.worker.reconcile_s,
    )
    await runner.run(stop, force)
