"""Following a task to its end (spec/cli.md §4.6): ``-s/--show-progress``, ``--wait``, ``--timeout``.

Both long-poll ``GET /tasks/{id}?wait=&include=steps``. ``-s`` prints each step as it finishes
(``✓ web[0]/vm@production.brussels.dmz READY 69s``, ✗ with the error for a failure) and the task's state
changes, on stderr; ``--wait`` prints only the summary. The follow ends when the task is final (a task with
no steps at once); ``failed`` or ``cancelled`` exits 8 after listing every failed step and the rollback
outcome, ``--timeout`` exits 9 (the task keeps running), ``--fail-fast`` stops at the first failed step as
0.5 did, and Ctrl-C stops watching only, with the ``stackl tasks cancel`` hint.
"""

import asyncio
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import typer

from stackl import errors
from stackl.cli import output
from stackl.client.client import JsonDict, StacklClient

FINAL = ("succeeded", "failed", "cancelled")
DONE_STEPS = ("ready", "unchanged", "failed", "skipped", "cancelled")
POLL_S = 10.0
WAIT_LIMIT_S = 24 * 3600.0  # without --timeout: a day, then exit 9 (the task keeps running)

ShowProgress = Annotated[
    bool, typer.Option("-s", "--show-progress", help="Follow the task with a step-by-step progress display.")
]
Wait = Annotated[bool, typer.Option("--wait", help="Wait for the task to end; print only the summary.")]
Timeout = Annotated[
    float | None,
    typer.Option("--timeout", min=1, help="With -s/--wait: stop waiting after S seconds (exit 9)."),
]
FailFast = Annotated[bool, typer.Option("--fail-fast", help="With -s/--wait: stop at the first failed step.")]


@dataclass
class Watch:
    """How to follow a task: the options of the command that started it."""

    show: bool = False
    wait: bool = False
    timeout_s: float | None = None
    fail_fast: bool = False
    quiet: bool = False
    targets: dict[str, str] = field(default_factory=dict)  # "alias/replica" -> infrastructure target

    @property
    def active(self) -> bool:
        return self.show or self.wait


def step_label(step_id: str, targets: dict[str, str] | None = None) -> str:
    """``web/0/vm`` → ``web[0]/vm@<target>`` (the target when known)."""
    parts = step_id.split("/")
    if len(parts) != 3:
        return step_id
    alias, replica, fr = parts
    target = (targets or {}).get(f"{alias}/{replica}")
    return f"{alias}[{replica}]/{fr}" + (f"@{target}" if target else "")


def targets_of(instance: JsonDict) -> dict[str, str]:
    """``alias/replica`` → infrastructure target of every replica of an instance body."""
    found: dict[str, str] = {}
    for alias, replicas in (instance.get("services") or {}).items():
        for index, replica in enumerate(replicas if isinstance(replicas, list) else []):
            if isinstance(replica, dict):
                found[f"{alias}/{index}"] = str(replica.get("infrastructure_target", ""))
    return found


def duration(started: Any, finished: Any) -> str:
    """``69s`` between two RFC 3339 times; "" when either is missing."""
    try:
        seconds = (
            datetime.fromisoformat(str(finished)) - datetime.fromisoformat(str(started))
        ).total_seconds()
    except ValueError:
        return ""
    return f"{seconds:.0f}s" if seconds >= 1 else f"{seconds:.1f}s"


def step_line(step: JsonDict, targets: dict[str, str] | None = None) -> str:
    """``✓ web[0]/vm@target READY 69s`` (✗ and the first line of the error for a failure)."""
    state = str(step.get("state", ""))
    status = str(step.get("status") or state.upper())
    mark = "✗" if state in ("failed", "cancelled") else "-" if state == "skipped" else "✓"
    took = duration(step.get("started_at"), step.get("finished_at"))
    line = f"{mark} {step_label(str(step.get('id', '')), targets)} {status}" + (f" {took}" if took else "")
    message = str(step.get("error_message") or "").strip().splitlines()
    return f"{line}: {message[0]}" if message and state in ("failed", "cancelled", "skipped") else line


def summary(task: JsonDict) -> str:
    """``task 01J… succeeded: 2 ready, 0 failed, 0 skipped``."""
    progress = task.get("progress") or {}
    counts = ", ".join(f"{progress.get(k, 0)} {k}" for k in ("ready", "unchanged", "failed", "skipped"))
    return f"task {task.get('id')} {task.get('state')}: {counts}"


async def follow(client: StacklClient, task_id: str, watch: Watch) -> JsonDict:
    """Long-poll the task until it is final, printing steps as they finish; the final task.

    Raises:
        WaitTimedOut: ``timeout_s`` passed (the task keeps running).
        OperationFailed: ``fail_fast`` and a step failed.
    """
    deadline = time.monotonic() + (watch.timeout_s or WAIT_LIMIT_S)
    printed: set[str] = set()
    state = ""
    try:
        while True:
            remaining = deadline - time.monotonic()
            task = await client.get_task(task_id, wait_s=max(0.0, min(POLL_S, remaining)), steps=True)
            for step in task.get("steps") or []:
                step_id = str(step.get("id"))
                if step.get("state") in DONE_STEPS and step_id not in printed:
                    printed.add(step_id)
                    if watch.show:
                        output.info(step_line(step, watch.targets), quiet=watch.quiet)
                    if watch.fail_fast and step.get("state") == "failed":
                        raise errors.OperationFailed(f"step {step_id} failed; task {task_id} keeps running")
            if watch.show and task.get("state") != state and task.get("state") not in FINAL:
                output.info(f"task {task_id} {task.get('state')}", quiet=watch.quiet)
            state = str(task.get("state"))
            if state in FINAL:
                output.info(summary(task), quiet=watch.quiet)
                return task
            if time.monotonic() >= deadline:
                raise errors.WaitTimedOut(f"task {task_id} still {state} after the timeout; it keeps running")
    except asyncio.CancelledError:
        output.info(f"stopped watching; the task keeps running (stackl tasks cancel {task_id})")
        raise


def failure(task: JsonDict, targets: dict[str, str] | None = None) -> errors.OperationFailed:
    """The error of a failed or cancelled task: its message, every failed step and the rollback outcome."""
    result = task.get("result") or {}
    lines = [
        f"task {task.get('id')} {task.get('state')}: {result.get('error_message') or task.get('error') or ''}"
    ]
    for step in task.get("steps") or []:
        if step.get("state") in ("failed", "cancelled"):
            lines.append(f"  {step_line(step, targets)}")
    if result.get("rolled_back"):
        lines.append("  rolled back")
    elif result.get("rollback"):
        lines.append(f"  rollback: {result.get('rollback')}")
    return errors.OperationFailed("\n".join(lines).rstrip())
