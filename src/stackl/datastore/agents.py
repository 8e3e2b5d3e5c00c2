"""The AgentRegistry port: agent instances, job attempts and job log lines.

The broker holds what a job *is* (queue item, lease, attempt); this port holds what the agent protocol adds
around it (spec/agents.md §1-4): which instances of an agent exist and when each was last seen, what each
attempt of a job did (claimed by whom, started when, its result: the first one wins) and its log lines
(idempotent by ``seq``, so a resent batch stores nothing twice). It lives next to the document store because
it shares its database (tables ``agents``, ``agent_instances``, ``job_attempts``, ``job_logs``); the SQL
adapter runs on the store's own connections.

Every method is atomic on its own; none spans the broker, so the use cases order their calls so that a
crash between two of them is repaired by the agent's retry (spec/agents.md §4: every call is idempotent).
"""

import abc
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, Self

from stackl.datastore.base import Transaction
from stackl.domain.stored import LogLine as LogLine  # the record lives in the domain; re-exported here

TRUNCATED_LINE = "log truncated at 10 MiB"


@dataclass(frozen=True, slots=True)
class AgentInstance:
    """One registered process of an agent (spec/agents.md §1.2)."""

    instance_id: str
    name: str
    hostname: str
    version: str
    protocol: int
    executors: list[str]
    tools: dict[str, str]
    labels: dict[str, str]
    max_jobs: int
    registered_at: datetime
    last_seen: datetime
    free_slots: int
    deregistered_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class JobAttempt:
    """One dispatch of a job to an agent instance, keyed by ``(job_id, attempt)``."""

    job_id: str
    attempt: int
    agent: str
    instance_id: str
    claimed_at: datetime
    started_at: datetime | None = None
    log_bytes: int = 0
    log_truncated: bool = False
    stored_seq: int = 0  # highest seq stored
    result: dict[str, Any] | None = None
    result_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Appended:
    """What ``append_logs`` did: the highest seq now stored, and whether the attempt's log is full."""

    stored_seq: int
    truncated: bool


class AgentRegistry(abc.ABC):
    """Agents, their instances, job attempts and logs; open it with ``async with`` before use."""

    @abc.abstractmethod
    async def register(self, instance: AgentInstance) -> AgentInstance:
        """Insert or replace the instance (same ``instance_id``: idempotent) and note its agent's name."""

    @abc.abstractmethod
    async def get_instance(self, instance_id: str) -> AgentInstance | None:
        """The instance, or None."""

    @abc.abstractmethod
    async def touch(self, instance_id: str, *, at: datetime, free_slots: int | None = None) -> bool:
        """Set ``last_seen`` (and ``free_slots``); False when the instance is unknown."""

    @abc.abstractmethod
    async def deregister(self, instance_id: str, *, at: datetime) -> bool:
        """Mark the instance gone (offline at once); False when unknown."""

    @abc.abstractmethod
    async def instances(self, *, name: str | None = None) -> list[AgentInstance]:
        """Instances (of one agent), by name then registration time."""

    @abc.abstractmethod
    async def names(self) -> list[str]:
        """The names of every agent that ever registered (and was not deleted), sorted."""

    @abc.abstractmethod
    async def delete_agent(self, name: str) -> bool:
        """Forget an agent and its instances; False when the name is unknown."""

    @abc.abstractmethod
    async def record_claim(self, attempt: JobAttempt) -> JobAttempt:
        """Note a claimed attempt; an existing ``(job_id, attempt)`` is kept and returned."""

    async def record_claims(self, attempts: Sequence[JobAttempt], *, tx: Transaction | None = None) -> None:
        """``record_claim`` for several attempts at once (one transaction where the adapter can: ``tx``)."""
        for attempt in attempts:
            await self.record_claim(attempt)

    @abc.abstractmethod
    async def get_attempt(self, job_id: str, attempt: int) -> JobAttempt | None:
        """The attempt, or None."""

    @abc.abstractmethod
    async def attempts(self, job_id: str) -> list[JobAttempt]:
        """Every recorded attempt of a job, oldest first."""

    @abc.abstractmethod
    async def mark_started(self, job_id: str, attempt: int, *, at: datetime) -> JobAttempt | None:
        """Set ``started_at`` once (a repeat keeps the first time); None when the attempt is unknown."""

    @abc.abstractmethod
    async def append_logs(
        self, job_id: str, attempt: int, lines: Sequence[LogLine], *, max_bytes: int, at: datetime
    ) -> Appended:
        """Store the lines whose seq is new, while the attempt's log stays within ``max_bytes``.

        The line that would pass the limit is replaced by one ``system`` line ``TRUNCATED_LINE`` and the
        attempt is marked truncated; later lines are dropped.

        Raises:
            NotFound: the attempt is unknown.
        """

    async def record_progress(
        self,
        job_id: str,
        attempt: int,
        *,
        started_at: datetime | None,
        lines: Sequence[LogLine],
        max_bytes: int,
        at: datetime,
    ) -> tuple[JobAttempt, Appended] | None:
        """``mark_started`` (when ``started_at`` is given) then ``append_logs``, atomically where the adapter can.

        Returns the attempt as it is afterwards and what was appended; None when the attempt is unknown.
        """
        if started_at is not None:
            if await self.mark_started(job_id, attempt, at=started_at) is None:
                return None
        elif await self.get_attempt(job_id, attempt) is None:
            return None
        appended = await self.append_logs(job_id, attempt, lines, max_bytes=max_bytes, at=at)
        record = await self.get_attempt(job_id, attempt)
        return (record, appended) if record is not None else None

    async def finish_attempt(
        self,
        job_id: str,
        attempt: int,
        result: dict[str, Any],
        *,
        started_at: datetime | None,
        lines: Sequence[LogLine],
        max_bytes: int,
        at: datetime,
        tx: Transaction | None = None,
    ) -> tuple[JobAttempt, bool] | None:
        """``record_progress`` then ``set_result``: a result call's whole record, atomically where the adapter can.

        Returns the attempt as it is afterwards and whether this result was the first; None when the attempt
        is unknown. A repeat (the attempt has a result) stores nothing, not even its lines. With ``tx`` (a
        transaction of the document store this registry shares), the SQL adapter writes in it, so the broker's
        change of the job and its record commit together; the in-memory fake applies at once.
        """
        record = await self.get_attempt(job_id, attempt)
        if record is None:
            return None
        if record.result is not None:
            return record, False
        if (
            await self.record_progress(
                job_id, attempt, started_at=started_at, lines=lines, max_bytes=max_bytes, at=at
            )
            is None
        ):  # pragma: no cover - read just above; attempts are never deleted
            return None
        return await self.set_result(job_id, attempt, result, at=at)

    @abc.abstractmethod
    async def logs(self, job_id: str, *, attempt: int | None = None) -> list[LogLine]:
        """The stored lines of a job (one attempt), by attempt then seq."""

    @abc.abstractmethod
    async def set_result(
        self, job_id: str, attempt: int, result: dict[str, Any], *, at: datetime
    ) -> tuple[JobAttempt, bool]:
        """Store the attempt's result unless it has one: ``(attempt, True)`` the first time, else ``False``.

        Raises:
            NotFound: the attempt is unknown.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


def fit_lines(
    lines: Sequence[LogLine], *, known: set[int], used: int, max_bytes: int
) -> tuple[list[LogLine], int, bool]:
    """The lines to store (new seqs only, within the byte budget), the bytes then used, and truncation.

    Shared by the adapters so both cut the log at the same line.
    """
    out: list[LogLine] = []
    for line in sorted(lines, key=lambda item: item.seq):
        if line.seq in known:
            continue
        size = len(line.line.encode())
        if used + size > max_bytes:
            out.append(LogLine(line.job_id, line.attempt, line.seq, line.time, "system", TRUNCATED_LINE))
            return out, used, True
        used += size
        known.add(line.seq)
        out.append(line)
    return out, used, False
