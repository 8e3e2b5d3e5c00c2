"""The server's connection guards (issue 15, defect 5): header deadline, connection limit, quiet accept errors.

300 idle and 300 slow-loris connections stayed open for ever; once the open-file limit was reached,
``/healthz`` timed out and every failed ``accept()`` was logged with its traceback. The protocol is driven
here by hand: a fake transport, and a loop whose timers fire when the test says so (no sleeping).
"""

import asyncio
import resource
from collections.abc import Callable
from typing import Any

import h11
import pytest
import structlog
from structlog.testing import capture_logs
from uvicorn.config import Config
from uvicorn.server import ServerState

from stackl.config import ServerSettings
from stackl.processes import http


class FakeTransport:
    """What the protocol writes, and whether it closed the connection."""

    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8080)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        pass


class Timer:
    def __init__(self, delay: float, callback: Callable[[], None]) -> None:
        self.delay, self.callback, self.cancelled = delay, callback, False

    def cancel(self) -> None:
        self.cancelled = True


class ManualLoop:
    """Records ``call_later`` timers; ``fire`` runs the pending ones. Tasks go to a real loop (unused here)."""

    def __init__(self) -> None:
        self.timers: list[Timer] = []

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(delay, callback)
        self.timers.append(timer)
        return timer

    def fire(self) -> None:
        pending, self.timers = [t for t in self.timers if not t.cancelled], []
        for timer in pending:
            timer.callback()

    def create_task(self, coro: Any) -> "NoTask":
        coro.close()  # the request is not run: these tests are about the connection, not the app
        return NoTask()


class NoTask:
    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        pass


async def app(scope: Any, receive: Any, send: Any) -> None:  # never called: no request completes here
    raise AssertionError("the app is not reached in these tests")


def protocol(
    state: ServerState, loop: ManualLoop, *, max_connections: int = 10
) -> tuple[http.GuardedH11Protocol, FakeTransport]:
    settings = ServerSettings(header_timeout_s=7.0, max_connections=max_connections)
    cls = http.protocol_class(settings, log=structlog.get_logger(), max_connections=max_connections)
    config = Config(app, http=cls, lifespan="off", log_config=None)
    config.load()
    made = cls(config=config, server_state=state, app_state={}, _loop=loop)  # type: ignore[arg-type]
    transport = FakeTransport()
    made.connection_made(transport)  # type: ignore[arg-type]
    return made, transport


def test_a_connection_that_sends_nothing_is_closed_at_the_header_deadline() -> None:
    loop = ManualLoop()
    _, transport = protocol(ServerState(), loop)
    assert [t.delay for t in loop.timers] == [7.0]
    assert not transport.closed
    loop.fire()
    assert transport.closed


def test_a_slow_loris_is_closed_at_the_header_deadline_however_it_trickles() -> None:
    loop = ManualLoop()
    made, transport = protocol(ServerState(), loop)
    made.data_received(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
    for _ in range(50):
        made.data_received(b"X")  # a byte now and then: each used to keep the connection alive
    assert not transport.closed
    loop.fire()
    assert transport.closed


def test_a_connection_whose_request_head_arrived_is_not_cut_by_the_header_deadline() -> None:
    loop = ManualLoop()
    made, transport = protocol(ServerState(), loop)
    made.data_received(b"POST /documents HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
    loop.fire()
    assert not transport.closed  # the body and the response have deadlines of their own


def test_a_connection_beyond_the_limit_gets_a_503_and_is_closed() -> None:
    state, loop = ServerState(), ManualLoop()
    kept = [protocol(state, loop, max_connections=2)[1] for _ in range(2)]
    with capture_logs() as logs:
        _, refused = protocol(state, loop, max_connections=2)
    assert [(e["event"], e["count"]) for e in logs] == [("connection_refused", 1)]
    assert not any(t.closed for t in kept)
    assert refused.closed
    assert refused.written.startswith(b"HTTP/1.1 503 ")
    assert b"max_connections" in refused.written
    assert len(state.connections) == 3  # until the transport reports the close (connection_lost)


def test_a_recurring_event_is_logged_once_per_interval_with_its_count() -> None:
    now = [100.0]
    with capture_logs() as logs:
        limited = http.RateLimitedLog(structlog.get_logger(), "connection_accept_failed", interval_s=10.0)
        limited.clock = lambda: now[0]
        for _ in range(10_000):
            limited.occurred(error="[Errno 24] Too many open files")
        now[0] += 10.0
        limited.occurred(error="[Errno 24] Too many open files")
    assert [(e["event"], e["count"]) for e in logs] == [
        ("connection_accept_failed", 1),
        ("connection_accept_failed", 10_000),
    ]


def test_accept_errors_reach_the_log_rate_limited_and_other_errors_pass_through() -> None:
    loop = asyncio.new_event_loop()
    seen: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: seen.append(context))
    try:
        with capture_logs() as logs:
            http.quiet_accept_errors(loop, structlog.get_logger())
            for _ in range(1000):
                loop.call_exception_handler(
                    {"message": http.ACCEPT_ERROR, "exception": OSError(24, "Too many open files")}
                )
            loop.call_exception_handler({"message": "something else"})
    finally:
        loop.close()
    assert [e["event"] for e in logs] == ["connection_accept_failed"]
    assert "Too many open files" in logs[0]["error"]
    assert [c["message"] for c in seen] == ["something else"]


def test_max_connections_is_lowered_to_what_the_open_file_limit_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (512, 512))
    monkeypatch.setattr(resource, "setrlimit", lambda _which, _limits: None)
    with capture_logs() as logs:
        lowered = http.connection_limit(ServerSettings(max_connections=1000), structlog.get_logger())
    assert lowered == 512 - http.SPARE_FILES
    assert logs[0]["event"] == "max_connections_lowered"
    monkeypatch.setattr(resource, "getrlimit", lambda _which: (20_000, 20_000))
    assert http.connection_limit(ServerSettings(max_connections=1000), structlog.get_logger()) == 1000


def test_a_body_still_arriving_after_its_refusal_is_discarded_until_the_deadline() -> None:
    loop = ManualLoop()
    made, transport = protocol(ServerState(), loop)
    made.data_received(b"POST /agents/register HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n")
    made.conn.send(h11.Response(status_code=413, headers=[("content-length", "0")]))  # the app's answer
    made.conn.send(h11.EndOfMessage())
    made.data_received(b"x" * 65536)  # uvicorn drops it: the response is done
    loop.fire()
    assert transport.closed
