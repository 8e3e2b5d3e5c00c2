"""Running a stack-instance task: the stored step plan, group by group, one agent job per step (lifecycle.md §4-5).

``run_task(ports, lease)`` is the handler of the ``create``, ``update``, ``delete`` and ``restore`` tasks. The
request already wrote the instance with every step ``in_progress`` and put the plan in the task's payload (each
step with its resolved invocation; the replicas' parameters of layers 1-9). Here each step, when it comes due,
gets its job payload (agents.md §2: layer 10, the outputs present now, is added at dispatch; secrets in clear
only there), a job on ``agent:<agent>`` enqueued in the same transaction that records its id in the instance;
when the job has ended, its status and outputs (§4.6) are recorded.

Step progress is not a revision: each change of a step (marked, dispatched, ended, removed) is one small row
beside the instance (``tx.put_progress``, ``domain/step_progress.py``) that reads of the instance apply, so
its cost does not grow with the instance. The task's end writes one revision with the final statuses (its
read applied the rows, so the revision holds them and they are deleted). Structural changes while the task
runs (the rollback marker, ``revision_before`` restored, removed replicas) are revisions, as task outcomes.
Between two activations a process keeps the instance as its last activation left it (``_kept``), and the next
one reuses it when the store's ``version`` (revision, highest progress seq) still matches: an activation then
costs two index lookups instead of reading and decoding the whole instance.

Event-driven: a task never waits for a job while holding a worker. Each *activation* (a worker's claim of the
task) replays the plan from the start against the durable state: steps this task already finished are read
back from the instance, a job still running makes its chain wait, a step that came due is dispatched. When
nothing more can be done now, the task is parked (``lease.park``) until one of its jobs ends (the broker wakes
it in the transaction that records the job's end), it is cancelled, or its deadline comes; any worker then
continues it. So a worker crash loses nothing either: the next activation is the same replay.

Every write is read-modify-write in one transaction that also checks the worker's lease on the task
(``lease.fence``): a worker that lost the task commits nothing. The task's final record (its result, with the
state of every step as this task left it) and, for a delete or an undone create, the removal of the instance
commit together in one last transaction.
"""

import asyncio
import contextlib
import copy
import dataclasses
import weakref
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from pydantic import ValidationError

from stackl import errors
from stackl.broker.base import Item, ItemSpec
from stackl.datastore.base import StoredDocument, Transaction
from stackl.domain import rollback as rollback_plans
from stackl.domain import steps
from stackl.domain.clock import rfc3339
from stackl.domain.ids import ulid
from stackl.domain.jobs import JobPayload
from stackl.domain.outputs import merge_outputs, refresh_parameters
from stackl.domain.step_progress import apply_entry, index_entries, progress_key
from stackl.domain.step_status import cut_error, entry_key, step_key
from stackl.usecases import documents as document_cases
from stackl.usecases import task_queries
from stackl.usecases.agents import JOB_KIND, queue_of
from stackl.usecases.instances import JOB_LEASE_EXPIRIES, TASK_TIMEOUT_S
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TaskLease

log = structlog.get_logger(__name__)

SI = "stack_instance"
TIMED_OUT = "not run: task timed out"
CANCELLED = "not run: task cancelled"


# Instances a process keeps between the activations of their tasks, per store (the least recently used go).
KEPT = 8
_kept: "weakref.WeakKeyDictionary[object, OrderedDict[str, StoredDocument]]" = weakref.WeakKeyDictionary()


def _keep(store: object, stored: StoredDocument) -> None:
    """Keep the instance as this process last read or wrote it, for the task's next activation."""
    kept = _kept.setdefault(store, OrderedDict())
    kept[stored.name] = stored
    kept.move_to_end(stored.name)
    while len(kept) > KEPT:
        kept.popitem(last=False)


class TaskStopped(Exception):
    """The task's deadline passed or it was cancelled: nothing more is dispatched."""


class _Pending(Exception):
    """A job of this task is still running: its chain waits, and the task parks when nothing else is due."""


@dataclass
class TaskRun:
    """One activation of a task: the plan replayed against the stored statuses, with what it learns on the way.

    ``failed``, ``stopped`` and ``halt`` are rebuilt by each replay from the statuses this task recorded, so a
    fresh ``TaskRun`` per activation (``run_task``) knows what an earlier one did.
    """

    ports: Ports
    lease: TaskLease
    name: str
    action: str
    groups: list[dict[str, Any]]
    base_params: dict[str, dict[str, Any]]
    force: bool
    force_rerun: bool
    staged: bool
    deadline: datetime
    timeout_s: float
    wants_rollback: bool = False
    revision_before: int | None = None
    removed: list[list[Any]] = field(default_factory=list)
    removed_aliases: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    stopped: dict[tuple[str, int], str] = field(default_factory=dict)
    halt: str | None = None
    cancelled_by: str | None = None
    remove_document: bool = False  # the last transaction deletes the instance (a delete, an undone create)
    record: dict[str, Any] | None = None  # the steps as the main phase left them, kept while rolling back
    _cached: StoredDocument | None = None  # the instance as this activation last read or wrote it
    _index: dict[str, dict[str, Any]] = field(default_factory=dict)  # its status entries by progress key
    _indexed: Any = None  # the body ``_index`` was built from

    @property
    def task_id(self) -> str:
        return self.lease.item.id

    # --- writes --------------------------------------------------------------------------------------
    async def _fenced(self, work: Any) -> Any:
        """Run ``work(tx)`` in a write transaction that commits only while this worker holds the task."""

        async def fenced(tx: Transaction) -> Any:
            await self.lease.fence(tx)
            return await work(tx)

        return await document_cases.in_transaction(self.ports, fenced)

    def _remember(self, stored: StoredDocument) -> None:
        cached = self._cached
        if cached is None or (stored.revision, stored.progress_seq) > (cached.revision, cached.progress_seq):
            self._cached = stored
            _keep(self.ports.store, stored)

    async def _update(self, change: Any, *, subject: str = "worker", extra: ItemSpec | None = None) -> None:
        """Read the instance, apply ``change(body)`` (which may return False to write nothing), write it."""

        async def work(tx: Transaction) -> None:
            stored = await tx.get(doc_type=SI, name=self.name)
            if stored is None:
                raise errors.InstanceNotFound(f"Stack instance {self.name} not found")
            body = copy.deepcopy(stored.body)
            if change(body) is False:
                self._remember(stored)
                return
            written = await tx.put(
                doc_type=SI,
                name=self.name,
                body=body,
                subject=subject,
                action="status",
                if_revision=stored.revision,
                references=document_cases.references(body),
                task_id=self.task_id,
            )
            if extra is not None:
                await self.ports.broker.enqueue(extra, tx=tx)
            self._remember(written.document)

        await self._fenced(work)

    async def _read(self) -> StoredDocument:
        """The instance: read once per activation, then as this task wrote it.

        The task is the only writer of statuses; ``POST /outputs`` changes none, and is read at the next
        activation (its revision changes the version, so the kept copy is not reused).
        """
        if self._cached is not None:
            return self._cached
        kept_here = _kept.get(self.ports.store)
        kept = kept_here.get(self.name) if kept_here is not None else None
        async with self.ports.store.transaction(readonly=True) as tx:
            version = await tx.version(doc_type=SI, name=self.name) if kept is not None else None
            if kept is not None and version == (kept.revision, kept.progress_seq):
                stored: StoredDocument | None = kept  # unchanged since this process last had it
            else:
                stored = await tx.get(doc_type=SI, name=self.name)
        if stored is None:
            raise errors.InstanceNotFound(f"Stack instance {self.name} not found")
        self._remember(stored)
        return stored

    async def _progress(
        self, step: Mapping[str, Any], entry: dict[str, Any], *, extra: ItemSpec | None = None
    ) -> None:
        """Record a change of one step as a progress row (no revision), fenced; ``extra`` enqueued with it.

        The entry is applied to this activation's copy of the instance (``_read``) once committed: the row is
        written without reading the instance, so its cost does not grow with the instance.
        """
        cached = await self._read()
        key, name = progress_key(step_key(step)), self.name
        entry = {"task_id": self.task_id, **entry}
        current = self._entry(cached, step_key(step))
        if "status" in entry and current is not None:
            # One row per step, replaced by its next change: the row holds the step's whole status entry.
            entry["status"] = {**current, **entry["status"]}
        if entry.get("outputs"):  # refused before anything is stored: an invalid row would break every read
            merge_outputs({"services": {"x": [{}]}}, "x", 0, entry["outputs"])

        async def work(tx: Transaction) -> int:
            try:
                seq = await tx.put_progress(doc_type=SI, name=name, key=key, entry=entry)
            except errors.DocumentNotFound:
                raise errors.InstanceNotFound(f"Stack instance {name} not found") from None
            if extra is not None:
                await self.ports.broker.enqueue(extra, tx=tx)
            return int(seq)

        seq = await self._fenced(work)
        apply_entry(cached.body, key, entry, self._index if self._indexed is cached.body else None)
        self._cached = dataclasses.replace(cached, progress_seq=seq)
        _keep(self.ports.store, self._cached)

    def _entry(self, stored: StoredDocument, key: tuple[str, int, str]) -> dict[str, Any] | None:
        """A copy of a step's status entry in ``stored``, through an index: the replay finds each step in O(1)."""
        if self._indexed is not stored.body:
            self._index, self._indexed = index_entries(stored.body), stored.body
        found = self._index.get(progress_key(key))
        return dict(found) if found is not None else None

    async def _mark(self, step: Mapping[str, Any], status: str, message: str) -> None:
        entry = self._entry(await self._read(), step_key(step))
        if entry is None or (entry.get("status") == status and entry.get("error_message") == message):
            return
        fields = {"status": status, "error_message": cut_error(message), "task_id": self.task_id}
        if "action" not in entry:
            fields["action"] = step["action"]
        await self._progress(step, {"status": fields})

    async def _remove(self, step: Mapping[str, Any]) -> None:
        if self._entry(await self._read(), step_key(step)) is None:
            return
        await self._progress(step, {"removed": True, "step_id": str(step["id"])})

    # --- control -------------------------------------------------------------------------------------
    def _check_stop(self) -> None:
        """Raise TaskStopped once the deadline passed or a cancel was requested.

        A cancel is seen at the claim: its request counts as a wake-up, so a task about to park is claimed
        again at once.
        """
        if self.halt in (TIMED_OUT, CANCELLED):
            raise TaskStopped(self.halt)
        if self.ports.clock.now() > self.deadline:
            self.halt = TIMED_OUT
            raise TaskStopped(self.halt)
        requested = self.lease.item.cancel_requested
        if requested:
            self.cancelled_by = str(requested.get("by", "someone"))
            self.halt = CANCELLED
            raise TaskStopped(self.halt)

    # --- running -------------------------------------------------------------------------------------
    async def run(self) -> None:
        """Replay the plan; raise ``_Pending`` at the first group that still has a job running."""
        for group in self.groups:
            if self.halt is not None and self.halt not in (TIMED_OUT, CANCELLED):
                # A stop (cancel, timeout) goes through the steps instead: jobs in flight are asked to stop
                # and waited for, the others are skipped (``_step``).
                for step in group["steps"]:
                    await self._skip(step, self.halt)
                continue
            before = len(self.failed)
            if await self._group(group):
                raise _Pending
            if len(self.failed) > before and not self.force and self.halt is None:
                stage = str(group["stage"])
                self.halt = f"not run: stage {stage} failed" if self.staged else f"not run: {stage} failed"

    async def _skip(self, step: Mapping[str, Any], reason: str) -> None:
        stored = await self._read()
        entry = self._entry(stored, step_key(step))
        if entry is None or (entry.get("status") != "in_progress"):
            return  # removed (a READY delete) or already final
        await self._mark(step, "SKIPPED", reason)

    async def _group(self, group: Mapping[str, Any]) -> bool:
        """Advance one group; True while one of its jobs still runs."""
        by_alias: dict[str, list[dict[str, Any]]] = {}
        for step in group["steps"]:
            by_alias.setdefault(str(step["service"]), []).append(step)
        return any(await asyncio.gather(*(self._alias(steps) for steps in by_alias.values())))

    async def _alias(self, steps: list[dict[str, Any]]) -> bool:
        """One alias: per-replica chains in parallel, split by ``as_group`` steps that run once for all.

        True while a job of the alias still runs (what follows it waits).
        """
        segment: list[dict[str, Any]] = []
        for step in [*steps, None]:
            if step is not None and not step.get("as_group"):
                segment.append(step)
                continue
            if segment:
                chains: dict[int, list[dict[str, Any]]] = {}
                for s in segment:
                    chains.setdefault(int(s["replica"]), []).append(s)
                if any(await asyncio.gather(*(self._chain(chain) for chain in chains.values()))):
                    return True
                segment = []
            if step is not None:
                alias = str(step["service"])
                failed = [fr for (a, _), fr in self.stopped.items() if a == alias]
                if failed and not self.force:
                    await self._skip(step, f"not run: {failed[0]} failed")
                elif await self._chain([step]):
                    return True
        return False

    async def _chain(self, steps: list[dict[str, Any]]) -> bool:
        """One replica's steps in order; True when it stopped at a step whose job still runs."""
        for step in steps:
            replica = (str(step["service"]), int(step["replica"]))
            if replica in self.stopped and not self.force:
                await self._skip(step, f"not run: {self.stopped[replica]} failed")
                continue
            try:
                ok = await self._step(step)
            except _Pending:
                return True
            if not ok:
                self.failed.append(str(step["id"]))
                self.stopped.setdefault(replica, str(step["functional_requirement"]))
        return False

    async def _step(self, step: dict[str, Any]) -> bool:
        """Run one step to its end; True when it is READY, skipped by policy or removed."""
        key = step_key(step)
        stored = await self._read()
        entry = self._entry(stored, key)
        if step["action"] == "delete" and entry is None:
            return True  # deleted by an earlier run of this task
        if (
            entry is not None
            and entry.get("task_id") == self.task_id
            and entry.get("status") != "in_progress"
        ):
            return entry.get("status") != "FAILED"  # done by an earlier run of this task
        if step["decision"] == "skip":
            await self._mark(step, "SKIPPED", str(step["reason"]))
            return True
        if step["decision"] == "remove":
            await self._remove(step)
            return True
        if step["decision"] == "unchanged" and self._unchanged(step, stored.body, entry):
            return True
        if step.get("invocation") is None:
            await self._mark(step, "FAILED", str(step["reason"]))
            return False
        job_id = await self._own_job(entry, str(step["action"]))
        if not job_id:
            try:
                self._check_stop()
            except TaskStopped as stop:
                await self._mark(step, "SKIPPED", str(stop))
                return True
            job_id = await self._dispatch(step, stored)
            raise _Pending  # its end wakes the task (or, for a fast job, the park finds it ended)
        item = await self._poll(step, str(job_id))
        return await self._record(step, item)

    def _unchanged(
        self, step: Mapping[str, Any], body: Mapping[str, Any], entry: Mapping[str, Any] | None
    ) -> bool:
        """An update step planned ``unchanged``: is it still, now that its predecessors ran (§4.3)?"""
        if entry is None or entry.get("status") != "READY" or self.force_rerun:
            return False
        record = (body.get("steps") or {}).get(str(step["id"])) or {}
        return (
            bool(record.get("input_hash")) and record["input_hash"] == self._payload(step, body)["input_hash"]
        )

    async def _own_job(self, entry: Mapping[str, Any] | None, action: str) -> str | None:
        """The job this task already dispatched for the step (a resumed task waits for it), else None."""
        job_id = entry.get("job_id") if entry else None
        if not job_id:
            return None
        item = await self.ports.broker.get(str(job_id))
        mine = item is not None and item.payload.get("task_id") == self.task_id
        return str(job_id) if mine and item is not None and item.payload.get("action") == action else None

    def _payload(self, step: Mapping[str, Any], body: Mapping[str, Any]) -> dict[str, Any]:
        payload = steps.job_payload(
            task_id=self.task_id,
            name=self.name,
            step=step,
            body=body,
            base_params=self.base_params,
            groups=self.groups,
        )
        payload["input_hash"] = steps.input_hash(payload, self.ports.hash_key)
        return payload

    async def _dispatch(self, step: Mapping[str, Any], stored: StoredDocument) -> str:
        """Enqueue the step's job and record its id in the instance, in one transaction."""
        payload = self._payload(step, stored.body)
        self._check_job(step, payload)
        if self.ports.secret_box is not None and payload["secrets"]:
            # Encrypted in the queue too; the claim answer decrypts them for the agent only.
            payload["secrets"] = self.ports.secret_box.encrypt(payload["secrets"])
        invocation = payload["invocation"]
        job_id = ulid(self.ports.clock.now())
        spec = ItemSpec(
            queue=queue_of(str(step["agent"])),
            kind=JOB_KIND,
            payload=payload,
            max_attempts=int(invocation.get("retries", 0)) + JOB_LEASE_EXPIRIES,
            timeout_s=float(invocation.get("timeout", 3600)) + 120,
            id=job_id,
            parent_id=self.task_id,  # the job's end wakes this task
        )
        fields = {
            "status": "in_progress",
            "error_message": "",
            "action": step["action"],
            "task_id": self.task_id,
            "job_id": job_id,
            "started_at": rfc3339(self.ports.clock.now()),
            "finished_at": None,
            "input_hash": payload["input_hash"],
        }
        await self._progress(step, {"status": fields}, extra=spec)
        log.info("step_dispatched", task_id=self.task_id, step=step["id"], job_id=job_id, agent=step["agent"])
        return job_id

    @staticmethod
    def _check_job(step: Mapping[str, Any], payload: Mapping[str, Any]) -> None:
        """Never enqueue a job the agents' model cannot read; the error names fields, never values (secrets)."""
        try:
            JobPayload.model_validate({**payload, "secrets": {}})
        except ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in error["loc"]) for error in exc.errors())
            raise errors.InvalidInput(
                f"the job of step {step['id']} does not fit the job model: {fields}"
            ) from None

    async def _poll(self, step: Mapping[str, Any], job_id: str) -> Item:
        """The job, once it ended; else ``_Pending`` (after asking it to stop when the task is stopping)."""
        item = await self.ports.broker.get(job_id)
        if item is None:
            raise errors.JobNotFound(f"job {job_id} of step {step['id']} is gone")
        if item.final:
            return item
        try:
            self._check_stop()
        except TaskStopped:
            if item.cancel_requested is None:
                # A queued job ends at once; a running one when its agent confirms, or its lease lapses.
                item = await self.ports.broker.cancel(job_id, by=self.cancelled_by or "task timeout")
                if item.final:
                    return item
        raise _Pending

    def _failure(self, step: Mapping[str, Any], item: Item) -> str:
        if self.halt == TIMED_OUT:
            return f"timed out after {self.timeout_s:g} s (task timeout)"
        if item.state == "cancelled" or self.halt == CANCELLED:
            return f"cancelled by {self.cancelled_by or 'unknown'}"
        result = item.result if isinstance(item.result, dict) else {}
        if result.get("error_message"):
            return str(result["error_message"])
        error = item.error or "job failed"
        if error.startswith("lease expired"):
            return f"agent {step['agent']} lost the job {item.lease_expiries} times"
        return error

    async def _record(self, step: Mapping[str, Any], item: Item) -> bool:
        """Record the job's end in the instance: status, attempt, times and (create/update) outputs."""
        key = step_key(step)
        ready = item.state == "succeeded"
        result = item.result if isinstance(item.result, dict) else {}
        outputs = result.get("outputs") if ready and isinstance(result.get("outputs"), dict) else {}
        message = "" if ready else self._failure(step, item)
        finished = rfc3339(item.finished_at or self.ports.clock.now())
        if ready and step["action"] == "delete":
            await self._remove(step)
            return True
        entry: dict[str, Any] = {
            "subject": f"agent:{step['agent']}",
            "status": {
                "status": "READY" if ready else "FAILED",
                "error_message": cut_error(message),
                "attempt": max(item.attempt, 1),
                "finished_at": finished,
                "task_id": self.task_id,
                "job_id": item.id,
            },
        }
        current = self._entry(await self._read(), key)
        if ready and current is not None:
            entry["step_id"] = str(step["id"])
            entry["record"] = {"outputs": dict(outputs or {}), "input_hash": current.get("input_hash")}
        if outputs:  # merged into the instance; displayed parameters are refreshed at the task's end
            index = None if step.get("as_group") else int(step["replica"])
            entry |= {"outputs": dict(outputs), "alias": str(step["service"]), "index": index}
        await self._progress(step, entry)
        log.info(
            "step_finished", task_id=self.task_id, step=step["id"], status="READY" if ready else "FAILED"
        )
        return ready

    # --- after an update ------------------------------------------------------------------------------
    async def _drop_removed(self) -> None:
        """After an update: replicas and aliases whose delete steps all succeeded leave ``services``."""
        removed = [(str(a), int(i)) for a, i in self.removed]
        if not removed:
            return

        def change(body: dict[str, Any]) -> bool:
            services = body.get("services", {})
            left = {(str(e["service"]), int(e.get("replica") or 0)) for e in body.get("status", [])}
            changed = False
            for alias, index in sorted(removed, key=lambda r: -r[1]):
                replicas = services.get(alias, [])
                if (alias, index) not in left and index == len(replicas) - 1:
                    replicas.pop()
                    changed = True
                if alias in services and not services[alias] and alias in self.removed_aliases:
                    del services[alias]
            return changed

        await self._update(change)

    # --- rollback (lifecycle.md §4.5) ------------------------------------------------------------------
    async def _set_rollback_marker(self, compensation: list[dict[str, Any]]) -> None:
        """Mark the instance as rolling back this task, and the compensation steps ``in_progress``.

        The same write keeps what the main phase ended with (``rollback_record``: its failed steps, whether it
        timed out, its step records for the task's history) and the rollback's own deadline, so the later
        activations that go on compensating finish the task with the main phase's outcome.
        """
        keys = {step_key(s): s["action"] for g in compensation for s in g["steps"]}
        deadline = self.ports.clock.now() + timedelta(seconds=self.timeout_s)  # a new deadline (§5.2)

        def change(body: dict[str, Any]) -> bool:
            progress, records = task_queries.step_records(self.lease.item, body)
            self.record = {
                "failed_steps": list(self.failed),
                "timed_out": self.halt == TIMED_OUT,
                "deadline": rfc3339(deadline),
                "progress": progress,
                "steps": records,
            }
            body["rollback_record"] = self.record
            body["rolling_back"] = self.task_id
            self.deadline = deadline
            _mark_in_progress(body, keys, self.task_id)
            return True

        await self._update(change)

    async def _restore_before(self, reapply: list[dict[str, Any]], *, done: bool) -> None:
        """Write ``revision_before`` back as a new revision (an update's rollback), or clear the mark.

        ``done`` False: the steps to re-apply are marked ``in_progress`` for this task and the instance stays
        marked (``<task>:restore``), so a worker resuming the task re-applies them; True: the end.
        """
        name, task_id, before = self.name, self.task_id, int(self.revision_before or 0)
        keys = {step_key(s): s["action"] for g in reapply for s in g["steps"]}

        async def work(tx: Transaction) -> None:
            current = await tx.get(doc_type=SI, name=name)
            if current is None:
                return
            if done:
                body = copy.deepcopy(current.body)
                body.pop("rolling_back", None)
                body.pop("rollback_record", None)
            else:
                old = await tx.revision(doc_type=SI, name=name, revision=before)
                body = copy.deepcopy(old.body if old.body is not None else current.body)
                body["rolling_back"] = f"{task_id}:restore"
                body["rollback_record"] = current.body.get("rollback_record")
                body["steps"] = dict(current.body.get("steps") or {})
                body["posted_outputs"] = current.body.get("posted_outputs") or {}
                _mark_in_progress(body, keys, task_id)
            written = await tx.put(
                doc_type=SI,
                name=name,
                body=body,
                subject="worker",
                action="status" if done else "restore",
                if_revision=current.revision,
                references=document_cases.references(body),
                task_id=task_id,
                restored_from=None if done else before,
            )
            self._remember(written.document)

        await self._fenced(work)

    async def _run_compensation(self, groups: list[dict[str, Any]]) -> bool:
        self.groups, self.failed, self.stopped, self.halt = groups, [], {}, None
        self.force = False
        await self.run()
        return not self.failed

    async def rollback(self) -> bool:
        """Undo what this failed create or update did; True when everything was compensated.

        Create: delete steps for what it created, then the instance document goes. Update (or restore):
        delete what it added, write ``revision_before`` back, then re-apply with that revision's inputs the
        steps it ran on existing replicas and re-create those it deleted. Resumable: the instance is marked
        ``rolling_back`` (``<task>`` while deleting, ``<task>:restore`` while re-applying).
        """
        stored = await self._read()
        marker = stored.body.get("rolling_back")
        if marker == f"{self.task_id}:restore":
            reapply = rollback_plans.marked_reapply(self.groups, stored.body, self.task_id)
        else:
            compensation = rollback_plans.compensation(self.groups, stored.body, self.task_id)
            reapply = (
                rollback_plans.reapply(self.groups, stored.body, self.task_id)
                if self.revision_before is not None
                else []
            )
            if marker != self.task_id:
                await self._set_rollback_marker(compensation)
            if not await self._run_compensation(compensation):
                return False
            if self.revision_before is None:
                self.remove_document = True  # in the task's last transaction
                return True
            await self._restore_before(reapply, done=False)
        self.base_params = {}  # the restored replicas' displayed parameters are revision_before's
        if not await self._run_compensation(reapply):
            return False
        await self._restore_before([], done=True)
        return True

    # --- the end -------------------------------------------------------------------------------------
    async def finish(self) -> None:
        """Compute the result (rolling back first when asked); end the task in one fenced transaction."""
        if self.record is None:
            try:
                body: Mapping[str, Any] | None = (await self._read()).body
            except errors.InstanceNotFound:
                body = None
            progress, records = task_queries.step_records(self.lease.item, body)
        else:
            progress, records = self.record["progress"], self.record["steps"]
        result: dict[str, Any] = {
            "status": "succeeded",
            "error_message": "",
            "failed_steps": list(self.failed),
            "rolled_back": False,
            "rollback": None,
            "forced": self.force,
            "document_removed": False,
            "progress": progress,  # the task's history: what it did to each step, never rewritten later
            "steps": records,
        }
        if self.halt == TIMED_OUT:
            result["error_message"] = f"timed out after {self.timeout_s:g} s (task timeout)"
        elif self.failed:
            result["error_message"] = f"{len(self.failed)} step(s) failed: {', '.join(self.failed)}"
        remove = self.force or (not self.failed and self.halt is None)
        if self.action == "delete" and self.cancelled_by is None and remove:
            self.remove_document = True
            result["document_removed"] = True
            if self.failed:
                result["error_message"] += "; resources may remain"
        if self.action in ("update", "restore"):
            await self._drop_removed()
        failed = bool(self.failed) or self.halt == TIMED_OUT
        if (
            failed
            and self.cancelled_by is None
            and self.wants_rollback
            and self.action in ("create", "update")
        ):
            try:
                rolled_back = await self.rollback()
            except TaskStopped as stop:
                rolled_back, self.failed = False, [str(stop)]
            if rolled_back:
                result["rolled_back"] = True
                result["document_removed"] = self.revision_before is None
                result["error_message"] += "; rolled back"
            else:
                result["rollback"] = "failed"
                result["error_message"] += f"; rollback failed: {', '.join(self.failed) or 'unknown'}"
        if self.cancelled_by is not None:
            result["status"] = "cancelled"
            result["error_message"] = f"cancelled by {self.cancelled_by}"
        elif failed:
            result["status"] = "failed"
        await self._end(result)
        if (kept := _kept.get(self.ports.store)) is not None:
            kept.pop(self.name, None)  # its outcome revision makes the copy stale
        log.info("task_finished", task_id=self.task_id, kind=self.action, status=result["status"])

    async def _end(self, result: dict[str, Any]) -> None:
        """The task's last transaction: the instance removed when it goes, and the task's final record."""
        broker, owner, epoch = self.ports.broker, self.lease.owner, self.lease.epoch

        async def work(tx: Transaction) -> None:
            stored = await tx.get(doc_type=SI, name=self.name)
            if self.remove_document and stored is not None:
                await tx.delete(doc_type=SI, name=self.name, subject="worker", task_id=self.task_id)
            elif stored is not None:
                await self._fold_progress(tx, stored)
            if result["status"] == "succeeded":
                await broker.complete(self.task_id, owner=owner, epoch=epoch, result=result, tx=tx)
            elif result["status"] == "cancelled":
                await broker.complete(
                    self.task_id, owner=owner, epoch=epoch, result=result, state="cancelled", tx=tx
                )
            else:
                error = str(result["error_message"])
                await broker.fail(self.task_id, owner=owner, epoch=epoch, error=error, result=result, tx=tx)

        await self._fenced(work)

    async def _fold_progress(self, tx: Transaction, stored: StoredDocument) -> None:
        """The one revision of the task's step progress: the instance as read (rows applied), rows deleted."""
        rows = await tx.progress(doc_type=SI, name=self.name)
        if not rows:
            return
        body = copy.deepcopy(stored.body)
        if any(row.entry.get("outputs") and row.revision == stored.revision for row in rows):
            refresh_parameters(body, self.base_params)  # displayed parameters with the steps' outputs (§4.6)
        await tx.put(
            doc_type=SI,
            name=self.name,
            body=body,
            subject="worker",
            action="status",
            if_revision=stored.revision,
            references=document_cases.references(body),
            task_id=self.task_id,
        )


def _mark_in_progress(
    body: dict[str, Any], actions: Mapping[tuple[str, int, str], str], task_id: str
) -> None:
    """Mark the entries of ``actions``' steps ``in_progress`` for ``task_id``, with no job yet (rollback phases)."""
    for entry in body.get("status", []):
        action = actions.get(entry_key(entry))
        if action is not None:
            entry.update(status="in_progress", error_message="", action=action, task_id=task_id, job_id=None)


async def run_task(ports: Ports, lease: TaskLease) -> None:
    """Advance a stack-instance task as far as it goes now: finish it, or park it until a job of it ends.

    Raises:
        LeaseLost: the worker lost the task's lease; another worker resumes it.
        InstanceNotFound: the instance document vanished under a create.
    """
    payload = lease.item.payload
    started = lease.item.started_at or ports.clock.now()
    timeout_s = float(payload.get("timeout_s") or TASK_TIMEOUT_S)
    run = TaskRun(
        ports=ports,
        lease=lease,
        name=str(payload["stack_instance"]),
        action=lease.item.kind,
        groups=list(payload.get("groups", [])),
        base_params=dict(payload.get("base_params", {})),
        force=bool(payload.get("options", {}).get("force", False)),
        force_rerun=bool(payload.get("options", {}).get("force_rerun", False)),
        wants_rollback=bool(payload.get("options", {}).get("rollback", False)),
        revision_before=payload.get("revision_before"),
        removed=list(payload.get("removed", [])),
        removed_aliases=list(payload.get("removed_aliases", [])),
        staged=bool(payload.get("staged", False)),
        deadline=started + timedelta(seconds=timeout_s),
        timeout_s=timeout_s,
    )
    log.info("task_activated", task_id=lease.item.id, kind=lease.item.kind, stack_instance=run.name)
    stored = await run._read() if run.action != "delete" else None
    marker = str(stored.body.get("rolling_back") or "") if stored is not None else ""
    try:
        if marker.split(":")[0] == lease.item.id and stored is not None:
            # Rolling back (an earlier activation started it): go on compensating, with the main phase's outcome.
            run.record = dict(stored.body.get("rollback_record") or {})
            run.failed = list(run.record.get("failed_steps") or ["resumed during rollback"])
            run.halt = TIMED_OUT if run.record.get("timed_out") else None
            if run.record.get("deadline"):
                run.deadline = datetime.fromisoformat(str(run.record["deadline"]))
            else:  # marked by an older release, without a record
                run.record = None
        else:
            with contextlib.suppress(TaskStopped):
                run._check_stop()  # cancelled or past its deadline: what follows stops and records why
            await run.run()
        await run.finish()
    except _Pending:
        parked = await lease.park(until=run.deadline)
        log.info("task_waiting", task_id=lease.item.id, until=rfc3339(parked.available_at))
