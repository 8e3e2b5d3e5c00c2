"""THE StacklError → exit code mapping, and the one place a command's errors are printed.

Every command runs its async body through ``run``: it calls ``asyncio.run`` (STYLE §9: only CLI commands and
processes do), prints an error the way spec/cli.md §2 says (``detail``, then each ``errors[]`` entry as
``<loc>: <msg>``, referrers and placement explanations; the raw problem body with ``-o json``) on stderr,
and exits with the code of spec/cli.md §3. The mapping walks the error's MRO, so the most specific entry wins
and a new subclass inherits its parent's code without an edit here.
"""

import asyncio
import json
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn, TypeVar

import typer

from stackl import errors
from stackl.client import problems

EXIT_OK = 0
EXIT_UNEXPECTED = 1  # a bug: HTTP 500, or any exception that is not a StacklError
EXIT_USAGE = 2  # unknown command or option, invalid JSON/YAML in an option or a local file, unreadable file
EXIT_INVALID = 3
EXIT_NOT_FOUND = 4
EXIT_CONFLICT = 5
EXIT_AUTH = 6
EXIT_UNAVAILABLE = 7
EXIT_OPERATION_FAILED = 8
EXIT_WAIT_TIMED_OUT = 9
EXIT_DIFFERENCES = 10  # `diff --exit-code` found differences
EXIT_INTERRUPTED = 130


class UsageFailure(errors.StacklError):
    """A usage error found after parsing: unreadable or invalid local file, unsafe credentials file.

    It never crosses the wire (the server knows nothing of the CLI's files), so it lives here rather than in
    ``stackl.errors``; it is a StacklError so that it is printed and mapped like every other error.
    """

    code = "usage"


EXIT_CODES: dict[type[errors.StacklError], int] = {
    UsageFailure: EXIT_USAGE,
    errors.InvalidInput: EXIT_INVALID,
    errors.Malformed: EXIT_INVALID,
    errors.MethodNotAllowed: EXIT_INVALID,
    errors.PayloadTooLarge: EXIT_INVALID,
    errors.UnsupportedMediaType: EXIT_INVALID,
    errors.NotFound: EXIT_NOT_FOUND,
    errors.Conflict: EXIT_CONFLICT,
    errors.PreconditionFailed: EXIT_CONFLICT,
    errors.Unauthenticated: EXIT_AUTH,
    errors.Forbidden: EXIT_AUTH,
    errors.Unavailable: EXIT_UNAVAILABLE,
    errors.RateLimited: EXIT_UNAVAILABLE,  # the server cannot take it now: try again later
    errors.OperationFailed: EXIT_OPERATION_FAILED,
    errors.WaitTimedOut: EXIT_WAIT_TIMED_OUT,
    errors.StacklError: EXIT_UNEXPECTED,
}

HINTS: dict[type[errors.StacklError], str] = {
    errors.ServerUnreachable: "is the server running? Start one with `stackl server`, or point the CLI at "
    "one with `stackl connect URL`, --server or STACKL_URL",
    errors.Unauthenticated: "give a token with `stackl connect URL --token TOKEN`, --token or STACKL_TOKEN",
}

MAX_REJECTED_SHOWN = 5  # rejected targets listed per alias in a placement explanation summary


T = TypeVar("T")


def exit_code(exc: BaseException) -> int:
    """The exit code for an error: the entry of the most specific class in its MRO (spec/cli.md §3)."""
    return next((EXIT_CODES[c] for c in type(exc).__mro__ if c in EXIT_CODES), EXIT_UNEXPECTED)


def run(work: Coroutine[Any, Any, T], *, json_errors: bool = False, quiet: bool = False) -> T:
    """Run a command's async body; print any StacklError and exit with its code; Ctrl-C exits 130.

    Args:
        work: the command's coroutine.
        json_errors: print a server error's problem body as-is (``-o json``).
        quiet: leave out hints.

    Raises:
        typer.Exit: with the mapped exit code when ``work`` raised a StacklError or was interrupted.
    """
    with reporting(json_errors=json_errors, quiet=quiet):
        try:
            return asyncio.run(work)
        except KeyboardInterrupt:
            typer.echo("Interrupted", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None


@contextmanager
def reporting(*, json_errors: bool = False, quiet: bool = False) -> Iterator[None]:
    """Report a StacklError raised in the block and exit with its code (for a command's local checks)."""
    try:
        yield
    except errors.StacklError as exc:
        fail(exc, json_errors=json_errors, quiet=quiet)


def fail(
    exc: errors.StacklError, *, json_errors: bool = False, quiet: bool = False, hint: str | None = None
) -> NoReturn:
    """Print an error (with a command's own hint) and exit with its code."""
    report(exc, json_errors=json_errors, quiet=quiet, hint=hint)
    raise typer.Exit(exit_code(exc)) from None


def report(
    exc: errors.StacklError, *, json_errors: bool = False, quiet: bool = False, hint: str | None = None
) -> None:
    """Print an error on stderr as spec/cli.md §2 describes, then a hint unless ``quiet``."""
    body = problems.body_of(exc)
    if json_errors and body is not None:
        typer.echo(json.dumps(body, indent=2), err=True)
        return
    for line in describe(exc):
        typer.echo(line, err=True)
    hint = hint or next((HINTS[cls] for cls in type(exc).__mro__ if cls in HINTS), None)
    if hint and not quiet:
        typer.echo(f"hint: {hint}", err=True)


def describe(exc: errors.StacklError) -> Iterator[str]:
    """The lines of an error: ``detail``, each ``errors[]`` entry, referrers, placement summary."""
    yield f"Error: {exc.message}"
    referrers: Sequence[Any] = getattr(exc, "referrers", None) or []
    for item in exc.errors:
        if referrers and item.get("type") == "referenced":
            continue  # the referrers below say the same, with the path of each reference
        loc = format_loc(item.get("loc") or [])
        yield f"  {loc}: {item.get('msg', '')}" if loc else f"  {item.get('msg', '')}"
    if referrers:
        yield "  referenced by:"
        for ref in referrers:
            if isinstance(ref, Mapping):
                where = f" ({ref['path']})" if ref.get("path") else ""
                yield f"    {ref.get('type', '?')} {ref.get('name', '?')}{where}"
    explanation = getattr(exc, "explanation", None)
    if isinstance(explanation, Mapping):
        yield from _explanation_summary(explanation)


def format_loc(loc: Sequence[Any]) -> str:
    """``["body", "invocation", "generic", "tool"]`` → ``invocation.generic.tool``; indexes as ``[i]``."""
    parts = list(loc[1:] if loc and loc[0] == "body" and len(loc) > 1 else loc)
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _explanation_summary(explanation: Mapping[str, Any]) -> Iterator[str]:
    services = explanation.get("services")
    if not isinstance(services, Mapping):
        return
    for alias, entry in services.items():
        if not isinstance(entry, Mapping):
            continue
        candidates = entry.get("candidates") or {}
        chosen = [t for t, c in candidates.items() if isinstance(c, Mapping) and c.get("result") == "chosen"]
        rejected = [
            (t, c) for t, c in candidates.items() if isinstance(c, Mapping) and c.get("result") == "rejected"
        ]
        yield f"  {alias} ({entry.get('service', '?')}): {len(chosen)}/{entry.get('replicas', '?')} placed"
        for target, candidate in rejected[:MAX_REJECTED_SHOWN]:
            yield f"    {target}: rejected, {_first_failure(candidate)}"
        if len(rejected) > MAX_REJECTED_SHOWN:
            yield f"    … and {len(rejected) - MAX_REJECTED_SHOWN} more rejected targets"


def _first_failure(candidate: Mapping[str, Any]) -> str:
    for check in candidate.get("checks") or []:
        if isinstance(check, Mapping) and check.get("result") == "fail":
            details = "; ".join(str(d) for d in check.get("details") or [])
            return f"{check.get('check', '?')}" + (f": {details}" if details else "")
    return "; ".join(str(d) for d in candidate.get("details") or []) or "no reason given"
