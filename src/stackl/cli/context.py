"""Where the CLI connects, with which token, and the one way a command builds and runs its StacklClient.

Settings come in the order of spec/cli.md §1 (first wins): server URL ``--server``, ``STACKL_URL``,
``~/.stackl/config``, ``http://127.0.0.1:8080``; token ``--token``, ``STACKL_TOKEN``, the ``/t/<token>``
prefix of that URL, ``~/.stackl/credentials``. The config file keeps the STACKL 0.5 format (the whole file is
the URL) so the released 0.5 CLI shares it; a ``/t/<token>`` URL, the only way 0.5 can authenticate, is split
here into the server URL and a Bearer token, because the prefix is honoured on STACKL 0.5 paths only.
``STACKL_CONFIG_DIR`` replaces ``~/.stackl``; ``--ca-file``, else ``STACKL_CA_FILE``, verifies a server whose
certificate a private CA signed. Environment and home are read through ``stackl.config`` only.

Tests reach the CLI's HTTP traffic through ``TRANSPORT_FACTORY``: set it to a function returning an ``httpx``
transport (``httpx.MockTransport`` or ``httpx.ASGITransport`` on the in-process app) and every command sends
its requests there instead of the network.
"""

import os
import re
import ssl
import stat
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
import typer

from stackl import environ
from stackl.cli import exits
from stackl.cli.options import Options as Options  # re-exported: commands read ``context.Options``
from stackl.client.client import StacklClient, redact_url

DEFAULT_SERVER = "http://127.0.0.1:8080"
CONFIG_FILE = "config"
CREDENTIALS_FILE = "credentials"
_TOKEN_URL = re.compile(r"^(?P<base>.+?)/t/(?P<token>[^/?#]+)/?$")

TRANSPORT_FACTORY: Callable[[], httpx.AsyncBaseTransport] | None = None  # tests: the transport to use

T = TypeVar("T")


@dataclass(frozen=True)
class Connection:
    """The server and token a command uses, and where each came from (for ``info`` and ``-v``)."""

    server: str
    token: str | None
    server_source: str
    token_source: str | None


def options(ctx: typer.Context) -> Options:
    """The global options of this invocation (defaults when a command runs without the root callback)."""
    found = ctx.find_object(Options)
    return found if found is not None else Options()


def config_dir() -> Path:
    """``STACKL_CONFIG_DIR``, else ``~/.stackl``, else ``./.stackl`` when there is no home directory."""
    configured = environ.client_env("config_dir")
    if configured:
        return Path(configured)
    home = environ.client_home()
    return home / ".stackl" if str(home) != "~" and home.is_dir() else Path(".stackl")


def split_token_url(url: str) -> tuple[str, str | None]:
    """``https://host/t/<token>`` → (``https://host``, token); any other URL → (url, None)."""
    match = _TOKEN_URL.match(url.strip())
    if match is None:
        return url.strip().rstrip("/"), None
    return match["base"].rstrip("/"), match["token"]


def normalise_url(url: str) -> str:
    """A server URL as the client uses it: ``http://`` added when no scheme is given, no trailing slash.

    Raises:
        exits.UsageFailure: the URL has another scheme than http or https.
    """
    url = url.strip()
    if "://" not in url:
        url = f"http://{url}"
    scheme = url.split("://", 1)[0].lower()
    if scheme not in ("http", "https") or url == f"{scheme}://":
        raise exits.UsageFailure(
            f"invalid server URL {redact_url(url)!r}: expected http://HOST[:PORT] or https://…"
        )
    return url.rstrip("/")


def read_config_url(directory: Path) -> str | None:
    """The server URL of the config file (0.5 format: the whole file, whitespace ignored), or None."""
    text = _read(directory / CONFIG_FILE)
    return (text or "").strip() or None


def read_credentials(directory: Path) -> str | None:
    """The token of the credentials file, or None when there is none.

    Raises:
        exits.UsageFailure: the file is group- or world-accessible, or cannot be read.
    """
    path = directory / CREDENTIALS_FILE
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise exits.UsageFailure(f"cannot read {path}: {exc.strerror}") from exc
    if os.name == "posix" and mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise exits.UsageFailure(
            f"{path} is accessible by other users (mode {stat.S_IMODE(mode):04o}); "
            f"the token file must be private: chmod 600 {path}"
        )
    return (_read(path) or "").strip() or None


def resolve(opts: Options) -> Connection:
    """Server URL and token by the precedence of spec/cli.md §1."""
    directory = config_dir()
    if opts.server:
        raw, server_source = opts.server, "--server"
    elif env_url := environ.client_env("url"):
        raw, server_source = env_url, "STACKL_URL"
    elif file_url := read_config_url(directory):
        raw, server_source = file_url, str(directory / CONFIG_FILE)
    else:
        raw, server_source = DEFAULT_SERVER, "default"
    server, url_token = split_token_url(raw)
    server = normalise_url(server)
    if opts.token:
        return Connection(server, opts.token, server_source, "--token")
    if env_token := environ.client_env("token"):
        return Connection(server, env_token, server_source, "STACKL_TOKEN")
    if url_token:
        return Connection(server, url_token, server_source, "/t/ prefix of the server URL")
    file_token = read_credentials(directory)
    source = str(directory / CREDENTIALS_FILE) if file_token else None
    return Connection(server, file_token, server_source, source)


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (0600), its directory 0700; an existing file is tightened too.

    Raises:
        exits.UsageFailure: the file cannot be written.
    """
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
    except OSError as exc:
        raise exits.UsageFailure(f"cannot write {path}: {exc.strerror or exc}") from exc


def ca_bundle(opts: Options) -> ssl.SSLContext | bool:
    """What verifies the server's TLS certificate: ``--ca-file``, else ``STACKL_CA_FILE``, else the system CAs.

    Raises:
        exits.UsageFailure: ``STACKL_CA_FILE`` names no file.
    """
    if opts.ca_file is not None:
        return ssl.create_default_context(cafile=str(opts.ca_file))
    configured = environ.client_env("ca_file")
    if configured is None:
        return True
    if not Path(configured).is_file():
        raise exits.UsageFailure(f"STACKL_CA_FILE: {configured}: no such file")
    return ssl.create_default_context(cafile=configured)


def build_client(connection: Connection, opts: Options) -> StacklClient:
    """THE way a command gets its client: settings, trace on ``-v``, and the test transport when set."""
    trace = (lambda line: typer.echo(line, err=True)) if opts.verbose else None
    return StacklClient(
        connection.server,
        token=connection.token,
        timeout_s=opts.http_timeout_s,
        transport=TRANSPORT_FACTORY() if TRANSPORT_FACTORY is not None else None,
        verify=ca_bundle(opts),
        trace=trace,
    )


def run(
    ctx: typer.Context,
    work: Callable[[StacklClient], Awaitable[T]],
    *,
    json_errors: bool = False,
    opts: Options | None = None,
) -> T:
    """Run a command body with an open client; print the server's warnings, then map errors to exit codes.

    Args:
        ctx: the command's context (global options).
        work: the command body, given the open client.
        json_errors: print a server error's problem body as-is (the command was given ``-o json``).
        opts: options to use instead of the global ones (``connect`` targets the server it saves).
    """
    opts = opts or options(ctx)
    with exits.reporting(quiet=opts.quiet):
        connection = resolve(opts)
    if opts.verbose:
        typer.echo(f"* server {redact_url(connection.server)} (from {connection.server_source})", err=True)
        typer.echo(
            f"* token {'from ' + connection.token_source if connection.token_source else 'none'}", err=True
        )

    async def main() -> T:
        async with build_client(connection, opts) as client:
            try:
                return await work(client)
            finally:
                if not opts.quiet:
                    for warning in client.warnings:
                        typer.echo(f"warning: {warning}", err=True)

    return exits.run(main(), json_errors=json_errors, quiet=opts.quiet)


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise exits.UsageFailure(f"cannot read {path}: {exc}") from exc
