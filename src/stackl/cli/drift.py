"""``stackl drift``: the stack instances whose model changed under them, and the update that would fix each.

``stackl drift`` lists the drifted instances (``GET /drift``); ``--all`` lists every instance checked;
``--type zone --name dmz`` re-evaluates only the instances depending on that document. ``stackl drift NAME``
shows one instance's report with its proposed plan; ``--apply`` then submits that update (``PUT
/stack_instances`` with the instance's name only: its stored parameters, re-placed and re-planned) and prints
the task id. Nothing changes without ``--apply``.
"""

from typing import Annotated, Any

import typer

from stackl.cli import context, exits, output
from stackl.cli.events import check, http_client

COLUMNS = ["INSTANCE", "DRIFTED", "REASONS"]


def _rows(reports: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for report in reports:
        state = "busy" if report.get("busy") else ("yes" if report.get("drifted") else "no")
        rows.append([str(report.get("stack_instance", "")), state, "; ".join(report.get("reasons") or [])])
    return rows


def _print_plan(report: dict[str, Any]) -> None:
    for group in report.get("plan") or []:
        typer.echo(f"stage {group.get('stage') or '-'}:")
        for step in group.get("steps") or []:
            if step.get("decision") == "run":
                typer.echo(f"  {step.get('id')}: {step.get('action')} ({step.get('reason')})")


def drift(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(metavar="[INSTANCE]", help="One stack instance.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="List instances without drift too.")] = False,
    doc_type: Annotated[
        str | None, typer.Option("--type", help="With --name: a changed document's type.")
    ] = None,
    doc_name: Annotated[
        str | None, typer.Option("--name", help="With --type: the changed document's name.")
    ] = None,
    apply: Annotated[bool, typer.Option("--apply", help="Submit the proposed update of INSTANCE.")] = False,
    fmt: Annotated[str, typer.Option("-o", "--output", help="table, json or yaml.")] = "table",
) -> None:
    """List drifted stack instances, show one's proposed update, or apply it."""
    opts = context.options(ctx)
    if apply and not name:
        exits.fail(exits.UsageFailure("--apply needs an INSTANCE"))

    async def main() -> None:
        async with http_client(ctx) as http:
            if name:
                response = await http.get(f"/stack_instances/{name}/drift")
                check(response)
                report: dict[str, Any] = response.json()
                if apply:
                    if not report.get("drifted"):
                        typer.echo(f"{name}: no drift, nothing to apply")
                        return
                    answer = await http.put("/stack_instances", json={"stack_instance_name": name})
                    check(answer)
                    typer.echo(f"{name}: update submitted, task {answer.headers.get('Stackl-Task-Id', '?')}")
                    return
                if fmt in ("json", "yaml"):
                    typer.echo(output.dump_json(report) if fmt == "json" else output.dump_yaml(report))
                    return
                output.print_table(COLUMNS, _rows([report]))
                _print_plan(report)
                return
            params: list[tuple[str, str]] = [("all", "true")] if all_ else []
            params += [(k, v) for k, v in (("type", doc_type), ("name", doc_name)) if v]
            response = await http.get("/drift", params=tuple(params), timeout=300)
            check(response)
            reports: list[dict[str, Any]] = response.json().get("items") or []
            if fmt in ("json", "yaml"):
                typer.echo(output.dump_json(reports) if fmt == "json" else output.dump_yaml(reports))
                return
            if not reports:
                output.info("no drift", quiet=opts.quiet)
                return
            output.print_table(COLUMNS, _rows(reports))

    exits.run(main(), json_errors=fmt == "json", quiet=opts.quiet)
