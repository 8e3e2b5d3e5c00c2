"""Claiming jobs (agents.md §1.4): the long-poll, the tool match and the payload an agent receives.

A claim takes ready jobs of the agent's queue whose tool the instance has, records their attempts and the
claim's audit entry in the same transaction (a claim that cannot be audited takes nothing), and answers each
job's payload with its secrets decrypted (they are encrypted in the queue) and its lease fields.
"""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from stackl.broker.base import Item
from stackl.datastore.agents import AgentInstance, JobAttempt
from stackl.datastore.encryption import SecretBox
from stackl.domain.clock import rfc3339
from stackl.domain.stored import AuditEntry
from stackl.usecases.agent_fencing import find_instance
from stackl.usecases.agents import CLAIM_WAIT_DEFAULT_S, CLAIM_WAIT_MAX_S, JOB_KIND, LEASE_S, queue_of
from stackl.usecases.ports import Ports

log = structlog.get_logger(__name__)

CLAIM_POLL_S = 1.0  # the long-poll looks again at least this often (notifications may be missed)
TOUCH_AFTER_S = 5.0  # a claim refreshes ``last_seen`` only when it is older (heartbeats do it every 10 s)
# Tools a job may name (agents.md §2): an instance with all of them can take any job, so its claim need not
# look at the queued payloads first.
KNOWN_TOOLS = frozenset({"ansible", "packer", "shell", "terraform", "tofu"})


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
    audit: AuditEntry | None = None,
) -> list[dict[str, Any]]:
    """Long-poll for up to ``max_jobs`` jobs of this agent whose tool the instance has (agents.md §1.4).

    ``audit`` is the claim's audit entry: written, with the claimed jobs' ids, in the claim's transaction.

    A claimed job whose tool the instance lacks goes straight back to the queue (not counted), so another
    instance of the name gets it. The wait ends early when ``gone()`` says the caller hung up, or when the
    instance was deregistered or replaced meanwhile: a dead agent's open claim must not take jobs.

    Raises:
        AgentNotFound: the instance is not registered.
        StoreUnavailable: the database (or the audit entry's write) failed: nothing was claimed.
    """
    instance = await find_instance(ports, name, instance_id)
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
            jobs, mismatched = await _claim_ready(
                ports, name, instance, max_jobs=max_jobs, now=now, audit=audit
            )
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
    ports: Ports,
    name: str,
    instance: AgentInstance,
    *,
    max_jobs: int,
    now: datetime,
    audit: AuditEntry | None = None,
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
        if kept and audit is not None:
            jobs = [{"job_id": i.id, "attempt": i.attempt, "task_id": i.payload.get("task_id")} for i in kept]
            await ports.audit.append(replace(audit, detail={"jobs": jobs}), tx=tx)  # fails the claim
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
