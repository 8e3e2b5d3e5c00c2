"""Stop a whole process tree: SIGTERM, a grace period, SIGKILL (agents.md §5), read from Linux's `/proc`.

A step runs in its own session, so signalling its process group reaches every ordinary descendant. Some tools
start children in sessions of their own (ansible-runner runs ansible-playbook under a pseudo-terminal), which
the group signal misses: the descendants found through parent links in `/proc`, and their process groups, are
signalled too. The agent's own process group is never signalled.

A process whose parent died before the scan saw it is reparented to init and has no link left to the step
(ansible: a worker forking a module into a session of its own just as SIGTERM ends ansible-playbook and the
worker). Parent links cannot find it, but its environment can: every process of a job inherits the job's
marker variable (``STACKL_WORK_DIR=<its job directory>``, set by the executor), so ``stop`` also kills, until
none is left, every process of the agent's user whose environment carries the marker, with its group. The
same marker lets a restarted agent find what a killed (``kill -9``) previous instance left running
(``stop_marked``), besides the process groups it recorded.

Reading `/proc` means one file per process on the machine: every scan runs in a worker thread, so a busy
host never stalls the agent's event loop (heartbeats, other jobs) while a tree is being stopped.
"""

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

PROC = Path("/proc")
BOOT_ID = PROC / "sys" / "kernel" / "random" / "boot_id"
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


def _start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot): with the boot id, names one process for good."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(text[text.rindex(")") + 2 :].split()[19])


def _boot_id() -> str:
    try:
        return BOOT_ID.read_text().strip()
    except OSError:
        return ""


# --- the steps an agent runs, recorded for its next start ---------------------------------------------------
def record(directory: Path, pid: int) -> Path | None:
    """Note a step's process group (led by `pid`) in `directory`, so a restart after `kill -9` can stop it."""
    entry = {"pid": pid, "start": _start_time(pid), "boot": _boot_id()}
    path = directory / f"{pid}.json"
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(json.dumps(entry))
    except OSError:
        return None
    return path


def recorded_groups(directory: Path) -> set[int]:
    """The process groups of steps recorded in `directory` that may still be running; the records go.

    A group counts when its leader still runs (the same process: same boot, same start time) or is gone while
    members remain (Linux gives no new process a number still in use as a group id).
    """
    groups: set[int] = set()
    boot = _boot_id()
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            entry = json.loads(path.read_text())
            pid, start = int(entry["pid"]), entry.get("start")
            if entry.get("boot") == boot and _start_time(pid) in (None, start):
                groups.add(pid)
        except (OSError, ValueError, KeyError, TypeError):
            pass
        path.unlink(missing_ok=True)
    groups.discard(os.getpgrp())
    return groups


def _table() -> dict[int, tuple[str, int, int]]:
    table = {}
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    return table


def descendants(pid: int) -> set[int]:
    """Every living process below `pid` (zombies excluded)."""
    return descendants_of({pid})


def descendants_of(roots: set[int]) -> set[int]:
    """Every living process below any of `roots` (zombies excluded), from one scan of `/proc`."""
    table = _table()
    children: dict[int, list[int]] = {}
    for child, (_, parent, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found and table[child][0] != "Z":
                found.add(child)
                todo.append(child)
    return found


def group_members(pgids: set[int]) -> set[int]:
    """The living (non-zombie) processes of these process groups."""
    return {pid for pid, (state, _, pgid) in _table().items() if pgid in pgids and state != "Z"}


def marked(marker: str, *, prefix: bool = False) -> set[int]:
    """The living processes whose environment holds the entry ``marker`` (``NAME=value``).

    With ``prefix``, an entry starting with ``marker`` counts. Processes of other users (their environment
    is unreadable) and this one are left out.
    """
    wanted = marker.encode()
    own = os.getpid()
    found: set[int] = set()
    for entry in PROC.iterdir() if PROC.is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == own:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        for item in environ.split(b"\0"):
            if item == wanted or (prefix and item.startswith(wanted)):
                stat = _stat(int(entry.name))
                if stat is not None and stat[0] != "Z":
                    found.add(int(entry.name))
                break
    return found


def _with_groups(pids: set[int]) -> set[int]:
    """The process groups of ``pids`` (the agent's own excluded)."""
    groups = {stat[2] for p in pids if (stat := _stat(p)) is not None}
    groups.discard(os.getpgrp())
    return groups


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


def _grown(roots: set[int], marker: str | None, prefix: bool) -> tuple[set[int], set[int]]:
    """The processes found now by ``marker`` and below them or ``roots``, and their groups."""
    found = marked(marker, prefix=prefix) if marker is not None else set()
    found |= descendants_of(roots | found)
    return found, _with_groups(found)


async def stop(
    pid: int, *, grace_s: float, wait: Callable[[], Awaitable[int]], marker: str | None = None
) -> None:
    """Stop the tree of `pid`, the leader of its own process group.

    Args:
        pid: the step's process (started with `start_new_session=True`).
        grace_s: time between SIGTERM and SIGKILL; 0 kills at once.
        wait: awaits the exit of `pid` (reaps it).
        marker: the job's environment entry (``NAME=value``): processes carrying it are stopped too, wherever
            they were reparented.
    """
    pids, pgids = await asyncio.to_thread(_tree, pid)
    await _stop(pid, pids, pgids, grace_s=grace_s, wait=wait, marker=marker)


async def stop_marked(marker: str, *, pgids: set[int], grace_s: float) -> set[int]:
    """Stop what a dead agent left; returns the processes found.

    That is the process groups ``pgids`` and every process whose environment has an entry starting with
    ``marker``, with their groups and descendants, SIGTERM first, SIGKILL after ``grace_s``.
    """
    pids, groups = await asyncio.to_thread(_grown, set(), marker, True)
    pgids = (pgids | groups) - {os.getpgrp()}
    pids |= await asyncio.to_thread(group_members, pgids)
    if pids:
        await _stop(None, pids, pgids, grace_s=grace_s, wait=None, marker=marker, prefix=True)
    return pids


async def _stop(
    pid: int | None,
    pids: set[int],
    pgids: set[int],
    *,
    grace_s: float,
    wait: Callable[[], Awaitable[int]] | None,
    marker: str | None,
    prefix: bool = False,
) -> None:
    roots = {pid} if pid is not None else set()

    async def grow() -> None:  # what was forked meanwhile, or carries the marker wherever it was reparented
        more, groups = await asyncio.to_thread(_grown, roots, marker, prefix)
        pids.update(more)
        pgids.update(groups - {os.getpgrp()})

    await grow()
    if grace_s > 0:
        _signal(pids, pgids, signal.SIGTERM)
        until = time.monotonic() + grace_s
        while time.monotonic() < until:
            await grow()
            if not await asyncio.to_thread(_alive, pids, pgids):
                break
            await asyncio.sleep(POLL_S)
    await grow()
    _signal(pids, pgids, signal.SIGKILL)
    if wait is not None:
        with contextlib.suppress(ProcessLookupError, TimeoutError):
            await asyncio.wait_for(wait(), timeout=max(grace_s, 5.0))
    # SIGKILL is delivered asynchronously, and a child forked while the group was being killed escapes the
    # group signal: keep killing what is left of the groups (and what carries the marker) until they stayed
    # empty for a while, so that a job reported stopped has really stopped (its next attempt may start at once).
    until = time.monotonic() + KILL_WAIT_S
    quiet_since = time.monotonic()
    while time.monotonic() < until:
        await grow()
        alive = await asyncio.to_thread(_alive, pids, pgids)
        if alive:
            quiet_since = time.monotonic()
            _signal(alive, pgids, signal.SIGKILL)
        elif time.monotonic() - quiet_since >= QUIET_S:
            return
        await asyncio.sleep(POLL_S)
