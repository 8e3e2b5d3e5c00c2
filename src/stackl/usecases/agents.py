"""The agent protocol's terms (spec/agents.md §1-4): its version, timings, limits, features and job queues.

Every side of the protocol reads them from here: the register answer (``settings``) hands them to each agent,
the registry, claims and reports enforce them, and the operations that dispatch jobs address an agent's
queue with ``queue_of`` and ``JOB_KIND``. A job is a broker item on queue ``agent:<name>`` of kind ``job``.
"""

from typing import Any

from stackl import __version__

PROTOCOL = 1
HEARTBEAT_INTERVAL_S = 10
OFFLINE_AFTER_S = 30
LEASE_S = 60
FENCE_AFTER_S = 45
CLAIM_WAIT_MAX_S = 60
CLAIM_WAIT_DEFAULT_S = 30
# Optional protocol additions this server accepts; an agent uses them only when the register answer lists
# them, so old servers and old agents keep the classic call sequence.
FEATURES = (
    "start_with_events",  # an events body may carry ``start: true`` (the start call, folded in)
    "result_with_events",  # a result body may carry ``start: true`` and the last ``events``
    "result_batch",  # POST /agents/{name}/results: several results in one call
)
LIMITS = {
    "event_batch_bytes": 256 * 1024,
    "line_bytes": 16 * 1024,
    "log_bytes": 10 * 1024 * 1024,
    "error_message_bytes": 64 * 1024,
    "outputs_bytes": 1024 * 1024,
}
JOB_KIND = "job"


def queue_of(agent: str) -> str:
    """The broker queue of an agent's jobs: routing is by exact agent name."""
    return f"agent:{agent}"


def settings() -> dict[str, Any]:
    """The timing and limits every agent must use (the register answer)."""
    return {
        "heartbeat_interval_s": HEARTBEAT_INTERVAL_S,
        "offline_after_s": OFFLINE_AFTER_S,
        "lease_s": LEASE_S,
        "fence_after_s": FENCE_AFTER_S,
        "claim_wait_max_s": CLAIM_WAIT_MAX_S,
        "limits": dict(LIMITS),
        "server_version": __version__,
        "features": list(FEATURES),
    }
