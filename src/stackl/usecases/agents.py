"""The server side of the agent protocol (spec/agents.md §1-4, api.md §B.4): register, heartbeat, claim, report.

A job is a broker item on queue ``agent:<name>`` (kind ``job``, payload of agents.md §2): ``job_id`` is the
item id and ``attempt`` the item's attempt, which is also its lease epoch (every claim raises both by one),
so the attempt an agent reports is the fencing token the broker checks. The broker owns leases, retries and
expiry; the ``AgentRegistry`` port owns what the protocol adds (instances, per-attempt records, log lines
and the first result). Calls are ordered so that a crash between two writes is repaired by the agent's
retry; a result's change of the broker item and its record commit together (one transaction).

Every value the server stores or answers from a job's logs and results is masked again with the job's own
secrets, so a buggy or old agent cannot leak them into the database or the API.
"""

import asyncio
import base64
import json
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from stackl import __version__, errors
from stackl.broker.base import Item, backoff_s
from stackl.datastore.agents import AgentInstance, Appended, JobAttempt, LogLine
from stackl.datastore.base import Transaction
from stackl.datastore.encryption import SecretBox
from stackl.domain import names
from stackl.domain.clock import rfc3339
from stackl.usecases.ports import Ports

log = structlog.get_logger(__name__)

PROTOCOL = 1
HEARTBEAT_INTERVAL_S = 10
OFFLINE_AFTER_S = 30
LEASE_S = 60
FENCE_AFTER_S = 45
CLAIM_WAIT_MAX_S = 60
CLAIM_WAIT_DEFAULT_S = 30
LOST_IN_TRANSIT_S = 15  # a claimed job neither started nor reported this long was lost on its way
PRUNE_AFTER = timedelta(hours=24)
CLAIM_POLL_S = 1.0  # the long-poll looks again at least this often (notifications may be missed)
TOUCH_AFTER_S = 5.0  # a claim refreshes ``last_seen`` only when it is older (heartbeats do it every 10 s)
# Tools a job may name (agents.md §2): an instance with all of them can take any job, so its claim need not
# look at the queued payloads first.
KNOWN_TOOLS = frozenset({"ansible", "packer", "shell", "terraform", "tofu"})
# Optional protocol additions this server accepts; an agent uses them only when the register answer lists
# them, so old servers and old agents keep the classic call sequence.
FEATURES = (
    "start_with_events",  # an events body may carry ``start: true`` (the start call, folded in)
    "result_with_events",  # a result body may carry ``start: true`` and the last ``events``
    "result_batch",  # POST /agents/{name}/results: several results in one call
)
LIMITS = {
    "event_batch_bytes": 256 * 1024,
    "line_bytes": 16 * 1024,
    "log_bytes": 10 * 1024 * 1024,
    "error_message_bytes": 64 * 1024,
    "outputs_bytes": 1024 * 1024,
}
MASK = "********"
MIN_MASKED = 4
JOB_KIND = "job"


def queue_of(agent: str) -> str:
    """The broker queue of an agent's jobs: routing is by exact agent name."""
    return f"agent:{agent}"


def settings() -> dict[str, Any]:
    """The timing and limits every agent must use (the register answer)."""
    return {
        "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
        "offline_after_s": OFFLINE_AFTER_S,
        "lease_s": LEASE_S,
        "fence_after_s": FENCE_AFTER_S,
        "claim_wait_max_s": CLAIM_WAIT_MAX_S,
        "limits": dict(LIMITS),
        "server_version": __version__,
        "features": list(FEATURES),
    }


# --- masking ---------------------------------------------------------------------------------------------
class SecretMask:
    """Replaces a job's secret values (as text, JSON-escaped, base64 and line by line) with ``********``.

    The agent masks before sending (agents.md §3); the server does it again before storing or serving.
    """

    def __init__(self, secrets: Mapping[str, Any]) -> None:
        forms: set[str] = set()
        for value in secrets.values():
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            raw = text.encode()
            forms |= {
                text,
                json.dumps(text)[1:-1],
                base64.b64encode(raw).decode().rstrip("="),
                base64.urlsafe_b64encode(raw).decode().rstrip("="),
                *(line for line in text.splitlines() if line.strip()),
            }
        ordered = sorted((f for f in forms if len(f) >= MIN_MASKED), key=lambda f: (-len(f), f))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern is not None else value

    def value(self, value: Any) -> Any:
        """A JSON value with every string (and key) masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value


def mask_of(item: Item) -> SecretMask:
    secrets = item.payload.get("secrets")
    return SecretMask(secrets if isinstance(secrets, dict) else {})


# --- fencing ---------------------------------------------------------------------------------------------
async def _job(ports: Ports, name: str, job_id: str) -> Item:
    item = await ports.broker.get(job_id)
    if item is None or item.queue != queue_of(name) or item.kind != JOB_KIND:
        raise errors.JobNotFound(f"agent {name!r} has no job {job_id}")
    return item


def _fence(item: Item, *, instance_id: str, attempt: int, finished_ok: bool = False) -> None:
    """Refuse a call for an attempt this instance does not (or no longer) hold.

    A released or expired attempt (its item back in ``queued``) is lost even before anyone re-claims it;
    ``finished_ok`` lets a repeated result through for an item this attempt already finished.

    Raises:
        JobNotFound: the attempt was never dispatched.
        LeaseLost: ``superseded`` (a later attempt exists) or ``lease_lost`` (expired, released, other holder).
    """
    if attempt > item.attempt or attempt < 1:
        raise errors.JobNotFound(f"job {item.id} has no attempt {attempt}")
    if attempt < item.attempt:
        raise errors.LeaseLost(
            f"job {item.id} attempt {attempt} is superseded by attempt {item.attempt}", reason="superseded"
        )
    if item.lease_owner != instance_id:
        raise errors.LeaseLost(f"job {item.id} attempt {attempt} is not leased to instance {instance_id}")
    if item.state == "queued" or (item.final and not finished_ok):
        raise errors.LeaseLost(f"job {item.id} attempt {attempt} is {item.state}: its lease ended")


async def _instance(ports: Ports, name: str, instance_id: str) -> AgentInstance:
    instance = await ports.agents.get_instance(instance_id)
    if instance is None or instance.name != name:
        raise errors.AgentNotFound(f"agent {name!r} has no registered instance {instance_id}; register first")
    return instance


# --- register, heartbeat, deregister ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Registration:
    """A register call's body (agents.md §1.2)."""

    name: str
    instance_id: str
    hostname: str = ""
    version: str = ""
    protocol: int = PROTOCOL
    executors: Sequence[str] = ()
    tools: Mapping[str, str] | None = None
    labels: Mapping[str, str] | None = None
    max_jobs: int = 1
    previous_instance_id: str | None = None


async def register(ports: Ports, registration: Registration) -> dict[str, Any]:
    """Announce an instance (idempotent per ``instance_id``); expire the leases of its previous instance.

    Raises:
        InvalidInput: the name breaks the document-name rules.
        ProtocolUnsupported: the agent's protocol version is not 1.
    """
    problem = names.check_name(names.NameKind.AGENT, registration.name)
    if problem is not None:
        raise errors.InvalidInput(
            f"agent name {registration.name!r} {problem}",
            errors=[{"loc": ["body", "name"], "msg": problem, "type": "name"}],
        )
    if registration.protocol != PROTOCOL:
        raise errors.ProtocolUnsupported(
            f"agent protocol {registration.protocol} is not supported; this server speaks {PROTOCOL}"
        )
    now = ports.clock.now()
    tools = dict(registration.tools or {})
    tools.setdefault("shell", "sh")
    await ports.agents.register(
        AgentInstance(
            instance_id=registration.instance_id,
            name=registration.name,
            hostname=registration.hostname,
            version=registration.version,
            protocol=registration.protocol,
            executors=list(registration.executors),
            tools=tools,
            labels=dict(registration.labels or {}),
            max_jobs=registration.max_jobs,
            registered_at=now,
            last_seen=now,
            free_slots=registration.max_jobs,
        )
    )
    previous = registration.previous_instance_id
    if previous and previous != registration.instance_id:
        old = await ports.agents.get_instance(previous)
        if old is not None and old.name == registration.name:
            released = await _expire_instance(ports, registration.name, previous)
            await ports.agents.deregister(previous, at=now)
            log.info("agent_instance_replaced", agent=registration.name, previous=previous, released=released)
    log.info(
        "agent_registered",
        agent=registration.name,
        instance_id=registration.instance_id,
        version=registration.version,
        tools=sorted(tools),
    )
    return settings()


async def _expire_instance(ports: Ports, name: str, instance_id: str) -> int:
    """Give back every job leased to a dead instance at once (lifecycle §5.8); returns how many."""
    count = 0
    for item in await ports.broker.list(queue=queue_of(name), state="running"):
        if item.lease_owner != instance_id:
            continue
        record = await ports.agents.get_attempt(item.id, item.attempt)
        started = record is None or record.started_at is not None
        try:
            await ports.broker.release(item.id, owner=instance_id, epoch=item.lease_epoch, started=started)
            count += 1
        except errors.Conflict:
            continue  # finished or re-claimed meanwhile
    return count


@dataclass(frozen=True, slots=True)
class Running:
    """One job an agent says it runs."""

    job_id: str
    attempt: int
    phase: str = "running"


async def heartbeat(
    ports: Ports, name: str, *, instance_id: str, free_slots: int, running: Sequence[Running]
) -> dict[str, list[dict[str, Any]]]:
    """Liveness and lease renewal; answers what to cancel and what to abandon (agents.md §1.3).

    Only a job that is really no longer this instance's is abandoned: unknown (or its attempt never
    dispatched), superseded, or its lease lost. A database that cannot be reached says nothing about the
    lease: it fails the whole call (503), and the agent keeps its jobs and heartbeats again.

    Raises:
        AgentNotFound: the instance is not registered (the agent registers again).
        StoreUnavailable, BrokerUnavailable: the database cannot be reached (a 503; the agent retries).
    """
    await _instance(ports, name, instance_id)
    now = ports.clock.now()
    await ports.agents.touch(instance_id, at=now, free_slots=free_slots)
    cancel: list[dict[str, Any]] = []
    abandon: list[dict[str, Any]] = []
    listed = {job.job_id for job in running}
    # One read and one renewal for all the listed jobs: a heartbeat costs the same for 1 job or 1,000.
    items = await ports.broker.get_many([job.job_id for job in running])
    held: list[Running] = []
    for job in running:
        entry = {"job_id": job.job_id, "attempt": job.attempt}
        item = items.get(job.job_id)
        if item is None or item.queue != queue_of(name):
            abandon.append(entry | {"reason": "unknown job"})
            continue
        try:
            _fence(item, instance_id=instance_id, attempt=job.attempt)
        except errors.LeaseLost as exc:
            abandon.append(entry | {"reason": exc.reason})
            continue
        except errors.NotFound:  # the attempt was never dispatched
            abandon.append(entry | {"reason": "unknown job"})
            continue
        held.append(job)
    renewed = await ports.broker.heartbeat_many(
        [(job.job_id, job.attempt) for job in held], owner=instance_id, lease_s=LEASE_S
    )  # a database that cannot be reached raises: a 503, not an abandon
    for job in held:
        entry = {"job_id": job.job_id, "attempt": job.attempt}
        renewed_item = renewed.get(job.job_id)
        if renewed_item is None:  # lapsed, superseded or finished since it was read
            abandon.append(entry | {"reason": "lease_lost"})
        elif renewed_item.cancel_requested is not None:
            by = renewed_item.cancel_requested.get("by", "unknown")
            cancel.append(entry | {"reason": f"cancelled by {by}"})
    await _requeue_lost(ports, name, instance_id, listed=listed, now=now)
    return {"cancel": cancel, "abandon": abandon}


async def _requeue_lost(
    ports: Ports, name: str, instance_id: str, *, listed: set[str], now: datetime
) -> None:
    """Jobs leased to the instance > 15 s, never started and not listed were lost in transit: re-queue free."""
    limit = now - timedelta(seconds=LOST_IN_TRANSIT_S)
    for item in await ports.broker.list(queue=queue_of(name), state="running"):
        if item.lease_owner != instance_id or item.id in listed:
            continue
        record = await ports.agents.get_attempt(item.id, item.attempt)
        if record is None or record.started_at is not None or record.claimed_at > limit:
            continue
        try:
            await ports.broker.release(item.id, owner=instance_id, epoch=item.lease_epoch, started=False)
            log.warning("job_lost_in_transit", job_id=item.id, agent=name, attempt=item.attempt)
        except errors.Conflict:
            continue


async def deregister(ports: Ports, name: str, *, instance_id: str) -> None:
    """The instance is going away: offline at once (an unknown instance is not an error)."""
    instance = await ports.agents.get_instance(instance_id)
    if instance is not None and instance.name == name:
        await ports.agents.deregister(instance_id, at=ports.clock.now())
        log.info("agent_deregistered", agent=name, instance_id=instance_id)


# --- claim ----------------------------------------------------------------------------------------------
def _payload(item: Item, now: datetime, box: SecretBox | None = None) -> dict[str, Any]:
    """The job as its agent receives it: secrets decrypted (they are encrypted in the queue), lease fields."""
    payload = dict(item.payload)
    if box is not None and "secrets" in payload:
        payload["secrets"] = box.decrypt(payload["secrets"])
    invocation = payload.get("invocation") if isinstance(payload.get("invocation"), dict) else {}
    timeout = invocation.get("timeout", 3600) if isinstance(invocation, dict) else 3600
    deadline = now + timedelta(seconds=float(timeout) + 120)
    return payload | {
        "job_id": item.id,
        "attempt": item.attempt,
        "lease_s": LEASE_S,
        "deadline": rfc3339(deadline),
    }


async def claim(
    ports: Ports,
    name: str,
    *,
    instance_id: str,
    wait: float = CLAIM_WAIT_DEFAULT_S,
    max_jobs: int = 1,
    gone: Callable[[], Awaitable[bool]] | None = None,
) -> list[dict[str, Any]]:
    """Long-poll for up to ``max_jobs`` jobs of this agent whose tool the instance has (agents.md §1.4).

    A claimed job whose tool the instance lacks goes straight back to the queue (not counted), so another
    instance of the name gets it. The wait ends early when ``gone()`` says the caller hung up, or when the
    instance was deregistered or replaced meanwhile: a dead agent's open claim must not take jobs.

    Raises:
        AgentNotFound: the instance is not registered.
    """
    instance = await _instance(ports, name, instance_id)
    wait = min(max(wait, 0.0), CLAIM_WAIT_MAX_S)
    end = time.monotonic() + wait
    queue = queue_of(name)
    # An instance lacking a tool checks the queued payloads before claiming, so that it does not take (and
    # hand back) a job it cannot run at every call; one with every tool claims straight away.
    picky = not instance.tools.keys() >= KNOWN_TOOLS
    current: AgentInstance | None = instance
    while True:
        now = ports.clock.now()
        if current is None or current.deregistered_at is not None or (gone is not None and await gone()):
            return []
        if now - current.last_seen >= timedelta(seconds=TOUCH_AFTER_S):
            await ports.agents.touch(instance_id, at=now)
        if not picky or await _has_ready(ports, queue, instance.tools):
            jobs, mismatched = await _claim_ready(ports, name, instance, max_jobs=max_jobs, now=now)
            if jobs:
                return jobs
            picky = picky or mismatched
        remaining = end - time.monotonic()
        if remaining <= 0:
            return []
        woke = await ports.broker.wait(queues=[queue], timeout_s=min(remaining, CLAIM_POLL_S))
        if woke and picky and not await _has_ready(ports, queue, instance.tools):
            # Only jobs for tools this instance lacks are ready: do not spin on them, look again later.
            await asyncio.sleep(max(min(end - time.monotonic(), CLAIM_POLL_S), 0.0))
        current = await ports.agents.get_instance(instance_id)  # deregistered or replaced meanwhile?


async def _claim_ready(
    ports: Ports, name: str, instance: AgentInstance, *, max_jobs: int, now: datetime
) -> tuple[list[dict[str, Any]], bool]:
    """Claim up to ``max_jobs`` ready jobs; hand back those whose tool the instance lacks.

    Returns the payloads of the jobs kept and whether any was handed back.
    """
    instance_id = instance.instance_id
    kept: list[Item] = []
    mismatched: list[Item] = []
    async with ports.store.transaction() as tx:  # the claim and its attempts' records commit together
        for item in await ports.broker.claim(
            queues=[queue_of(name)], owner=instance_id, lease_s=LEASE_S, limit=max_jobs, tx=tx
        ):
            tool = str(item.payload.get("tool", "shell"))
            (kept if item.kind == JOB_KIND and tool in instance.tools else mismatched).append(item)
        await ports.agents.record_claims(
            [
                JobAttempt(
                    job_id=item.id, attempt=item.attempt, agent=name, instance_id=instance_id, claimed_at=now
                )
                for item in kept
            ],
            tx=tx,
        )
    for item in mismatched:  # after the commit: a release is a write of its own
        await ports.broker.release(item.id, owner=instance_id, epoch=item.lease_epoch, started=False)
    for item in kept:
        log.info("job_claimed", job_id=item.id, agent=name, attempt=item.attempt, instance_id=instance_id)
    return [_payload(item, now, ports.secret_box) for item in kept], bool(mismatched)


async def _has_ready(ports: Ports, queue: str, tools: Mapping[str, str]) -> bool:
    """Whether a ready job of the queue (or a lapsed lease, which the claim expires) suits these tools."""
    now = ports.clock.now()
    for item in await ports.broker.list(queue=queue, state="queued"):
        if item.available_at <= now and str(item.payload.get("tool", "shell")) in tools:
            return True
    for item in await ports.broker.list(queue=queue, state="running"):
        if item.lease_until is not None and item.lease_until < now:
            return True
    return False


# --- start, events, result, release ---------------------------------------------------------------------
async def start(ports: Ports, name: str, job_id: str, *, instance_id: str, attempt: int) -> None:
    """The tool is about to run: from now on the attempt counts as started (idempotent).

    Raises:
        JobNotFound: unknown job or attempt.
        LeaseLost: the attempt is superseded or no longer this instance's.
    """
    item = await _job(ports, name, job_id)
    _fence(item, instance_id=instance_id, attempt=attempt)
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
    item = await _job(ports, name, job_id)
    _fence(item, instance_id=instance_id, attempt=attempt)
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
    ports: Ports, name: str, job_id: str, *, instance_id: str, outcome: JobResult
) -> dict[str, Any]:
    """Apply a job's result: the first one per ``(job_id, attempt)`` wins; a repeat is a duplicate.

    READY completes the job; FAILED re-queues it after a backoff while the invocation's ``retries`` last
    (lifecycle §5.5), else fails it; a cancelled run confirms a pending cancel. The broker's change and the
    attempt's record (its start, last lines and result) commit together, in one document-store transaction.

    Raises:
        JobNotFound: unknown job or attempt.
        LeaseLost: the attempt is superseded or its lease ended: the agent drops the result.
        InvalidInput: outputs over 1 MiB.
        PayloadTooLarge: the folded events are over 256 KiB of text.
    """
    for _ in range(2):  # the attempt's record is missing only after a crash between claim and record
        try:
            async with ports.store.transaction() as tx:
                return await _finish(ports, name, job_id, instance_id=instance_id, outcome=outcome, tx=tx)
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
        _fence(item, instance_id=instance_id, attempt=attempt, finished_ok=True)
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
    item = await _job(ports, name, job_id)
    if item.state == "queued" and item.lease_owner == instance_id and item.attempt == attempt:
        return  # already released by this call: a repeat changes nothing
    _fence(item, instance_id=instance_id, attempt=attempt)
    try:
        await ports.broker.release(job_id, owner=instance_id, epoch=attempt, started=started)
    except errors.NotFound:
        raise
    except errors.Conflict as exc:
        raise errors.LeaseLost(exc.message) from exc
    log.info("job_released", job_id=job_id, agent=name, attempt=attempt, started=started)


# --- listing ---------------------------------------------------------------------------------------------
async def list_agents(ports: Ports) -> list[dict[str, Any]]:
    """Every agent that registered or has jobs waiting, with state, instances and running jobs (§1.6)."""
    queued = await ports.broker.list(state="queued")
    running = await ports.broker.list(state="running")
    targeted = {
        item.queue.removeprefix("agent:") for item in (*queued, *running) if item.queue.startswith("agent:")
    }
    registered = set(await ports.agents.names())
    return [
        await _view(ports, name, registered=registered, queued=queued, running=running)
        for name in sorted(registered | targeted)
    ]


async def get_agent(ports: Ports, name: str) -> dict[str, Any]:
    """One agent.

    Raises:
        AgentNotFound: it never registered and no job targets it.
    """
    for agent in await list_agents(ports):
        if agent["name"] == name:
            return agent
    raise errors.AgentNotFound(f"agent {name!r} not found")


async def delete_agent(ports: Ports, name: str) -> None:
    """Forget an agent's instances; its queued jobs stay queued.

    Raises:
        AgentNotFound: no such agent.
    """
    if not await ports.agents.delete_agent(name):
        raise errors.AgentNotFound(f"agent {name!r} not found")
    log.info("agent_deleted", agent=name)


def _online(instance: AgentInstance, now: datetime) -> bool:
    return instance.deregistered_at is None and instance.last_seen >= now - timedelta(seconds=OFFLINE_AFTER_S)


async def _view(
    ports: Ports, name: str, *, registered: set[str], queued: Iterable[Item], running: Iterable[Item]
) -> dict[str, Any]:
    now = ports.clock.now()
    queue = queue_of(name)
    instances = [i for i in await ports.agents.instances(name=name) if i.last_seen >= now - PRUNE_AFTER]
    online = any(_online(i, now) for i in instances)
    state = "online" if online else ("offline" if name in registered else "never_seen")
    last_seen = max((i.last_seen for i in instances), default=None)
    jobs = []
    for item in running:
        if item.queue != queue:
            continue
        record = await ports.agents.get_attempt(item.id, item.attempt)
        payload = item.payload
        step = f"{payload.get('service', '')}/{payload.get('replica', 0)}/{payload.get('functional_requirement', '')}"
        jobs.append(
            {
                "job_id": item.id,
                "attempt": item.attempt,
                "stack_instance": payload.get("stack_instance", ""),
                "step": step,
                "started_at": rfc3339(record.started_at) if record and record.started_at else None,
                "instance_id": item.lease_owner,
            }
        )
    return {
        "name": name,
        "state": state,
        "last_seen": rfc3339(last_seen) if last_seen else None,
        "queued_jobs": sum(1 for item in queued if item.queue == queue),
        "running_jobs": jobs,
        "instances": [
            {
                "instance_id": i.instance_id,
                "hostname": i.hostname,
                "version": i.version,
                "executors": i.executors,
                "tools": i.tools,
                "labels": i.labels,
                "max_jobs": i.max_jobs,
                "state": "online" if _online(i, now) else "offline",
            }
            for i in instances
        ],
    }
