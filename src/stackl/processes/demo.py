"""``stackl demo``: the README's first command — an embedded server with the bundled example loaded.

It runs ``stackl server`` as a child process on a demo data directory (SQLite), waits until it is ready,
applies every bundled example document in one bulk apply through the REST client (exactly what a user's
``stackl apply -d examples`` does), prints what it loaded and where to look, then keeps the server running
until Ctrl-C (or stops it at once with ``--exit``). Deploying the example instance joins this command with
the stack-instance lifecycle.
"""

import asyncio
import os
import signal
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from stackl import errors
from stackl.client.client import StacklClient

READY_TIMEOUT_S = 60.0


def examples_dir() -> Path:
    """The bundled examples: inside the installed package, or at the root of a source checkout."""
    packaged = Path(str(resources.files("stackl"))) / "examples"
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[3] / "examples"
    if checkout.is_dir():
        return checkout
    raise errors.StacklError("the bundled example documents are missing from this installation")


def load_examples(root: Path) -> list[dict[str, Any]]:
    """Every document under ``root``, in a stable order."""
    docs: list[dict[str, Any]] = []
    for path in sorted(root.rglob("*.yml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(doc, dict):
                docs.append(doc)
    return docs


def demo(
    port: Annotated[int, typer.Option(help="TCP port of the demo server (loopback only)")] = 8080,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="data directory (default ~/.stackl/demo)")
    ] = None,
    exit_after: Annotated[
        bool, typer.Option("--exit", help="stop the server once the example is loaded")
    ] = False,
) -> None:
    """Run an embedded STACKL server with the bundled example loaded (SQLite, loopback)."""
    where = data_dir or Path.home() / ".stackl" / "demo"
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "stackl", "server", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--data-dir", str(where), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if k != "STACKL_DATABASE__URL"}  # the demo is embedded
    typer.echo(f"Starting the STACKL server on {url} (data in {where}) ...")
    server = subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and arguments
    try:
        try:
            summary = asyncio.run(_load(url, server))
        except errors.StacklError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(7 if isinstance(exc, errors.Unavailable) else 1) from exc
        typer.echo(summary)
        if exit_after:
            return
        typer.echo("Press Ctrl-C to stop the server.")
        code = server.wait()
        if code != 0:
            raise typer.Exit(code if code > 0 else 1)
    except KeyboardInterrupt:
        pass
    finally:
        _stop(server)


async def _load(url: str, server: subprocess.Popen[bytes]) -> str:
    docs = load_examples(examples_dir() / "documents")
    async with StacklClient(url, timeout_s=10) as client:
        await _wait_ready(client, server)
        applied = await client.apply_documents(docs)
    lines = ["", "The example documents are loaded:"]
    for result in applied.get("results", []):
        lines.append(f"  {result['action']:9} {result['type']} {result['name']}")
    lines += [
        "",
        f"  API           {url}",
        f"  API docs      {url}/docs",
        f"  try           stackl --server {url} get sat web_shop -o yaml",
        "",
    ]
    return "\n".join(lines)


async def _wait_ready(client: StacklClient, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        if server.poll() is not None:
            raise errors.ServerUnreachable(
                f"the server exited with code {server.returncode} (is the port already in use?)"
            )
        try:
            await client.version()
            return
        except errors.Unavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


def _stop(server: subprocess.Popen[bytes]) -> None:
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
