"""AgentRunner: register, heartbeat, long-poll claim, run, stream and report (agents.md §1-4).

One runner is one agent *instance*: a fresh ``instance_id`` per start, the previous one kept in
``<data-dir>/instance-id`` and named at registration so the server expires its leases at once. Three kinds
of loops run under one TaskGroup: the heartbeat (its own 10 s rhythm, whatever else is slow), the claim
long-poll (never asking for more than the free slots) and one task per job.

Safety rules, and why:

- **Self-fencing.** No heartbeat acknowledged for 45 s (measured from the send time of the last one that
  was) → every running job is stopped and given back as started. The check runs on its own 1 s timer, so a
  heartbeat call hanging on a dead connection cannot delay it; a fenced job gets 10 s to stop, then its run
  is cancelled (the executor kills what is left at once). The server expires a lease after 60 s, so by then
  the job runs nowhere and its next attempt cannot overlap this one (lifecycle.md §5.6). A job whose tool
  already ended is not fenced: nothing of it runs any more, and its result is delivered late; the server's
  ``(job_id, attempt)`` fencing decides whether it still counts.
- **A hiccup is not an abandon.** A call the server cannot answer (no connection; 408, 429, 502-504, e.g.
  its database restarting) is retried with backoff: a heartbeat until the next one is due, events, start,
  result and release until answered. The jobs keep running meanwhile; only an answer (``abandon``, 409)
  drops a job, and only the fencing rule stops jobs for lack of answers.
- **One run per attempt.** Jobs are tracked by ``(job_id, attempt)``: a claim answer naming an attempt the
  agent already runs does not start it again.
- **Results survive crashes.** A result is written to ``<data-dir>/results/<job_id>-<attempt>.json``
  before it is sent and removed once the server answered 200 or 409; a restarted agent re-sends what is
  left *before* registering, while the dead instance still holds the lease.
- **Time comes from the injected clock**: the heartbeat rhythm, the fencing rule and its grace, the claim
  backoff and the shutdown wait read its ``monotonic()`` and wait with its ``sleep()`` (tests move a manual
  clock instead of waiting 45 s).
- **Graceful shutdown** (§1.5): stop claiming (a claim answered later is released unstarted), let jobs run
  up to ``shutdown_timeout`` (a second signal ends the wait), stop the rest and release them as started,
  then deregister.

The agent's own log names jobs by id only: payloads, parameters and secrets never reach it.
"""

import asyncio
import contextlib
import json
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from stackl import __version__
from stackl.agent.executors.base import Executor, Job, LogLine, Result
from stackl.agent.protocol import AgentProtocol, CallFailed, GaveUp
from stackl.agent.secrets import Masker
from stackl.agent.streaming import EventStream
from stackl.domain.clock import Clock, SystemClock, rfc3339
from stackl.domain.ids import ulid

log = structlog.get_logger(__name__)

PROTOCOL = 1
FENCE_CHECK_S = 1.0  # how often the self-fencing rule is checked
FENCE_GRACE_S = 10.0  # a fenced job's time to stop before its run is cancelled (agents.md §1.3)
HEARTBEAT_MIN_TIMEOUT_S = 1.0  # a heartbeat retried late in its interval still gets this long
BATCHED_FEATURES = frozenset({"start_with_events", "result_with_events"})
RESULT_BATCH = "result_batch"  # POST /agents/{name}/results: the results that wait for a call share it
RESULTS_PER_CALL = 64
RESULTS_BYTES = 4 * 1024 * 1024  # a batch stays far below the server's body limit (10 MiB by default)


@dataclass
class Timing:
    """What the server's register answer fixes (defaults = agents.md §1.2)."""

    heartbeat_interval_s: float = 10.0
    fence_after_s: float = 45.0
    claim_wait_s: float = 30.0


@dataclass
class _Running:
    job_id: str
    attempt: int
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    phase: str = "claimed"
    abandoned: bool = False  # the server says it is no longer ours: report nothing
    give_back: bool = False  # shutdown or self-fencing: release as started instead of reporting
    cancel_reason: str = ""
    lost: bool = False  # mock `lost`: left out of heartbeats, never reported
    run: "asyncio.Future[Result] | None" = None  # the executor's run, cancelled when a fenced job overstays
    fenced_at: float = 0.0  # the clock's monotonic() when self-fencing stopped this job (with ``fenced``)
    fenced: asyncio.Event = field(default_factory=asyncio.Event)


class AgentRunner:
    """One agent instance; ``await run(stop, force)`` until ``stop`` is set."""

    def __init__(
        self,
        *,
        name: str,
        protocol: AgentProtocol,
        executor: Executor,
        data_dir: Path,
        max_jobs: int = 4,
        shutdown_timeout_s: float = 300.0,
        labels: dict[str, str] | None = None,
        timing: Timing | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``clock`` times heartbeats, fencing, backoffs and timestamps (tests move it instead of waiting)."""
        self.name = name
        self._protocol = protocol
        self._executor = executor
        self._data_dir = data_dir
        self._results_dir = data_dir / "results"
        self._max_jobs = max_jobs
        self._shutdown_timeout_s = shutdown_timeout_s
        self._labels = dict(labels or {})
        self.timing = timing or Timing()
        self._clock = clock or SystemClock()
        self.instance_id = ulid(self._clock.now())
        self._previous_id: str | None = None
        self._running: dict[tuple[str, int], _Running] = {}  # by (job_id, attempt)
        self._slot_freed = asyncio.Event()
        self._stopping = False
        self._last_ack = self._clock.monotonic()
        self._force = asyncio.Event()  # set: calls stop retrying (a forced stop, or the server going away)
        self._features: frozenset[str] = frozenset()  # optional protocol additions the server accepts
        self._results = ResultBatcher(protocol, give_up=self._force.is_set)
        self.registered = asyncio.Event()

    # --- lifecycle --------------------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event, force: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set, then shut down gracefully (``force`` skips the wait for jobs)."""
        force = force or asyncio.Event()
        self._force = force
        self._results = ResultBatcher(self._protocol, give_up=force.is_set)
        self._prepare_data_dir()
        await self._resend_results(stop)
        if stop.is_set():
            return
        await self._register(stop)
        if stop.is_set():
            return
        self._last_ack = self._clock.monotonic()
        async with asyncio.TaskGroup() as group:
            heartbeats = group.create_task(self._heartbeat_loop())
            fencing = group.create_task(self._fence_loop())
            jobs: set[asyncio.Task[None]] = set()
            claims = group.create_task(self._claim_loop(stop, group, jobs))
            await stop.wait()
            self._stopping = True
            await claims
            await self._drain(jobs, force)
            heartbeats.cancel()
            fencing.cancel()
        await self._deregister()
        log.info("agent_stopped", agent=self.name, instance_id=self.instance_id)

    def _prepare_data_dir(self) -> None:
        self._results_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self._data_dir, 0o700)
        id_file = self._data_dir / "instance-id"
        if id_file.exists():
            self._previous_id = id_file.read_text().strip() or None
        id_file.write_text(self.instance_id + "\n")

    async def _register(self, stop: asyncio.Event, *, give_up: Callable[[], bool] | None = None) -> None:
        body = {
            "name": self.name,
            "instance_id": self.instance_id,
            "previous_instance_id": self._previous_id,
            "hostname": socket.gethostname(),
            "version": __version__,
            "protocol": PROTOCOL,
            "executors": [self._executor.name],
            "tools": dict.fromkeys(self._executor.tools(), ""),
            "labels": self._labels,
            "max_jobs": self._max_jobs,
        }
        _, answer = await self._protocol.call(
            "/agents/register", body, give_up=lambda: stop.is_set() or (give_up is not None and give_up())
        )
        if isinstance(answer, dict):
            self.timing.heartbeat_interval_s = float(answer.get("heartbeat_interval_s", 10))
            self.timing.fence_after_s = float(answer.get("fence_after_s", 45))
            features = answer.get("features")
            self._features = frozenset(map(str, features)) if isinstance(features, list) else frozenset()
        self.registered.set()
        log.info(
            "agent_registered", agent=self.name, instance_id=self.instance_id, previous=self._previous_id
        )

    async def _deregister(self) -> None:
        with contextlib.suppress(CallFailed, GaveUp):
            await self._protocol.call(
                f"/agents/{self.name}/deregister", {"instance_id": self.instance_id}, retry=False
            )

    async def _drain(self, jobs: set[asyncio.Task[None]], force: asyncio.Event) -> None:
        """Let running jobs finish for up to the shutdown timeout (or until ``force``), then stop the rest."""
        pending = {task for task in jobs if not task.done()}
        if pending:
            log.info("agent_draining", agent=self.name, jobs=len(pending), timeout_s=self._shutdown_timeout_s)
            await _first(asyncio.wait(pending), force.wait(), self._clock.sleep(self._shutdown_timeout_s))
        for state in self._running.values():
            state.give_back = True
            state.cancel.set()
        # A finished job removes itself from ``jobs``: wait on a copy.
        await asyncio.gather(*list(jobs), return_exceptions=True)

    # --- heartbeat and self-fencing ---------------------------------------------------------------------
    async def _heartbeat_loop(self) -> None:
        while True:
            await self._clock.sleep(self.timing.heartbeat_interval_s)
            await self.heartbeat_once()

    async def heartbeat_once(self) -> None:
        """One heartbeat: renew leases, apply cancel and abandon lists, self-fence when cut off too long.

        A try the server cannot answer (no connection, or 408, 429, 502-504: its database may be restarting)
        is retried with backoff until the next heartbeat is due, each time with the jobs running then. The
        jobs keep running meanwhile: only an answer abandons a job, only the fencing rule stops them all.
        """
        path = f"/agents/{self.name}/heartbeat"
        first = self._clock.monotonic()
        due = first + self.timing.heartbeat_interval_s
        tries = 0
        while True:
            tries += 1
            sent = self._clock.monotonic()
            try:
                _, answer = await self._protocol.call(
                    path,
                    self._heartbeat_body(),
                    retry=False,
                    timeout_s=max(due - sent, HEARTBEAT_MIN_TIMEOUT_S),
                )
                break
            except CallFailed as exc:
                log.warning("agent_heartbeat_refused", status=exc.status, instance_id=self.instance_id)
                if exc.status == 404:  # the server forgot this instance: announce it again
                    with contextlib.suppress(CallFailed, GaveUp):  # never past the fencing point
                        await self._register(asyncio.Event(), give_up=self._cut_off)
                self._fence_if_cut_off()
                return
            except GaveUp as exc:
                self._fence_if_cut_off()
                pause = self._protocol.pause_s(tries)
                log.warning(
                    "agent_heartbeat_failed",
                    status=exc.status,
                    tries=tries,
                    unacknowledged_s=round(self._clock.monotonic() - self._last_ack, 1),
                )
                if self._clock.monotonic() + pause >= due:
                    return  # the next heartbeat takes over
                await self._clock.sleep(pause)
        self._last_ack = sent
        for entry in answer.get("cancel", []) if isinstance(answer, dict) else []:
            self._cancel(str(entry.get("job_id")), _attempt(entry), str(entry.get("reason", "cancelled")))
        for entry in answer.get("abandon", []) if isinstance(answer, dict) else []:
            state = self._running.get((str(entry.get("job_id")), _attempt(entry)))
            if state is not None:
                log.warning(
                    "job_abandoned", job_id=state.job_id, attempt=state.attempt, reason=entry.get("reason")
                )
                state.abandoned = True
                state.cancel.set()

    def _heartbeat_body(self) -> dict[str, Any]:
        return {
            "instance_id": self.instance_id,
            "free_slots": max(self._max_jobs - len(self._running), 0),
            "running": [
                {"job_id": s.job_id, "attempt": s.attempt, "phase": s.phase}
                for s in self._running.values()
                if not s.lost
            ],
        }

    async def _fence_loop(self) -> None:
        while True:
            await self._clock.sleep(FENCE_CHECK_S)
            self._fence_if_cut_off()

    def _cut_off(self) -> bool:
        """No heartbeat acknowledged for ``fence_after_s``: this instance's leases may be gone."""
        return self._clock.monotonic() - self._last_ack >= self.timing.fence_after_s

    def _fence_if_cut_off(self) -> None:
        if not self._cut_off():
            return
        for state in self._running.values():
            if state.run is not None and state.run.done():
                continue  # its tool ended: nothing runs, its result goes out when the server answers
            if not state.give_back:
                log.warning("job_fenced", job_id=state.job_id, attempt=state.attempt)
                state.give_back = True
                state.fenced_at = self._clock.monotonic()
                state.fenced.set()  # the job's _stop_after_grace counts FENCE_GRACE_S from fenced_at
                state.cancel.set()

    def _cancel(self, job_id: str, attempt: int, reason: str) -> None:
        state = self._running.get((job_id, attempt))
        if state is not None and not state.cancel.is_set():
            log.info("job_cancel_requested", job_id=job_id, attempt=state.attempt)
            state.cancel_reason = reason
            state.cancel.set()

    # --- claim ------------------------------------------------------------------------------------------
    async def _claim_loop(
        self, stop: asyncio.Event, group: asyncio.TaskGroup, jobs: set[asyncio.Task[None]]
    ) -> None:
        failures = 0
        while not stop.is_set():
            free = self._max_jobs - len(self._running)
            if free <= 0:
                self._slot_freed.clear()
                await _first(stop.wait(), self._slot_freed.wait())
                continue
            body = {"instance_id": self.instance_id, "wait": self.timing.claim_wait_s, "max_jobs": free}
            claim = asyncio.create_task(
                self._protocol.call(
                    f"/agents/{self.name}/claim", body, retry=False, timeout_s=self.timing.claim_wait_s + 15
                )
            )
            stopped = asyncio.create_task(stop.wait())
            await asyncio.wait([claim, stopped], return_when="FIRST_COMPLETED")
            stopped.cancel()
            if not claim.done():
                claim.cancel()  # a job the server handed out meanwhile is re-queued as lost in transit
                with contextlib.suppress(asyncio.CancelledError, CallFailed, GaveUp):
                    await claim
                return
            try:
                status, answer = claim.result()
            except (CallFailed, GaveUp) as exc:
                failures += 1
                if isinstance(exc, CallFailed) and exc.status == 404:
                    with contextlib.suppress(CallFailed, GaveUp):
                        await self._register(stop)
                await _first(stop.wait(), self._clock.sleep(min(0.5 * 2**failures, 30)))
                continue
            failures = 0
            if status == 204 or not isinstance(answer, dict):
                continue
            for payload in answer.get("jobs", []):
                if stop.is_set():
                    await self._release(payload, started=False)
                    continue
                state = _Running(job_id=str(payload.get("job_id")), attempt=int(payload.get("attempt", 0)))
                if (state.job_id, state.attempt) in self._running:  # never run one attempt twice
                    log.warning("job_claimed_again", job_id=state.job_id, attempt=state.attempt)
                    continue
                self._running[(state.job_id, state.attempt)] = state
                task = group.create_task(self._run_job(payload, state), name=f"job-{state.job_id}")
                jobs.add(task)
                task.add_done_callback(jobs.discard)

    async def _release(self, payload: dict[str, Any], *, started: bool) -> None:
        job_id, attempt = str(payload.get("job_id")), int(payload.get("attempt", 0))
        body = {"instance_id": self.instance_id, "attempt": attempt, "started": started}
        try:
            await self._protocol.call(
                self._protocol.job_path(job_id, "release"), body, give_up=self._force.is_set
            )
            log.info("job_released", job_id=job_id, attempt=attempt, started=started)
        except (CallFailed, GaveUp) as exc:
            log.warning("job_release_failed", job_id=job_id, attempt=attempt, error=str(exc))

    # --- one job ----------------------------------------------------------------------------------------
    async def _run_job(self, payload: dict[str, Any], state: _Running) -> None:
        try:
            await self._execute(payload, state)
        finally:
            self._running.pop((state.job_id, state.attempt), None)
            self._slot_freed.set()

    async def _execute(self, payload: dict[str, Any], state: _Running) -> None:
        job_id, attempt = state.job_id, state.attempt
        structlog.contextvars.bind_contextvars(job_id=job_id, agent=self.name)
        secrets = payload.get("secrets") if isinstance(payload.get("secrets"), dict) else {}
        masker = Masker(secrets or {})
        try:
            job = Job.model_validate(payload)
        except ValidationError as exc:
            summary = f"invalid job payload: {len(exc.errors())} error(s) in " + ", ".join(
                ".".join(str(p) for p in e["loc"]) for e in exc.errors()[:5]
            )
            await self._report(job_id, attempt, _failed(summary), last_seq=0)
            return
        # With the server's consent, the start travels with the first events batch (at most 0.2 s after the
        # tool started) or with the result of a job that ended sooner; else it is a call of its own first.
        folded = self._features >= BATCHED_FEATURES
        if not folded and not await self._send_start(job_id, attempt, state):
            return
        state.phase = "running"
        stream = EventStream(
            self._protocol,
            instance_id=self.instance_id,
            job_id=job_id,
            attempt=attempt,
            masker=masker,
            on_cancel=lambda reason: self._cancel(job_id, attempt, reason),
            give_up=lambda: state.abandoned or self._force.is_set(),  # a forced stop stops resending too
            start=folded,
        )
        stream.start()
        started_at = rfc3339(self._clock.now())

        def emit(line: LogLine) -> None:
            stream.push(line)

        state.run = asyncio.ensure_future(self._executor.run(job, emit=emit, cancel=state.cancel))
        grace = asyncio.ensure_future(self._stop_after_grace(state))  # awaited below, whatever happens
        try:
            result = await state.run
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the agent itself is being cancelled
            result = _failed("stopped: the fencing grace ran out", cancelled=True)  # the run alone was
        except Exception as exc:  # an executor bug must not take the agent down
            log.error("job_executor_failed", job_id=job_id, error=type(exc).__name__)
            result = _failed(f"executor {self._executor.name} failed: {type(exc).__name__}")
        finally:
            grace.cancel()
            await asyncio.wait([grace])  # never raises for the grace task; our own cancellation propagates
        if result.lost:
            state.lost = True
            await stream.abort()
            if stream.start_pending:  # it ran: on the server it counts as started, as without folding
                await self._send_start(job_id, attempt, state)
            log.info("job_lost_on_purpose", job_id=job_id, attempt=attempt)
            return
        if state.abandoned or stream.lost:
            await stream.abort()
            log.info("job_dropped", job_id=job_id, attempt=attempt)
            return
        if state.give_back:
            await stream.close()
            await self._release({"job_id": job_id, "attempt": attempt}, started=True)
            return
        leftover = await stream.close(fold=folded)
        if stream.lost:
            log.info("job_dropped", job_id=job_id, attempt=attempt)
            return
        if result.cancelled and state.cancel_reason and not result.error_message:
            result = _failed(state.cancel_reason, cancelled=True)
        await self._report(
            job_id,
            attempt,
            result,
            last_seq=stream.last_seq,
            started_at=started_at,
            start=leftover.start,
            events=leftover.events,
        )

    async def _stop_after_grace(self, state: _Running) -> None:
        """Once the job is fenced, give it ``FENCE_GRACE_S`` from the fencing moment, then cancel its run."""
        await state.fenced.wait()
        await self._clock.sleep(state.fenced_at + FENCE_GRACE_S - self._clock.monotonic())
        _stop_run(state)

    async def _send_start(self, job_id: str, attempt: int, state: _Running) -> bool:
        """The start call on its own; False when the server refused it (the job is not ours)."""
        try:
            await self._protocol.call(
                self._protocol.job_path(job_id, "start"),
                {"instance_id": self.instance_id, "attempt": attempt},
                give_up=lambda: state.give_back,
            )
        except (CallFailed, GaveUp) as exc:
            log.warning("job_start_refused", job_id=job_id, attempt=attempt, error=str(exc))
            return False
        return True

    async def _report(
        self,
        job_id: str,
        attempt: int,
        result: Result,
        *,
        last_seq: int,
        started_at: str | None = None,
        start: bool = False,
        events: list[dict[str, Any]] | None = None,
    ) -> None:
        body = {
            "instance_id": self.instance_id,
            "attempt": attempt,
            "status": result.status,
            "exit_code": result.exit_code,
            "outputs": result.outputs,
            "error_message": result.error_message if result.status == "FAILED" else "",
            "started_at": started_at,
            "finished_at": rfc3339(self._clock.now()),
            "duration_s": result.duration_s,
            "timed_out": result.timed_out,
            "cancelled": result.cancelled,
            "last_seq": last_seq,
        }
        if result.hosts is not None:
            body["outputs"] = {**result.outputs, "stackl_hosts": result.hosts}
        if start:
            body["start"] = True
        if events:
            body["events"] = events
        path = self._results_dir / f"{job_id}-{attempt}.json"
        # Written (and synced) off the event loop: a disk flush must not stall heartbeats and other jobs.
        await asyncio.to_thread(_write_private, path, {"name": self.name, "job_id": job_id, "body": body})
        await self._send_result(path, job_id, body, give_up=self._force.is_set, batch=True)

    async def _send_result(
        self, path: Path, job_id: str, body: dict[str, Any], *, give_up: Any, batch: bool = False
    ) -> None:
        try:
            if batch and RESULT_BATCH in self._features:
                answer = await self._results.send(job_id, body)
            else:
                _, answer = await self._protocol.call(
                    self._protocol.job_path(job_id, "result"), body, give_up=give_up
                )
        except CallFailed as exc:
            log.warning(
                "job_result_refused",
                job_id=job_id,
                attempt=body.get("attempt"),
                status=exc.status,
                reason=exc.reason,
            )
            if exc.status in (404, 409, 422):
                _forget(path)
            return
        except GaveUp:
            return
        _forget(path)  # an unlink flushes nothing: cheaper here than a hop to a thread and back
        log.info(
            "job_finished",
            job_id=job_id,
            attempt=body.get("attempt"),
            status=body.get("status"),
            duration_s=body.get("duration_s"),
            accepted=answer.get("accepted") if isinstance(answer, dict) else None,
        )

    async def _resend_results(self, stop: asyncio.Event) -> None:
        """Re-send results a previous run could not deliver (the dead instance's lease may still hold)."""
        for path, saved in _saved_results(self._results_dir):
            if saved.get("name") != self.name:
                continue
            log.info("job_result_resent", job_id=saved.get("job_id"))
            await self._send_result(
                path, str(saved.get("job_id")), saved.get("body", {}), give_up=stop.is_set
            )


class ResultBatcher:
    """Sends results through ``POST /agents/{name}/results`` (feature ``result_batch``), one call at a time.

    A result posted while no call is out leaves at once, alone; results that finish while a call is out wait
    for it and leave together in the next one. Under load a job then costs a fraction of a call instead of
    one of its own, on the agent and on the server; without load nothing waits. Each result gets what its own
    call would have answered (the answer body, or ``CallFailed`` with its status and reason). A batch the
    server refuses as a whole (an old server, a body too large) is sent again as single calls.
    """

    def __init__(self, protocol: AgentProtocol, *, give_up: Callable[[], bool]) -> None:
        self._protocol = protocol
        self._give_up = give_up
        self._waiting: list[tuple[str, dict[str, Any], asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def send(self, job_id: str, body: dict[str, Any]) -> Any:
        """The server's answer to this result.

        Raises:
            CallFailed: the server refused this result (its status and reason).
            GaveUp: the agent stopped retrying (forced stop).
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((job_id, body, future))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_all(), name="results")
        return await future

    async def _send_all(self) -> None:
        while self._waiting:
            batch = self._take()
            try:
                await self._send(batch)
            except BaseException as exc:  # never leave a caller waiting
                for _, _, future in batch:
                    _settle(future, error=exc if isinstance(exc, Exception) else GaveUp(str(exc)))
                if not isinstance(exc, Exception):
                    raise

    def _take(self) -> list[tuple[str, dict[str, Any], asyncio.Future[Any]]]:
        batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]] = []
        size = 0
        while self._waiting and len(batch) < RESULTS_PER_CALL:
            entry = self._waiting[0]
            entry_size = len(json.dumps(entry[1], default=str))
            if batch and size + entry_size > RESULTS_BYTES:
                break
            batch.append(self._waiting.pop(0))
            size += entry_size
        return batch

    async def _send(self, batch: list[tuple[str, dict[str, Any], asyncio.Future[Any]]]) -> None:
        body = {"results": [entry | {"job_id": job_id} for job_id, entry, _ in batch]}
        path = f"/agents/{self._protocol.name}/results"
        try:
            _, answer = await self._protocol.call(path, body, give_up=self._give_up)
        except CallFailed:  # refused as a whole: every result on its own, as without the feature
            await asyncio.gather(*(self._single(job_id, entry, future) for job_id, entry, future in batch))
            return
        except GaveUp as exc:
            for _, _, future in batch:
                _settle(future, error=exc)
            return
        answers = answer.get("results") if isinstance(answer, dict) else None
        if not isinstance(answers, list) or len(answers) != len(batch):
            await asyncio.gather(*(self._single(job_id, entry, future) for job_id, entry, future in batch))
            return
        for (_, _, future), item in zip(batch, answers, strict=True):
            item = item if isinstance(item, dict) else {}
            status = int(item.get("status", 500))
            if status < 300:
                _settle(future, answer=item)
            else:
                _settle(future, error=CallFailed(status, item))

    async def _single(self, job_id: str, body: dict[str, Any], future: asyncio.Future[Any]) -> None:
        try:
            _, answer = await self._protocol.call(
                self._protocol.job_path(job_id, "result"), body, give_up=self._give_up
            )
        except (CallFailed, GaveUp) as exc:
            _settle(future, error=exc)
        else:
            _settle(future, answer=answer)


def _settle(future: "asyncio.Future[Any]", *, answer: Any = None, error: Exception | None = None) -> None:
    """Hand a result's answer to its caller, unless the caller is gone (its job task was cancelled)."""
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(answer)


def _attempt(entry: dict[str, Any]) -> int:
    """The attempt a cancel or abandon entry names (0 when it names none: it then matches no job)."""
    try:
        return int(entry.get("attempt", 0))
    except (TypeError, ValueError):
        return 0


def _stop_run(state: _Running) -> None:
    """A fenced job's grace is over: cancel its run (the executor then kills its process tree at once)."""
    if state.run is not None and not state.run.done():
        log.warning("job_fence_grace_over", job_id=state.job_id, attempt=state.attempt)
        state.run.cancel()


def _saved_results(directory: Path) -> list[tuple[Path, dict[str, Any]]]:
    """The results a previous run left unsent; unreadable files are dropped."""
    found = []
    for path in sorted(directory.glob("*.json")):
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError):
            path.unlink(missing_ok=True)
            continue
        if isinstance(saved, dict):
            found.append((path, saved))
    return found


def _forget(path: Path) -> None:
    """Drop a saved result the server answered (accepted, duplicate, or refused for good)."""
    path.unlink(missing_ok=True)


def _failed(summary: str, *, cancelled: bool = False) -> Result:
    return Result(status="FAILED", error_message=summary, cancelled=cancelled)


def _write_private(path: Path, content: dict[str, Any]) -> None:
    """Write a file only the agent's user can read (results may hold outputs)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(content, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


async def _first(*waits: Any) -> None:
    """Wait until the first of several awaitables finishes; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when="FIRST_COMPLETED")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
