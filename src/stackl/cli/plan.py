"""``stackl plan INSTANCE -c MANIFEST``: where each service would run and why, before anything is deployed.

A dry run through ``POST /stack_instances/plan`` (spec/cli.md): the placement table, then per alias every
candidate target with its verdict and the reason (the first failing check, or the checks passed), then the
changes and the step table. ``-o json|yaml`` prints the plan object. Exit 0 when feasible, 3 when not.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from stackl.cli import context, exits, manifests, output
from stackl.client.client import StacklClient

REJECTED_SHOWN = 10


def plan(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Stack instance name.")],
    manifest: Annotated[
        Path | None, typer.Option("-c", "--config-file", help="Instance manifest (YAML).")
    ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Plan the deletion of the instance.")] = False,
    params: Annotated[
        list[str] | None, typer.Option("-p", "--params", help="JSON object, repeatable.")
    ] = None,
    tags: Annotated[str | None, typer.Option("-t", "--tags", help="JSON object of required tags.")] = None,
    replicas: Annotated[
        str | None, typer.Option("-r", "--replicas", help="JSON object alias → count.")
    ] = None,
    secrets: Annotated[str | None, typer.Option("--secrets", help="JSON object.")] = None,
    service_params: Annotated[str | None, typer.Option("-e", "--service-params", help="JSON object.")] = None,
    service_secrets: Annotated[str | None, typer.Option("--service-secrets", help="JSON object.")] = None,
    services: Annotated[str | None, typer.Option("--services", help="JSON list of {name, service}.")] = None,
    all_targets: Annotated[bool, typer.Option("--all-targets", help="List every rejected target.")] = False,
    fmt: output.FormatOption = output.Format.TABLE,
) -> None:
    """Show the placement, its explanation and the step plan without deploying."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        if delete == (manifest is not None):
            raise exits.UsageFailure("give either -c MANIFEST or --delete")
        if delete:
            body: dict[str, Any] = {"stack_instance_name": name, "operation": "delete"}
        else:
            assert manifest is not None  # noqa: S101 - checked above
            body = manifests.instance_body(
                name,
                manifests.read_manifest(manifest, quiet=opts.quiet),
                params=params,
                tags=tags,
                replicas=replicas,
                secrets=secrets,
                service_params=service_params,
                service_secrets=service_secrets,
                services=services,
            )

    async def work(client: StacklClient) -> None:
        answer = await client.plan_instance(body)
        if fmt is output.Format.JSON:
            typer.echo(output.dump_json(answer))
        elif fmt is output.Format.YAML:
            typer.echo(output.dump_yaml(answer), nl=False)
        else:
            show(answer, all_targets=all_targets, no_color=opts.no_color)
        for warning in answer.get("warnings") or []:
            output.info(f"warning: {warning}", quiet=opts.quiet)
        if not answer.get("feasible", False):
            raise typer.Exit(exits.EXIT_INVALID)

    context.run(ctx, work, json_errors=fmt is output.Format.JSON)


def candidate_reason(candidate: dict[str, Any]) -> str:
    """Why a placement candidate got its verdict: the first failing check, else its details or the checks passed."""
    checks = candidate.get("checks") or []
    failed = [c for c in checks if isinstance(c, dict) and c.get("result") == "fail"]
    if failed:
        check = failed[0]
        details = "; ".join(str(d) for d in check.get("details") or [])
        return f"{check.get('check')}: {details}" if details else str(check.get("check"))
    if candidate.get("details"):
        return "; ".join(str(d) for d in candidate["details"])
    passed = [str(c.get("check")) for c in checks if isinstance(c, dict) and c.get("result") == "pass"]
    return f"passed {', '.join(passed)}" if passed else ""


def _change_text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(
            f"{k} {v.get('from')} -> {v.get('to')}" if isinstance(v, dict) else f"{k} {v}"
            for k, v in value.items()
        )
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def show(answer: dict[str, Any], *, all_targets: bool, no_color: bool) -> None:
    """The plan as tables, for people."""
    verdict = "feasible" if answer.get("feasible") else f"NOT feasible: {answer.get('detail', '')}"
    typer.echo(f"Plan for {answer.get('operation')} of {answer.get('stack_instance')}: {verdict}")
    placement = answer.get("placement") or {}
    explanation = (answer.get("explanation") or {}).get("services") or {}
    if placement:
        rows = [
            [
                alias,
                str(p.get("service", "")),
                str(len(p.get("targets", []))),
                ", ".join(p.get("targets", [])),
            ]
            for alias, p in placement.items()
        ]
        typer.echo("")
        output.print_table(["ALIAS", "SERVICE", "REPLICAS", "TARGETS"], rows, no_color=no_color)
    for alias, entry in explanation.items():
        candidates = entry.get("candidates") or {}
        rows, hidden = [], 0
        for target, candidate in candidates.items():
            result = str(candidate.get("result", ""))
            if (
                result == "rejected"
                and not all_targets
                and sum(r[1] == "rejected" for r in rows) >= REJECTED_SHOWN
            ):
                hidden += 1
                continue
            replica = candidate.get("replica")
            label = f"{result} (replica {replica})" if result == "chosen" and replica is not None else result
            rows.append([target, label, candidate_reason(candidate)])
        typer.echo(f"\n{alias} ({entry.get('service', '')}): candidates")
        output.print_table(["TARGET", "VERDICT", "REASON"], rows, no_color=no_color)
        if hidden:
            typer.echo(f"  … {hidden} more rejected targets (--all-targets shows them)")
    changes = answer.get("changes") or {}
    changed = [f"{key.replace('_', ' ')}: {_change_text(value)}" for key, value in changes.items() if value]
    if changed:
        typer.echo("\nChanges:")
        for line in changed:
            typer.echo(f"  {line}")
    steps = [
        [
            str(group.get("stage", "")),
            str(step.get("id", "")),
            str(step.get("infrastructure_target", "")),
            str(step.get("action", "")),
            str(step.get("decision", "")),
            str(step.get("reason", "")),
        ]
        for group in answer.get("plan") or []
        for step in group.get("steps") or []
    ]
    if steps:
        typer.echo("")
        output.print_table(
            ["STAGE", "STEP", "TARGET", "ACTION", "DECISION", "REASON"], steps, no_color=no_color
        )
