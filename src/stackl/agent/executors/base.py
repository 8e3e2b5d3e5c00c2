"""The Executor port: one job payload in, one result out, log lines streamed on the way.

`Job` is the payload of agents.md §2 (``domain/jobs.py``, the model the server checks its payloads against),
parsed leniently (unknown fields are ignored, for forward compatibility).
An executor turns it into a `Result` (§4) and hands every line the tool prints, and its own `system` notes, to
`emit` as a `LogLine`, masked and cut to 16 KiB first (§3): `LineSink` does that for every executor, and
keeps the 64 KiB tail that ends a FAILED result's error message.
"""

import abc
import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from stackl.agent.secrets import Masker
from stackl.domain.jobs import Action as Action
from stackl.domain.jobs import Job as Job
from stackl.domain.jobs import JobInvocation as JobInvocation

LINE_MAX_BYTES = 16 * 1024  # a longer line is cut (agents.md §3)
TAIL_MAX_BYTES = 64 * 1024  # last output kept for the error message (agents.md §4)
STDERR_TAIL_LINES = 50  # last stderr lines kept apart: where tools write their errors (the failure's cause)
CAUSE_MAX_CHARS = 300  # the one-line cause that leads a failure's error message

Stream = Literal["stdout", "stderr", "system"]
Status = Literal["READY", "FAILED"]


@dataclass(frozen=True)
class LogLine:
    """One line for the job's event stream; `system` lines are the agent's own notes."""

    stream: Stream
    line: str


@dataclass(frozen=True)
class Result:
    """What a job ended with (agents.md §4).

    `lost` is only ever set by the mock executor (`mock_result: lost`): the runner must then drop the job from
    its heartbeats and never report it, so the server's lease expiry is exercised.
    """

    status: Status
    error_message: str = ""
    outputs: dict[str, Any] = field(default_factory=dict)
    hosts: list[str] | None = None
    duration_s: float = 0.0
    exit_code: int | None = None
    timed_out: bool = False
    cancelled: bool = False
    lost: bool = False


Emit = Callable[[LogLine], Awaitable[None] | None]


class LineSink:
    """Masks, cuts and forwards lines to `emit`; keeps the tail of stdout and stderr for the error message."""

    def __init__(self, emit: Emit, masker: Masker) -> None:
        self._emit = emit
        self.masker = masker
        self._tail: deque[str] = deque()
        self._tail_bytes = 0
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)

    def keep_bytes(self) -> int:
        """How many leading bytes of an over-long line to keep so no secret is cut in half before masking."""
        return LINE_MAX_BYTES + 4 * self.masker.longest

    async def line(self, stream: Stream, text: str, *, dropped_bytes: int = 0) -> None:
        """Emit one line: masked first, then cut to 16 KiB (`dropped_bytes` were already cut off by a reader)."""
        masked = self.masker.mask(text)
        raw = masked.encode("utf-8")
        if len(raw) > LINE_MAX_BYTES or dropped_bytes:
            dropped_bytes += max(0, len(raw) - LINE_MAX_BYTES)
            masked = (
                raw[:LINE_MAX_BYTES].decode("utf-8", errors="ignore") + f"…[truncated {dropped_bytes} bytes]"
            )
        if stream != "system":
            self._keep(masked)
        if stream == "stderr" and masked.strip():
            self._stderr.append(masked)
        outcome = self._emit(LogLine(stream, masked))
        if inspect.isawaitable(outcome):
            await outcome

    async def system(self, text: str) -> None:
        await self.line("system", text)

    def _keep(self, text: str) -> None:
        size = len(text.encode("utf-8")) + 1
        self._tail.append(text)
        self._tail_bytes += size
        while self._tail_bytes > TAIL_MAX_BYTES and len(self._tail) > 1:
            self._tail_bytes -= len(self._tail.popleft().encode("utf-8")) + 1

    def stderr_tail(self) -> list[str]:
        """The last non-blank stderr lines (masked), oldest first."""
        return list(self._stderr)

    def output_tail(self, lines: int) -> list[str]:
        """The last ``lines`` non-blank lines of any stream (masked), oldest first."""
        found: list[str] = []
        for text in reversed(self._tail):
            if text.strip():
                found.append(text)
                if len(found) == lines:
                    break
        return found[::-1]

    def fallback_cause(self) -> str:
        """What most tools' failures come down to: their last stderr lines, else their last output lines."""
        return one_line(" / ".join(line.strip() for line in (self.stderr_tail()[-3:] or self.output_tail(2))))

    def error_message(self, summary: str) -> str:
        """`summary` (masked) followed by the last lines of output, at most 64 KiB in all."""
        text = "\n".join([self.masker.mask(summary), *self._tail])
        raw = text.encode("utf-8")
        if len(raw) > TAIL_MAX_BYTES:
            text = raw[-TAIL_MAX_BYTES:].decode("utf-8", errors="ignore")
        return text


def one_line(text: str, limit: int = CAUSE_MAX_CHARS) -> str:
    """``text`` on one line (whitespace runs squeezed), cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def with_cause(summary: str, cause: str) -> str:
    """The first line of a failure: ``<what exited> : <why>`` when the cause is known."""
    return f"{summary}: {cause}" if cause else summary


class LineSplitter:
    """Splits a byte stream into lines as they come; an over-long line keeps its head and counts the rest."""

    def __init__(self, keep_bytes: int) -> None:
        self._keep = keep_bytes
        self._buffer = bytearray()
        self._dropped = 0

    def feed(self, chunk: bytes) -> list[tuple[str, int]]:
        """The complete lines in `chunk` (with what came before), as (text, bytes dropped from it)."""
        lines: list[tuple[str, int]] = []
        start = 0
        while (end := chunk.find(b"\n", start)) >= 0:
            self._add(chunk[start:end])
            lines.append(self._take())
            start = end + 1
        self._add(chunk[start:])
        return lines

    def flush(self) -> list[tuple[str, int]]:
        """The last, unterminated line, if any."""
        return [self._take()] if self._buffer or self._dropped else []

    def _add(self, piece: bytes) -> None:
        room = self._keep - len(self._buffer)
        self._buffer += piece[: max(room, 0)]
        self._dropped += max(len(piece) - max(room, 0), 0)

    def _take(self) -> tuple[str, int]:
        text = bytes(self._buffer).decode("utf-8", errors="replace").rstrip("\r")
        dropped = self._dropped
        self._buffer.clear()
        self._dropped = 0
        return text, dropped


class Executor(abc.ABC):
    """Where a job runs: the agent's machine, a container, a Kubernetes Job, or nowhere (the mock).

    `run` never raises for a failed job: every failure (tool exit, timeout, cancellation, invalid secret,
    outputs that are not an object) is a FAILED `Result` whose `error_message` starts with a one-line
    summary. Lines reach `emit` masked with every secret value of the job. Setting `cancel` stops the job
    (the whole process tree), and the result is FAILED with `cancelled=True`.
    """

    name: str = ""

    @abc.abstractmethod
    async def run(self, job: Job, *, emit: Emit, cancel: asyncio.Event) -> Result:
        """Run `job` to its end and return its result.

        Args:
            job: the payload.
            emit: receives each masked line as it comes (sync or async).
            cancel: set it to stop the job.
        """

    def tools(self) -> list[str]:
        """The tools this executor can run, as advertised at registration."""
        return []
