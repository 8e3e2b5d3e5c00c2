"""What one step receives when it is dispatched, and the hash that decides whether an update re-runs it.

Layer 10 of the parameter order (lifecycle.md §2, §4.6) is resolved **at dispatch** from the outputs that
exist then: outputs posted through ``POST /outputs`` first, then the outputs of the steps that *precede* the
step in plan order, merged in that order — all preceding steps for the ``instance_outputs`` part, only those of
the same replica (and ``as_group`` steps of the same alias) for the replica part. A step never receives its own
outputs or those of parallel or later steps, so re-running an unchanged update gives the same inputs, the same
input hash, and no job.

The request (to plan ``unchanged`` steps) and the worker (to dispatch, and to re-check an ``unchanged`` step
whose predecessors produced new outputs) both build the job payload here, so they can never disagree. Pure: no
I/O, plain dicts in and out.
"""

import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from typing import Any

from stackl.domain import parameters

INVOCATION_FIELDS = (
    "image",
    "working_directory",
    "before_command",
    "command",
    "playbook_path",
    "ansible_role",
    "gather_facts",
    "serial",
    "connection",
    "become",
    "wait_for_connection",
    "timeout",
    "retries",
    "mock_result",
    "mock_duration",
    "mock_outputs",
    "mock_error",
    "mock_fail_attempts",
    "mock_log",
)
"""Invocation fields a job carries (agents.md §2); the FR document may hold more (``tool``, ``as_group``)."""


def step_id(alias: str, replica: int, fr: str) -> str:
    return f"{alias}/{replica}/{fr}"


def _precedes(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> bool:
    """Within one group: does ``earlier`` (listed before ``later``) run before it (same replica chain)?"""
    if earlier["service"] != later["service"]:
        return False
    return bool(
        earlier.get("as_group") or later.get("as_group") or int(earlier["replica"]) == int(later["replica"])
    )


def preceding(groups: Sequence[Mapping[str, Any]], target_id: str) -> list[Mapping[str, Any]]:
    """The steps of ``groups`` (the task's plan) that precede step ``target_id``, in plan order.

    Delete steps (a removal phase) produce no outputs and precede nothing. Earlier groups precede wholly;
    inside the step's own group, earlier FRs of the same replica and ``as_group`` steps of the same alias do.
    """
    before: list[Mapping[str, Any]] = []
    for group in groups:
        steps = [s for s in group["steps"] if s.get("action") != "delete"]
        ids = [str(s["id"]) for s in steps]
        if target_id not in ids:
            before.extend(steps)
            continue
        position = ids.index(target_id)
        me = steps[position]
        before.extend(s for s in steps[:position] if _precedes(s, me))
        return before
    return before


def layer10(
    groups: Sequence[Mapping[str, Any]],
    step: Mapping[str, Any],
    records: Mapping[str, Mapping[str, Any]],
    posted: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (instance part, replica part) of layer 10 for ``step`` from the outputs recorded now.

    Args:
        groups: the task's plan, groups of steps in order.
        step: the step being dispatched.
        records: step id → step record (``outputs`` of its last READY run).
        posted: outputs from ``POST /outputs``: ``{"instance": {...}, "replicas": {"<alias>/<i>": {...}}}``.
    """
    alias, index = str(step["service"]), int(step["replica"])
    instance = dict(posted.get("instance") or {})
    replica = dict((posted.get("replicas") or {}).get(f"{alias}/{index}") or {})
    for earlier in preceding(groups, str(step["id"])):
        outputs = (records.get(str(earlier["id"])) or {}).get("outputs") or {}
        if not outputs:
            continue
        instance.update(outputs)
        if earlier["service"] == alias and (earlier.get("as_group") or int(earlier["replica"]) == index):
            replica.update(outputs)
    return instance, replica


def hosts_of(base: Mapping[str, Any], replica_outputs: Mapping[str, Any]) -> list[str]:
    """A replica's hosts for a step: templated ``machine_names``, replaced by a received ``stackl_hosts``."""
    reported = replica_outputs.get("stackl_hosts")
    if isinstance(reported, list) and all(isinstance(h, str) for h in reported):
        return list(reported)
    names = base.get("machine_names")
    return [str(h) for h in names] if isinstance(names, list) else []


def job_payload(
    *,
    task_id: str,
    name: str,
    step: Mapping[str, Any],
    body: Mapping[str, Any],
    base_params: Mapping[str, Mapping[str, Any]],
    groups: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    """The job of agents.md §2 for ``step`` of instance ``body`` (secrets in clear: only agents get it).

    ``base_params`` are the replicas' layers 1-9 (``"<alias>/<i>"``); a replica without them (a removed
    one, whose delete receives what its create would receive now) uses its displayed parameters.
    """
    alias, index = str(step["service"]), int(step["replica"])
    replicas = body.get("services", {}).get(alias, [])
    replica = replicas[index] if index < len(replicas) else {}
    records = body.get("steps") or {}
    posted = body.get("posted_outputs") or {}
    instance_part, replica_part = layer10(groups, step, records, posted)
    base = base_params.get(f"{alias}/{index}", replica.get("provisioning_parameters", {}))
    params = parameters.dispatch_params(base, instance_part, replica_part)
    if step.get("as_group"):
        hosts: list[str] = []
        for i, other in enumerate(replicas):
            other_base = base_params.get(f"{alias}/{i}", other.get("provisioning_parameters", {}))
            _, other_part = layer10(groups, {**step, "replica": i}, records, posted)
            hosts.extend(hosts_of(other_base, other_part))
    else:
        hosts = hosts_of(base, replica_part)
    invocation = {k: v for k, v in (step.get("invocation") or {}).items() if k in INVOCATION_FIELDS}
    invocation["outputs"] = dict(step.get("outputs_spec") or {})
    return {
        "task_id": task_id,
        "action": step["action"],
        "stack_instance": name,
        "service": alias,
        "service_document": step.get("service_document") or replica.get("service", ""),
        "replica": index,
        "infrastructure_target": step["infrastructure_target"],
        "cloud_provider": step["cloud_provider"],
        "agent": step["agent"],
        "functional_requirement": step["functional_requirement"],
        "tool": step["tool"],
        "invocation": invocation,
        "hosts": hosts,
        "groups": {g: [h.get("host") for h in members] for g, members in body.get("groups", {}).items()},
        "provisioning_parameters": params,
        "secrets": dict(replica.get("secrets", {})),
    }


def input_hash(payload: Mapping[str, Any], key: bytes) -> str:
    """SHA-256 of the step's inputs: FR, tool, invocation, parameters, hosts, target, and an HMAC of secrets.

    The secrets enter only as an HMAC keyed by the server's secret key, so the hash (which responses show)
    reveals nothing about them, yet a changed secret re-runs the step (lifecycle.md §4.3).
    """
    secrets = json.dumps(payload.get("secrets") or {}, sort_keys=True, separators=(",", ":"), default=str)
    inputs = {k: payload.get(k) for k in ("functional_requirement", "tool", "invocation", "hosts")}
    inputs |= {
        "parameters": payload.get("provisioning_parameters"),
        "target": payload.get("infrastructure_target"),
        "secrets": hmac.new(key, secrets.encode(), hashlib.sha256).hexdigest(),
    }
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
