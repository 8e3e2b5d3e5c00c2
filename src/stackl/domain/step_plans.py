"""The step plans of a stack instance's create and delete, from plain data (lifecycle.md §4.1, §4.4).

`plans` orders and labels the steps of any operation; this module feeds it what an instance's documents say:
which invocation (and so which tool) an FR runs on a cloud provider, the create plan of a placement given the
service-policy decisions, the delete plan of a stored instance, and the status entry each planned step starts
with. The use cases that read the documents, evaluate policies and write the instance call these; keeping them
pure lets a plan answer, a create and an update agree without a store, a broker or a policy engine.
"""

from collections.abc import Mapping, Sequence
from typing import Any

from stackl.domain import plans, targets


def invocation_of(fr_body: Mapping[str, Any], cloud_provider: str) -> dict[str, Any] | None:
    """The FR's invocation for ``cloud_provider``, else its ``generic`` one, else None (lifecycle.md §4.1)."""
    invocation = fr_body.get("invocation", {})
    if not isinstance(invocation, Mapping):
        return None
    chosen = invocation.get(cloud_provider) or invocation.get(targets.DEFAULT_CLOUD_PROVIDER)
    return dict(chosen) if isinstance(chosen, Mapping) else None


def create_step_plan(
    groups: Sequence[tuple[str, Sequence[str]]],
    aliases: Sequence[str],
    placed: Mapping[str, Sequence[str]],
    capabilities: Mapping[str, Mapping[str, Any]],
    frs_of: Mapping[str, Sequence[str]],
    fr_bodies: Mapping[str, Mapping[str, Any]],
    decisions: Mapping[tuple[str, int, str], tuple[str, str]],
) -> list[plans.StepGroup]:
    """The create plan of a placement: every FR of every placed replica, in group order.

    Args:
        groups: aliases by group, in order (`plans.stage_groups`).
        aliases: the request's aliases, in order.
        placed: alias → the targets of its replicas, by replica index.
        capabilities: target → its merged capabilities (``agent``, ``cloud_provider``).
        frs_of: alias → its service's FR names in declared order.
        fr_bodies: FR name → its document body.
        decisions: (alias, replica, FR) → (decision, reason) from service policies; absent: run.
    """
    replicas = {
        alias: [
            plans.ReplicaPlacement(
                target=t,
                agent=str(capabilities[t]["agent"]),
                cloud_provider=str(capabilities[t]["cloud_provider"]),
            )
            for t in placed.get(alias, [])
        ]
        for alias in aliases
    }

    def tool_of(fr: str, cloud_provider: str) -> str | None:
        chosen = invocation_of(fr_bodies[fr], cloud_provider)
        return str(chosen["tool"]) if chosen is not None and chosen.get("tool") else None

    def decide(alias: str, replica: int, fr: str) -> tuple[str, str]:
        return decisions.get((alias, replica, fr), ("run", "new replica"))

    return plans.create_plan(
        groups,
        replicas,
        frs_of,
        {fr: bool(body.get("as_group", False)) for fr, body in fr_bodies.items()},
        tool_of,
        decide,
    )


def status_entry(step: Mapping[str, Any], task_id: str) -> dict[str, Any]:
    status, message = "in_progress", ""
    if step["decision"] == "skip":
        status, message = "SKIPPED", str(step["reason"])
    elif step.get("tool") is None:
        status, message = "FAILED", str(step["reason"])
    return {
        "service": step["service"],
        "functional_requirement": step["functional_requirement"],
        "infrastructure_target": step["infrastructure_target"],
        "status": status,
        "error_message": message,
        "replica": step["replica"],
        "action": step["action"],
        "task_id": task_id,
    }


def delete_groups(
    body: Mapping[str, Any], fr_bodies: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """The delete plan of a stored instance: groups reversed, FRs reversed, replicas in parallel (§4.4).

    A step that never started a job (no ``job_id`` in its status) is removed without a job: decision
    ``remove``.
    """
    services: dict[str, list[dict[str, Any]]] = body.get("services", {})
    stages = [(str(s["name"]), list(s.get("services", []))) for s in body.get("stages", [])]
    groups = plans.stage_groups(list(services), stages)
    entries: dict[str, list[dict[str, Any]]] = {}
    for entry in body.get("status", []):
        entries.setdefault(str(entry["service"]), []).append(entry)
    out: list[dict[str, Any]] = []
    for stage, aliases in reversed(groups):
        steps: list[dict[str, Any]] = []
        for alias in reversed(aliases):
            replicas = services.get(alias, [])
            for entry in reversed(entries.get(alias, [])):
                index = int(entry.get("replica") or 0)
                replica = replicas[index] if index < len(replicas) else (replicas[0] if replicas else {})
                fr = str(entry["functional_requirement"])
                fr_body = fr_bodies.get(fr)
                cloud_provider = str(replica.get("cloud_provider", targets.DEFAULT_CLOUD_PROVIDER))
                invocation = invocation_of(fr_body, cloud_provider) if fr_body is not None else None
                started = bool(entry.get("job_id")) or entry.get("status") == "READY"
                decision, reason = ("run", "delete") if started else ("remove", "no job ever started")
                if decision == "run" and invocation is None:
                    reason = (
                        f"functional requirement {fr} not found"
                        if fr_body is None
                        else f"no invocation for cloud provider {cloud_provider}"
                    )
                steps.append(
                    {
                        "id": f"{alias}/{index}/{fr}",
                        "service": alias,
                        "replica": index,
                        "infrastructure_target": entry["infrastructure_target"],
                        "functional_requirement": fr,
                        "action": "delete",
                        "tool": str(invocation["tool"]) if invocation else None,
                        "agent": str(replica.get("agent", targets.DEFAULT_AGENT)),
                        "decision": decision,
                        "reason": reason,
                        "cloud_provider": cloud_provider,
                        "service_document": str(replica.get("service", "")),
                        "as_group": "," in str(entry["infrastructure_target"]),
                        "invocation": invocation,
                        "outputs_spec": {},
                    }
                )
        if steps:
            out.append({"stage": stage, "steps": steps})
    return out


def delete_plan_answer(
    name: str, body: Mapping[str, Any], groups: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """The ``POST /stack_instances/plan`` answer of a delete: the plan view of `delete_groups`."""
    keep = ("id", "service", "replica", "infrastructure_target", "functional_requirement", "action", "tool")
    return {
        "operation": "delete",
        "stack_instance": name,
        "feasible": True,
        "detail": "",
        "placement": {},
        "explanation": {},
        "changes": {"services_added": [], "services_removed": list(body.get("services", {}))},
        "plan": [
            {
                "stage": g["stage"],
                "steps": [
                    {k: s[k] for k in keep}
                    | {"agent": s["agent"], "decision": s["decision"], "reason": s["reason"]}
                    for s in g["steps"]
                ],
            }
            for g in groups
        ],
        "warnings": [],
    }
