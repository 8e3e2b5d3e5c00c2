"""Whether the server can do its work, for ``/readyz``: the database answers, its schema is current, it takes writes.

A database that answers reads but refuses writes (a full disk, a read-only file system or replica) made the
old check say "ready" while every change failed (issue 15, defect 10). So readiness also commits one tiny
write: a persistent counter that no host-name template can name (``{`` is not allowed in a counter name),
set to the probe's time in milliseconds. It is one row updated in place, so probes never grow the database.
"""

from stackl import errors
from stackl.usecases.ports import Ports

PROBE_COUNTER = "{readyz}"  # the braces keep it out of host-name templates' counter names


async def check(ports: Ports) -> dict[str, str]:
    """The named checks and their outcome: ``ok`` or ``failed: …`` (``unknown`` when an earlier one failed)."""
    checks: dict[str, str] = {}
    try:
        await ports.store.ping()
        checks["database"] = "ok"
        checks["migrations"] = "ok"
    except errors.Unavailable as exc:
        checks["database"] = "ok" if "schema" in exc.message else f"failed: {exc.message}"
        checks["migrations"] = f"failed: {exc.message}" if "schema" in exc.message else "unknown"
        checks["writes"] = "unknown"
        return checks
    try:
        await probe_write(ports)
        checks["writes"] = "ok"
    except errors.StacklError as exc:
        checks["writes"] = f"failed: {exc.message}"
    return checks


async def probe_write(ports: Ports) -> None:
    """Commit one small write (the probe counter).

    Raises:
        StoreUnavailable: the database refused or could not make the write.
    """
    stamp = int(ports.clock.now().timestamp() * 1000)
    async with ports.store.transaction() as tx:
        await tx.set_counters({PROBE_COUNTER: stamp})
