"""Reads of job logs (api.md §B.2, §B.3): a task's lines, one step's, or every task's of a stack instance.

The lines themselves are stored per job attempt by the agent protocol (``ports.agents``), already masked
(the server masks them again when it stores them; nothing here unmasks). What this module adds is *which*
jobs belong to a task: a task's steps are in its payload's ``groups``, and every job it dispatched is an item
of the step's agent queue whose payload names the task. Lines are served in job order (jobs are ULIDs, so
dispatch order), then attempt, then ``seq``.

The cursor is the position reached in every attempt's stream (``{"<job>:<attempt>": last seq}``), opaque to
callers: a line appended later to a stream already read (two replicas run in parallel) is still served by
the next page, so a follower never misses one. Unlike a plain list, a log page always carries a
``next_cursor``, the position to resume from: ``more`` says the page was cut by ``limit``, ``finished`` that
no task involved is active (no more lines will come). With ``wait_s`` an empty page is held until a line
arrives, the tasks end, or the wait elapses.
"""

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stackl import errors
from stackl.broker.base import Item
from stackl.datastore.agents import LogLine
from stackl.domain.clock import rfc3339
from stackl.usecases.agents import JOB_KIND, queue_of
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

WAIT_MAX_S = 30.0
POLL_S = 0.5
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

Cursor = dict[str, int]  # "<job_id>:<attempt>" -> highest seq already served


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which lines to serve; None matches everything."""

    service: str | None = None  # alias
    replica: int | None = None
    functional_requirement: str | None = None
    target: str | None = None  # infrastructure target
    attempt: int | None = None


@dataclass(frozen=True, slots=True)
class JobRef:
    """One job a task dispatched, and the step it ran."""

    job_id: str
    task_id: str
    service: str
    replica: int
    functional_requirement: str
    infrastructure_target: str

    @property
    def step(self) -> str:
        return f"{self.service}/{self.replica}/{self.functional_requirement}"

    def matches(self, where: LogFilter) -> bool:
        return (
            (where.service is None or self.service == where.service)
            and (where.replica is None or self.replica == where.replica)
            and (
                where.functional_requirement is None
                or self.functional_requirement == where.functional_requirement
            )
            and (where.target is None or self.infrastructure_target == where.target)
        )


# --- cursor ------------------------------------------------------------------------------------------------
def encode_cursor(cursor: Cursor) -> str:
    """The opaque form of a position: URL-safe base64 of compact JSON."""
    text = json.dumps(cursor, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(value: str | None) -> Cursor:
    """A position given back by a client; empty for None.

    Raises:
        Malformed: not a cursor this server gave out.
    """
    if not value:
        return {}
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        loaded = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise _bad_cursor() from exc
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) for k, v in loaded.items()
    ):
        raise _bad_cursor()
    return dict(loaded)


def _bad_cursor() -> errors.Malformed:
    return errors.Malformed(
        "cursor is not a log position this server gave out",
        errors=[{"loc": ["query", "cursor"], "msg": "invalid cursor", "type": "malformed"}],
    )


# --- which jobs ----------------------------------------------------------------------------------------------
async def _task(ports: Ports, task_id: str) -> Item:
    item = await ports.broker.get(task_id)
    if item is None or item.queue != TASKS_QUEUE:
        raise errors.TaskNotFound(f"task {task_id} not found")
    return item


def _steps(task: Item) -> list[Mapping[str, Any]]:
    return [step for group in task.payload.get("groups", []) for step in group.get("steps", [])]


async def _jobs(ports: Ports, tasks: Sequence[Item]) -> list[JobRef]:
    """Every job the tasks dispatched, in dispatch order (each agent queue is listed once)."""
    ids = {task.id for task in tasks}
    agents = sorted({str(step.get("agent")) for task in tasks for step in _steps(task) if step.get("agent")})
    found: list[JobRef] = []
    for agent in agents:
        for item in await ports.broker.list(queue=queue_of(agent)):
            payload = item.payload
            if item.kind != JOB_KIND or payload.get("task_id") not in ids:
                continue
            found.append(
                JobRef(
                    job_id=item.id,
                    task_id=str(payload["task_id"]),
                    service=str(payload.get("service", "")),
                    replica=int(payload.get("replica") or 0),
                    functional_requirement=str(payload.get("functional_requirement", "")),
                    infrastructure_target=str(payload.get("infrastructure_target", "")),
                )
            )
    return sorted(found, key=lambda job: job.job_id)


async def _instance_tasks(ports: Ports, name: str) -> list[Item]:
    """The instance's tasks, oldest first."""
    items = await ports.broker.list(queue=TASKS_QUEUE)
    return [item for item in items if item.payload.get("stack_instance") == name]


async def _instance_exists(ports: Ports, name: str) -> bool:
    async with ports.store.transaction(readonly=True) as tx:
        found = await tx.get_many(keys=[("stack_instance", name)])
    return bool(found)


# --- pages ---------------------------------------------------------------------------------------------------
def _line_view(job: JobRef, line: LogLine) -> dict[str, Any]:
    return {
        "seq": line.seq,
        "time": rfc3339(line.time),
        "task_id": job.task_id,
        "job_id": job.job_id,
        "attempt": line.attempt,
        "step": job.step,
        "service": job.service,
        "replica": job.replica,
        "functional_requirement": job.functional_requirement,
        "infrastructure_target": job.infrastructure_target,
        "stream": line.stream,
        "line": line.line,
    }


async def _read(
    ports: Ports, jobs: Iterable[JobRef], where: LogFilter, cursor: Cursor, limit: int
) -> tuple[list[dict[str, Any]], Cursor, bool]:
    """The lines after ``cursor`` (at most ``limit``), the position after them, and whether more remain."""
    items: list[dict[str, Any]] = []
    position = dict(cursor)
    for job in jobs:
        if not job.matches(where):
            continue
        for line in await ports.agents.logs(job.job_id, attempt=where.attempt):
            key = f"{job.job_id}:{line.attempt}"
            if line.seq <= position.get(key, 0):
                continue
            if len(items) >= limit:
                return items, position, True
            items.append(_line_view(job, line))
            position[key] = line.seq
    return items, position, False


async def _page(
    ports: Ports,
    tasks: Sequence[Item],
    where: LogFilter,
    *,
    cursor: str | None,
    limit: int,
    wait_s: float,
    reload: Callable[[], Awaitable[list[Item]]] | None = None,
) -> dict[str, Any]:
    """One page of lines after ``cursor``.

    An empty page is held for ``wait_s`` (capped) while a task is active, or, with ``reload`` (which returns
    the current tasks), until a new task brings lines.
    """
    position = decode_cursor(cursor)
    limit = max(1, min(limit, MAX_LIMIT))
    end = time.monotonic() + min(max(wait_s, 0.0), WAIT_MAX_S)
    while True:
        items, after, more = await _read(ports, await _jobs(ports, tasks), where, position, limit)
        finished = all(task.final for task in tasks)
        if items or time.monotonic() >= end or (finished and reload is None):
            return {"items": items, "next_cursor": encode_cursor(after), "more": more, "finished": finished}
        await asyncio.sleep(POLL_S)
        tasks = await reload() if reload is not None else [await _task(ports, task.id) for task in tasks]


async def task_logs(
    ports: Ports,
    task_id: str,
    *,
    where: LogFilter | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    """The log lines of a task's jobs (``GET /tasks/{id}/logs``).

    Raises:
        TaskNotFound: no such task.
        Malformed: the cursor is not one this server gave out.
    """
    task = await _task(ports, task_id)
    return await _page(ports, [task], where or LogFilter(), cursor=cursor, limit=limit, wait_s=wait_s)


async def step_log(
    ports: Ports,
    task_id: str,
    alias: str,
    replica: int,
    functional_requirement: str,
    *,
    attempt: int | None = None,
    cursor: str | None = None,
    limit: int = MAX_LIMIT,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    """One step's log, every attempt or one (``GET /tasks/{id}/steps/{alias}/{replica}/{fr}/log``).

    Raises:
        TaskNotFound: no such task.
        NotFound: the task has no such step.
        Malformed: the cursor is not one this server gave out.
    """
    task = await _task(ports, task_id)
    wanted = (alias, replica, functional_requirement)
    if not any(
        (str(s.get("service")), int(s.get("replica") or 0), str(s.get("functional_requirement"))) == wanted
        for s in _steps(task)
    ):
        raise errors.NotFound(f"task {task_id} has no step {alias}/{replica}/{functional_requirement}")
    where = LogFilter(
        service=alias, replica=replica, functional_requirement=functional_requirement, attempt=attempt
    )
    return await _page(ports, [task], where, cursor=cursor, limit=limit, wait_s=wait_s)


async def instance_logs(
    ports: Ports,
    name: str,
    *,
    task_id: str | None = None,
    where: LogFilter | None = None,
    cursor: str | None = None,
    limit: int = DEFAULT_LIMIT,
    wait_s: float = 0.0,
) -> dict[str, Any]:
    """The log lines of an instance's tasks, oldest task first (``GET /stack_instances/{name}/logs``).

    Without ``task_id`` a long-poll also picks up a task started while it waits. A deleted instance's logs
    stay readable while its tasks are kept.

    Raises:
        InstanceNotFound: no such instance, and no task ever ran for that name.
        TaskNotFound: ``task_id`` is not one of the instance's tasks.
        Malformed: the cursor is not one this server gave out.
    """
    tasks = await _instance_tasks(ports, name)
    if not tasks and not await _instance_exists(ports, name):
        raise errors.InstanceNotFound(f"stack instance {name} not found")
    where = where or LogFilter()
    if task_id is not None:
        chosen = [task for task in tasks if task.id == task_id]
        if not chosen:
            raise errors.TaskNotFound(f"task {task_id} is not a task of stack instance {name}")
        return await _page(ports, chosen, where, cursor=cursor, limit=limit, wait_s=wait_s)

    async def reload() -> list[Item]:
        return await _instance_tasks(ports, name)

    return await _page(ports, tasks, where, cursor=cursor, limit=limit, wait_s=wait_s, reload=reload)


def text_line(line: Mapping[str, Any]) -> str:
    """A line as ``Accept: text/plain`` shows it: ``<time> <service>/<fr>@<target> | <line>``."""
    return (
        f"{line['time']} {line['service']}/{line['functional_requirement']}@{line['infrastructure_target']}"
        f" | {line['line']}"
    )
