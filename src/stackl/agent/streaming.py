"""Batches a job's log lines to the server (agents.md §3): masked, numbered, at most one batch in flight.

A batch leaves 1 s after its first line, or at 200 lines, or at 256 KiB, whichever comes first. A batch that
fails is resent with the same ``seq`` numbers (the server ignores seqs it has), so retries never duplicate a
line. Lines are masked with the job's secrets before they are buffered, even though executors mask already:
nothing unmasked may sit in the agent's memory on its way out. The server's answer may say
``stop_streaming`` (its 10 MiB per attempt is full: lines are then dropped here) or carry a cancellation,
handed to ``on_cancel`` like a heartbeat's.

When the server offers it (register answer ``features``), the stream also carries the job's *start*: the
first batch says ``start: true`` and leaves at most ``START_DELAY_S`` after the tool started, lines or not,
so a job counts as started on the server within that delay. And when the job ends while what is left fits
one batch, ``close(fold=True)`` hands it back instead of sending it, for the result call to carry: a short
job then costs one call after its claim instead of start, events and result.
"""

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from stackl.agent.executors.base import LogLine
from stackl.agent.protocol import AgentProtocol, CallFailed, GaveUp
from stackl.agent.secrets import Masker

log = structlog.get_logger(__name__)

BATCH_DELAY_S = 1.0
BATCH_LINES = 200
BATCH_BYTES = 256 * 1024 - 4096  # room for the JSON around the texts
START_DELAY_S = 0.2  # a start carried by the stream leaves at most this long after the tool started


@dataclass
class Leftover:
    """What ``close(fold=True)`` did not send: for the result call to carry."""

    events: list[dict[str, Any]] = field(default_factory=list)
    start: bool = False  # the start was not sent yet


class EventStream:
    """The event stream of one job attempt; ``push`` lines, then ``close`` to flush the rest."""

    def __init__(
        self,
        protocol: AgentProtocol,
        *,
        instance_id: str,
        job_id: str,
        attempt: int,
        masker: Masker,
        on_cancel: Callable[[str], None] = lambda _reason: None,
        give_up: Callable[[], bool] = lambda: False,
        start: bool = False,
    ) -> None:
        self._protocol = protocol
        self._instance_id, self._job_id, self._attempt = instance_id, job_id, attempt
        self._masker = masker
        self._on_cancel = on_cancel
        self._give_up = give_up
        self._pending: list[dict[str, Any]] = []
        self._pending_bytes = 0
        self._seq = 0
        self._stopped = False  # the server's log is full, or the job is no longer ours
        self._closing = False
        self._fold = False
        self._start_pending = start  # the stream carries the start call (feature start_with_events)
        self._start_by = time.monotonic() + START_DELAY_S
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.lost = False  # the server answered 409: the attempt is superseded or its lease lost

    @property
    def last_seq(self) -> int:
        return self._seq

    @property
    def start_pending(self) -> bool:
        """Whether the stream still owes the server the job's start."""
        return self._start_pending

    def start(self) -> None:
        self._start_by = time.monotonic() + START_DELAY_S
        self._task = asyncio.create_task(self._sender(), name=f"events-{self._job_id}")

    def push(self, line: LogLine) -> None:
        """Queue one line (masked now); dropped once the server said stop."""
        if self._stopped:
            return
        self._seq += 1
        text = self._masker.mask(line.line)
        ts = datetime.now(UTC).isoformat().replace("+00:00", "Z")
        self._pending.append({"seq": self._seq, "ts": ts, "stream": line.stream, "text": text})
        self._pending_bytes += len(text.encode())
        self._wake.set()

    async def close(self, *, fold: bool = False) -> Leftover:
        """Stop the sender; send what is left, or with ``fold`` hand it back when it fits one batch."""
        self._closing, self._fold = True, fold
        self._wake.set()
        if self._task is not None:
            await self._task
        leftover = Leftover(events=self._pending, start=self._start_pending) if fold else Leftover()
        self._pending, self._pending_bytes = [], 0
        return leftover

    async def abort(self) -> None:
        """Stop at once, dropping unsent lines."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _fits(self) -> bool:
        return len(self._pending) <= BATCH_LINES and self._pending_bytes <= BATCH_BYTES

    async def _sender(self) -> None:
        while not self._stopped:
            if self._closing and self._fold and self._fits():
                return  # the result call carries the rest
            if not self._pending and not self._start_pending:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if not self._closing:
                await self._fill()
                if self._closing:
                    continue  # the job ended meanwhile: the result may carry it all
            if not await self._send(self._take()):
                self._stopped = True
                self._pending.clear()
                self._pending_bytes = 0
                return

    async def _fill(self) -> None:
        """Wait for the batch to fill: at most 1 s after its first line, and not past the start's deadline."""
        limit = BATCH_DELAY_S if self._pending else None
        if self._start_pending:
            until_start = max(self._start_by - time.monotonic(), 0.0)
            limit = until_start if limit is None else min(limit, until_start)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(limit):
                while not self._closing and len(self._pending) < BATCH_LINES:
                    if self._pending_bytes >= BATCH_BYTES:
                        break
                    self._wake.clear()
                    await self._wake.wait()

    def _take(self) -> list[dict[str, Any]]:
        batch: list[dict[str, Any]] = []
        size = 0
        while self._pending and len(batch) < BATCH_LINES:
            line_size = len(self._pending[0]["text"].encode())
            if batch and size + line_size > BATCH_BYTES:
                break
            batch.append(self._pending.pop(0))
            size += line_size
        self._pending_bytes -= size
        return batch

    async def _send(self, batch: list[dict[str, Any]]) -> bool:
        """Post one batch (retried with the same seqs); False when streaming must end."""
        body: dict[str, Any] = {"instance_id": self._instance_id, "attempt": self._attempt, "events": batch}
        if self._start_pending:
            body["start"] = True
        try:
            _, answer = await self._protocol.call(
                self._protocol.job_path(self._job_id, "events"), body, give_up=self._give_up
            )
        except CallFailed as exc:
            if exc.status == 409:
                self.lost = True
            log.warning("job_events_refused", job_id=self._job_id, status=exc.status, reason=exc.reason)
            return exc.status not in (404, 409)
        except GaveUp:
            return False
        self._start_pending = False
        cancel = answer.get("cancel") if isinstance(answer, dict) else None
        if cancel:
            self._on_cancel(
                str(cancel.get("reason", "cancelled")) if isinstance(cancel, dict) else "cancelled"
            )
        if isinstance(answer, dict) and answer.get("stop_streaming"):
            log.info("job_log_truncated", job_id=self._job_id, attempt=self._attempt)
            return False
        return True
