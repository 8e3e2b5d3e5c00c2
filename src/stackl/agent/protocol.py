"""The agent's HTTP side of the protocol (agents.md §1.1, §4): one method per call, retries built in.

Why its own small client rather than ``StacklClient``: the agent needs the raw status (204 of a claim, the
``reason`` of a 409) and a retry policy of its own: exponential backoff from 0.5 s to 30 s with jitter on
connection errors, 408, 429, 502, 503 and 504, no retry on other 4xx, and a way to give up when the agent is
shutting down. Nothing here logs a request body: payloads carry secrets.
"""

import importlib
import random
import ssl
import sys
from collections.abc import Callable
from typing import Any

import httpx
import structlog

from stackl import __version__
from stackl.domain.clock import Clock, SystemClock

log = structlog.get_logger(__name__)

RETRY_STATUSES = frozenset({408, 429, 502, 503, 504})
BACKOFF_MIN_S = 0.5
BACKOFF_MAX_S = 30.0


def _remember_missing_sniffio() -> None:
    """Make a missing ``sniffio`` fail its import at once rather than search ``sys.path`` on every request.

    httpcore imports it inside ``current_async_library()`` on each connection-pool operation and falls back to
    asyncio when it is absent; Python does not cache a failed import, so each request paid for a full
    path search (about a third of the agent's CPU per job in bench/dispatch.py). A ``None`` entry in
    ``sys.modules`` is Python's documented way to make that import fail fast; an installed sniffio is used.
    """
    try:
        importlib.import_module("sniffio")
    except ImportError:
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]


_remember_missing_sniffio()


class CallFailed(Exception):
    """The server answered a call with a final error (a 4xx that is not retried, or a 5xx bug)."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {}
        self.reason = str(self.body.get("reason", ""))
        super().__init__(f"HTTP {status}: {self.body.get('detail', '')}")


class GaveUp(Exception):
    """Retrying stopped because the caller asked to (shutdown) before the server answered."""

    def __init__(self, message: str, *, status: int = 0) -> None:
        self.status = status  # the last transient status (503…), 0 when the server was not reached
        super().__init__(message)


def backoff(attempt: int) -> float:
    """The pause before retry ``attempt`` (1-based): 0.5 s doubling to 30 s, with full jitter on top half."""
    base = min(BACKOFF_MIN_S * 2.0 ** max(attempt - 1, 0), BACKOFF_MAX_S)
    return float(base / 2 + random.uniform(0, base / 2))  # noqa: S311 - jitter, not cryptography


class AgentProtocol:
    """The calls an agent makes to its server, as ``(status, body)``; open it with ``async with``."""

    def __init__(
        self,
        server: str,
        name: str,
        *,
        token: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        verify: bool | str | ssl.SSLContext = True,
        pause_s: Callable[[int], float] = backoff,
        clock: Clock | None = None,
    ) -> None:
        """``pause_s(attempt)`` is the wait before retry ``attempt``, waited on ``clock`` (tests move theirs)."""
        self.pause_s = pause_s
        self.clock = clock or SystemClock()
        headers = {"User-Agent": f"stackl-agent/{__version__}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.name = name
        if isinstance(verify, str):  # a CA bundle (--ca-file): the only roots trusted
            verify = ssl.create_default_context(cafile=verify)
        self._client = httpx.AsyncClient(
            base_url=server.rstrip("/"), headers=headers, transport=transport, verify=verify, timeout=30.0
        )

    async def __aenter__(self) -> "AgentProtocol":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._client.aclose()

    async def call(
        self,
        path: str,
        body: dict[str, Any],
        *,
        timeout_s: float = 30.0,
        retry: bool = True,
        give_up: Callable[[], bool] = lambda: False,
    ) -> tuple[int, Any]:
        """POST ``body`` to ``path``; retries transient failures until answered or ``give_up()`` is true.

        Raises:
            CallFailed: a final error status.
            GaveUp: ``give_up()`` became true, or ``retry`` is off and the call failed transiently.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._client.post(path, json=body, timeout=timeout_s)
            except httpx.HTTPError as exc:
                status, detail = 0, type(exc).__name__
            else:
                if response.status_code < 400:
                    return response.status_code, _json(response)
                if response.status_code not in RETRY_STATUSES:
                    raise CallFailed(response.status_code, _json(response))
                status, detail = response.status_code, "retryable status"
            if not retry or give_up():
                raise GaveUp(f"{path}: {detail}", status=status)
            pause = self.pause_s(attempt)
            # Info, not debug: a retry means the server or its database is unreachable, worth seeing.
            log.info("agent_call_retried", path=path, status=status, error=detail, pause_s=round(pause, 2))
            await self.clock.sleep(pause)

    # --- the calls of agents.md §1.1 ---------------------------------------------------------------------
    def job_path(self, job_id: str, what: str) -> str:
        return f"/agents/{self.name}/jobs/{job_id}/{what}"


def _json(response: httpx.Response) -> Any:
    if not response.content:
        return {}
    try:
        return response.json()
    except ValueError:
        return {}
