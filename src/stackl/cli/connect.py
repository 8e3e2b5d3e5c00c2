"""``stackl connect HOST [--token T]``: remember a server and its token, then describe it (spec/cli.md §4).

The URL goes to ``~/.stackl/config`` in the STACKL 0.5 format (the bare URL, no trailing newline), so the
released 0.5 CLI and this one share the file; ``--token`` goes to ``~/.stackl/credentials`` with mode 0600.
Connecting to another server without ``--token`` removes the old credentials file, so a token is never sent to
a server it was not given for. The server is then asked for ``/version`` (and ``/auth/whoami`` when auth is
on); an unreachable server is only a warning: the URL is saved either way.
"""

import dataclasses
from typing import Annotated

import typer

from stackl import errors
from stackl.cli import context, exits, output
from stackl.client.client import StacklClient, redact_url


def connect(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Argument(
            metavar="HOST", help="Server URL, e.g. http://127.0.0.1:8080 or https://stackl.example.com."
        ),
    ],
    token: Annotated[str | None, typer.Option("--token", help="API token, saved with mode 0600.")] = None,
) -> None:
    """Save the server URL (and token) used by every later command."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        url = save(host, token, quiet=opts.quiet)
    connecting = dataclasses.replace(opts, server=url, token=token or opts.token)

    async def work(client: StacklClient) -> None:
        try:
            version = await client.version()
        except errors.Unavailable as exc:
            output.info(f"warning: {exc.message}; the URL is saved anyway", quiet=opts.quiet)
            return
        auth = "enabled" if version.get("auth_enabled") else "disabled"
        typer.echo(f"Connected to {redact_url(url)}: STACKL {version.get('version', '?')}, auth {auth}")
        if version.get("auth_enabled"):
            who = await client.whoami()
            if who is not None:
                typer.echo(f"Authenticated as {who.get('subject')} ({', '.join(who.get('roles') or [])})")

    context.run(ctx, work, opts=connecting)


def save(host: str, token: str | None, *, quiet: bool) -> str:
    """Write the config (and credentials) files; return the URL as saved.

    Raises:
        exits.UsageFailure: the URL is not http(s), or a file cannot be written.
    """
    url = host.strip().rstrip("/")
    if "://" not in url:
        url = f"http://{url}"
    server = context.normalise_url(context.split_token_url(url)[0])  # refuse what nothing could connect to
    directory = context.config_dir()
    previous = context.read_config_url(directory)
    context.write_private(directory / context.CONFIG_FILE, url)
    output.info(f"Saved {redact_url(url)} in {directory / context.CONFIG_FILE}", quiet=quiet)
    credentials = directory / context.CREDENTIALS_FILE
    if token:
        context.write_private(credentials, token)
        output.info(f"Saved the token in {credentials} (mode 0600)", quiet=quiet)
    elif previous is not None and _server_of(previous) != server and credentials.exists():
        try:
            credentials.unlink()
        except OSError as exc:
            raise exits.UsageFailure(f"cannot remove {credentials}: {exc.strerror or exc}") from exc
        output.info(f"Removed {credentials}: its token was for {redact_url(previous)}", quiet=quiet)
    return url


def _server_of(url: str) -> str:
    """The server a saved URL names, as ``normalise_url`` writes it (the URL itself when it is invalid)."""
    try:
        return context.normalise_url(context.split_token_url(url)[0])
    except exits.UsageFailure:
        return url
