"""The shell tool: `sh -c "<command>"` for every action; the script branches on `$STACKL_ACTION` (agents.md §6.2).

Scalar parameters are exported as `STACKL_VAR_<key>`; on the local executor scalar secrets also travel as
`STACKL_SECRET_<key>` (never on the command line). Outputs are the JSON object the command writes to
`$STACKL_OUTPUTS`; an empty file means none.
"""

import re
from collections.abc import Mapping
from typing import Any

from stackl.agent import outputs
from stackl.agent.outputs import OutputDocument
from stackl.agent.tools.base import Step, Tool, ToolContext, json_text

_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def scalar_variables(prefix: str, values: Mapping[str, Any]) -> dict[str, str]:
    """`<prefix><key>` for every scalar value whose key is a valid variable name."""
    return {
        f"{prefix}{key}": json_text(value)
        for key, value in values.items()
        if _ENV_KEY.fullmatch(key) and (value is None or isinstance(value, str | int | float | bool))
    }


class ShellTool(Tool):
    """Runs the invocation's `command` with `sh -c`."""

    name = "shell"
    binary = "sh"

    def environment(self, ctx: ToolContext) -> dict[str, str]:
        env = scalar_variables("STACKL_VAR_", ctx.job.provisioning_parameters)
        if ctx.secrets_in_env:
            env |= scalar_variables("STACKL_SECRET_", ctx.secrets)
        return env

    def steps(self, ctx: ToolContext) -> list[Step]:
        return [Step(name="command", argv=[self.binary, "-c", ctx.job.invocation.command], cwd=ctx.code_dir)]

    def collect_outputs(self, ctx: ToolContext) -> OutputDocument:
        document = outputs.parse_object(
            ctx.workdir.outputs_file.read_text(encoding="utf-8", errors="replace")
        )
        return OutputDocument(document=document, default=document)
