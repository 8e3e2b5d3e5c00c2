"""ProcessPolicyEngine on both engines: the in-process answers, and overrunning evaluations really stopped.

A runaway that overruns its time limit has its worker process killed (the process is gone, its CPU and memory
with it) and the next call gets a fresh worker; one that grows past the memory limit is stopped with a 422
that says so. The runaways are comprehensions over every pair of two ranges: one that only compares (CPU, a
few MB) and one that collects the pairs (memory: about 250 bytes a pair).
"""

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from stackl.errors import PolicyEngineUnavailable, PolicyError
from stackl.policy.base import Policy
from stackl.policy.isolated import ProcessPolicyEngine, rss_bytes

ENGINES = ["opa", "regopy"]
POLICY = Policy(
    "shop",
    1,
    "package shop\nimport rego.v1\nx := 1\ndeny contains msg if {\n  some image in input.images\n"
    '  not startswith(image, "quay.io/")\n  msg := sprintf("%s is not allowed", [image])\n}\n',
)
EMPTY = Policy("runaway", 0, "package runaway\n")
SPIN = "count([a | some a in numbers.range(1, 20000); some b in numbers.range(1, 20000); a == b])"
GROW = "count([[a, b] | some a in numbers.range(1, 4000); some b in numbers.range(1, 4000)])"
MEMORY_MB = 256


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[ProcessPolicyEngine]:
    isolated = ProcessPolicyEngine(engine=request.param, processes=1, memory_mb=MEMORY_MB)
    yield isolated
    isolated.close()


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_answers_are_the_engines_own(engine: ProcessPolicyEngine) -> None:
    denied = engine.evaluate(POLICY, "deny", {"images": ["quay.io/a", "docker.io/b"]})
    assert (denied.defined, denied.value) == (True, ["docker.io/b is not allowed"])
    assert engine.evaluate(POLICY, "missing", {}).defined is False
    assert engine.query(POLICY, "data.shop.x + 1", {}).value == 2
    assert engine.check("gate", "package gate\nallow := true\n").package == "gate"
    with pytest.raises(PolicyError, match=r"line 2"):
        engine.evaluate(Policy("bad", 0, "package bad\nx := := 1\n"), "x", {})
    assert engine.started == 1  # one worker, reused by every call (errors included)


def test_an_overrunning_evaluation_is_killed_and_its_worker_replaced(engine: ProcessPolicyEngine) -> None:
    engine.evaluate(POLICY, "x", {})
    (first,) = engine.pids
    with pytest.raises(PolicyError) as raised:
        engine.query(EMPTY, SPIN, {}, timeout_s=0.3)
    assert raised.value.message == "policy runaway did not finish within 0.3 s"
    assert not is_running(first)  # killed and reaped: no CPU keeps burning
    assert engine.evaluate(POLICY, "x", {}).value == 1
    assert engine.pids != [first]
    assert (engine.started, engine.killed) == (2, 1)


def test_an_evaluation_over_the_memory_limit_is_stopped(engine: ProcessPolicyEngine) -> None:
    before = rss_bytes(os.getpid())
    with pytest.raises(PolicyError) as raised:
        engine.query(EMPTY, GROW, {}, timeout_s=120)
    assert raised.value.message == f"policy runaway was stopped: it ran out of memory (limit {MEMORY_MB} MiB)"
    assert rss_bytes(os.getpid()) - before < 64 * 1024 * 1024  # the server's own memory did not grow with it
    assert engine.evaluate(POLICY, "x", {}).value == 1  # a fresh worker


def test_a_closed_engine_is_unavailable(engine: ProcessPolicyEngine) -> None:
    engine.evaluate(POLICY, "x", {})
    (pid,) = engine.pids
    engine.close()
    assert not is_running(pid)
    with pytest.raises(PolicyEngineUnavailable):
        engine.evaluate(POLICY, "x", {})


def wait_until(predicate: Callable[[], bool], *, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        threading.Event().wait(0.01)


def test_with_every_worker_busy_a_call_is_refused_at_once_and_close_stops_them(
    engine: ProcessPolicyEngine,
) -> None:
    outcome: list[BaseException] = []

    def spin() -> None:
        try:
            engine.query(EMPTY, SPIN, {}, timeout_s=300)
        except (PolicyError, PolicyEngineUnavailable) as exc:
            outcome.append(exc)

    runaway = threading.Thread(target=spin)
    runaway.start()
    wait_until(lambda: engine.busy == 1, timeout_s=60)
    with pytest.raises(PolicyEngineUnavailable, match="all 1 policy evaluation processes are busy"):
        engine.evaluate(POLICY, "x", {})
    engine.close()  # a stopping server does not wait for the runaway
    runaway.join(timeout=60)
    assert not runaway.is_alive()
    assert [type(e) for e in outcome] == [PolicyEngineUnavailable]
    assert engine.busy == 0


def test_workers_inherit_none_of_the_servers_settings(
    engine: ProcessPolicyEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STACKL_SECRETS__KEY", "Seeded-Key-9f31")
    monkeypatch.setenv("STACKL_DATABASE__URL", "postgresql+asyncpg://stackl:Seeded-Password-77ab@db/stackl")
    engine.evaluate(POLICY, "x", {})
    (pid,) = engine.pids
    environ = Path(f"/proc/{pid}/environ").read_bytes()
    assert b"Seeded-" not in environ
    assert b"STACKL_" not in environ


def test_a_worker_that_died_while_idle_is_replaced(engine: ProcessPolicyEngine) -> None:
    engine.evaluate(POLICY, "x", {})
    (pid,) = engine.pids
    os.kill(pid, 9)
    os.waitpid(pid, 0)  # reaped here: the engine finds it gone, whatever the timing
    assert engine.evaluate(POLICY, "x", {}).value == 1
    assert engine.started == 2
