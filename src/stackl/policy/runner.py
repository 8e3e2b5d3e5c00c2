"""A bounded pool of policy threads with a per-call time limit, shared by the engine adapters.

Neither embedded engine can be interrupted once a call has started. So every call runs on one of a fixed set of
daemon threads and the caller waits at most ``timeout_s``; a call that overruns is abandoned (it keeps its thread
until it ends) and, once every thread is held by such calls, the runner reports the engine unavailable instead of
queueing forever. The number of policy threads is therefore the bound on CPU a runaway policy can take.
"""

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from stackl.errors import PolicyEngineUnavailable, PolicyError

T = TypeVar("T")


class _DaemonPool:
    """A fixed set of daemon threads running submitted calls.

    Not ``ThreadPoolExecutor``: its threads are joined at interpreter exit, so a policy call that overran its
    time limit would hold a stopping server hostage until it ended.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], T]) -> "Future[T]":
        future: Future[T] = Future()
        self._queue.put((fn, future))
        return future

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(None)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fn, future = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn()
            except BaseException as exc:  # handed to the waiting caller, which re-raises it
                future.set_exception(exc)
            else:
                future.set_result(result)


class BoundedRunner:
    """Runs calls on ``workers`` policy threads, each call limited to its ``timeout_s``."""

    def __init__(self, workers: int, name: str) -> None:
        self.workers = workers
        self._pool = _DaemonPool(workers, name)
        self._lock = threading.Lock()
        self._abandoned = 0
        self._closed = False

    def run(self, fn: Callable[[], T], *, name: str, timeout_s: float) -> T:
        """``fn()`` on a policy thread; ``PolicyError`` naming ``name`` when it overruns ``timeout_s``."""
        with self._lock:
            if self._closed:
                raise PolicyEngineUnavailable("policy engine unavailable: the engine is closed")
            if self._abandoned >= self.workers:
                raise PolicyEngineUnavailable(
                    f"policy engine unavailable: all {self.workers} policy threads are busy with calls "
                    "that timed out"
                )
            future = self._pool.submit(fn)
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            if not future.cancel():  # started: it keeps its thread until it ends
                with self._lock:
                    self._abandoned += 1
                future.add_done_callback(self._release)
            raise PolicyError(f"policy {name} did not finish within {timeout_s:g} s", policy=name) from None

    def _release(self, _future: Future[Any]) -> None:
        with self._lock:
            self._abandoned -= 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._pool.shutdown()
