"""ProcessPolicyEngine: users' ad-hoc policy evaluations in child processes that are killed when they overrun.

Neither in-process engine can be interrupted: a call over its time limit keeps its thread, its CPU and whatever
memory it grows until it ends, and memory the Go runtime took is not given back. A user-supplied policy
(``POST /policies/evaluate``: any viewer, any Rego) therefore runs in a separate process that the server can
stop:

- a small pool of long-lived worker processes (:mod:`stackl.policy.isolated_worker`), each started on first
  need and reused, so a call costs a pipe round trip and not an interpreter start;
- memory is bounded twice: an OPA worker caps its own data segment (``RLIMIT_DATA`` at ``memory_mb``: the Go
  runtime aborts at the first allocation beyond it), and while a call runs the parent reads the worker's
  resident memory every ``WATCH_INTERVAL_S`` and kills it past ``memory_mb`` (the only bound for regopy, whose
  allocator reserves 256 GB of address space up front, so no rlimit can apply); either way the caller gets a
  422 saying the evaluation ran out of memory;
- the caller waits at most ``timeout_s``; then the worker is killed (SIGKILL: the CPU and the memory are given
  back at once) and a fresh one is started at the next call;
- when every worker is busy, a call fails at once with ``PolicyEngineUnavailable`` (503) rather than queueing:
  an evaluation holds a caller's thread for at most ``timeout_s``, and at most ``processes`` of them are held.

Answers are the in-process engine's own (the worker runs it), so the contract of :mod:`stackl.policy.base`
holds unchanged. Placement keeps the in-process engine: its policies are admins' templates, and it evaluates
them thousands of times per placement.
"""

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import IO, Any

import structlog

from stackl.errors import PolicyEngineUnavailable, PolicyError
from stackl.policy.base import DEFAULT_TIMEOUT_S, Policy, PolicyDecision, PolicyEngine, PolicyInfo

START_TIMEOUT_S = 30.0  # a worker that has not said ready by then is killed
WATCH_INTERVAL_S = 0.05  # how often the memory watchdog reads a busy worker's resident memory
_CHUNK = 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TAIL_BYTES = 64 * 1024
_WORKER_ENV = ("PATH", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH")  # all a worker inherits
# What the engines print when an allocation fails: the Go runtime, the C++ runtime (rego-cpp), Python.
_OUT_OF_MEMORY = ("cannot allocate memory", "out of memory", "bad_alloc", "MemoryError")
log = structlog.get_logger(__name__)


class _WorkerLost(Exception):
    """The worker ended (or stopped answering) during a call."""


class _OverMemory(Exception):
    """The worker's resident memory passed the limit (the watchdog's verdict)."""


def rss_bytes(pid: int) -> int:
    """Resident memory of a process (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", encoding="ascii") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


@dataclass(slots=True, eq=False)  # identity: workers are kept in a set
class _Worker:
    """One child process and the bytes read from it past the last complete reply."""

    process: subprocess.Popen[bytes]
    stderr: IO[bytes]  # an unlinked temporary file: never fills up like a pipe would, gone once closed
    pending: bytes = b""

    @property
    def pid(self) -> int:
        return self.process.pid

    def send(self, request: Mapping[str, Any]) -> None:
        assert self.process.stdin is not None  # noqa: S101 - started with a pipe
        try:
            self.process.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            self.process.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise _WorkerLost from exc

    def receive(self, deadline: float, *, max_rss: int = 0) -> dict[str, Any]:
        """The next reply line.

        Raises:
            TimeoutError: past ``deadline`` (monotonic).
            _OverMemory: the resident memory passed ``max_rss`` bytes (0: not watched).
            _WorkerLost: the process ended.
        """
        assert self.process.stdout is not None  # noqa: S101 - started with a pipe
        fd = self.process.stdout.fileno()
        while b"\n" not in self.pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            wait_s = min(remaining, WATCH_INTERVAL_S) if max_rss else remaining
            readable, _, _ = select.select([fd], [], [], wait_s)
            if max_rss and rss_bytes(self.pid) > max_rss:
                raise _OverMemory
            if not readable:
                continue
            chunk = os.read(fd, _CHUNK)
            if not chunk:
                raise _WorkerLost
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\n")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def kill(self) -> int:
        """Kill the process (if it still runs) and reap it; its exit status."""
        if self.process.poll() is None:
            self.process.kill()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
        status = self.process.wait()
        self.stderr.close()
        return status

    def stderr_tail(self) -> str:
        """The end of what the process wrote to stderr (an engine's crash report)."""
        self.stderr.seek(0, os.SEEK_END)
        self.stderr.seek(max(0, self.stderr.tell() - _TAIL_BYTES))
        return self.stderr.read().decode("utf-8", errors="replace")


class ProcessPolicyEngine(PolicyEngine):
    """Evaluates policies in killable child processes; see the module docstring.

    Args:
        engine: the in-process engine the workers run (``opa`` or ``regopy``).
        processes: worker processes at most (and so concurrent evaluations).
        memory_mb: each worker's data-segment limit, the engine's own baseline included.
    """

    def __init__(self, *, engine: str = "opa", processes: int = 2, memory_mb: int = 512) -> None:
        self.engine, self.processes, self.memory_mb = engine, processes, memory_mb
        self._idle: list[_Worker] = []
        self._busy = 0
        self._running: set[_Worker] = set()  # workers a call is talking to right now
        self._closed = False
        self._lock = threading.Lock()
        self.started = 0  # worker processes started so far
        self.killed = 0  # workers killed or lost during a call

    # --- port ------------------------------------------------------------------------------------------
    def check(self, name: str, source: str) -> PolicyInfo:
        ok = self._call({"op": "check", "name": name, "source": source}, name, DEFAULT_TIMEOUT_S)
        return PolicyInfo(package=str(ok["package"]), rules=frozenset(ok["rules"]))

    def evaluate(
        self,
        policy: Policy,
        rule: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        request = {"op": "evaluate", "rule": rule, **_common(policy, input_doc, data)}
        return _decision(self._call(request, policy.name, timeout_s))

    def query(
        self,
        policy: Policy,
        query: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        request = {"op": "query", "query": query, **_common(policy, input_doc, data)}
        return _decision(self._call(request, policy.name, timeout_s))

    def close(self) -> None:
        """Stop every worker, the busy ones too: a stopping server does not wait for a runaway policy."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            running = list(self._running)
        for worker in idle:
            worker.kill()
        for worker in running:  # its caller sees the end of the pipe, reaps it and answers unavailable
            worker.process.kill()

    @property
    def busy(self) -> int:
        """Calls in progress (each holds a worker)."""
        with self._lock:
            return self._busy

    @property
    def pids(self) -> list[int]:
        """The idle workers' process ids (for tests and the bench)."""
        with self._lock:
            return [w.pid for w in self._idle]

    # --- workers ---------------------------------------------------------------------------------------
    def _acquire(self) -> _Worker | None:
        """An idle worker, or None when a new one may be started; unavailable when all are busy."""
        with self._lock:
            if self._closed:
                raise PolicyEngineUnavailable("policy engine unavailable: the engine is closed")
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is not None:  # died while idle (the OOM killer, say): forget it
                    worker.kill()
                    continue
                self._busy += 1
                return worker
            if self._busy >= self.processes:
                raise PolicyEngineUnavailable(
                    f"policy engine unavailable: all {self.processes} policy evaluation processes are busy"
                )
            self._busy += 1
            return None

    def _release(self, worker: _Worker | None) -> None:
        with self._lock:
            self._busy -= 1
            if worker is not None and not self._closed:
                self._idle.append(worker)
                return
        if worker is not None:
            worker.kill()

    def _start(self) -> _Worker:
        args = [sys.executable, "-m", "stackl.policy.isolated_worker", self.engine, str(self.memory_mb)]
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by _Worker.kill
        process = subprocess.Popen(  # noqa: S603 - our own interpreter and module, no shell
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, env=_worker_env()
        )
        worker = _Worker(process, stderr)
        try:
            ready = worker.receive(time.monotonic() + START_TIMEOUT_S)
        except (TimeoutError, _WorkerLost):
            status = worker.kill()
            raise PolicyEngineUnavailable(
                f"policy engine unavailable: an evaluation process did not start (exit status {status})"
            ) from None
        with self._lock:
            self.started += 1
        log.debug("policy_process_started", pid=ready.get("ready"), engine=self.engine)
        return worker

    def _call(self, request: dict[str, Any], name: str, timeout_s: float) -> dict[str, Any]:
        worker = self._acquire()
        kept: _Worker | None = None
        try:
            if worker is None:
                worker = self._start()
            with self._lock:
                self._running.add(worker)
                closed = self._closed
            if closed:  # closed while this worker was starting: close() did not see it
                raise _WorkerLost
            request["timeout_s"] = timeout_s + 1.0  # the worker's own limit never fires before ours
            worker.send(request)
            reply = worker.receive(time.monotonic() + timeout_s, max_rss=self.memory_mb * 1024 * 1024)
            if reply.get("error") == "memory":  # the worker said so and ends: reap it
                self._lost(worker, name, "memory")
            else:
                kept = worker
        except TimeoutError:
            self._lost(worker, name, "timeout")
            raise PolicyError(f"policy {name} did not finish within {timeout_s:g} s", policy=name) from None
        except _OverMemory:
            self._lost(worker, name, "memory")
            raise PolicyError(self._out_of_memory(name), policy=name) from None
        except _WorkerLost:
            assert worker is not None  # noqa: S101 - lost while talking to it
            tail = worker.stderr_tail()
            status = self._lost(worker, name, "lost")
            if self._closed:
                raise PolicyEngineUnavailable("policy engine unavailable: the engine is closed") from None
            if status == -signal.SIGKILL or any(mark in tail for mark in _OUT_OF_MEMORY):  # or the OOM killer
                raise PolicyError(self._out_of_memory(name), policy=name) from None
            message = f"policy {name} was stopped: its evaluation process ended (exit status {status})"
            raise PolicyError(message, policy=name) from None
        finally:
            if worker is not None:
                with self._lock:
                    self._running.discard(worker)
            self._release(kept)
        return _unwrap(reply, name, self.memory_mb)

    def _lost(self, worker: _Worker | None, name: str, why: str) -> int:
        status = worker.kill() if worker is not None else 0
        with self._lock:
            self.killed += 1
        log.warning("policy_process_stopped", policy=name, reason=why, exit_status=status)
        return status

    def _out_of_memory(self, name: str) -> str:
        return f"policy {name} was stopped: it ran out of memory (limit {self.memory_mb} MiB)"


def _worker_env() -> dict[str, str]:
    """The environment of a worker: none of the server's settings, so none of its secrets (database URL, key).

    Users' Rego cannot read the environment (``opa.runtime`` is refused), and should a way appear, there is
    nothing to find.
    """
    return {name: os.environ[name] for name in _WORKER_ENV if name in os.environ}


def _common(policy: Policy, input_doc: Mapping[str, Any], data: Mapping[str, Any] | None) -> dict[str, Any]:
    return {
        "policy": {
            "name": policy.name,
            "revision": policy.revision,
            "source": policy.source,
            "outputs": list(policy.outputs),
        },
        "input": dict(input_doc),
        "data": dict(data) if data is not None else None,
    }


def _unwrap(reply: Mapping[str, Any], name: str, memory_mb: int) -> dict[str, Any]:
    """The ``ok`` member of a reply, or the error it stands for."""
    if "ok" in reply:
        ok: dict[str, Any] = reply["ok"]
        return ok
    kind, message = reply.get("error"), str(reply.get("message", ""))
    if kind == "memory":
        raise PolicyError(
            f"policy {name} was stopped: it ran out of memory (limit {memory_mb} MiB)", policy=name
        )
    if kind == "unavailable":
        raise PolicyEngineUnavailable(message)
    raise PolicyError(message, policy=name, errors=list(reply.get("errors") or []))


def _decision(ok: Mapping[str, Any]) -> PolicyDecision:
    return PolicyDecision(defined=bool(ok["defined"]), value=ok["value"], duration_ms=float(ok["ms"]))
