"""``GET /metrics`` (api.md B.9): Prometheus text format, all names prefixed ``stackl_``.

Three sources:

- ``MetricsMiddleware`` counts and times every request by method, route template and status;
- ``instrument(ports)`` wraps the policy engine (evaluation counts, durations, errors) and times every
  placement (``usecases.instance_placement.plan_sync``, which creates, updates, plans and drift checks all call);
- at scrape time, the durable state every server shares: tasks and jobs by state, queue depth and the age of
  the oldest ready item, agents online/offline, documents by type, and this process's event-stream followers.

The process-wide counters live in the default registry (one per process); the scrape-time gauges are
re-read from the database on each scrape, so every server of a cluster reports the same cluster state.
"""

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, Histogram, generate_latest
from prometheus_client import Counter as PromCounter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stackl.api.deps import PortsDep
from stackl.domain.documents import DOCUMENT_TYPES
from stackl.policy.base import DEFAULT_TIMEOUT_S, Policy, PolicyDecision, PolicyEngine, PolicyInfo
from stackl.usecases.agents import OFFLINE_AFTER_S
from stackl.usecases.ports import Ports
from stackl.usecases.tasks import TASKS_QUEUE

router = APIRouter(tags=["health"])

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
REQUESTS = PromCounter(
    "stackl_http_requests",
    "HTTP requests by method, route template and status",
    ["method", "route", "status"],
)
REQUEST_SECONDS = Histogram(
    "stackl_http_request_duration_seconds", "HTTP request duration", ["method", "route"], buckets=_BUCKETS
)
PLACEMENTS = PromCounter("stackl_placements", "placements computed, by result", ["result"])
PLACEMENT_SECONDS = Histogram("stackl_placement_duration_seconds", "placement duration", buckets=_BUCKETS)
POLICY_EVALUATIONS = PromCounter(
    "stackl_policy_evaluations",
    "policy evaluations by policy and result (ok, undefined, error)",
    ["policy", "result"],
)
POLICY_SECONDS = Histogram(
    "stackl_policy_evaluation_duration_seconds", "policy evaluation duration", buckets=_BUCKETS
)
POLICY_ERRORS = PromCounter("stackl_policy_evaluation_errors", "policy evaluations that raised", ["policy"])
TASKS = Gauge("stackl_tasks_total", "tasks in the database by kind and state", ["kind", "state"])
TASKS_RUNNING = Gauge(
    "stackl_tasks_running", "tasks started and not ended (advanced by a worker or waiting for jobs)"
)
DB_STATEMENTS = Gauge("stackl_db_statements", "SQL statements this server process sent since it started")
JOBS = Gauge("stackl_jobs_total", "agent jobs in the database by agent and state", ["agent", "state"])
JOBS_QUEUED = Gauge("stackl_jobs_queued", "agent jobs waiting, by agent", ["agent"])
QUEUE_DEPTH = Gauge("stackl_queue_depth", "items queued or running, by queue", ["queue", "state"])
QUEUE_AGE = Gauge("stackl_queue_oldest_age_seconds", "age of the oldest ready item, by queue", ["queue"])
AGENTS = Gauge("stackl_agents", "agent instances by state (online, offline)", ["state"])
DOCUMENTS = Gauge("stackl_documents", "current documents by type", ["type"])
SUBSCRIBERS = Gauge("stackl_events_subscribers", "followers of GET /events on this server")


def route_of(scope: Scope) -> str:
    """The route template a request matched (``/tasks/{task_id}``), so labels stay few; none → ``other``.

    Read after the request: the router records the matched route in the (shared) scope.
    """
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else "other"


class MetricsMiddleware:
    """Pure ASGI middleware (streams pass through untouched): count and time each HTTP request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            method, route = scope.get("method", "GET"), route_of(scope)
            REQUESTS.labels(method, route, str(status)).inc()
            REQUEST_SECONDS.labels(method, route).observe(time.perf_counter() - started)


class InstrumentedPolicyEngine(PolicyEngine):
    """A policy engine that counts and times the evaluations of the one it wraps."""

    def __init__(self, inner: PolicyEngine) -> None:
        self.inner = inner

    def check(self, name: str, source: str) -> PolicyInfo:
        return self.inner.check(name, source)

    def _timed(self, policy: Policy, call: Callable[[], PolicyDecision]) -> PolicyDecision:
        started = time.perf_counter()
        try:
            decision = call()
        except Exception:
            POLICY_EVALUATIONS.labels(policy.name, "error").inc()
            POLICY_ERRORS.labels(policy.name).inc()
            raise
        finally:
            POLICY_SECONDS.observe(time.perf_counter() - started)
        POLICY_EVALUATIONS.labels(policy.name, "ok" if decision.defined else "undefined").inc()
        return decision

    def evaluate(
        self,
        policy: Policy,
        rule: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._timed(
            policy, lambda: self.inner.evaluate(policy, rule, input_doc, data=data, timeout_s=timeout_s)
        )

    def query(
        self,
        policy: Policy,
        query: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._timed(
            policy, lambda: self.inner.query(policy, query, input_doc, data=data, timeout_s=timeout_s)
        )

    def close(self) -> None:
        self.inner.close()


def _observe_placement(outcome: str, seconds: float) -> None:
    PLACEMENTS.labels(outcome).inc()
    PLACEMENT_SECONDS.observe(seconds)


def instrument(ports: Ports) -> Ports:
    """The ports with an instrumented policy engine and a placement observer (idempotent)."""
    if isinstance(ports.policies, InstrumentedPolicyEngine):
        return ports
    authz, evaluations = ports.authz_policies, ports.evaluation_policies
    return dataclasses.replace(
        ports,
        policies=InstrumentedPolicyEngine(ports.policies),
        authz_policies=InstrumentedPolicyEngine(authz) if authz is not None else None,
        evaluation_policies=InstrumentedPolicyEngine(evaluations) if evaluations is not None else None,
        placement_observer=_observe_placement,
    )


async def _collect(ports: Ports, subscribers: int) -> None:
    now = ports.clock.now()
    TASKS.clear()
    JOBS.clear()
    JOBS_QUEUED.clear()
    QUEUE_DEPTH.clear()
    QUEUE_AGE.clear()
    tasks: Counter[tuple[str, str]] = Counter()
    jobs: Counter[tuple[str, str]] = Counter()
    queues: set[str] = {TASKS_QUEUE}
    for (queue, kind, state), count in (await ports.broker.counts()).items():
        if queue == TASKS_QUEUE:  # a task waiting for its jobs is running, as users see it
            tasks[(kind, "running" if state == "waiting" else state)] += count
        elif queue.startswith("agent:"):  # a job waiting for its retry is queued
            jobs[(queue.removeprefix("agent:"), "queued" if state == "waiting" else state)] += count
            queues.add(queue)
    for (kind, task_state), count in tasks.items():
        TASKS.labels(kind, task_state).set(count)
    TASKS_RUNNING.set(sum(c for (_, s), c in tasks.items() if s == "running"))
    for (agent, job_state), count in jobs.items():
        JOBS.labels(agent, job_state).set(count)
        if job_state == "queued":
            JOBS_QUEUED.labels(agent).set(count)
    for queue in sorted(queues):
        depth = await ports.broker.depth(queue)
        QUEUE_DEPTH.labels(queue, "queued").set(depth.queued)
        QUEUE_DEPTH.labels(queue, "running").set(depth.running)
        QUEUE_AGE.labels(queue).set(depth.oldest_age_s)
    online = offline = 0
    limit = timedelta(seconds=OFFLINE_AFTER_S)
    for inst in await ports.agents.instances():
        if inst.deregistered_at is None and inst.last_seen >= now - limit:
            online += 1
        elif inst.last_seen >= now - timedelta(days=1):
            offline += 1
    AGENTS.labels("online").set(online)
    AGENTS.labels("offline").set(offline)
    async with ports.store.transaction(readonly=True) as tx:
        for doc_type in DOCUMENT_TYPES:
            DOCUMENTS.labels(doc_type).set(await tx.count(doc_type=doc_type))
    SUBSCRIBERS.set(subscribers)
    DB_STATEMENTS.set(ports.store.statements)


@router.get(
    "/metrics",
    responses={200: {"description": "Prometheus text format 0.0.4", "content": {"text/plain": {}}}},
)
async def metrics(request: Request, ports: PortsDep) -> Response:
    """Prometheus metrics of this server and of the cluster state in the database."""
    hub = getattr(request.app.state, "event_hub", None)
    await _collect(ports, int(getattr(hub, "subscribers", 0)))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
