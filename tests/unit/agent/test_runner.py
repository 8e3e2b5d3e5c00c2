"""AgentRunner against a fake server that cannot reach its database for a while (issue 12, items 3 and 7).

The fake server (an ``httpx.MockTransport``) answers 503 to the calls a test says, as a real one does while
its database restarts; the executor is a fake whose jobs run until the test opens their gate. The runner and
its protocol run on a manual clock (``tests/clocks.py``): heartbeats, retries, the 45 s self-fencing rule and
its 10 s grace play out with ``await clock.elapse(s)``, so nothing here sleeps to synchronise; the tests wait
on what the fake server or the executor saw, or on the loop being idle.
"""

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.clocks import ManualClock

from stackl.agent.executors.base import Emit, Executor, Job, Result
from stackl.agent.protocol import AgentProtocol
from stackl.agent.runner import FENCE_GRACE_S, AgentRunner

NAME = "a1"
BATCHED = ["start_with_events", "result_with_events", "result_batch"]


def payload(job_id: str, attempt: int = 1) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "attempt": attempt,
        "action": "create",
        "stack_instance": "shop",
        "service": "web",
        "functional_requirement": "nginx",
        "tool": "shell",
    }


class FakeServer:
    """The agent protocol's server side, as far as these tests need it; ``refuse`` counts 503s per call."""

    def __init__(self, *, jobs: list[list[dict[str, Any]]], features: list[str]) -> None:
        self.claim_answers = list(jobs)  # one list of payloads per claim; then claims hang until closed
        self.features = features
        self.refuse: Counter[str] = Counter()  # call → how many more 503s it gets
        self.down = False  # every job call and heartbeat gets a 503
        self.calls: list[tuple[str, dict[str, Any], int]] = []  # answered calls, with their status
        self.received: Counter[str] = Counter()  # calls received, answered or not
        self.accepted: Counter[tuple[str, int]] = Counter()
        self.released: list[tuple[str, int, bool]] = []
        self.seen = asyncio.Condition()
        self.closed = asyncio.Event()
        self.heartbeat_interval_s = 3600.0  # the tests call heartbeat_once() themselves unless they lower it
        self.clock = ManualClock()  # the agent's: claims are recorded at its time
        self.claimed_at: list[float] = []

    def count(self, call: str, status: int | None = None) -> int:
        return sum(1 for c, _, s in self.calls if c == call and (status is None or s == status))

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.seen:
            await self.seen.wait_for(predicate)

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content) if request.content else {}
        parts = request.url.path.strip("/").split("/")
        call = parts[-1]
        async with self.seen:
            self.received[call] += 1
            self.seen.notify_all()
        status, answer = await self._answer(call, parts, body)
        async with self.seen:
            self.calls.append((call, body, status))
            self.seen.notify_all()
        if status == 204:
            return httpx.Response(204)
        return httpx.Response(status, json=answer)

    async def _answer(self, call: str, parts: list[str], body: dict[str, Any]) -> tuple[int, Any]:
        if call == "register":
            return 200, {
                "heartbeat_interval_s": self.heartbeat_interval_s,
                "fence_after_s": 45,
                "features": self.features,
            }
        if call == "claim":
            self.claimed_at.append(self.clock.elapsed)
            if self.refuse[call] > 0:
                self.refuse[call] -= 1
                return 503, {"code": "unavailable", "detail": "the database cannot be reached"}
            if self.claim_answers:
                return 200, {"jobs": self.claim_answers.pop(0)}
            await self.closed.wait()
            return 204, None
        if call == "deregister":
            return 204, None
        if self.down or self.refuse[call] > 0:
            self.refuse[call] -= 1
            return 503, {"code": "unavailable", "detail": "the database cannot be reached"}
        if call == "heartbeat":
            return 200, {"cancel": [], "abandon": []}
        if call == "events":
            return 200, {"stored_seq": 0, "stop_streaming": False, "cancel": None}
        if call == "release":
            self.released.append((parts[-2], body["attempt"], body["started"]))
            return 200, {}
        if call == "result":
            return 200, self._result(parts[-2], body)
        if call == "results":
            results = [
                {"job_id": r["job_id"], "status": 200, **self._result(r["job_id"], r)}
                for r in body["results"]
            ]
            return 200, {"results": results}
        return 200, {}  # start

    def _result(self, job_id: str, body: dict[str, Any]) -> dict[str, Any]:
        key = (job_id, int(body["attempt"]))
        self.accepted[key] += 1
        return {"accepted": True} if self.accepted[key] == 1 else {"accepted": False, "reason": "duplicate"}


class GatedExecutor(Executor):
    """Each job runs until its gate opens (READY) or it is cancelled (FAILED, cancelled)."""

    name = "gated"

    def __init__(self) -> None:
        self.gates: dict[str, asyncio.Event] = {}
        self.runs: list[str] = []
        self.cancelled: set[str] = set()
        self.changed = asyncio.Condition()

    def tools(self) -> list[str]:
        return ["shell"]

    def gate(self, job_id: str) -> asyncio.Event:
        return self.gates.setdefault(job_id, asyncio.Event())

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        async with self.changed:
            await self.changed.wait_for(predicate)

    async def run(self, job: Job, *, emit: Emit, cancel: asyncio.Event) -> Result:
        async with self.changed:
            self.runs.append(job.job_id)
            self.changed.notify_all()
        opened = asyncio.ensure_future(self.gate(job.job_id).wait())
        stopped = asyncio.ensure_future(cancel.wait())
        await asyncio.wait([opened, stopped], return_when="FIRST_COMPLETED")
        opened.cancel()
        stopped.cancel()
        if cancel.is_set():
            async with self.changed:
                self.cancelled.add(job.job_id)
                self.changed.notify_all()
            return Result("FAILED", error_message="cancelled", cancelled=True)
        return Result("READY", outputs={"done": job.job_id})


class StubbornExecutor(GatedExecutor):
    """Each job runs until its gate opens, whatever its cancel event says; ``killed`` when its run is cancelled."""

    def __init__(self) -> None:
        super().__init__()
        self.killed: list[str] = []

    async def run(self, job: Job, *, emit: Emit, cancel: asyncio.Event) -> Result:
        async with self.changed:
            self.runs.append(job.job_id)
            self.changed.notify_all()
        try:
            await self.gate(job.job_id).wait()
        except asyncio.CancelledError:
            self.killed.append(job.job_id)
            raise
        return Result("READY", outputs={"done": job.job_id})


@asynccontextmanager
async def running_agent(
    server: FakeServer, executor: GatedExecutor, data_dir: Path, clock: ManualClock, *, pause_s: float = 0.0
) -> AsyncIterator[AgentRunner]:
    """A runner on ``clock``; its calls are retried after ``pause_s`` (zero: at once) of that clock."""
    transport = httpx.MockTransport(server.handle)
    async with AgentProtocol(
        "http://stackl.test", NAME, transport=transport, pause_s=lambda _: pause_s, clock=clock
    ) as protocol:
        runner = AgentRunner(
            name=NAME, protocol=protocol, executor=executor, data_dir=data_dir, max_jobs=4, clock=clock
        )
        stop = asyncio.Event()
        serving = asyncio.create_task(runner.run(stop))
        try:
            yield runner
        finally:
            stop.set()
            server.closed.set()
            await serving


@pytest.mark.parametrize("features", [[], BATCHED], ids=["single-calls", "batched"])
async def test_503s_on_heartbeat_and_result_keep_the_job_running_and_deliver_its_result_once(
    features: list[str], tmp_path: Path
) -> None:
    server = FakeServer(jobs=[[payload("J1")]], features=features)
    executor = GatedExecutor()
    async with running_agent(server, executor, tmp_path, ManualClock()) as runner:
        await executor.wait_for(lambda: executor.runs == ["J1"])
        server.refuse.update({"heartbeat": 3, "result": 3, "results": 3})
        await runner.heartbeat_once()  # three 503s, retried until the fourth try is answered
        assert [s for c, _, s in server.calls if c == "heartbeat"] == [503, 503, 503, 200]
        last = [b for c, b, _ in server.calls if c == "heartbeat"][-1]
        assert last["running"] == [{"job_id": "J1", "attempt": 1, "phase": "running"}]
        executor.gate("J1").set()  # the tool ends READY while the server still answers 503
        await server.wait_for(lambda: sum(server.accepted.values()) == 1)
    assert executor.runs == ["J1"]  # ran once, and was never stopped
    assert executor.cancelled == set()
    assert server.accepted == Counter({("J1", 1): 1})
    result_calls = server.count("results" if features else "result")
    assert result_calls == 4  # three 503s, then delivered
    assert server.released == []
    assert list((tmp_path / "results").iterdir()) == []  # delivered: the saved copy is gone


async def test_a_cut_off_agent_fences_its_running_job_but_delivers_a_finished_ones_result_late(
    tmp_path: Path,
) -> None:
    server = FakeServer(jobs=[[payload("DONE"), payload("RUNS")]], features=[])
    executor = GatedExecutor()
    clock = ManualClock()
    async with running_agent(server, executor, tmp_path, clock, pause_s=1.0):
        await executor.wait_for(lambda: sorted(executor.runs) == ["DONE", "RUNS"])
        server.down = True
        executor.gate("DONE").set()  # this job's tool ends while the server answers 503
        await server.wait_for(lambda: server.count("result", 503) >= 1)
        await clock.elapse(44.5)  # its result is retried every second meanwhile
        assert executor.cancelled == set()
        await clock.elapse(
            0.5
        )  # no heartbeat acknowledged for 45 s: the fencing rule applies (its 1 s timer)
        assert executor.cancelled == {"RUNS"}
        assert server.count("release", 503) == 1
        server.down = False  # the database is back
        await clock.elapse(1)
        await server.wait_for(lambda: bool(server.accepted) and bool(server.released))
    assert executor.cancelled == {"RUNS"}  # the finished job was not fenced: nothing of it ran any more
    assert server.accepted == Counter({("DONE", 1): 1})  # delivered late, once
    assert server.released == [("RUNS", 1, True)]  # the fenced one is given back as started
    assert list((tmp_path / "results").iterdir()) == []


async def test_an_attempt_the_server_hands_out_again_is_not_run_twice(tmp_path: Path) -> None:
    server = FakeServer(jobs=[[payload("J1")], [payload("J1")]], features=BATCHED)
    executor = GatedExecutor()
    async with running_agent(server, executor, tmp_path, ManualClock()):
        await server.wait_for(lambda: server.received["claim"] >= 3)  # both answers taken; the third waits
        executor.gate("J1").set()
        await server.wait_for(lambda: bool(server.accepted))
    assert executor.runs == ["J1"]
    assert server.accepted == Counter({("J1", 1): 1})


async def test_the_agent_self_fences_45_s_after_its_last_acknowledged_heartbeat(tmp_path: Path) -> None:
    server = FakeServer(jobs=[[payload("J1")]], features=[])
    server.heartbeat_interval_s = 10
    executor = GatedExecutor()
    clock = ManualClock()
    async with running_agent(server, executor, tmp_path, clock, pause_s=1.0):
        await executor.wait_for(lambda: executor.runs == ["J1"])
        await clock.elapse(20)  # heartbeats at 10 s and 20 s are acknowledged
        assert server.count("heartbeat", 200) == 2
        server.down = True  # from now on every heartbeat try gets a 503 (retried each second)
        await clock.elapse(44.9)
        assert executor.cancelled == set()  # 64.9 s: 44.9 s since the heartbeat sent at 20 s was answered
        assert server.count("heartbeat", 503) > 10
        await clock.elapse(0.1)  # 65 s: 45 s without an acknowledged heartbeat
        assert executor.cancelled == {"J1"}
        server.down = False
        await clock.elapse(1)
        await server.wait_for(lambda: bool(server.released))
    assert server.released == [("J1", 1, True)]  # given back as started, never reported
    assert server.accepted == Counter()


async def test_a_fenced_job_that_does_not_stop_is_killed_after_its_grace(tmp_path: Path) -> None:
    server = FakeServer(jobs=[[payload("J1")]], features=[])
    executor = StubbornExecutor()
    clock = ManualClock()
    async with running_agent(server, executor, tmp_path, clock, pause_s=1.0):
        await executor.wait_for(lambda: executor.runs == ["J1"])
        server.down = True
        await clock.elapse(45)  # fenced: its cancel event is set, which this executor ignores
        assert executor.killed == []
        await clock.elapse(FENCE_GRACE_S - 0.1)
        assert executor.killed == []
        await clock.elapse(0.1)  # the grace is over: the run is cancelled (the executor kills what is left)
        assert executor.killed == ["J1"]
        server.down = False
        await clock.elapse(1)
        await server.wait_for(lambda: bool(server.released))
    assert server.released == [("J1", 1, True)]
    assert server.accepted == Counter()


async def test_a_failed_claim_is_retried_after_a_growing_pause(tmp_path: Path) -> None:
    server = FakeServer(jobs=[], features=[])
    server.refuse["claim"] = 3
    clock = server.clock
    async with running_agent(server, GatedExecutor(), tmp_path, clock):
        await clock.elapse(10)
    assert server.claimed_at == [0.0, 1.0, 3.0, 7.0]  # 0.5 s doubling per failure: 1, 2, 4 s; then it waits
