"""The table of each kind (spec/cli.md §4.3, §5.7): its columns and the rows of one API object.

A row function takes what the API returned and never fails on a missing field (a 0.5-view snapshot has no
``source``, an older server may omit ``metadata``), so tables work against any STACKL server. A SIT gives one
row per target; every other object gives one row.
"""

import re
from collections.abc import Callable, Mapping
from typing import Any

from stackl.cli.output import join_list, join_map, local_time, scalar

Row = list[str]
RowsOf = Callable[[Mapping[str, Any]], list[Row]]

POLICY_RULES = ("solutions", "infringement", "filter", "allow")  # rule names a policy template is used by
_RULE_HEAD = re.compile(r"^[ \t]*(" + "|".join(POLICY_RULES) + r")\b(?![.\w])", re.MULTILINE)
ACTIVE_TASK_STATES = ("queued", "running", "rolling_back", "cancelling")


def _meta(doc: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = doc.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _items(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else []


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def infrastructure_base(doc: Mapping[str, Any]) -> list[Row]:
    meta = _meta(doc)
    return [
        [
            scalar(doc.get("name")),
            scalar(doc.get("cloud_provider")),
            scalar(doc.get("agent")),
            join_map(doc.get("tags") or {}),
            scalar(meta.get("revision")),
            local_time(meta.get("updated_at")),
        ]
    ]


def target_name(target: Any) -> str:
    """``{environment, location, zone}`` → ``env.loc.zone``."""
    target = _map(target)
    return ".".join(str(target.get(k, "")) for k in ("environment", "location", "zone"))


def sit(doc: Mapping[str, Any]) -> list[Row]:
    capabilities = _map(doc.get("infrastructure_capabilities"))
    rows = []
    for target in _items(doc.get("infrastructure_targets")):
        name = target_name(target)
        capability = _map(capabilities.get(name))
        rows.append(
            [
                scalar(doc.get("name")),
                name,
                scalar(capability.get("agent")),
                scalar(capability.get("cloud_provider")),
            ]
        )
    return rows or [[scalar(doc.get("name")), "", "", ""]]


def sat(doc: Mapping[str, Any]) -> list[Row]:
    services = [
        f"{s.get('name')}={s.get('service')}" if isinstance(s, Mapping) else scalar(s)
        for s in _items(doc.get("services"))
    ]
    stages = [scalar(_map(s).get("name")) for s in _items(doc.get("stages"))]
    return [
        [
            scalar(doc.get("name")),
            join_list(services),
            join_list(stages),
            join_list(list(_map(doc.get("policies")))),
        ]
    ]


def service(doc: Mapping[str, Any]) -> list[Row]:
    policies = [scalar(_map(p).get("name")) for p in _items(doc.get("service_policies"))]
    return [
        [scalar(doc.get("name")), join_list(doc.get("functional_requirements") or []), join_list(policies)]
    ]


def functional_requirement(doc: Mapping[str, Any]) -> list[Row]:
    invocations = [f"{key}:{_map(inv).get('tool', '')}" for key, inv in _map(doc.get("invocation")).items()]
    return [[scalar(doc.get("name")), join_list(invocations), scalar(bool(doc.get("as_group")))]]


def policy_template(doc: Mapping[str, Any]) -> list[Row]:
    rules = dict.fromkeys(_RULE_HEAD.findall(str(doc.get("policy") or "")))
    return [[scalar(doc.get("name")), join_list(list(rules)), join_list(doc.get("inputs") or [])]]


def snapshot(doc: Mapping[str, Any]) -> list[Row]:
    meta, source = _meta(doc), _map(doc.get("source"))
    if source:
        origin = f"{source.get('type')}/{source.get('name')}@{source.get('revision')}"
    else:  # the 0.5 view has no source: name the copied document
        copied = _map(doc.get("snapshot"))
        origin = f"{copied.get('type', '?')}/{copied.get('name', '?')}" if copied else ""
    created = meta.get("created_at") or doc.get("time")
    return [[scalar(doc.get("name")), origin, local_time(created), scalar(meta.get("created_by"))]]


def instance_status(doc: Mapping[str, Any]) -> str:
    """``READY 6/6`` (ready steps), ``FAILED 1/6`` (failed steps), ``in_progress 2/6`` (finished steps)."""
    entries = [_map(e) for e in _items(doc.get("status"))]
    statuses = [str(e.get("status", "")) for e in entries]
    ready = sum(s in ("READY", "SKIPPED") for s in statuses)
    failed = statuses.count("FAILED")
    state = doc.get("state") or (
        "in_progress" if "in_progress" in statuses else "FAILED" if failed else "READY" if statuses else ""
    )
    if not statuses:
        return str(state)
    count = {"READY": ready, "FAILED": failed}.get(str(state), ready + failed)
    return f"{state} {count}/{len(statuses)}"


def instance(doc: Mapping[str, Any]) -> list[Row]:
    services = [
        f"{alias}\u00d7{len(_items(replicas))}" for alias, replicas in _map(doc.get("services")).items()
    ]
    task = _map(doc.get("task"))
    running = f"{task.get('kind')} {task.get('id')}" if task.get("state") in ACTIVE_TASK_STATES else ""
    return [
        [
            scalar(doc.get("name")),
            scalar(doc.get("stack_application_template")),
            scalar(doc.get("stack_infrastructure_template")),
            join_list(services),
            instance_status(doc),
            running,
            local_time(_meta(doc).get("updated_at")),
        ]
    ]


def revision(entry: Mapping[str, Any]) -> list[Row]:
    return [
        [
            scalar(entry.get("revision")),
            scalar(entry.get("action")),
            local_time(entry.get("time")),
            scalar(entry.get("subject")),
            scalar(entry.get("task_id")),
            scalar(entry.get("restored_from")),
        ]
    ]


_BASE = (["NAME", "CLOUD PROVIDER", "AGENT", "TAGS", "REVISION", "UPDATED"], infrastructure_base)
TABLES: dict[str, tuple[list[str], RowsOf]] = {
    "environment": _BASE,
    "location": _BASE,
    "zone": _BASE,
    "stack_infrastructure_template": (["NAME", "TARGET", "AGENT", "CLOUD PROVIDER"], sit),
    "stack_application_template": (["NAME", "SERVICES", "STAGES", "POLICIES"], sat),
    "service": (["NAME", "FUNCTIONAL REQUIREMENTS", "SERVICE POLICIES"], service),
    "functional_requirement": (["NAME", "INVOCATIONS", "AS GROUP"], functional_requirement),
    "policy_template": (["NAME", "RULES", "INPUTS"], policy_template),
    "snapshot": (["NAME", "SOURCE", "CREATED", "BY"], snapshot),
    "stack_instance": (["NAME", "SAT", "SIT", "SERVICES", "STATUS", "TASK", "UPDATED"], instance),
}
HISTORY: tuple[list[str], RowsOf] = (["REVISION", "ACTION", "TIME", "BY", "TASK", "RESTORED FROM"], revision)
