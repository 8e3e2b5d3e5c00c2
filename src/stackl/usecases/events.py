"""The event stream of ``GET /events`` (api.md B.2, B.10), derived from durable data by each server process.

Nothing writes events: every server process of a cluster runs one ``EventHub`` that polls what the database
already holds (documents and their revisions, the ``tasks`` queue, agent instances) and turns each change it
finds into an event. Ids are computed from the durable data (the change's own time, then a digest of what
changed), so every server derives the same event with the same id, and a client that reconnects to another
server with ``Last-Event-ID`` resumes where it was (within that server's buffer; older → ``reset``).

Kinds: ``document.created|updated|deleted|restored`` (a ``status``/``outputs`` write is an update),
``outputs.updated``, ``step.updated`` (a step's status changed between two revisions of a stack instance, or
by its step progress, which is no revision: ``domain/step_progress.py``),
``task.queued|started|succeeded|failed|cancelled``, ``agent.online|offline``.

Step progress: a listing returns instances with their live progress applied and its highest ``seq``
(``progress_seq``). When that moves, the hub diffs the body it last saw against the current one; each
changed step gets its event from its own progress row (the row's time and ``seq``), so every server derives
the same id whichever polls saw the intermediate states. A revision that later holds that progress (the
task's end) changes nothing more against the body already seen, so it adds no second ``step.updated``.

Cost: one listing of current documents and of active tasks per poll (``poll_s``, 1 s while someone follows
the stream, ``idle_poll_s`` otherwise), plus the history of the documents that changed. That is fine for
thousands of documents; an ``events`` table written in the same transactions would make it O(changes).
"""

import asyncio
import contextlib
import hashlib
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog

from stackl import errors
from stackl.broker.base import Item, State
from stackl.datastore.base import ListQuery, RevisionEntry, StoredDocument
from stackl.domain.clock import rfc3339
from stackl.domain.step_progress import ProgressRow
from stackl.usecases.agents import OFFLINE_AFTER_S
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

log = structlog.get_logger(__name__)

SI = "stack_instance"
KINDS = (
    "document.created",
    "document.updated",
    "document.deleted",
    "document.restored",
    "outputs.updated",
    "step.updated",
    "task.queued",
    "task.started",
    "task.succeeded",
    "task.failed",
    "task.cancelled",
    "agent.online",
    "agent.offline",
)
_DOC_KIND = {
    "create": "document.created",
    "update": "document.updated",
    "status": "document.updated",
    "outputs": "document.updated",
    "restore": "document.restored",
    "delete": "document.deleted",
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_RANK = {"document": "0", "outputs": "1", "step": "2", "task": "3", "agent": "4"}
_PAGE = 500
_HISTORY_MAX = 100  # revisions read per changed document and poll; older ones of a burst are skipped


def event_id(moment: datetime, key: str) -> str:
    """``<µs since epoch, 16 digits>-<rank><digest>``: sorts by time, the same on every server for one change."""
    delta = moment.astimezone(UTC) - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    rank = _RANK.get(key.split(".", 1)[0], "9")  # same instant: the document, then its outputs, steps, tasks
    return f"{micros:016d}-{rank}{hashlib.sha256(key.encode()).hexdigest()[:12]}"


@dataclass(frozen=True, slots=True)
class Event:
    """One change, as streamed: ``as_json`` is the body of api.md B.2."""

    id: str
    time: datetime
    kind: str
    subject: str
    resource_type: str
    resource_name: str
    task_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    stack_instance: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "time": rfc3339(self.time),
            "kind": self.kind,
            "subject": self.subject,
            "resource": {"type": self.resource_type, "name": self.resource_name},
            "task_id": self.task_id,
            "data": self.data,
        }


def make_event(
    moment: datetime,
    kind: str,
    *,
    key: str,
    resource: tuple[str, str],
    subject: str = "",
    task_id: str | None = None,
    data: dict[str, Any] | None = None,
    stack_instance: str | None = None,
) -> Event:
    return Event(
        id=event_id(moment, f"{kind}|{key}"),
        time=moment,
        kind=kind,
        subject=subject,
        resource_type=resource[0],
        resource_name=resource[1],
        task_id=task_id,
        data=data or {},
        stack_instance=stack_instance,
    )


@dataclass(frozen=True, slots=True)
class EventFilter:
    """The query filters of ``GET /events``; every given one must match (``kind``: any of, ``task.*`` ok)."""

    kinds: Sequence[str] = ()
    stack_instance: str | None = None
    type: str | None = None
    name: str | None = None

    def matches(self, event: Event) -> bool:
        if self.kinds and not any(
            event.kind == k or (k.endswith(".*") and event.kind.startswith(k[:-1])) for k in self.kinds
        ):
            return False
        if self.stack_instance is not None and event.stack_instance != self.stack_instance:
            return False
        if self.type is not None and event.resource_type != self.type:
            return False
        return self.name is None or event.resource_name == self.name


def parse_filter(
    kinds: Sequence[str], stack_instance: str | None, doc_type: str | None, name: str | None
) -> EventFilter:
    """Validate the filters.

    Raises:
        Malformed: an unknown kind (``document.*``-style prefixes of known kinds are allowed).
    """
    wanted = [k.strip() for value in kinds for k in value.split(",") if k.strip()]
    for kind in wanted:
        known = kind in KINDS or (kind.endswith(".*") and any(k.startswith(kind[:-1]) for k in KINDS))
        if not known:
            raise errors.Malformed(
                f"unknown event kind {kind!r}",
                errors=[{"loc": ["query", "kind"], "msg": f"one of {', '.join(KINDS)}", "type": "enum"}],
            )
    return EventFilter(kinds=tuple(wanted), stack_instance=stack_instance or None, type=doc_type, name=name)


def valid_cursor(value: str | None) -> str | None:
    """An event id given as ``Last-Event-ID`` / ``?after=``, or None when absent.

    Raises:
        Malformed: not an event id.
    """
    if not value:
        return None
    head, _, tail = value.partition("-")
    if not (head.isascii() and head.isdigit() and len(head) == 16 and tail.isalnum() and tail.isascii()):
        raise errors.Malformed(
            f"not an event id: {value!r}",
            errors=[{"loc": ["query", "after"], "msg": "not an event id", "type": "malformed"}],
        )
    return value


def _steps(body: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for entry in (body or {}).get("status") or []:
        if isinstance(entry, dict):
            key = f"{entry.get('service')}/{entry.get('replica') or 0}/{entry.get('functional_requirement')}"
            found[key] = entry
    return found


_WATCHED = ("status", "error_message", "attempt", "task_id")


def step_events(name: str, before: Mapping[str, Any] | None, entry: RevisionEntry) -> list[Event]:
    """``step.updated`` for every step whose status, error or attempt differs from the previous revision."""
    old, new = _steps(before), _steps(entry.body)
    out: list[Event] = []
    for step, now in new.items():
        was = old.get(step, {})
        if all(was.get(k) == now.get(k) for k in _WATCHED):
            continue
        task_id = now.get("task_id") or entry.task_id
        out.append(_step_event(name, str(entry.revision), step, now, entry.time, entry.subject, task_id))
    return out


def _step_event(
    name: str, change: str, step: str, now: Mapping[str, Any], moment: datetime, subject: str, task_id: Any
) -> Event:
    return make_event(
        moment,
        "step.updated",
        key=f"{name}|{change}|{step}",
        resource=(SI, name),
        subject=subject,
        task_id=str(task_id or "") or None,
        stack_instance=name,
        data={
            "step": step,
            "service": now.get("service"),
            "functional_requirement": now.get("functional_requirement"),
            "infrastructure_target": now.get("infrastructure_target"),
            "status": now.get("status"),
            "error_message": now.get("error_message", ""),
            "attempt": now.get("attempt"),
        },
    )


def progress_events(
    name: str, before: Mapping[str, Any] | None, after: Mapping[str, Any], rows: Sequence[ProgressRow]
) -> list[Event]:
    """``step.updated`` (and ``outputs.updated``) for what the progress rows changed since ``before``.

    Each changed step's event takes the time and ``seq`` of the step's row; a change without a row (not one
    that progress made) is left to the revision that made it.
    """
    by_key = {row.key: row for row in rows}
    old, new = _steps(before), _steps(after)
    out: list[Event] = []
    for step, now in new.items():
        row = by_key.get(step)
        was = old.get(step, {})
        if row is None or all(was.get(k) == now.get(k) for k in _WATCHED):
            continue
        out.append(_step_event(name, f"p{row.seq}", step, now, row.time, _subject(row), now.get("task_id")))
    with_outputs = [row for row in rows if row.entry.get("outputs")]
    if with_outputs and (before or {}).get("instance_outputs") != after.get("instance_outputs"):
        row = max(with_outputs, key=lambda r: r.seq)
        out.append(
            make_event(
                row.time,
                "outputs.updated",
                key=f"{SI}|{name}|p{row.seq}",
                resource=(SI, name),
                subject=_subject(row),
                task_id=str(row.entry.get("task_id") or "") or None,
                stack_instance=name,
                data={"progress_seq": row.seq},
            )
        )
    return out


def _subject(row: ProgressRow) -> str:
    return str(row.entry.get("subject") or "worker")


def document_events(entry: RevisionEntry, before: Mapping[str, Any] | None) -> list[Event]:
    """The events of one revision: the document event, then its outputs and step changes."""
    resource = (entry.type, entry.name)
    instance = entry.name if entry.type == SI else None
    key = f"{entry.type}|{entry.name}|{entry.revision}"
    out = [
        make_event(
            entry.time,
            _DOC_KIND.get(entry.action, "document.updated"),
            key=key,
            resource=resource,
            subject=entry.subject,
            task_id=entry.task_id,
            stack_instance=instance,
            data={"revision": entry.revision, "action": entry.action},
        )
    ]
    if entry.action == "outputs" or (
        entry.type == SI
        and entry.body is not None
        and (before or {}).get("instance_outputs") != entry.body.get("instance_outputs")
        and before is not None
    ):
        out.append(
            make_event(
                entry.time,
                "outputs.updated",
                key=key,
                resource=resource,
                subject=entry.subject,
                task_id=entry.task_id,
                stack_instance=instance,
                data={"revision": entry.revision},
            )
        )
    if entry.type == SI and entry.body is not None:
        out += step_events(entry.name, before, entry)
    return out


_TASK_KIND = {"succeeded": "task.succeeded", "failed": "task.failed", "cancelled": "task.cancelled"}


def task_events(item: Item, seen: set[str]) -> list[Event]:
    """The transitions of a task not in ``seen`` yet (queued, started, final), each at its durable time."""
    instance = str(item.payload.get("stack_instance") or "") or None
    resource = (SI, instance) if instance else ("task", item.id)
    data = {"kind": item.kind, "state": item.state, "attempt": item.attempt}
    moments: list[tuple[str, datetime | None]] = [
        ("task.queued", item.created_at),
        ("task.started", item.started_at),
        (_TASK_KIND.get(item.state, ""), item.finished_at if item.final else None),
    ]
    out = []
    for kind, moment in moments:
        if not kind or moment is None or kind in seen:
            continue
        out.append(
            make_event(
                moment,
                kind,
                key=item.id,
                resource=resource,
                task_id=item.id,
                stack_instance=instance,
                data={**data, **({"error": item.error} if kind == "task.failed" and item.error else {})},
            )
        )
    return out


class EventHub:
    """One per server process: polls the ports, keeps recent events in a buffer, wakes the followers."""

    def __init__(
        self, ports: Ports, *, poll_s: float = 1.0, idle_poll_s: float = 5.0, keep: int = 20_000
    ) -> None:
        self.ports = ports
        self.poll_s, self.idle_poll_s = poll_s, idle_poll_s
        self.buffer: deque[tuple[int, Event]] = deque(maxlen=keep)
        self.seq = 0
        self.subscribers = 0
        self.started_at: datetime | None = None  # events before this are not buffered (resume → reset)
        self._baseline = False
        self._docs: dict[tuple[str, str], tuple[int, int]] = {}  # (revision, progress seq) last seen
        self._bodies: dict[str, dict[str, Any]] = {}  # stack instance → last body (for step diffs)
        self._tasks: dict[str, set[str]] = {}  # active or recently seen task → kinds emitted
        self._agents: dict[str, bool] = {}  # agent instance id → online
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    def start(self) -> None:
        """Start polling (idempotent); the first poll only records the current state."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="stackl-events")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("events_poll_failed", error=str(exc))
            await asyncio.sleep(self.poll_s if self.subscribers else self.idle_poll_s)

    async def poll(self) -> list[Event]:
        """One pass over the durable data; the new events (also appended to the buffer, sorted by id)."""
        async with self._lock:
            found = await self._documents()
            found += await self._task_changes()
            found += await self._agent_changes()
            if not self._baseline:
                self._baseline = True
                self.started_at = self.ports.clock.now()
                return []
            found.sort(key=lambda e: e.id)
            fresh = [e for e in found if not self._seen_id(e.id)]
            for event in fresh:
                self.seq += 1
                self.buffer.append((self.seq, event))
            if fresh:
                async with self._changed:
                    self._changed.notify_all()
            return fresh

    def _seen_id(self, event_id_: str) -> bool:
        # Duplicates only happen within a short window (a task seen through two paths): check the tail.
        return any(e.id == event_id_ for _, e in list(self.buffer)[-2000:])

    async def _documents(self) -> list[Event]:
        current: dict[tuple[str, str], StoredDocument] = {}
        async with self.ports.store.transaction(readonly=True) as tx:
            cursor: str | None = None
            while True:
                page = await tx.list(ListQuery(limit=_PAGE, cursor=cursor))
                for doc in page.items:
                    current[(doc.type, doc.name)] = doc
                cursor = page.next_cursor
                if not cursor or not page.items:
                    break
            if not self._baseline:
                self._docs = {key: (doc.revision, doc.progress_seq) for key, doc in current.items()}
                self._bodies = {name: doc.body for (t, name), doc in current.items() if t == SI}
                return []
            out: list[Event] = []
            changed = [k for k, d in current.items() if (d.revision, d.progress_seq) != self._docs.get(k)]
            gone = [k for k in self._docs if k not in current]
            for key in [*changed, *gone]:
                known, now = self._docs.get(key, (0, 0))[0], current.get(key)
                last = known
                if now is None or now.revision != known:
                    try:
                        history = await tx.history(doc_type=key[0], name=key[1], limit=_HISTORY_MAX)
                    except errors.NotFound:
                        self._docs.pop(key, None)
                        continue
                    out += self._revision_events(key, [e for e in history.items if e.revision > known])
                    last = max([known, *(e.revision for e in history.items)])
                if now is not None and key[0] == SI and now.progress_seq:
                    rows = await tx.progress(doc_type=SI, name=key[1])
                    live = [row for row in rows if row.revision == now.revision]
                    out += progress_events(key[1], self._bodies.get(key[1]), now.body, live)
                    self._bodies[key[1]] = now.body
                if now is not None:
                    self._docs[key] = (max(now.revision, last), now.progress_seq)
                if key in gone:
                    self._docs.pop(key, None)
        return out

    def _revision_events(self, key: tuple[str, str], entries: list[RevisionEntry]) -> list[Event]:
        """The events of a document's new revisions, oldest first; stack instances' bodies kept for diffs."""
        out: list[Event] = []
        for entry in sorted(entries, key=lambda e: e.revision):
            before = self._bodies.get(key[1]) if key[0] == SI else None
            out += document_events(entry, before)
            if entry.task_id:
                self._tasks.setdefault(entry.task_id, set())
            if key[0] == SI:
                if entry.body is None:
                    self._bodies.pop(key[1], None)
                else:
                    self._bodies[key[1]] = entry.body
        return out

    async def _task_changes(self) -> list[Event]:
        broker = self.ports.broker
        active: dict[str, Item] = {}
        states: tuple[State, ...] = ("queued", "running")
        for state in states:
            for item in await broker.list(queue=TASKS_QUEUE, state=state):
                active[item.id] = item
        if not self._baseline:
            for item in active.values():
                self._tasks[item.id] = {e.kind for e in task_events(item, set())}
            return []
        out: list[Event] = []
        for task_id in [*active, *(t for t in self._tasks if t not in active)]:
            found = active.get(task_id) or await broker.get(task_id)
            if found is None or found.queue != TASKS_QUEUE:
                self._tasks.pop(task_id, None)
                continue
            seen = self._tasks.setdefault(task_id, set())
            fresh = task_events(found, seen)
            seen.update(e.kind for e in fresh)
            out += fresh
            if found.final:
                self._tasks.pop(task_id, None)
        return out

    async def _agent_changes(self) -> list[Event]:
        now = self.ports.clock.now()
        limit = timedelta(seconds=OFFLINE_AFTER_S)
        out: list[Event] = []
        for inst in await self.ports.agents.instances():
            online = inst.deregistered_at is None and inst.last_seen >= now - limit
            was = self._agents.get(inst.instance_id)
            self._agents[inst.instance_id] = online
            if not self._baseline or was == online or (was is None and not online):
                continue
            moment = inst.registered_at if online else (inst.deregistered_at or inst.last_seen + limit)
            out.append(
                make_event(
                    moment,
                    "agent.online" if online else "agent.offline",
                    key=f"{inst.instance_id}|{rfc3339(moment)}",
                    resource=("agent", inst.name),
                    data={"instance_id": inst.instance_id, "hostname": inst.hostname},
                )
            )
        return out

    def since(self, after: str | None) -> tuple[bool, list[tuple[int, Event]]]:
        """(reset needed, buffered events after the cursor by id); no cursor → nothing buffered."""
        if after is None:
            return False, []
        started = self.started_at
        reset = started is None or after < event_id(started, "")[:16]
        return reset, sorted(((s, e) for s, e in self.buffer if e.id > after), key=lambda p: p[1].id)

    async def follow(
        self, flt: EventFilter, *, after: str | None, keepalive_s: float = 15.0
    ) -> AsyncIterator[Event | None]:
        """Events matching ``flt``: the buffered ones after ``after``, then live ones; None = keep-alive."""
        self.start()
        self.subscribers += 1
        try:
            position = self.seq
            sent: set[str] = set()
            _, backlog = self.since(after)
            for _, event in backlog:
                sent.add(event.id)
                if flt.matches(event):
                    yield event
            while True:
                async with self._changed:
                    if self.seq == position:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._changed.wait(), keepalive_s)
                new = [(s, e) for s, e in list(self.buffer) if s > position]
                if not new:
                    yield None
                    continue
                position = new[-1][0]
                for _, event in new:
                    if event.id in sent or (after is not None and event.id <= after):
                        continue
                    if flt.matches(event):
                        yield event
                sent.clear()
        finally:
            self.subscribers -= 1


def sse(event: Event) -> str:
    """One server-sent-events message."""
    data = json.dumps(event.as_json(), separators=(",", ":"), ensure_ascii=False)
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n"
