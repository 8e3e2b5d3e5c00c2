"""``stackl db upgrade|current``: schema migrations without starting a server."""

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from stackl.config import Settings
from stackl.processes.common import build_settings, exit_for

app = typer.Typer(help="Database schema migrations.", no_args_is_help=True)

DataDir = Annotated[Path | None, typer.Option("--data-dir", help="data directory holding stackl.db")]
DatabaseUrl = Annotated[str | None, typer.Option("--database-url", help="SQLAlchemy URL")]


def _settings(data_dir: Path | None, database_url: str | None) -> Settings:
    overrides: dict[str, object] = {}
    if data_dir is not None:
        overrides["data_dir"] = data_dir
    if database_url:
        overrides["database"] = {"url": database_url}
    return build_settings(overrides)


@app.command()
def upgrade(
    data_dir: DataDir = None,
    database_url: DatabaseUrl = None,
    to: Annotated[str, typer.Option("--to", help="target revision")] = "head",
) -> None:
    """Apply schema migrations."""
    from stackl import bootstrap
    from stackl.datastore import migrate

    settings = _settings(data_dir, database_url)
    with exit_for():
        bootstrap.prepare_data_dir(settings)
        asyncio.run(migrate.upgrade(settings.database_url, to))
        current, head = asyncio.run(migrate.current_revision(settings.database_url))
    typer.echo(f"schema at {current} (latest {head})")


@app.command()
def current(data_dir: DataDir = None, database_url: DatabaseUrl = None) -> None:
    """Print the schema revision and whether it is the latest."""
    from stackl.datastore import migrate

    settings = _settings(data_dir, database_url)
    with exit_for():
        now, head = asyncio.run(migrate.current_revision(settings.database_url))
    state = "latest" if now == head else f"behind (latest {head})"
    typer.echo(f"{now or 'empty'}: {state}")
