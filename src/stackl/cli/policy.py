"""``stackl policy eval``: try a Rego policy against an input on the server's engine (spec/cli.md, api.md §B.5).

The policy is a local file (``-f``) or a stored template (``--template``, optionally an older ``--revision``);
the rule or query runs on the server, in the same embedded engine and 0.5 compatibility layer as placement, so
what a policy author sees here is what a deployment will see. The result is printed as JSON (or ``undefined``)
on stdout and the evaluation time on stderr; compile and evaluation errors exit 3.
"""

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from stackl.cli import context, exits, output
from stackl.client.client import StacklClient


def _json_arg(value: str | None, *, option: str) -> Any:
    """A JSON value given inline or as ``@FILE``."""
    if value is None:
        return None
    text = value
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise exits.UsageFailure(f"{option}: cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise exits.UsageFailure(f"{option}: invalid JSON at line {exc.lineno} column {exc.colno}") from exc


def evaluate(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Option("-f", "--file", help="Rego source file.")] = None,
    template: Annotated[str | None, typer.Option("--template", help="A stored policy template.")] = None,
    revision: Annotated[int | None, typer.Option("--revision", min=1, help="Template revision.")] = None,
    rule: Annotated[str | None, typer.Option("--rule", help="Rule of the policy's package.")] = None,
    query: Annotated[str | None, typer.Option("--query", help="A Rego expression.")] = None,
    input_arg: Annotated[
        str | None, typer.Option("--input", help="Input: JSON or @FILE (default {}).")
    ] = None,
    data_arg: Annotated[str | None, typer.Option("--data", help="Data document: JSON or @FILE.")] = None,
) -> None:
    """Evaluate a rule or query of a policy (file or template) against an input."""
    opts = context.options(ctx)
    with exits.reporting(quiet=opts.quiet):
        if (file is None) == (template is None):
            raise exits.UsageFailure("give either -f FILE or --template NAME")
        if (rule is None) == (query is None):
            raise exits.UsageFailure("give either --rule RULE or --query Q")
        if revision is not None and template is None:
            raise exits.UsageFailure("--revision needs --template")
        body: dict[str, Any] = {"input": _json_arg(input_arg, option="--input") or {}}
        if file is not None:
            try:
                body["policy"] = file.read_text(encoding="utf-8")
            except OSError as exc:
                raise exits.UsageFailure(f"-f: cannot read {file}: {exc.strerror}") from exc
        else:
            body["template"] = template
            if revision is not None:
                body["revision"] = revision
        body.update({"rule": rule} if rule is not None else {"query": query})
        data = _json_arg(data_arg, option="--data")
        if data is not None:
            body["data"] = data

    async def work(client: StacklClient) -> None:
        answer = await client.evaluate_policy(body)
        typer.echo(output.dump_json(answer.get("result")) if answer.get("defined") else "undefined")
        where = f"{answer.get('package')}"
        if answer.get("template_revision") is not None:
            where += f" (revision {answer['template_revision']})"
        output.info(f"{where}: evaluated in {answer.get('duration_ms')} ms", quiet=opts.quiet)

    context.run(ctx, work)
