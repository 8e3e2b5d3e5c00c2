"""``stackl agent``: a user-side agent process (agents.md §1, §9); wiring only.

Flags (or ``STACKL_AGENT__*`` variables) pick the name, the server, the executor and the data directory; the
``AgentRunner`` does the rest. SIGTERM/SIGINT start a graceful shutdown; a second signal skips the wait for
running jobs. Exit 0 after a graceful stop, 2 on bad configuration. Heavy imports stay inside the function,
so ``stackl --help`` stays fast. Like the rest of ``stackl.agent``, this talks to the server over HTTP only.
"""

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from stackl.config import is_loopback
from stackl.logs import configure_logging
from stackl.processes.common import shutdown_signals


def _env(option: str) -> str | None:
    return os.environ.get(f"STACKL_AGENT__{option.upper()}") or None


def agent(
    name: Annotated[str, typer.Option(help="agent name; jobs are routed by it")] = "common",
    server: Annotated[str | None, typer.Option(help="server URL, e.g. https://stackl.example.com")] = None,
    token_file: Annotated[
        Path | None, typer.Option("--token-file", help="file holding the agent token")
    ] = None,
    executor: Annotated[str, typer.Option(help="local or mock")] = "local",
    max_jobs: Annotated[int, typer.Option("--max-jobs", min=1, max=1024, help="jobs run at once")] = 4,
    data_dir: Annotated[Path | None, typer.Option("--data-dir", help="default ~/.stackl-agent")] = None,
    automation_dir: Annotated[
        list[Path] | None, typer.Option("--automation-dir", help="code roots of the local executor")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--labels", help="k=v, shown in the agent list")] = None,
    secret_handler: Annotated[str, typer.Option("--secret-handler", help="plain or base64")] = "plain",  # noqa: S107 - a handler name
    shutdown_timeout: Annotated[
        float, typer.Option("--shutdown-timeout", min=0, help="seconds a graceful stop waits for jobs")
    ] = 300.0,
    insecure: Annotated[bool, typer.Option(help="allow http:// to a non-loopback server")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run an agent: pull jobs for NAME from the server and run them."""
    from stackl.config import LoggingSettings

    configure_logging(
        LoggingSettings(level=log_level, format=os.environ.get("STACKL_LOGGING__FORMAT", "auto"))
    )
    url = server or _env("server")
    if not url:
        typer.echo("error: --server is required", err=True)
        raise typer.Exit(2)
    host = urlsplit(url).hostname or ""
    if urlsplit(url).scheme == "http" and not is_loopback(host) and not insecure:
        typer.echo("error: http:// is accepted only for loopback servers or with --insecure", err=True)
        raise typer.Exit(2)
    token = _env("token")
    if token_file is not None:
        token = token_file.read_text().strip()
    labels = dict(item.split("=", 1) for item in (label or []) if "=" in item)
    directory = data_dir or Path(_env("data_dir") or Path.home() / ".stackl-agent")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        chosen = build_executor(
            executor,
            data_dir=directory,
            automation_dirs=automation_dir or [Path("automation")],
            secret_handler=secret_handler,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    asyncio.run(
        _serve(
            name=name,
            url=url,
            token=token,
            executor=chosen,
            data_dir=directory,
            max_jobs=max_jobs,
            labels=labels,
            shutdown_timeout=shutdown_timeout,
        )
    )


def build_executor(kind: str, *, data_dir: Path, automation_dirs: list[Path], secret_handler: str) -> Any:
    """The executor named by ``--executor``.

    Raises:
        ValueError: unknown executor or secret handler.
    """
    if kind == "mock":
        from stackl.agent.executors.mock import MockExecutor

        return MockExecutor(secret_handler=secret_handler)
    if kind == "local":
        from stackl.agent.executors.local import LocalConfig, LocalExecutor

        config = LocalConfig(
            data_dir=data_dir,
            automation_dirs=[d.resolve() for d in automation_dirs],
            environ=dict(os.environ),
            secret_handler=secret_handler,
        )
        return LocalExecutor(config)
    raise ValueError(f"unknown executor {kind!r}: use local or mock")


async def _serve(
    *,
    name: str,
    url: str,
    token: str | None,
    executor: Any,
    data_dir: Path,
    max_jobs: int,
    labels: dict[str, str],
    shutdown_timeout: float,
) -> None:
    import structlog

    from stackl.agent.protocol import AgentProtocol
    from stackl.agent.runner import AgentRunner

    log = structlog.get_logger("stackl.agent")
    stop, force = shutdown_signals(log, "agent")
    async with AgentProtocol(url, name, token=token) as protocol:
        runner = AgentRunner(
            name=name,
            protocol=protocol,
            executor=executor,
            data_dir=data_dir,
            max_jobs=max_jobs,
            shutdown_timeout_s=shutdown_timeout,
            labels=labels,
        )
        log.info(
            "agent_started",
            agent=name,
            instance_id=runner.instance_id,
            executor=executor.name,
            max_jobs=max_jobs,
        )
        await runner.run(stop, force)
