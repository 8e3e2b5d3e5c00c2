"""ResultBatcher (feature ``result_batch``): results waiting for a call share the next one; per-result answers."""

import asyncio
import json
from typing import Any

import httpx
import pytest
from tests.clocks import settle

from stackl.agent.protocol import AgentProtocol, CallFailed
from stackl.agent.runner import ResultBatcher


class Server:
    """A fake server: ``/results`` answers each result by ``status`` in its outputs; calls are recorded."""

    def __init__(self, *, batches: bool = True) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.batches = batches
        self.gate = asyncio.Event()
        self.gate.set()

    async def handle(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append((request.url.path, body))
        await self.gate.wait()
        if request.url.path.endswith("/results"):
            if not self.batches:
                return httpx.Response(404, json={"detail": "Not Found"})
            answers = []
            for entry in body["results"]:
                status = entry["outputs"].get("status", 200)
                answer = {"accepted": True} if status == 200 else {"reason": "lease_lost", "detail": "lost"}
                answers.append({"job_id": entry["job_id"], "attempt": 1, "status": status, **answer})
            return httpx.Response(200, json={"results": answers})
        return httpx.Response(200, json={"accepted": True, "single": True})


def result(status: int = 200) -> dict[str, Any]:
    return {"instance_id": "I1", "attempt": 1, "status": "READY", "outputs": {"status": status}}


async def test_results_waiting_for_a_call_leave_together_and_get_their_own_answers() -> None:
    server = Server()
    async with AgentProtocol("http://s", "a1", transport=httpx.MockTransport(server.handle)) as protocol:
        batcher = ResultBatcher(protocol, give_up=lambda: False)
        server.gate.clear()  # the first call stays out while three more results arrive
        first = asyncio.create_task(batcher.send("J0", result()))
        await settle()
        assert len(server.calls) == 1  # out, waiting for the gate
        rest = [
            asyncio.create_task(batcher.send(f"J{i}", result(status))) for i, status in ((1, 200), (2, 409))
        ]
        third = asyncio.create_task(batcher.send("J3", result()))
        await settle()
        assert len(server.calls) == 1  # the three wait for the call that is out
        server.gate.set()
        assert await first == {"job_id": "J0", "attempt": 1, "status": 200, "accepted": True}
        assert (await rest[0])["accepted"] is True
        with pytest.raises(CallFailed) as refused:
            await rest[1]
        assert (refused.value.status, refused.value.reason) == (409, "lease_lost")
        assert (await third)["job_id"] == "J3"
    assert [path for path, _ in server.calls] == ["/agents/a1/results"] * 2
    assert [entry["job_id"] for entry in server.calls[1][1]["results"]] == ["J1", "J2", "J3"]


async def test_a_server_without_the_batch_call_gets_single_results() -> None:
    server = Server(batches=False)
    async with AgentProtocol("http://s", "a1", transport=httpx.MockTransport(server.handle)) as protocol:
        batcher = ResultBatcher(protocol, give_up=lambda: False)
        answers = await asyncio.gather(batcher.send("J1", result()), batcher.send("J2", result()))
    assert list(answers) == [{"accepted": True, "single": True}] * 2
    paths = [path for path, _ in server.calls]
    assert "/agents/a1/jobs/J1/result" in paths
    assert "/agents/a1/jobs/J2/result" in paths
