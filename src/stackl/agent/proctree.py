"""Stop a whole process tree: SIGTERM, a grace period, SIGKILL (agents.md §5), read from Linux's `/proc`.

A step runs in its own session, so signalling its process group reaches every ordinary descendant. Some tools
start children in sessions of their own (ansible-runner runs ansible-playbook under a pseudo-terminal), which
the group signal misses: the descendants found through parent links in `/proc`, and their process groups, are
signalled too. The agent's own process group is never signalled.

Reading `/proc` means one file per process on the machine: every scan runs in a worker thread, so a busy
host never stalls the agent's event loop (heartbeats, other jobs) while a tree is being stopped.
"""

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

PROC = Path("/proc")
POLL_S = 0.05
KILL_WAIT_S = 10.0  # how long stop() waits for killed processes to be gone
QUIET_S = 0.5  # ... and for their groups to stay empty


def _stat(pid: int) -> tuple[str, int, int] | None:
    """(state, parent pid, process group) of `pid`, or None when it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1]), int(fields[2])


def _table() -> dict[int, tuple[str, int, int]]:
    table = {}
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    return table


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (zombies excluded)."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, (_, parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and table[child][0] != "Z":
                found.add(child)
                todo.append(child)
    return found


def group_members(pgids: set[int]) -> set[int]:
    """The living (non-zombie) processes of these process groups."""
    return {pid for pid, (state, _, pgid) in _table().items() if pgid in pgids and state != "Z"}


def _signal(pids: set[int], pgids: set[int], sig: signal.Signals) -> None:
    own = os.getpgrp()
    for pgid in pgids - {own}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _alive(pids: set[int], pgids: set[int]) -> set[int]:
    """The living processes among ``pids`` and in the groups ``pgids`` (one `/proc` scan)."""
    return {p for p in pids if (stat := _stat(p)) is not None and stat[0] != "Z"} | group_members(pgids)


def _tree(pid: int) -> tuple[set[int], set[int]]:
    """``pid`` and its descendants, and their process groups (the agent's own excluded)."""
    pids = {pid} | descendants(pid)
    pgids = {pid} | {stat[2] for p in pids if (stat := _stat(p)) is not None}
    pgids.discard(os.getpgrp())
    return pids, pgids


async def stop(pid: int, *, grace_s: float, wait: Callable[[], Awaitable[int]]) -> None:
    """Stop the tree of `pid`, the leader of its own process group.

    Args:
        pid: the step's process (started with `start_new_session=True`).
        grace_s: time between SIGTERM and SIGKILL; 0 kills at once.
        wait: awaits the exit of `pid` (reaps it).
    """
    pids, pgids = await asyncio.to_thread(_tree, pid)
    if grace_s > 0:
        _signal(pids, pgids, signal.SIGTERM)
        until = time.monotonic() + grace_s
        while time.monotonic() < until:
            pids |= await asyncio.to_thread(descendants, pid)
            if not await asyncio.to_thread(_alive, pids, pgids):
                break
            await asyncio.sleep(POLL_S)
    pids |= await asyncio.to_thread(descendants, pid)
    _signal(pids, pgids, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError, TimeoutError):
        await asyncio.wait_for(wait(), timeout=max(grace_s, 5.0))
    # SIGKILL is delivered asynchronously, and a child forked while the group was being killed escapes the
    # group signal: keep killing what is left of the groups until they stayed empty for a while, so that a job
    # reported stopped has really stopped (its next attempt may start at once).
    until = time.monotonic() + KILL_WAIT_S
    quiet_since = time.monotonic()
    while time.monotonic() < until:
        alive = await asyncio.to_thread(_alive, pids, pgids)
        if alive:
            quiet_since = time.monotonic()
            _signal(alive, pgids, signal.SIGKILL)
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
        await asyncio.sleep(POLL_S)
