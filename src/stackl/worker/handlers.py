"""Task kind → use case: the only dispatch table of the worker (spec/lifecycle.md §5.1).

``default_handlers()`` builds the table a worker process serves. The stack-instance kinds (``create``,
``update``, ``delete``, ``restore``) all go to ``stackl.usecases.operations.run_task``, which reads the
operation from the task itself. ``default_give_up()`` names, per kind, what to record when the worker fails a
task itself (handler crash, worker lost too many times), so that no instance stays ``in_progress`` forever. ``noop`` is
always there: see its docstring.
"""

import math
from collections.abc import Awaitable, Callable

from stackl.broker.base import Item
from stackl.usecases import operations
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TaskHandler, TaskLease

GiveUp = Callable[[Ports, Item, str], Awaitable[None]]
INSTANCE_KINDS = ("create", "update", "delete", "restore")
MAX_NOOP_SLEEP_S = 3600.0


async def noop(ports: Ports, lease: TaskLease) -> None:
    """Complete at once with ``{"ok": true}``, after sleeping ``payload["sleep_s"]`` seconds if given.

    Why it exists: it exercises the whole worker path (claim, lease, heartbeat, finish, release, lease
    expiry, another worker resuming) without touching any stack instance, so the worker's tests and
    ``bench/dispatch.py`` measure the task machinery alone, against real processes. ``sleep_s`` (seconds,
    at most an hour) keeps a task running long enough to stop or kill the worker holding it; the sleep is
    cancellable, like any handler.
    """
    sleep_s = lease.item.payload.get("sleep_s", 0)
    if isinstance(sleep_s, int | float) and math.isfinite(sleep_s) and sleep_s > 0:
        await ports.clock.sleep(min(float(sleep_s), MAX_NOOP_SLEEP_S))  # the injected clock: tests move it
    await lease.complete({"ok": True})


HANDLERS: dict[str, TaskHandler] = {"noop": noop}
"""The kinds whose handlers live in the worker package; ``default_handlers`` adds the instance kinds."""


def default_handlers() -> dict[str, TaskHandler]:
    """The dispatch table a worker serves: every task kind this STACKL version runs, and its handler."""
    return {
        **HANDLERS,
        **dict.fromkeys(INSTANCE_KINDS, operations.run_task),
        "document_update": operations.document_update,
    }


def default_give_up() -> dict[str, GiveUp]:
    """Per kind, what to record when the worker fails a task its handler did not finish."""
    return dict.fromkeys(INSTANCE_KINDS, operations.give_up)
