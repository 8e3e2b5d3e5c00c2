"""``stackl describe instance NAME`` (spec/cli.md §5.3): everything about one stack instance, for people.

Reads the full view of the instance (``/documents/stack_instance/NAME``: aggregate ``state``, ``task``,
``placement``, per-step ``attempt`` and times) and its last tasks, and prints the sections: overview,
services and replicas, statuses, placement (per alias the chosen, spare and rejected targets with the failing
check), outputs, parameters (secrets always masked, whatever the server sent) and the last tasks.
``-o json|yaml`` prints the instance object with a ``tasks`` list.
"""

from collections.abc import Mapping
from typing import Annotated, Any

import typer

from stackl.cli import context, output, plan, progress, tasks
from stackl.client.client import JsonDict, StacklClient
from stackl.domain.secrets import MASK, is_secret_key

LAST_TASKS = 5
ERROR_WIDTH = 100
REJECTED_SHOWN = 10
STATUS_COLUMNS = ["SERVICE", "FR", "TARGET", "AGENT", "STATUS", "ERROR", "ATTEMPT", "DURATION"]
TASK_COLUMNS = ["ID", "KIND", "STATE", "PROGRESS", "CREATED", "BY"]
REPLICA_COLUMNS = ["ALIAS", "REPLICA", "SERVICE", "TARGET", "AGENT", "CLOUD PROVIDER", "HOSTS"]

app = typer.Typer(name="describe", help="Show everything about one object.", no_args_is_help=True)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def aggregate_state(instance: JsonDict) -> str:
    """The server's ``state``, or (older servers) in_progress / FAILED / READY from the statuses."""
    if instance.get("state"):
        return str(instance["state"])
    statuses = [str(entry.get("status")) for entry in instance.get("status") or []]
    if "in_progress" in statuses:
        return "in_progress"
    return "FAILED" if "FAILED" in statuses else "READY"


def masked_params(values: Any) -> dict[str, Any]:
    """Parameters with the values of secret-looking keys masked."""
    return {k: (MASK if is_secret_key(str(k)) else v) for k, v in _map(values).items()}


def masked_secrets(values: Any) -> dict[str, str]:
    """A secrets map as shown: every value masked."""
    return dict.fromkeys(_map(values), MASK)


def _first_line(text: Any, width: int = ERROR_WIDTH) -> str:
    lines = str(text or "").strip().splitlines()
    first = lines[0] if lines else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def status_rows(instance: JsonDict) -> list[list[str]]:
    """One row per step: service, FR, target, agent (of the replica), status, error, attempt, duration."""
    services = _map(instance.get("services"))
    rows = []
    for entry in instance.get("status") or []:
        replicas = services.get(entry.get("service")) or []
        index = int(entry.get("replica") or 0)
        replica = replicas[index] if isinstance(replicas, list) and index < len(replicas) else {}
        rows.append(
            [
                f"{entry.get('service', '')}[{index}]",
                str(entry.get("functional_requirement", "")),
                str(entry.get("infrastructure_target", "")),
                str(_map(replica).get("agent", "")),
                str(entry.get("status", "")),
                _first_line(entry.get("error_message")),
                output.scalar(entry.get("attempt")),
                progress.duration(entry.get("started_at"), entry.get("finished_at")),
            ]
        )
    return rows


def replica_rows(instance: JsonDict) -> list[list[str]]:
    rows = []
    for alias, replicas in _map(instance.get("services")).items():
        for index, replica in enumerate(replicas if isinstance(replicas, list) else []):
            replica = _map(replica)
            rows.append(
                [
                    str(alias),
                    str(index),
                    str(replica.get("service", "")),
                    str(replica.get("infrastructure_target", "")),
                    str(replica.get("agent", "")),
                    str(replica.get("cloud_provider", "")),
                    output.join_list(replica.get("hosts") or []),
                ]
            )
    return rows


def placement_lines(placement: Any) -> list[str]:
    """Per alias: the targets chosen, spare and rejected, each with why (the first failing check)."""
    lines: list[str] = []
    for alias, entry in _map(_map(placement).get("services")).items():
        entry = _map(entry)
        candidates = _map(entry.get("candidates"))
        verdicts = {"chosen": 0, "spare": 0, "rejected": 0}
        lines.append(f"  {alias} ({entry.get('service', '?')}), {entry.get('replicas', '?')} replica(s):")
        for target, candidate in candidates.items():
            candidate = dict(_map(candidate))
            result = str(candidate.get("result", "?"))
            verdicts[result] = verdicts.get(result, 0) + 1
            if result == "rejected" and verdicts["rejected"] > REJECTED_SHOWN:
                continue
            label = (
                f"chosen (replica {candidate['replica']})"
                if result == "chosen" and "replica" in candidate
                else result
            )
            lines.append(f"    {label:20} {target}: {plan.candidate_reason(candidate)}")
        hidden = verdicts["rejected"] - REJECTED_SHOWN
        if hidden > 0:
            lines.append(f"    … {hidden} more rejected targets (stackl plan --all-targets shows them)")
    return lines


def output_lines(instance: JsonDict) -> list[str]:
    lines = [
        f"  {key}: {output.scalar(value)}" for key, value in _map(instance.get("instance_outputs")).items()
    ]
    for alias, replicas in _map(instance.get("services")).items():
        for index, replica in enumerate(replicas if isinstance(replicas, list) else []):
            for key, value in _map(_map(replica).get("outputs")).items():
                lines.append(f"  {alias}[{index}] {key}: {output.scalar(value)}")
    return lines


def parameter_lines(instance: JsonDict) -> list[str]:
    lines = [
        f"  {key}: {output.scalar(value)}"
        for key, value in masked_params(instance.get("instance_params")).items()
    ]
    lines += [
        f"  {key}: {value} (secret)"
        for key, value in masked_secrets(instance.get("instance_secrets")).items()
    ]
    for alias, values in _map(instance.get("service_params")).items():
        lines += [f"  {alias}: {key}: {output.scalar(value)}" for key, value in masked_params(values).items()]
    for alias, values in _map(instance.get("service_secrets")).items():
        lines += [f"  {alias}: {key}: {value} (secret)" for key, value in masked_secrets(values).items()]
    return lines


def task_row(task: JsonDict) -> list[str]:
    full = tasks.row(task)  # ID, KIND, INSTANCE, STATE, PROGRESS, CREATED, BY, DURATION
    return [full[0], full[1], full[3], full[4], full[5], full[6]]


def show(instance: JsonDict, recent: list[JsonDict], *, no_color: bool) -> None:
    """Every section of ``describe instance``."""
    meta = _map(instance.get("metadata"))
    task = _map(instance.get("task"))
    statuses = [str(entry.get("status")) for entry in instance.get("status") or []]
    ready = sum(status in ("READY", "SKIPPED") for status in statuses)
    overview = [
        ("Name", instance.get("name")),
        ("State", f"{aggregate_state(instance)} ({ready}/{len(statuses)} steps ready)"),
        ("SAT", instance.get("stack_application_template")),
        ("SIT", instance.get("stack_infrastructure_template")),
        ("Task", f"{task.get('id')} {task.get('kind', '')} {task.get('state', '')}".strip() if task else ""),
        ("Revision", meta.get("revision")),
        (
            "Created",
            f"{output.local_time(meta.get('created_at'))} by {meta.get('created_by', '?')}" if meta else "",
        ),
        (
            "Updated",
            f"{output.local_time(meta.get('updated_at'))} by {meta.get('updated_by', '?')}" if meta else "",
        ),
        ("Tags", output.join_map(instance.get("tags")) if instance.get("tags") else ""),
    ]
    for label, value in overview:
        if value not in (None, ""):
            typer.echo(f"{label + ':':10} {value}")
    sections: list[tuple[str, list[str] | None, list[list[str]] | None, list[str]]] = [
        ("Services", None, replica_rows(instance), REPLICA_COLUMNS),
        ("Statuses", None, status_rows(instance), STATUS_COLUMNS),
        ("Placement", placement_lines(instance.get("placement")), None, []),
        ("Outputs", output_lines(instance), None, []),
        ("Parameters", parameter_lines(instance), None, []),
        ("Last tasks", None, [task_row(task) for task in recent], TASK_COLUMNS),
    ]
    for title, lines, rows, columns in sections:
        if not lines and not rows:
            continue
        typer.echo(f"\n{title}:")
        if lines:
            for line in lines:
                typer.echo(line)
        elif rows:
            output.print_table(columns, rows, no_color=no_color)


@app.command("instance")
def instance(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="Stack instance name.", show_default=False)],
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """Describe a stack instance: state, task, steps, placement, outputs, parameters, last tasks."""
    opts = context.options(ctx)

    async def work(client: StacklClient) -> None:
        body = await client.get_document("stack_instance", name)
        recent = await client.list_tasks(name, limit=LAST_TASKS)
        if fmt is output.Format.TABLE:
            show(body, recent, no_color=opts.no_color)
            return
        full = {**body, "tasks": recent}
        output.print_objects([full], fmt, columns=[], rows=lambda _: [], single=True)

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)
