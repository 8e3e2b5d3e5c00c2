"""What an agent reports about a job it holds (agents.md §3-4): start, log lines, result and release.

The broker owns leases, retries and expiry; the ``AgentRegistry`` port owns what the protocol adds
(per-attempt records, log lines and the first result). Calls are ordered so that a crash between two writes
is repaired by the agent's retry; a result's change of the broker item and its record commit together (one
transaction). A failed result re-queues the job after a backoff while the invocation's retries last.

Every value the server stores or answers from a job's logs and results is masked again with the job's own
secrets, so a buggy or old agent cannot leak them into the database or the API.
"""

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from stackl import errors
from stackl.broker.base import Item, backoff_s
from stackl.datastore.agents import Appended, JobAttempt, LogLine
from stackl.datastore.base import Transaction
from stackl.domain.secrets import SecretMask
from stackl.domain.stored import AuditEntry
from stackl.usecases.agent_fencing import fence, find_job
from stackl.usecases.agents import JOB_KIND, LIMITS, queue_of
from stackl.usecases.ports import Ports

log = structlog.get_logger(__name__)


def mask_of(item: Item) -> SecretMask:
    """The mask of a job's own secrets (as its payload carries them)."""
    secrets = item.payload.get("secrets")
    return SecretMask(secrets if isinstance(secrets, dict) else {})


async def start(ports: Ports, name: str, job_id: str, *, instance_id: str, attempt: int) -> None:
    """The tool is about to run: from now on the attempt counts as started (idempotent).

    Raises:
        JobNotFound: unknown job or attempt.
        LeaseLost: the attempt is superseded or no longer this instance's.
    """
    item = await find_job(ports, name, job_id)
    fence(item, instance_id=instance_id, attempt=attempt)
    if await ports.agents.mark_started(job_id, attempt, at=ports.clock.now()) is None:
        await _record(ports, name, item, instance_id)
        await ports.agents.mark_started(job_id, attempt, at=ports.clock.now())
    log.info("job_started", job_id=job_id, agent=name, attempt=attempt)


async def _progress(
    ports: Ports,
    name: str,
    item: Item,
    *,
    instance_id: str,
    attempt: int,
    start: bool,
    lines: Sequence["Event"],
) -> tuple[JobAttempt, Appended]:
    """Record a start (when ``start``) and a batch of log lines (masked again) in one registry call.

    Raises:
        PayloadTooLarge: the batch is over 256 KiB of text.
    """
    now = ports.clock.now()
    stored = _log_lines(item, attempt, lines, mask_of(item) if lines else None, now=now)
    for _ in range(2):  # the attempt's record is missing only after a crash between claim and record
        progress = await ports.agents.record_progress(
            item.id,
            attempt,
            started_at=now if start else None,
            lines=stored,
            max_bytes=LIMITS["log_bytes"],
            at=now,
        )
        if progress is not None:
            if start:
                log.info("job_started", job_id=item.id, agent=name, attempt=attempt)
            return progress
        await _record(ports, name, item, instance_id)
    raise errors.JobNotFound(f"job {item.id} has no attempt {attempt}")  # pragma: no cover - recorded above


def _log_lines(
    item: Item, attempt: int, lines: Sequence["Event"], mask: SecretMask | None, *, now: datetime
) -> list[LogLine]:
    """A batch of posted lines as stored: cut to the line limit and masked again.

    Raises:
        PayloadTooLarge: the batch is over 256 KiB of text.
    """
    size = sum(len(line.text.encode()) for line in lines)
    if size > LIMITS["event_batch_bytes"]:
        raise errors.PayloadTooLarge(
            f"event batch of {size} bytes is over the limit of {LIMITS['event_batch_bytes']} bytes"
        )
    return [
        LogLine(
            job_id=item.id,
            attempt=attempt,
            seq=line.seq,
            time=line.ts or now,
            stream=line.stream,
            line=mask.text(_cut(line.text, LIMITS["line_bytes"])) if mask else line.text,
        )
        for line in lines
    ]


async def _record(ports: Ports, name: str, item: Item, instance_id: str) -> JobAttempt:
    """The attempt's record, created when the claim's record was lost (a crash between claim and record)."""
    return await ports.agents.record_claim(
        JobAttempt(
            job_id=item.id,
            attempt=item.attempt,
            agent=name,
            instance_id=instance_id,
            claimed_at=ports.clock.now(),
        )
    )


@dataclass(frozen=True, slots=True)
class Event:
    """One log line as posted (agents.md §3)."""

    seq: int
    text: str
    stream: str = "stdout"
    ts: datetime | None = None


def _cut(text: str, limit: int) -> str:
    raw = text.encode()
    if len(raw) <= limit:
        return text
    return raw[:limit].decode(errors="ignore") + f"…[truncated {len(raw) - limit} bytes]"


async def events(
    ports: Ports,
    name: str,
    job_id: str,
    *,
    instance_id: str,
    attempt: int,
    lines: Sequence[Event],
    start: bool = False,
) -> dict[str, Any]:
    """Store a batch of log lines (masked again; idempotent by seq) and answer a pending cancellation.

    ``start`` folds the start call in (feature ``start_with_events``): the attempt counts as started first.

    Raises:
        JobNotFound, LeaseLost: as ``start``.
        PayloadTooLarge: the batch is over 256 KiB of text.
    """
    item = await find_job(ports, name, job_id)
    fence(item, instance_id=instance_id, attempt=attempt)
    _, appended = await _progress(
        ports, name, item, instance_id=instance_id, attempt=attempt, start=start, lines=lines
    )
    cancel = None
    if item.cancel_requested is not None:
        cancel = {
            "job_id": job_id,
            "attempt": attempt,
            "reason": f"cancelled by {item.cancel_requested.get('by', 'unknown')}",
        }
    return {"stored_seq": appended.stored_seq, "stop_streaming": appended.truncated, "cancel": cancel}


@dataclass(frozen=True, slots=True)
class JobResult:
    """A result call's body (agents.md §4)."""

    attempt: int
    status: str  # READY | FAILED
    exit_code: int | None = None
    outputs: Mapping[str, Any] | None = None
    error_message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    duration_s: float | None = None
    timed_out: bool = False
    cancelled: bool = False
    last_seq: int | None = None
    start: bool = False  # feature ``result_with_events``: the start call, folded in
    events: Sequence[Event] = ()  # ... and the last log lines, stored before the result


def _tail(text: str, limit: int) -> str:
    raw = text.encode()
    return text if len(raw) <= limit else raw[-limit:].decode(errors="ignore")


class _Unrecorded(Exception):
    """The attempt has no record (a crash between its claim and its record): roll back, record, redo."""

    def __init__(self, item: Item) -> None:
        super().__init__(item.id)
        self.item = item


async def result(
    ports: Ports,
    name: str,
    job_id: str,
    *,
    instance_id: str,
    outcome: JobResult,
    audit: AuditEntry | None = None,
) -> dict[str, Any]:
    """Apply a job's result: the first one per ``(job_id, attempt)`` wins; a repeat is a duplicate.

    READY completes the job; FAILED re-queues it after a backoff while the invocation's ``retries`` last
    (lifecycle §5.5), else fails it; a cancelled run confirms a pending cancel. The broker's change and the
    attempt's record (its start, last lines and result) commit together, in one document-store transaction,
    and so does ``audit``, the call's audit entry, when the result is accepted (a result that cannot be
    audited is not applied: the agent sends it again).

    Raises:
        JobNotFound: unknown job or attempt.
        LeaseLost: the attempt is superseded or its lease ended: the agent drops the result.
        InvalidInput: outputs over 1 MiB.
        PayloadTooLarge: the folded events are over 256 KiB of text.
    """
    for _ in range(2):  # the attempt's record is missing only after a crash between claim and record
        try:
            async with ports.store.transaction() as tx:
                answer = await _finish(ports, name, job_id, instance_id=instance_id, outcome=outcome, tx=tx)
                if audit is not None and answer.get("accepted"):
                    await ports.audit.append(audit, tx=tx)
                return answer
        except _Unrecorded as missing:
            await _record(ports, name, missing.item, instance_id)
    raise errors.JobNotFound(f"job {job_id} has no attempt {outcome.attempt}")  # pragma: no cover


async def _finish(
    ports: Ports, name: str, job_id: str, *, instance_id: str, outcome: JobResult, tx: Transaction
) -> dict[str, Any]:
    """``result`` inside its transaction ``tx``."""
    item = await ports.broker.get(job_id, tx=tx)
    if item is None or item.queue != queue_of(name) or item.kind != JOB_KIND:
        raise errors.JobNotFound(f"agent {name!r} has no job {job_id}")
    attempt = outcome.attempt
    duplicate = {"accepted": False, "reason": "duplicate"}
    try:
        fence(item, instance_id=instance_id, attempt=attempt, finished_ok=True)
    except errors.LeaseLost:
        earlier = await ports.agents.get_attempt(job_id, attempt)
        if earlier is not None and earlier.result is not None:
            return duplicate  # a repeat of the result that ended this attempt
        raise
    mask = mask_of(item)
    outputs = mask.value(dict(outcome.outputs or {}))
    if len(json.dumps(outputs)) > LIMITS["outputs_bytes"]:
        raise errors.InvalidInput(
            "outputs exceed 1 MiB", errors=[{"loc": ["body", "outputs"], "msg": "over 1 MiB", "type": "size"}]
        )
    if item.final:  # this attempt finished the item already: a repeat
        earlier = await ports.agents.get_attempt(job_id, attempt)
        if earlier is not None and earlier.result is not None:
            return duplicate
    now = ports.clock.now()
    lines = _log_lines(item, attempt, outcome.events, mask, now=now)
    stored: dict[str, Any] = {
        "attempt": attempt,
        "instance_id": instance_id,
        "status": outcome.status,
        "exit_code": outcome.exit_code,
        "outputs": outputs,
        "error_message": mask.text(_tail(outcome.error_message or "", LIMITS["error_message_bytes"])),
        "started_at": outcome.started_at,
        "finished_at": outcome.finished_at,
        "duration_s": outcome.duration_s,
        "timed_out": outcome.timed_out,
        "cancelled": outcome.cancelled,
        "last_seq": outcome.last_seq,
    }
    await _apply(ports, item, instance_id=instance_id, stored=stored, tx=tx)  # a repeat: a broker duplicate
    done = await ports.agents.finish_attempt(
        job_id,
        attempt,
        stored,
        started_at=now if outcome.start else None,
        lines=lines,
        max_bytes=LIMITS["log_bytes"],
        at=now,
        tx=tx,
    )
    if done is None:
        raise _Unrecorded(item)
    if not done[1]:
        return duplicate
    if outcome.start:
        log.info("job_started", job_id=job_id, agent=name, attempt=attempt)
    log.info(
        "job_finished",
        job_id=job_id,
        agent=name,
        attempt=attempt,
        status=outcome.status,
        duration_s=outcome.duration_s,
    )
    return {"accepted": True}


async def _apply(
    ports: Ports, item: Item, *, instance_id: str, stored: dict[str, Any], tx: Transaction
) -> None:
    """Finish (or retry) the broker item in ``tx``; a superseded epoch is ``LeaseLost``."""
    epoch = int(stored["attempt"])
    try:
        if stored["status"] == "READY":
            await ports.broker.complete(item.id, owner=instance_id, epoch=epoch, result=stored, tx=tx)
        elif stored["cancelled"] and item.cancel_requested is not None:
            await ports.broker.complete(
                item.id, owner=instance_id, epoch=epoch, result=stored, state="cancelled", tx=tx
            )
        else:
            error = str(stored["error_message"]).splitlines()[0] if stored["error_message"] else "job failed"
            retry_in = await _retry_in(ports, item)
            await ports.broker.fail(
                item.id,
                owner=instance_id,
                epoch=epoch,
                error=error,
                retry_in_s=retry_in,
                result=stored,
                tx=tx,
            )
    except errors.NotFound:
        raise
    except errors.Conflict as exc:
        raise errors.LeaseLost(exc.message) from exc


async def _retry_in(ports: Ports, item: Item) -> float | None:
    """The backoff before re-running a failed tool, or None when the invocation's retries are used up."""
    invocation = item.payload.get("invocation")
    retries = invocation.get("retries", 0) if isinstance(invocation, dict) else 0
    if item.cancel_requested is not None or not isinstance(retries, int) or retries <= 0:
        return None
    failures = sum(
        1
        for a in await ports.agents.attempts(item.id)
        if a.result is not None and a.result.get("status") == "FAILED" and not a.result.get("cancelled")
    )
    return backoff_s(failures + 1) if failures < retries else None


async def release(
    ports: Ports, name: str, job_id: str, *, instance_id: str, attempt: int, started: bool
) -> None:
    """Give a job back (shutdown): unstarted → re-queued free; started → like a lease expiry.

    Raises:
        JobNotFound, LeaseLost: as ``start``.
    """
    item = await find_job(ports, name, job_id)
    if item.state == "queued" and item.lease_owner == instance_id and item.attempt == attempt:
        return  # already released by this call: a repeat changes nothing
    fence(item, instance_id=instance_id, attempt=attempt)
    try:
        await ports.broker.release(job_id, owner=instance_id, epoch=attempt, started=started)
    except errors.NotFound:
        raise
    except errors.Conflict as exc:
        raise errors.LeaseLost(exc.message) from exc
    log.info("job_released", job_id=job_id, agent=name, attempt=attempt, started=started)
