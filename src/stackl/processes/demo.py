"""``stackl demo``: the README's first command — an embedded server with the bundled example loaded.

It runs ``stackl server`` as a child process on a demo data directory (SQLite), waits until it is ready,
applies every bundled example document in one bulk apply through the REST client (exactly what a user's
``stackl apply -d examples`` does), then deploys the example instance ``demo`` from
``examples/web_shop.instance.yml`` (what ``stackl apply -c … -s demo`` does): the embedded agent runs the
example's Ansible playbooks (``examples/automation``, linked as ``<data dir>/automation``), which write their
files under ``<data dir>/demo-output`` and pass outputs from the database step to the web step. It prints the
progress, the final statuses and outputs, then keeps the server running until Ctrl-C (or stops it at once
with ``--exit``). A second run finds the instance deployed and shows it.
"""

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from stackl import errors
from stackl.client.client import JsonDict, StacklClient

READY_TIMEOUT_S = 60.0
INSTANCE = "demo"
DEPLOY_TIMEOUT_S = 600.0


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
    if not _port_free(port):
        typer.echo(
            f"error: port {port} is already in use on 127.0.0.1 (another server, perhaps another STACKL);"
            " stop it or pick another port with --port",
            err=True,
        )
        raise typer.Exit(7)
    _link_automation(where)
    typer.echo(f"Starting the STACKL server on {url} (data in {where}) ...")
    server = subprocess.Popen(command, env=env)  # noqa: S603 - our own interpreter and arguments
    try:
        try:
            summary = asyncio.run(_load(url, server, where))
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


def _port_free(port: int) -> bool:
    """Nothing listens on ``127.0.0.1:port``: else the demo would load its example into whatever answers there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: TIME_WAIT is no owner
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _link_automation(where: Path) -> None:
    """``<data dir>/automation`` → the bundled playbooks, where the embedded agent looks for code."""
    where.mkdir(parents=True, exist_ok=True)
    link = where / "automation"
    if not link.exists() and not link.is_symlink():
        link.symlink_to(examples_dir() / "automation", target_is_directory=True)


async def _load(url: str, server: subprocess.Popen[bytes], where: Path) -> str:
    docs = load_examples(examples_dir() / "documents")
    async with StacklClient(url, timeout_s=40) as client:
        await _wait_ready(client, server)
        applied = await client.apply_documents(docs)
        typer.echo("\nThe example documents are loaded:")
        for result in applied.get("results", []):
            typer.echo(f"  {result['action']:9} {result['type']} {result['name']}")
        await _deploy(client, where)
    lines = [
        "",
        f"  API           {url}",
        f"  API docs      {url}/docs",
        f"  try           stackl --server {url} get instance {INSTANCE} -o yaml",
        f"                stackl --server {url} delete instance {INSTANCE} -s",
        "",
    ]
    return "\n".join(lines)


async def _deploy(client: StacklClient, where: Path) -> None:
    """Create the example instance and follow its task to the end; an existing one is shown as it is.

    Raises:
        OperationFailed: the deployment failed (its statuses are printed first).
    """
    typer.echo("")
    try:
        instance = await client.get_instance(INSTANCE)
    except errors.NotFound:
        manifest = yaml.safe_load((examples_dir() / "web_shop.instance.yml").read_text(encoding="utf-8"))
        body: JsonDict = {"stack_instance_name": INSTANCE, **manifest}
        body["params"] = {**body.get("params", {}), "output_dir": str(where / "demo-output")}
        placement = await client.create_instance(body)
        task_id = client.last.task_id if client.last is not None else ""
        typer.echo(f"Deploying the example as stack instance {INSTANCE} (task {task_id}):")
        for alias, placed in placement.items():
            typer.echo(f"  {alias}: {placed.get('service')} on {', '.join(placed.get('targets', []))}")
        task = await _follow(client, str(task_id))
        instance = await client.get_instance(INSTANCE)
        _show(instance)
        if task.get("state") != "succeeded":
            result = task.get("result") or {}
            raise errors.OperationFailed(
                f"the deployment {task.get('state')}: {result.get('error_message', '')}"
            ) from None
        typer.echo(f"The playbooks wrote their files under {where / 'demo-output'}.")
        return
    typer.echo(f"Stack instance {INSTANCE} is already deployed:")
    _show(instance)


async def _follow(client: StacklClient, task_id: str) -> JsonDict:
    shown = ""
    deadline = time.monotonic() + DEPLOY_TIMEOUT_S
    while True:
        task = await client.get_task(task_id, wait_s=10)
        progress = task.get("progress") or {}
        line = f"  {task.get('state')}: " + ", ".join(
            f"{progress.get(k, 0)} {k}" for k in ("ready", "running", "pending", "failed", "skipped")
        )
        if line != shown:
            typer.echo(line)
            shown = line
        if task.get("state") in ("succeeded", "failed", "cancelled"):
            return task
        if time.monotonic() > deadline:
            raise errors.WaitTimedOut(f"task {task_id} is still {task.get('state')}")


def _show(instance: JsonDict) -> None:
    for entry in instance.get("status", []):
        message = str(entry.get("error_message") or "").splitlines()
        typer.echo(
            f"  {entry.get('service', ''):6} {entry.get('functional_requirement', ''):18} "
            f"{entry.get('status', ''):10} {message[0] if message else ''}".rstrip()
        )
    for key, value in (instance.get("instance_outputs") or {}).items():
        typer.echo(f"  output {key}: {value}")


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
