"""The terraform and tofu tools: init, apply and `output -json`, or destroy, in a private copy of the module.

Runs in `src/` (a copy of the code directory) with `TF_IN_AUTOMATION=1 TF_INPUT=0 CHECKPOINT_DISABLE=1`
(agents.md §6.2). State: a `terraform_backend` parameter is rendered (sandboxed Jinja, as STACKL 0.5) into
`src/backend.tf.json`; otherwise the agent keeps local state in
`<data-dir>/state/<stack_instance>/<alias>/<replica>/<fr>/terraform.tfstate`, copied in before the run and back
after it, and removed by a successful delete. `output -json` is captured to a file, never streamed: it prints
sensitive values in clear; sensitive outputs are never reported.
"""

import json
import re
import shutil
from pathlib import Path
from typing import Any

from jinja2.sandbox import SandboxedEnvironment

from stackl import errors
from stackl.agent import workdir
from stackl.agent.outputs import OutputDocument
from stackl.agent.tools.base import Step, Tool, ToolContext

STATE_FILE = "terraform.tfstate"
OUTPUT_FILE = "terraform-output.json"
BACKEND_PARAMETER = "terraform_backend"
LEGACY_OUTPUT_PREFIX = "values.outputs."  # STACKL 0.5 read `terraform show -json`
_BOX = re.compile(r"^[\s╷│╵]*")  # the frame Terraform/OpenTofu draw around a diagnostic on a terminal
_WITH = re.compile(r"^with (?P<address>\S+?),?$")
_ON = re.compile(r"^on (?P<file>\S+) line (?P<line>\d+)")


def diagnostic_cause(stderr: list[str]) -> str:
    """The first ``Error:`` diagnostic in Terraform's stderr with the address and position it names, or ""."""
    lines = [_BOX.sub("", line).strip() for line in stderr]
    for index, line in enumerate(lines):
        if not line.startswith("Error: "):
            continue
        where: list[str] = []
        for detail in lines[index + 1 : index + 8]:
            if detail.startswith(("Error: ", "Warning: ")):
                break
            if found := _WITH.match(detail):
                where.insert(0, f"with {found['address']}")
            elif found := _ON.match(detail):
                where.append(f"on {found['file']} line {found['line']}")
        return f"{line} ({', '.join(where)})" if where else line
    return ""


def state_dir(ctx: ToolContext) -> Path:
    """Where the agent keeps this replica's local state for this functional requirement."""
    job = ctx.job
    return (
        ctx.data_dir
        / "state"
        / job.stack_instance
        / job.service
        / str(job.replica)
        / job.functional_requirement
    )


def render_backend(template: Any, ctx: ToolContext) -> str:
    """The `terraform_backend` parameter rendered with the payload's identity fields and the parameters."""
    job = ctx.job
    source = template if isinstance(template, str) else json.dumps(template)
    context = {
        **job.provisioning_parameters,
        "stack_instance": job.stack_instance,
        "service": job.service,
        "replica": job.replica,
        "functional_requirement": job.functional_requirement,
        "infrastructure_target": job.infrastructure_target,
        "action": job.action,
    }
    try:
        return SandboxedEnvironment().from_string(source).render(context)
    except Exception as exc:  # any template error: syntax, undefined call, sandbox violation
        raise errors.ExecutionError(f"{BACKEND_PARAMETER} cannot be rendered: {type(exc).__name__}") from exc


class TerraformTool(Tool):
    """Terraform (`name="terraform"`) or OpenTofu (`name="tofu"`); `binary` overrides the executable."""

    copies_code = True

    def __init__(self, name: str = "terraform", *, binary: str | None = None) -> None:
        self.name = name
        self.binary = binary or name

    def _uses_local_state(self, ctx: ToolContext) -> bool:
        return BACKEND_PARAMETER not in ctx.job.provisioning_parameters

    def prepare(self, ctx: ToolContext) -> list[str]:
        if not self._uses_local_state(ctx):
            backend = render_backend(ctx.job.provisioning_parameters[BACKEND_PARAMETER], ctx)
            workdir.write_private(ctx.code_dir / "backend.tf.json", backend)
            return [f"{self.name}: backend from parameter {BACKEND_PARAMETER} written to src/backend.tf.json"]
        saved = state_dir(ctx) / STATE_FILE
        if saved.exists():
            shutil.copyfile(saved, ctx.code_dir / STATE_FILE)
            (ctx.code_dir / STATE_FILE).chmod(workdir.FILE_MODE)
            return [f"{self.name}: local state {saved} copied into src/"]
        return [f"{self.name}: no local state yet at {saved}"]

    def environment(self, ctx: ToolContext) -> dict[str, str]:
        return {"TF_IN_AUTOMATION": "1", "TF_INPUT": "0", "CHECKPOINT_DISABLE": "1"}

    def steps(self, ctx: ToolContext) -> list[Step]:
        var_files = [f"-var-file={ctx.workdir.variables_file}", f"-var-file={ctx.workdir.secrets_file}"]
        init = Step(f"{self.name} init", [self.binary, "init", "-input=false", "-no-color"], ctx.code_dir)
        if ctx.job.action == "delete":
            destroy = [self.binary, "destroy", "-auto-approve", "-input=false", "-no-color", *var_files]
            return [init, Step(f"{self.name} destroy", destroy, ctx.code_dir)]
        apply = [self.binary, "apply", "-auto-approve", "-input=false", "-no-color", *var_files]
        output = [self.binary, "output", "-json", "-no-color"]
        return [
            init,
            Step(f"{self.name} apply", apply, ctx.code_dir),
            Step(f"{self.name} output", output, ctx.code_dir, stdout_file=ctx.workdir.path(OUTPUT_FILE)),
        ]

    def collect_outputs(self, ctx: ToolContext) -> OutputDocument:
        text = ctx.workdir.path(OUTPUT_FILE).read_text(encoding="utf-8")
        try:
            document = json.loads(text) if text.strip() else {}
        except ValueError:
            document = None
        if not isinstance(document, dict):
            raise errors.ExecutionError(f"{self.name} output -json did not print a JSON object")
        sensitive = frozenset(
            name for name, item in document.items() if not isinstance(item, dict) or item.get("sensitive")
        )
        default = {name: item.get("value") for name, item in document.items() if name not in sensitive}
        return OutputDocument(
            document=document, default=default, sensitive=sensitive, legacy_prefix=LEGACY_OUTPUT_PREFIX
        )

    def finish(self, ctx: ToolContext, *, succeeded: bool) -> None:
        if not self._uses_local_state(ctx):
            return
        directory = state_dir(ctx)
        if ctx.job.action == "delete" and succeeded:
            shutil.rmtree(directory, ignore_errors=True)
            return
        current = ctx.code_dir / STATE_FILE
        if current.exists():
            directory.mkdir(parents=True, exist_ok=True, mode=workdir.DIR_MODE)
            workdir.write_private(directory / STATE_FILE, current.read_bytes())

    def failure_cause(self, ctx: ToolContext, stderr: list[str]) -> str:
        """The first diagnostic Terraform printed: ``Error: <summary> (with <address>, on <file> line <n>)``."""
        return diagnostic_cause(stderr)

    def secret_paths(self, ctx: ToolContext) -> list[Path]:
        # State and its backups hold every attribute in clear, sensitive ones included.
        return [
            ctx.workdir.path(OUTPUT_FILE),
            ctx.code_dir / STATE_FILE,
            ctx.code_dir / f"{STATE_FILE}.backup",
        ]
