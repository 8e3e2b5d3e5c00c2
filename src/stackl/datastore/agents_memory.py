"""InMemoryAgentRegistry: the AgentRegistry fake for unit tests, same rules as the SQL adapter.

Plain dicts of frozen records; no method awaits between reading and writing, so each call is atomic for the
event loop, as a transaction is in SQL.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from stackl import errors
from stackl.datastore.agents import AgentInstance, AgentRegistry, Appended, JobAttempt, LogLine, fit_lines


class InMemoryAgentRegistry(AgentRegistry):
    """Agents, attempts and logs in this process's memory."""

    def __init__(self) -> None:
        self._names: set[str] = set()
        self._instances: dict[str, AgentInstance] = {}
        self._attempts: dict[tuple[str, int], JobAttempt] = {}
        self._logs: dict[tuple[str, int], dict[int, LogLine]] = {}

    async def register(self, instance: AgentInstance) -> AgentInstance:
        old = self._instances.get(instance.instance_id)
        if old is not None:
            instance = replace(instance, registered_at=old.registered_at)
        self._instances[instance.instance_id] = instance
        self._names.add(instance.name)
        return instance

    async def get_instance(self, instance_id: str) -> AgentInstance | None:
        return self._instances.get(instance_id)

    async def touch(self, instance_id: str, *, at: datetime, free_slots: int | None = None) -> bool:
        old = self._instances.get(instance_id)
        if old is None:
            return False
        slots = old.free_slots if free_slots is None else free_slots
        self._instances[instance_id] = replace(old, last_seen=at, free_slots=slots)
        return True

    async def deregister(self, instance_id: str, *, at: datetime) -> bool:
        old = self._instances.get(instance_id)
        if old is None:
            return False
        self._instances[instance_id] = replace(old, deregistered_at=at)
        return True

    async def instances(self, *, name: str | None = None) -> list[AgentInstance]:
        found = [i for i in self._instances.values() if name is None or i.name == name]
        return sorted(found, key=lambda i: (i.name, i.registered_at, i.instance_id))

    async def names(self) -> list[str]:
        return sorted(self._names)

    async def delete_agent(self, name: str) -> bool:
        if name not in self._names:
            return False
        self._names.discard(name)
        for instance_id in [i.instance_id for i in self._instances.values() if i.name == name]:
            del self._instances[instance_id]
        return True

    async def record_claim(self, attempt: JobAttempt) -> JobAttempt:
        return self._attempts.setdefault((attempt.job_id, attempt.attempt), attempt)

    async def get_attempt(self, job_id: str, attempt: int) -> JobAttempt | None:
        return self._attempts.get((job_id, attempt))

    async def attempts(self, job_id: str) -> list[JobAttempt]:
        return sorted((a for a in self._attempts.values() if a.job_id == job_id), key=lambda a: a.attempt)

    async def mark_started(self, job_id: str, attempt: int, *, at: datetime) -> JobAttempt | None:
        old = self._attempts.get((job_id, attempt))
        if old is None:
            return None
        if old.started_at is None:
            old = self._attempts[(job_id, attempt)] = replace(old, started_at=at)
        return old

    def _require(self, job_id: str, attempt: int) -> JobAttempt:
        found = self._attempts.get((job_id, attempt))
        if found is None:
            raise errors.NotFound(f"job {job_id} has no attempt {attempt}")
        return found

    async def append_logs(
        self, job_id: str, attempt: int, lines: Sequence[LogLine], *, max_bytes: int, at: datetime
    ) -> Appended:
        record = self._require(job_id, attempt)
        stored = self._logs.setdefault((job_id, attempt), {})
        if record.log_truncated:
            return Appended(stored_seq=record.stored_seq, truncated=True)
        fitting, used, truncated = fit_lines(
            lines, known=set(stored), used=record.log_bytes, max_bytes=max_bytes
        )
        for line in fitting:
            stored[line.seq] = line
        top = max([record.stored_seq, *(line.seq for line in fitting)])
        self._attempts[(job_id, attempt)] = replace(
            record, log_bytes=used, log_truncated=truncated, stored_seq=top
        )
        return Appended(stored_seq=top, truncated=truncated)

    async def logs(self, job_id: str, *, attempt: int | None = None) -> list[LogLine]:
        out: list[LogLine] = []
        for (jid, number), lines in sorted(self._logs.items()):
            if jid == job_id and (attempt is None or number == attempt):
                out.extend(lines[seq] for seq in sorted(lines))
        return out

    async def set_result(
        self, job_id: str, attempt: int, result: dict[str, Any], *, at: datetime
    ) -> tuple[JobAttempt, bool]:
        record = self._require(job_id, attempt)
        if record.result is not None:
            return record, False
        record = self._attempts[(job_id, attempt)] = replace(record, result=dict(result), result_at=at)
        return record, True
