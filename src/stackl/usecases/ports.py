"""The ports every use case receives: one object, built by bootstrap or by a test.

Use cases never open adapters themselves; they get the already-open ports here, so the same code runs on the
in-memory fakes in unit tests and on SQLite or PostgreSQL with the embedded Rego engine in production.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from stackl.broker.base import Broker
from stackl.datastore.agents import AgentRegistry
from stackl.datastore.audit import AuditLog, InMemoryAuditLog
from stackl.datastore.base import DocumentStore
from stackl.datastore.encryption import SecretBox
from stackl.datastore.tokens import InMemoryTokenStore, TokenStore
from stackl.domain.clock import Clock, SystemClock
from stackl.domain.rate_limits import TokenBuckets
from stackl.policy.base import DEFAULT_TIMEOUT_S, PolicyEngine


@dataclass(frozen=True, slots=True)
class Ports:
    """Open adapters, in one object every use case receives.

    The document store, the task queue, the policy engines, the agent registry, the clock, the API tokens, the
    audit log and the secret box (None: nothing is encrypted, as in the in-memory fakes).

    ``policies`` runs placement policies and template checks. ``authz_policies`` runs the authorization policy
    on threads of its own (bootstrap builds a second engine), so no user evaluation or placement can make a
    request wait for its access decision. ``evaluation_policies`` runs what users paste into
    ``POST /policies/evaluate`` in child processes that are killed when they overrun. None (the fakes of unit
    tests) uses ``policies``.
    """

    store: DocumentStore
    broker: Broker
    policies: PolicyEngine
    agents: AgentRegistry
    clock: Clock = field(default_factory=SystemClock)
    write_retries: int = 5
    policy_timeout_s: float = DEFAULT_TIMEOUT_S
    task_timeout_s: float = 7200.0  # tasks.timeout_s: a task's deadline from its start (lifecycle.md §5.4)
    rollback: bool = (
        False  # tasks.rollback: roll back failed creates and updates when the request does not say
    )
    hash_key: bytes = b""  # the server's secret key: keys the HMAC of secrets in input hashes (§4.3)
    task_max_attempts: int = (
        6  # a task survives this many lost workers minus one (tasks.max_lease_expiries + 1)
    )
    tokens: TokenStore = field(default_factory=InMemoryTokenStore)
    audit: AuditLog = field(default_factory=InMemoryAuditLog)
    secret_box: SecretBox | None = None  # encrypts secret values at rest (job payloads, for the broker)
    # Told how each placement went ("placed", "infeasible" or "error") and how long it took (/metrics).
    placement_observer: Callable[[str, float], None] | None = None
    authz_policies: PolicyEngine | None = None  # the authorization policy's own engine (None: ``policies``)
    # users' ad-hoc evaluations (POST /policies/evaluate): killable processes in production (None: ``policies``)
    evaluation_policies: PolicyEngine | None = None
    # POST /policies/evaluate calls per subject (policy.evaluations_per_minute, burst); None: unlimited.
    evaluation_limits: TokenBuckets | None = None

    @property
    def evaluation_engine(self) -> PolicyEngine:
        """The engine that runs users' ad-hoc evaluations: its own, else the shared one."""
        return self.evaluation_policies if self.evaluation_policies is not None else self.policies

    @property
    def authz_engine(self) -> PolicyEngine:
        """The engine that decides access: its own, else the shared one."""
        return self.authz_policies if self.authz_policies is not None else self.policies
