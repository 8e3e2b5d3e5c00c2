"""The agent protocol and the agent list (api.md §B.4; agents.md §1-4).

Routes translate the wire bodies of ``schemas.agents`` into the use cases of ``usecases.agent_registry``,
``usecases.agent_claims`` and ``usecases.agent_reports`` and back; fencing, leases and masking live there.

Agent isolation (agents.md §9) does not rest on the replaceable authorization policy: every protocol route
also depends on ``deps.AgentScope`` (an agent token acts only for the agent name it is bound to; admins for
any), registration checks the body's name the same way, and the list, show and delete routes keep an agent
token to its own agent. The use cases then accept a job call only from the instance holding its attempt.
"""

from typing import Any

from fastapi import APIRouter, Request, Response

from stackl import errors
from stackl.api import auditing, deps, problems
from stackl.api.deps import AgentBinding, AgentScope, CheckedCallerDep, PortsDep
from stackl.schemas.agents import (
    AttemptBody,
    ClaimAnswer,
    ClaimBody,
    DeregisterBody,
    EventItem,
    EventsBody,
    HeartbeatBody,
    RegisterBody,
    ReleaseBody,
    ResultBody,
    ResultsBody,
)
from stackl.usecases import agent_claims, agent_registry, agent_reports

router = APIRouter(prefix="/agents", tags=["agents"])


@router.post("/register")
async def register_agent(body: RegisterBody, ports: PortsDep, caller: CheckedCallerDep) -> dict[str, Any]:
    """Announce an agent instance; answers the timings and limits it must use."""
    deps.require_agent_scope(caller, body.name)
    registration = agent_registry.Registration(
        name=body.name,
        instance_id=body.instance_id,
        previous_instance_id=body.previous_instance_id,
        hostname=body.hostname,
        version=body.version,
        protocol=body.protocol,
        executors=body.executors,
        tools=body.tools,
        labels=body.labels,
        max_jobs=body.max_jobs,
    )
    return await agent_registry.register(ports, registration)


@router.post("/{name}/heartbeat", dependencies=[AgentScope])
async def agent_heartbeat(name: str, body: HeartbeatBody, ports: PortsDep) -> dict[str, Any]:
    """Liveness and lease renewal; answers the jobs to cancel and to abandon."""
    running = [
        agent_registry.Running(job_id=j.job_id, attempt=j.attempt, phase=j.phase) for j in body.running
    ]
    return await agent_registry.heartbeat(
        ports, name, instance_id=body.instance_id, free_slots=body.free_slots, running=running
    )


@router.post(
    "/{name}/claim",
    dependencies=[AgentScope],
    response_model=None,  # answered as built; the schema documents the shared job model (domain/jobs.py)
    responses={200: {"model": ClaimAnswer}, 204: {"description": "no job within the wait"}},
)
async def claim_jobs(
    name: str, body: ClaimBody, ports: PortsDep, request: Request
) -> dict[str, Any] | Response:
    """Long-poll for jobs: 200 with their payloads, or 204 when none arrived within ``wait``."""
    jobs = await agent_claims.claim(
        ports,
        name,
        instance_id=body.instance_id,
        wait=body.wait,
        max_jobs=body.max_jobs,
        gone=request.is_disconnected,  # a dead agent's open claim must not take jobs
        audit=auditing.reserved_entry(request, request.state.access),  # committed with the claim
    )
    if not jobs:
        return Response(status_code=204)
    return {"jobs": jobs}


@router.post("/{name}/jobs/{job_id}/start", dependencies=[AgentScope])
async def start_job(name: str, job_id: str, body: AttemptBody, ports: PortsDep) -> dict[str, Any]:
    """The tool is about to run."""
    await agent_reports.start(ports, name, job_id, instance_id=body.instance_id, attempt=body.attempt)
    return {}


@router.post("/{name}/jobs/{job_id}/events", dependencies=[AgentScope])
async def post_job_events(name: str, job_id: str, body: EventsBody, ports: PortsDep) -> dict[str, Any]:
    """A batch of log lines; answers the highest stored seq, whether to stop streaming, and a cancel."""
    return await agent_reports.events(
        ports,
        name,
        job_id,
        instance_id=body.instance_id,
        attempt=body.attempt,
        lines=_lines(body.events),
        start=body.start,
    )


def _lines(events: list[EventItem]) -> list[agent_reports.Event]:
    return [agent_reports.Event(seq=e.seq, text=e.text, stream=e.stream, ts=e.ts) for e in events]


@router.post("/{name}/jobs/{job_id}/result", dependencies=[AgentScope])
async def post_job_result(
    name: str, job_id: str, body: ResultBody, ports: PortsDep, request: Request
) -> dict[str, Any]:
    """The final status of an attempt: the first result wins, a repeat is answered as a duplicate."""
    return await agent_reports.result(
        ports,
        name,
        job_id,
        instance_id=body.instance_id,
        outcome=_outcome(body),
        audit=auditing.reserved_entry(request, request.state.access),  # committed with the result
    )


# Named like the single call: the same operation for the access check and the audit (an agent reports).
@router.post("/{name}/results", name="post_job_results", dependencies=[AgentScope])
async def post_job_results(name: str, body: ResultsBody, ports: PortsDep) -> dict[str, Any]:
    """Several results in one call (feature ``result_batch``): each answered as its own call would be."""
    answers: list[dict[str, Any]] = []
    for entry in body.results:
        head = {"job_id": entry.job_id, "attempt": entry.attempt}
        try:
            answer = await agent_reports.result(
                ports, name, entry.job_id, instance_id=entry.instance_id, outcome=_outcome(entry)
            )
        except errors.StacklError as exc:
            status = problems.status_of(exc)
            if status >= 500:
                raise  # the database or a bug: the whole call fails, and the agent sends them all again
            answers.append(head | {"status": status, "detail": exc.message, **exc.extra()})
            continue
        answers.append(head | {"status": 200, **answer})
    return {"results": answers}


def _outcome(body: ResultBody) -> agent_reports.JobResult:
    return agent_reports.JobResult(
        attempt=body.attempt,
        status=body.status,
        exit_code=body.exit_code,
        outputs=body.outputs,
        error_message=body.error_message,
        started_at=body.started_at,
        finished_at=body.finished_at,
        duration_s=body.duration_s,
        timed_out=body.timed_out,
        cancelled=body.cancelled,
        last_seq=body.last_seq,
        start=body.start,
        events=_lines(body.events),
    )


@router.post("/{name}/jobs/{job_id}/release", dependencies=[AgentScope])
async def release_job(name: str, job_id: str, body: ReleaseBody, ports: PortsDep) -> dict[str, Any]:
    """Give a job back (shutdown); started ones count as a lease expiry."""
    await agent_reports.release(
        ports, name, job_id, instance_id=body.instance_id, attempt=body.attempt, started=body.started
    )
    return {}


@router.post("/{name}/deregister", status_code=204, dependencies=[AgentScope])
async def deregister_agent(name: str, body: DeregisterBody, ports: PortsDep) -> Response:
    """The instance is going away: offline at once."""
    await agent_registry.deregister(ports, name, instance_id=body.instance_id)
    return Response(status_code=204)


@router.get("")
async def list_agents(ports: PortsDep, caller: CheckedCallerDep) -> dict[str, Any]:
    """Every agent with its state, instances and running jobs."""
    deps.require_agent_binding(caller, None)
    return {"items": await agent_registry.list_agents(ports), "next_cursor": None}


@router.get("/{name}", dependencies=[AgentBinding])
async def get_agent(name: str, ports: PortsDep) -> dict[str, Any]:
    """One agent."""
    return await agent_registry.get_agent(ports, name)


@router.delete("/{name}", status_code=204, dependencies=[AgentBinding])
async def delete_agent(name: str, ports: PortsDep) -> Response:
    """Forget an agent's instances; its queued jobs stay queued."""
    await agent_registry.delete_agent(ports, name)
    return Response(status_code=204)
