"""Instance pages: live step statuses, placement explanation, outputs, parameters (secrets masked), tasks, logs.

The live part (aggregate status, the active task's progress, each step's status, outputs and task history) is a
fragment of its own that htmx polls every two seconds; the page renders it inline first, so the page shows
everything without JavaScript too.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

import yaml
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from stackl import errors
from stackl.api.deps import PortsDep
from stackl.api.ui import pictures
from stackl.api.ui.common import UIRoute, aggregate_status, job_log, render
from stackl.domain import documents
from stackl.domain.stored import StoredDocument
from stackl.usecases import documents as document_cases
from stackl.usecases import task_queries
from stackl.usecases.ports import Ports

router = APIRouter(prefix="/instances", route_class=UIRoute)

CANDIDATES_SHOWN = 50  # per alias: the explanation of 10,000 targets would not fit a page
Name = Annotated[str, Path(max_length=200)]


async def _instance(ports: Ports, name: str) -> StoredDocument:
    try:
        return await document_cases.get(ports, "stack_instance", name)
    except errors.DocumentNotFound as exc:
        raise errors.InstanceNotFound(f"Stack instance {name!r} not found") from exc


def _steps(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Status entries grouped for the table: alias, then replica, then FR (the stored order within)."""
    services = body.get("services", {})
    rows: list[dict[str, Any]] = []
    for entry in body.get("status", []):
        alias = str(entry.get("service", ""))
        replica = int(entry.get("replica") or 0)
        fr = str(entry.get("functional_requirement", ""))
        replicas = services.get(alias, [])
        rows.append(
            {
                **entry,
                "replica": replica,
                "service_document": replicas[replica].get("service", "") if replica < len(replicas) else "",
                "log_url": "/ui/instances/"
                + "/".join(quote(str(p), safe="") for p in (body["name"], "steps", alias, replica, fr))
                + "/log",
            }
        )
    order = list(services)
    rows.sort(
        key=lambda r: (order.index(r["service"]) if r["service"] in order else len(order), r["replica"])
    )
    return rows


async def _live(ports: Ports, stored: StoredDocument) -> dict[str, Any]:
    body = documents.mask_secrets(stored.body)
    tasks = await task_queries.list_tasks(ports, stack_instance=stored.name, limit=20)
    active = next(
        (t for t in tasks if t["state"] in ("queued", "running", "rolling_back", "cancelling")), None
    )
    replica_outputs = [
        {"alias": alias, "replica": index, "target": replica.get("infrastructure_target"), "outputs": outputs}
        for alias, replicas in body.get("services", {}).items()
        for index, replica in enumerate(replicas)
        if (outputs := replica.get("outputs"))
    ]
    last = active or (tasks[0] if tasks else None)
    return {
        "name": stored.name,
        "revision": stored.revision,
        "topology": pictures.topology(body),
        "timeline": pictures.timeline(
            await bars(ports, _entry_steps(body, str(last["id"]) if last else None)),
            ports.clock.now(),
            f"Timeline of task {last['id']} ({last['kind']})" if last else "Timeline",
        ),
        "timeline_task": last,
        "status": aggregate_status(body.get("status", [])),
        "steps": _steps(body),
        "tasks": tasks,
        "active": active,
        "instance_outputs": body.get("instance_outputs", {}),
        "replica_outputs": replica_outputs,
    }


async def bars(ports: Ports, steps: Sequence[Mapping[str, Any]]) -> list[pictures.Bar]:
    """Every attempt of the given steps as timeline bars.

    A step gives ``label``, ``job_id``, ``started_at`` (its dispatch), ``finished_at`` and ``status``. An
    attempt waited from the dispatch (or the previous attempt's end) and ran from the agent's start to its
    result; the agents' attempt records give those moments.
    """
    out: list[pictures.Bar] = []
    for step in steps:
        dispatched = _moment(step.get("started_at"))
        if not step.get("job_id") or dispatched is None:
            continue
        label, status = str(step["label"]), str(step.get("status"))
        attempts = sorted(await ports.agents.attempts(str(step["job_id"])), key=lambda a: a.attempt)
        queued = dispatched
        for attempt in attempts:
            last = attempt is attempts[-1]
            ended = attempt.result_at or (_moment(step.get("finished_at")) if last else None)
            began = attempt.started_at or attempt.claimed_at
            out.append(
                pictures.Bar(label, attempt.attempt, status if last else "FAILED", queued, began, ended)
            )
            queued = ended or queued
        if not attempts:  # dispatched, no agent has claimed it yet
            out.append(pictures.Bar(label, 1, status, dispatched, None, None))
        if len(out) >= pictures.MAX_BARS:
            break
    return out


def _entry_steps(body: Mapping[str, Any], task_id: str | None) -> list[Mapping[str, Any]]:
    """The status entries task ``task_id`` dispatched, as ``bars`` reads them."""
    return [
        {
            **entry,
            "label": f"{entry.get('service')}[{entry.get('replica') or 0}]/{entry.get('functional_requirement')}",
        }
        for entry in body.get("status", [])
        if task_id is not None and entry.get("task_id") == task_id
    ]


def _moment(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def explanation_view(placement: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per alias: chosen targets first, then spare, then rejected; at most CANDIDATES_SHOWN of them."""
    rank = {"chosen": 0, "spare": 1, "rejected": 2}
    out = []
    for alias, service in (placement.get("services") or {}).items():
        candidates = sorted(
            (service.get("candidates") or {}).items(),
            key=lambda item: (rank.get(item[1].get("result"), 3), item[1].get("replica", 0)),
        )
        out.append(
            {
                "alias": alias,
                "service": service.get("service", ""),
                "replicas": service.get("replicas", ""),
                "targets": service.get("targets", []),
                "candidates": candidates[:CANDIDATES_SHOWN],
                "hidden": max(0, len(candidates) - CANDIDATES_SHOWN),
                "update_impossible": service.get("update_impossible", []),
            }
        )
    return out


@router.get("/{name}", name="ui_instance")
async def instance_page(request: Request, ports: PortsDep, name: Name) -> Response:
    """Everything about one stack instance."""
    stored = await _instance(ports, name)
    body = documents.mask_secrets(stored.body)  # every secrets map of the instance shown as ********
    live = await _live(ports, stored)
    replicas = [
        {"alias": alias, "replica": index, **replica}
        for alias, items in body.get("services", {}).items()
        for index, replica in enumerate(items)
    ]
    return render(
        request,
        "instance.html",
        doc=stored,
        body=body,
        replicas=replicas,
        explanation=explanation_view(body.get("placement") or {}),
        placement=body.get("placement") or {},
        live=live,
        params_yaml=yaml.safe_dump(body.get("instance_params") or {}, sort_keys=True)
        if body.get("instance_params")
        else "",
        rollback_to=(live["timeline_task"] or {}).get("revision_before"),
        failed=task_queries.instance_state(body, None) == "FAILED",  # a step failed or never ran
    )


@router.get("/{name}/live", name="ui_instance_live")
async def instance_live(request: Request, ports: PortsDep, name: Name) -> Response:
    """The polled fragment: statuses, outputs and tasks."""
    stored = await _instance(ports, name)
    return render(request, "instance_live.html", live=await _live(ports, stored))


@router.get("/{name}/steps/{alias}/{replica}/{fr}/log", name="ui_step_log")
async def step_log(
    request: Request,
    ports: PortsDep,
    name: Name,
    alias: Annotated[str, Path(max_length=200)],
    replica: Annotated[int, Path(ge=0)],
    fr: Annotated[str, Path(max_length=200)],
    fragment: Annotated[bool, Query(description="only the log (htmx)")] = False,
) -> Response:
    """The log of one step's job (every attempt), followed while the step runs."""
    stored = await _instance(ports, name)
    entry = next(
        (
            e
            for e in stored.body.get("status", [])
            if e.get("service") == alias
            and int(e.get("replica") or 0) == replica
            and e.get("functional_requirement") == fr
        ),
        None,
    )
    if entry is None:
        raise errors.NotFound(f"stack instance {name!r} has no step {alias}/{replica}/{fr}")
    job_id = entry.get("job_id")
    lines = await job_log(ports, str(job_id)) if job_id else []
    attempts: dict[int, list[Any]] = {}
    for line in lines:
        attempts.setdefault(line.attempt, []).append(line)
    ctx = {
        "name": name,
        "step": {**entry, "replica": replica},
        "attempts": sorted(attempts.items()),
        "running": entry.get("status") == "in_progress",
        "url": request.url.path,
    }
    return render(request, "step_log_live.html" if fragment else "step_log.html", **ctx)
