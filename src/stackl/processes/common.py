"""What every process command shares: settings from flags + environment, logging, and exit codes.

Process commands exit 2 on bad configuration and 7 when the database cannot be reached (cli.md §5.1).
"""

import asyncio
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from pydantic import ValidationError

from stackl import errors
from stackl.config import Settings
from stackl.logs import configure_logging


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def build_settings(overrides: dict[str, Any]) -> Settings:
    """Settings from the environment with CLI flags on top; logging configured; exit 2 when invalid."""
    try:
        env_settings = Settings()
        merged = _merge(env_settings.model_dump(exclude_unset=True), overrides)
        settings = Settings(**merged)
    except ValidationError as exc:
        for error in exc.errors():
            where = ".".join(str(p) for p in error["loc"]) or "settings"
            typer.echo(f"error: {where}: {error['msg']}", err=True)
        raise typer.Exit(2) from exc
    configure_logging(settings.logging)
    return settings


@contextmanager
def exit_for() -> Iterator[None]:
    """Translate startup failures into the process exit codes, with one line on stderr."""
    try:
        yield
    except errors.Unavailable as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(7) from exc
    except errors.StacklError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
    except KeyboardInterrupt:
        sys.exit(130)


def shutdown_signals(log: Any, role: str) -> tuple[asyncio.Event, asyncio.Event]:
    """Events set by SIGTERM/SIGINT on the running loop: the first stops gracefully, a second forces it."""
    stop, force = asyncio.Event(), asyncio.Event()
    forced, started = f"{role}_shutdown_forced", f"{role}_shutdown_started"  # structured-log event names

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.info(forced, signal=name)
            force.set()
        else:
            log.info(started, signal=name)
            stop.set()

    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    return stop, force
