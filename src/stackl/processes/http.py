"""How the API server holds its connections: timeouts, a connection limit, and a quiet accept-error log.

uvicorn's HTTP/1.1 protocol (h11) closes an idle keep-alive connection after ``timeout_keep_alive`` but puts
no deadline on a connection that never completes a request: 300 idle and 300 slow-loris connections (one
header byte a second) stayed open for ever, each holding a file descriptor, until the process ran out of them.
Then every ``accept()`` failed, asyncio logged each failure with its traceback (55,000 lines in 15 s) and
``/healthz`` timed out. ``GuardedH11Protocol`` adds what is missing:

- a **header deadline**: from the moment a connection is accepted (or its previous response ended) it has
  ``server.header_timeout_s`` to deliver a complete request line and headers, however slowly they trickle in,
  or it is closed; the same deadline ends a connection still sending a body its answer (413, 408) refused;
- a **connection limit**: beyond ``server.max_connections`` open connections, a new one gets a 503 and is
  closed at once, so the descriptors of the process never run out (the limit is checked against the
  open-file limit at start);
- the idle keep-alive timeout (``server.keep_alive_timeout_s``) and the header size limit
  (``server.max_header_bytes``) are uvicorn's own settings.

A request body that stalls is the ASGI layer's business (``api.limits``: 408). What a reverse proxy in front
should add is in docs/operations.md.
"""

import asyncio
import json
import resource
import time
from collections.abc import Callable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from stackl.config import ServerSettings

ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's message (selector_events.py)
ACCEPT_LOG_INTERVAL_S = 10.0  # at most one accept-error line per this many seconds
SPARE_FILES = 128  # descriptors kept for the database, log files, the agent's tools, beyond the connections
_BUSY_BODY = json.dumps(
    {
        "type": "urn:stackl:problem:unavailable",
        "code": "unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "too many open connections (server.max_connections): retry later",
        "errors": [],
    }
).encode()
BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/problem+json\r\nretry-after: 5\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_BUSY_BODY)).encode() + b"\r\n\r\n" + _BUSY_BODY
)


class RateLimitedLog:
    """Log a recurring event at most once per ``interval_s``, with how many occurred since the last line."""

    def __init__(
        self, log: Any, event: str, *, interval_s: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.log, self.event, self.interval_s, self.clock = log, event, interval_s, clock
        self.pending = 0
        self.last_at: float | None = None

    def occurred(self, **details: Any) -> None:
        """Count one occurrence; write a line when none was written in the last ``interval_s``."""
        self.pending += 1
        now = self.clock()
        if self.last_at is not None and now - self.last_at < self.interval_s:
            return
        self.log.warning(self.event, count=self.pending, interval_s=self.interval_s, **details)
        self.pending, self.last_at = 0, now


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a header deadline and a connection limit (see the module docstring)."""

    header_timeout_s: float = 10.0
    max_connections: int = 1000
    refused_log: RateLimitedLog | None = None
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            if self.refused_log is not None:
                self.refused_log.occurred(max_connections=self.max_connections)
            transport.write(BUSY_RESPONSE)
            transport.close()
            return
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_header_timer()
        super().connection_lost(exc)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_timer()  # the next request's headers get their own deadline

    def _arm_header_timer(self) -> None:
        self._cancel_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._header_deadline_passed)

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        """Close the connection unless a request's head arrived since the timer was armed.

        Also when the response was sent while the request's body is still coming (a 413 or 408): uvicorn
        discards that body as it arrives, until this deadline.
        """
        self._header_timer = None
        waiting = self.conn.their_state is h11.IDLE
        unwanted_body = self.conn.our_state is h11.DONE and self.conn.their_state is h11.SEND_BODY
        if (waiting or unwanted_body) and not self.transport.is_closing():
            self.transport.close()


def protocol_class(server: ServerSettings, log: Any, *, max_connections: int) -> type[GuardedH11Protocol]:
    """A ``GuardedH11Protocol`` subclass carrying these settings (uvicorn instantiates it per connection)."""
    attributes = {
        "header_timeout_s": server.header_timeout_s,
        "max_connections": max_connections,
        "refused_log": RateLimitedLog(log, "connection_refused", interval_s=ACCEPT_LOG_INTERVAL_S),
    }
    return type("StacklH11Protocol", (GuardedH11Protocol,), attributes)


def uvicorn_config(app: Any, server: ServerSettings, log: Any, **tls: Any) -> uvicorn.Config:
    """The uvicorn configuration of the API server: its address, limits and timeouts (``tls``: HTTPS options).

    Raises the open-file limit if ``server.max_connections`` needs it (``connection_limit``).
    """
    return uvicorn.Config(
        app,
        host=server.host,
        port=server.port,
        http=protocol_class(server, log, max_connections=connection_limit(server, log)),
        h11_max_incomplete_event_size=server.max_header_bytes,
        timeout_keep_alive=server.keep_alive_timeout_s,  # type: ignore[arg-type]  # a float works: call_later
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=30,
        lifespan="off",
        **tls,
    )


def quiet_accept_errors(loop: asyncio.AbstractEventLoop, log: Any) -> None:
    """Log asyncio's accept failures (out of file descriptors) once per interval, without a traceback.

    asyncio retries accepting a second later and reports each failure to the loop's exception handler;
    everything else still goes to the handler that was there before.
    """
    previous = loop.get_exception_handler()
    accept_errors = RateLimitedLog(log, "connection_accept_failed", interval_s=ACCEPT_LOG_INTERVAL_S)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == ACCEPT_ERROR:
            accept_errors.occurred(error=str(context.get("exception", "")))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)


def connection_limit(server: ServerSettings, log: Any) -> int:
    """``server.max_connections``, after raising the soft open-file limit to what it needs (up to the hard one).

    When the process may not open that many files, the limit is lowered to what fits (with a warning): past
    the open-file limit ``accept()`` fails and nothing, ``/healthz`` included, gets a connection at all.
    """
    needed = server.max_connections + SPARE_FILES
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return server.max_connections
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    except (ValueError, OSError):
        pass
    if soft >= needed:
        return server.max_connections
    lowered = max(1, soft - SPARE_FILES)
    log.warning(
        "max_connections_lowered",
        max_connections=lowered,
        configured=server.max_connections,
        open_file_limit=soft,
        detail="raise the open-file limit (ulimit -n) to allow more connections",
    )
    return lowered
