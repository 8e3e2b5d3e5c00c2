"""The child side of :mod:`stackl.policy.isolated`: one policy evaluation process (``python -m`` this module).

Started by the server with the engine's name and a memory limit, an OPA worker caps its own data segment
(``RLIMIT_DATA``: the heap and every private anonymous mapping, where the Go runtime allocates; it reserves
address space far beyond its use, so ``RLIMIT_AS`` would stop it from starting; regopy's allocator reserves
256 GB of data up front, so a regopy worker is bounded by the parent's watchdog only). It builds the in-process
engine with one thread, says ``ready`` and then answers one JSON request per line on stdin with one JSON reply
per line on the protocol descriptor, until stdin closes.

An evaluation over the memory limit ends this process (the Go runtime aborts, rego-cpp's ``bad_alloc``
terminates it, Python raises ``MemoryError``): the parent sees it and starts another one. Anything an engine
prints goes to stderr, never into the protocol: descriptor 1 is pointed at stderr once the protocol has its own
copy of it.
"""

import json
import os
import resource
import sys
import threading
import time
from typing import Any, BinaryIO

from stackl.errors import PolicyEngineUnavailable, PolicyError
from stackl.policy.base import Policy, PolicyEngine

MAX_REPLY_BYTES = 16 * 1024 * 1024  # a larger result is refused: the server would hold it in memory
ORPHAN_CHECK_S = 1.0  # how often a worker checks that the server that started it is still there


def _engine(name: str) -> PolicyEngine:
    if name == "regopy":
        from stackl.policy.rego import RegoPolicyEngine

        return RegoPolicyEngine(max_workers=1, name="stackl-rego-isolated")
    from stackl.policy.opa import OpaPolicyEngine

    return OpaPolicyEngine(max_workers=1, name="stackl-opa-isolated")


def answer(engine: PolicyEngine, request: dict[str, Any]) -> dict[str, Any]:
    """The reply to one request: ``{"ok": ...}`` or ``{"error": kind, "message": ..., "errors": [...]}``."""
    op, timeout_s = request["op"], float(request["timeout_s"])
    try:
        if op == "check":
            info = engine.check(request["name"], request["source"])
            return {"ok": {"package": info.package, "rules": sorted(info.rules)}}
        given = request["policy"]
        policy = Policy(given["name"], int(given["revision"]), given["source"], tuple(given["outputs"]))
        if op == "evaluate":
            decision = engine.evaluate(
                policy, request["rule"], request["input"], data=request.get("data"), timeout_s=timeout_s
            )
        else:
            decision = engine.query(
                policy, request["query"], request["input"], data=request.get("data"), timeout_s=timeout_s
            )
        return {"ok": {"defined": decision.defined, "value": decision.value, "ms": decision.duration_ms}}
    except PolicyError as exc:
        return {"error": "policy", "message": exc.message, "errors": exc.errors}
    except PolicyEngineUnavailable as exc:
        return {"error": "unavailable", "message": exc.message}


def _reply(out: BinaryIO, reply: dict[str, Any]) -> None:
    text = json.dumps(reply, separators=(",", ":")).encode()
    if len(text) > MAX_REPLY_BYTES:
        message = f"the result is larger than {MAX_REPLY_BYTES // (1024 * 1024)} MiB"
        text = json.dumps({"error": "policy", "message": message, "errors": []}).encode()
    out.write(text + b"\n")
    out.flush()


def _exit_when_orphaned(parent: int) -> None:
    """End this process once its server is gone (killed -9 mid-evaluation: stdin's EOF is read only after)."""
    while True:
        time.sleep(ORPHAN_CHECK_S)
        if os.getppid() != parent:
            os._exit(1)


def main() -> None:
    engine_name, memory_mb = sys.argv[1], int(sys.argv[2])
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what an engine prints goes to stderr, never into the protocol
    if engine_name == "opa":  # regopy's allocator reserves 256 GB up front: the parent's watchdog bounds it
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
    threading.Thread(target=_exit_when_orphaned, args=(os.getppid(),), daemon=True).start()
    engine = _engine(engine_name)
    _reply(out, {"ready": os.getpid()})
    for line in sys.stdin.buffer:
        try:
            reply = answer(engine, json.loads(line))
        except MemoryError:
            _reply(out, {"error": "memory", "message": "out of memory"})
            return  # the heap may be in any state: the parent starts a fresh process
        _reply(out, reply)


if __name__ == "__main__":
    main()
