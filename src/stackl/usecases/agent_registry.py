"""The agent registry (agents.md §1.2-1.3, §1.6): register, heartbeat, deregister, liveness and the agent list.

An agent instance announces itself, renews its leases by heartbeat and leaves; a replaced or silent instance
gives its jobs back. The list answers which agents exist (registered, or targeted by a queued job), whether
they are online, and what they run.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from stackl import errors
from stackl.broker.base import Item
from stackl.datastore.agents import AgentInstance
from stackl.domain import names
from stackl.domain.clock import rfc3339
from stackl.usecases.agent_fencing import fence, find_instance
from stackl.usecases.agents import LEASE_S, OFFLINE_AFTER_S, PROTOCOL, queue_of, settings
from stackl.usecases.ports import Ports

log = structlog.get_logger(__name__)

LOST_IN_TRANSIT_S = 15  # a claimed job neither started nor reported this long was lost on its way
PRUNE_AFTER = timedelta(hours=24)


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
        AgentConflict: ``instance_id`` is an instance of another agent name (``reason: instance_taken``).
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
    taken = await ports.agents.get_instance(registration.instance_id)
    if taken is not None and taken.name != registration.name:
        # An instance id names one agent's process for good: re-registering it under another name would
        # take it (and the jobs leased to it) away from that agent.
        raise errors.AgentConflict(
            f"instance {registration.instance_id} is registered to another agent; use a new instance_id",
            reason="instance_taken",
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
    await find_instance(ports, name, instance_id)
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
            fence(item, instance_id=instance_id, attempt=job.attempt)
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
