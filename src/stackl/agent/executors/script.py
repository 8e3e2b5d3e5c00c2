"""The job as a container runs it: files, `run.sh` and labels, shared by the docker and kubernetes executors.

The container executors reuse each tool's own files and command lines (agents.md §6.2) and move the running
into the container: `run.sh` performs steps 2-4 of §5 there (agents.md §6.4). It changes into the code
directory (`working_directory`, or the image's working directory), copies the code into `/stackl/src` for
terraform and packer (and the files the agent placed for them: a rendered backend, local state), runs
`before_command`, then the tool's steps, each in the background so that a stop (SIGTERM to the script, PID 1
of the container) reaches the tool. The first non-zero exit ends the script with that code after reporting
which step failed: into `/stackl/status` (docker, whose job directory is a mount) or as a
`::stackl-status::` line (kubernetes, where nothing else comes back). On kubernetes the script also ends by
printing `::stackl-outputs::` and the tool's output document on one line (agents.md §6.5).

Two views of one job directory: the agent's (`WorkDir`, where `prepare` writes and `collect_outputs`
reads) and the container's (`ContainerWorkDir`): `/stackl` for docker; on kubernetes the agent's files are
a read-only ConfigMap at `/stackl/in` and the secret ones a Secret at `/stackl/secrets`. Secret values are
never in `run.sh`: it names files only.
"""

import shlex
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import yaml

from stackl import errors
from stackl.agent import secrets
from stackl.agent.executors.base import Emit, Job, LineSink, Result, with_cause
from stackl.agent.tools import ansible, packer, terraform
from stackl.agent.tools.ansible import AnsibleTool
from stackl.agent.tools.base import Step, Tool, ToolContext
from stackl.agent.tools.packer import PackerTool
from stackl.agent.tools.shell import ShellTool
from stackl.agent.tools.terraform import TerraformTool
from stackl.agent.workdir import DIR_MODE, WorkDir, write_private

ROOT = PurePosixPath("/stackl")
RUN_SCRIPT = "run.sh"
STATUS_FILE = "status"
PLACED_DIR = "placed"  # files the agent puts into src/ after the code is copied (backend, local state)
OUTPUTS_MARKER = "::stackl-outputs::"
STATUS_MARKER = "::stackl-status::"
MARKER_PREFIX = "::stackl-"
CODE_DIR_MARK = "/.stackl-code-dir"  # stands for the code directory, known only inside the container
ANSIBLE_CALLBACK_DIR = "callback_plugins"
ANSIBLE_CALLBACK = "stackl_stats"
ANSIBLE_STATS_FILE = f"{ansible.RUNNER_DIR}/artifacts/{ansible.RUNNER_IDENT}/job_events/stats.json"
ALL_TOOLS = ["ansible", "packer", "shell", "terraform", "tofu"]

# The file holding each tool's output document, relative to the job directory.
OUTPUT_FILES = {
    "shell": "outputs.json",
    "terraform": terraform.OUTPUT_FILE,
    "tofu": terraform.OUTPUT_FILE,
    "packer": packer.MANIFEST_FILE,
    "ansible": ANSIBLE_STATS_FILE,
}

# Records the set_stats data where AnsibleTool.collect_outputs reads ansible-runner's stats event.
_ANSIBLE_CALLBACK_SOURCE = '''\
"""STACKL: write the set_stats data of the run as a playbook_on_stats event (agents.md §6.2)."""
import json
import os

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "stackl_stats"
    CALLBACK_NEEDS_ENABLED = True

    def v2_playbook_on_stats(self, stats):
        path = os.environ["STACKL_ANSIBLE_STATS"]
        os.makedirs(os.path.dirname(path), exist_ok=True)
        data = stats.custom.get("_run", {}) if hasattr(stats, "custom") else {}
        with open(path, "w") as file:
            json.dump({"event": "playbook_on_stats", "event_data": {"artifact_data": data}}, file)
'''


def container_tools() -> dict[str, Tool]:
    """Every tool, with the executables an image is expected to have on its `PATH`."""
    return {
        "ansible": AnsibleTool(),
        "terraform": TerraformTool("terraform"),
        "tofu": TerraformTool("tofu"),
        "packer": PackerTool(),
        "shell": ShellTool(),
    }


@dataclass(frozen=True)
class Layout:
    """Where the container finds the agent's files.

    Attributes:
        inputs: the non-secret files the agent wrote (`/stackl`, or the ConfigMap at `/stackl/in`).
        secrets: the secret files (`/stackl`, or the Secret at `/stackl/secrets`).
        report: how the script reports a failed step: a `status` file or a `::stackl-status::` line; `log`
            also ends a successful run with the `::stackl-outputs::` line.
    """

    inputs: PurePosixPath = ROOT
    secrets: PurePosixPath = ROOT
    report: Literal["file", "log"] = "file"


DOCKER = Layout()
KUBERNETES = Layout(inputs=ROOT / "in", secrets=ROOT / "secrets", report="log")


class ContainerWorkDir(WorkDir):
    """The job directory as the container sees it: the agent's files under the layout's directories."""

    def __init__(self, layout: Layout, *, inputs: Iterable[str], secrets: Iterable[str]) -> None:
        self.layout = layout
        self._inputs = frozenset(inputs)
        self._secrets = frozenset(secrets)
        super().__init__(Path(ROOT))
        self.job_file = self.path("job.json")
        self.variables_file = self.path("variables.json")
        self.secrets_file = self.path("secrets.json")

    def path(self, name: str) -> Path:
        if name in self._secrets:
            return Path(self.layout.secrets / name)
        if name in self._inputs:
            return Path(self.layout.inputs / name)
        return Path(ROOT / name)  # written in the container: outputs, tool output files, src/


@dataclass
class Prepared:
    """A job made ready for a container.

    Attributes:
        ctx: the agent's view (code directory = the job directory's `src/`) for `collect_outputs`, `finish`
            and `secret_paths`.
        script: the text of `run.sh` (no secret values).
        inputs: non-secret files the agent wrote, relative to the job directory (`run.sh` included).
        secret_files: the files that hold secret values, relative to the job directory.
        notes: system lines from the tool's preparation.
    """

    ctx: ToolContext
    script: str
    inputs: list[str]
    secret_files: list[str]
    notes: list[str] = field(default_factory=list)


def _relative_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def prepare(
    tool: Tool,
    job: Job,
    workdir: WorkDir,
    secrets: Mapping[str, Any],
    *,
    data_dir: Path,
    layout: Layout,
    extra_env: Mapping[str, str] | None = None,
) -> Prepared:
    """Write the tool's files and `run.sh` into `workdir` (the agent's side of the job directory).

    Args:
        tool: the tool of the job.
        job: the payload.
        workdir: the job directory, already holding job.json, variables.json, secrets.json, outputs.json.
        secrets: the secrets after the handler.
        data_dir: the agent's data directory (terraform's local state).
        layout: where the container finds the files.
        extra_env: variables added to the job environment (`--pass-env`); never secret values.
    """
    placed = workdir.path(PLACED_DIR)
    if tool.copies_code:
        placed.mkdir(mode=DIR_MODE, exist_ok=True)
    host = ToolContext(
        job=job,
        workdir=workdir,
        code_dir=placed if tool.copies_code else workdir.root,
        data_dir=data_dir,
        secrets=secrets,
    )
    notes = tool.prepare(host)
    secret_files = {"secrets.json"}
    secret_files |= {
        str(path.relative_to(workdir.root))
        for path in tool.secret_paths(host)
        if path.is_relative_to(workdir.root)
    }
    if tool.name == "ansible":
        workdir.path(ANSIBLE_CALLBACK_DIR).mkdir(mode=DIR_MODE, exist_ok=True)
        write_private(workdir.path(ANSIBLE_CALLBACK_DIR) / f"{ANSIBLE_CALLBACK}.py", _ANSIBLE_CALLBACK_SOURCE)
    files = [name for name in _relative_files(workdir.root) if name != "outputs.json"]
    inputs = [name for name in files if name not in secret_files] + [RUN_SCRIPT]
    secret_present = [name for name in files if name in secret_files]
    cwd = ContainerWorkDir(layout, inputs=inputs, secrets=secret_present)
    inside = ToolContext(
        job=job, workdir=cwd, code_dir=Path(CODE_DIR_MARK), data_dir=data_dir, secrets=secrets
    )
    if tool.name == "ansible":  # the inventory names the private key by its path in the container
        text = yaml.safe_dump(ansible.inventory(inside), sort_keys=False)
        write_private(workdir.path(ansible.INVENTORY_FILE), text)
    env = job_environment(job, cwd) | dict(extra_env or {}) | tool.environment(inside)
    if tool.name == "ansible":
        env |= {
            "ANSIBLE_CALLBACK_PLUGINS": str(cwd.path(ANSIBLE_CALLBACK_DIR)),
            "ANSIBLE_CALLBACKS_ENABLED": ANSIBLE_CALLBACK,
            "ANSIBLE_CALLBACK_WHITELIST": ANSIBLE_CALLBACK,
            "STACKL_ANSIBLE_STATS": str(ROOT / ANSIBLE_STATS_FILE),
        }
    text = render(
        job,
        env=env,
        steps=container_steps(tool, inside),
        layout=layout,
        copies_code=tool.copies_code,
        output_file=OUTPUT_FILES.get(tool.name, "outputs.json"),
    )
    write_private(workdir.path(RUN_SCRIPT), text)
    after = ToolContext(job=job, workdir=workdir, code_dir=workdir.src, data_dir=data_dir, secrets=secrets)
    return Prepared(ctx=after, script=text, inputs=inputs, secret_files=secret_present, notes=notes)


def job_environment(job: Job, workdir: WorkDir) -> dict[str, str]:
    """The job environment of agents.md §6.1 inside the container (`PATH` stays the image's own)."""
    return {
        "HOME": str(ROOT),
        "LANG": "C.UTF-8",
        "STACKL_ACTION": job.action,
        "STACKL_STACK_INSTANCE": job.stack_instance,
        "STACKL_SERVICE": job.service,
        "STACKL_REPLICA": str(job.replica),
        "STACKL_FUNCTIONAL_REQUIREMENT": job.functional_requirement,
        "STACKL_INFRASTRUCTURE_TARGET": job.infrastructure_target,
        "STACKL_JOB_ID": job.job_id,
        "STACKL_ATTEMPT": str(job.attempt),
        "STACKL_WORK_DIR": str(ROOT),
        "STACKL_VARIABLES_FILE": str(workdir.variables_file),
        "STACKL_SECRETS_FILE": str(workdir.secrets_file),
        "STACKL_OUTPUTS": str(workdir.outputs_file),
    }


def container_steps(tool: Tool, ctx: ToolContext) -> list[Step]:
    """The tool's steps for a container: ansible runs `ansible-playbook` itself (no ansible-runner)."""
    if tool.name != "ansible":
        return tool.steps(ctx)
    invocation = ctx.job.invocation
    playbook = (
        ctx.code_dir / invocation.playbook_path
        if invocation.playbook_path
        else ctx.workdir.path(ansible.ROLE_PLAYBOOK_FILE)
    )
    argv = [
        "ansible-playbook",
        str(playbook),
        "-i",
        str(ctx.workdir.path(ansible.INVENTORY_FILE)),
        "-e",
        f"@{ctx.workdir.variables_file}",
        "-e",
        f"@{ctx.workdir.secrets_file}",
    ]
    if not invocation.playbook_path:
        argv += ["-e", f"@{ctx.workdir.path(ansible.ROLE_VARS_FILE)}"]
    argv += ["-e", f"state={'absent' if ctx.job.action == 'delete' else 'present'}"]
    return [Step("ansible-playbook", argv, ctx.code_dir)]


def quote(text: str) -> str:
    """`text` quoted for sh, the code directory token becoming `"$stackl_code"`."""
    pieces = text.split(CODE_DIR_MARK)
    return '"$stackl_code"'.join(shlex.quote(piece) if piece else "" for piece in pieces) or "''"


_PROLOGUE = """\
#!/bin/sh
# Generated by the STACKL agent: {tool} {action}, job {job_id} attempt {attempt} (agents.md §6.4).
# Secret values are never in this file: the tools read them from {secrets_dir}.
umask 077
stackl_child=
stackl_report() {{  # $1: exit code, $2: the failure
{report}
  exit "$1"
}}
stackl_wait() {{  # $1: step name; waits for the step started in the background just before
  stackl_child=$!
  wait "$stackl_child"
  stackl_rc=$?
  stackl_child=
  [ "$stackl_rc" -eq 0 ] || stackl_report "$stackl_rc" "$1 exited with code $stackl_rc"
}}
stackl_stop() {{  # a stop reaches the running step; the container ends when the script does
  if [ -n "$stackl_child" ]; then kill -TERM "$stackl_child" 2>/dev/null; wait "$stackl_child"; fi
  exit 143
}}
trap stackl_stop TERM INT
"""


def render(
    job: Job,
    *,
    env: Mapping[str, str],
    steps: Sequence[Step],
    layout: Layout,
    copies_code: bool,
    output_file: str,
) -> str:
    """The text of `run.sh`: environment, code directory, before_command, the steps, and (log) outputs."""
    if layout.report == "file":
        report = f"  printf '%s\\n' \"$2\" > {quote(str(ROOT / STATUS_FILE))}"
    else:
        report = f"  printf '{STATUS_MARKER}%s\\n' \"$2\""
    lines = [
        _PROLOGUE.format(
            tool=job.tool,
            action=job.action,
            job_id=job.job_id,
            attempt=job.attempt,
            secrets_dir=layout.secrets,
            report=report,
        )
    ]
    lines += [f"export {name}={quote(value)}" for name, value in env.items() if _valid_name(name)]
    outputs = quote(str(ROOT / "outputs.json"))
    lines.append(f"[ -e {outputs} ] || : > {outputs}")
    directory = job.invocation.working_directory
    if directory:
        message = f"code directory {directory} does not exist in the image"
        lines.append(f"cd -- {shlex.quote(directory)} 2>/dev/null || stackl_report 1 {shlex.quote(message)}")
    lines.append("stackl_code=$(pwd)")
    if copies_code:
        src = quote(str(ROOT / "src"))
        lines += [
            '[ "$stackl_code" != / ] || stackl_report 1 '
            "'no working_directory, and the image has none: the code cannot be copied'",
            f'mkdir -p {src} && cp -R "$stackl_code/." {src}/ || stackl_report 1 '
            f"'the code cannot be copied into {ROOT / 'src'}'",
        ]
        for base in dict.fromkeys([layout.inputs, layout.secrets]):
            placed = quote(str(base / PLACED_DIR))
            lines.append(
                f"if [ -d {placed} ]; then cp -R {placed}/. {src}/ || stackl_report 1 "
                f"'the placed files cannot be copied into {ROOT / 'src'}'; fi"
            )
        lines.append(f"stackl_code={src}")
    if job.invocation.before_command:
        lines.append(f'( cd -- "$stackl_code" && exec sh -c {quote(job.invocation.before_command)} ) &')
        lines.append("stackl_wait before_command")
    for step in steps:
        command = " ".join(quote(arg) for arg in step.argv)
        exports = "".join(f"export {name}={quote(value)} && " for name, value in step.env.items())
        redirect = f" > {quote(str(step.stdout_file))}" if step.stdout_file else ""
        lines.append(f"( cd -- {quote(str(step.cwd))} && {exports}exec {command}{redirect} ) &")
        lines.append(f"stackl_wait {shlex.quote(step.name)}")
    if layout.report == "log" and job.action != "delete":
        document = quote(str(ROOT / output_file))
        lines.append(
            f"if [ -s {document} ]; then printf '{OUTPUTS_MARKER}'; tr -d '\\r\\n' < {document}; echo; "
            f"else echo '{OUTPUTS_MARKER}'; fi"
        )
    lines.append("exit 0")
    return "\n".join(lines) + "\n"


def _valid_name(name: str) -> bool:
    return name.replace("_", "a").isalnum() and name.isascii() and not name[0].isdigit()


def base_labels(job: Job, agent: str) -> dict[str, str]:
    """The labels of a job's container or Kubernetes objects (agents.md §6.5), values in full."""
    return {
        "app.kubernetes.io/managed-by": "stackl",
        "stackl.io/stack-instance": job.stack_instance,
        "stackl.io/service": job.service,
        "stackl.io/functional-requirement": job.functional_requirement,
        "stackl.io/job-id": job.job_id,
        "stackl.io/attempt": str(job.attempt),
        "stackl.io/agent": agent or job.agent,
    }


def split_markers(text: str) -> tuple[str | None, str | None, str | None]:
    """A log line as (text before a marker or the whole line, outputs JSON text, status message).

    A marker may follow output that did not end with a newline; what precedes it is still log output.
    """
    index = text.find(MARKER_PREFIX)
    if index < 0:
        return text, None, None
    rest = text[index:]
    before = text[:index] or None
    if rest.startswith(OUTPUTS_MARKER):
        return before, rest[len(OUTPUTS_MARKER) :], None
    if rest.startswith(STATUS_MARKER):
        return before, None, rest[len(STATUS_MARKER) :]
    return text, None, None


# --- shared by the container executors: their failures and the guard around a run -----------------------------
class Stopped(errors.ExecutionError):
    """The job was stopped: its timeout passed (``timed_out``) or it was cancelled."""

    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class Exited(errors.ToolFailed):
    """The job's container ended with a non-zero exit code (None when the platform did not say)."""

    def __init__(self, message: str, exit_code: int | None) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def failed(sink: LineSink, summary: str, started: float, **flags: Any) -> Result:
    """A FAILED result: ``summary`` first, then the tail of the job's output."""
    return Result(
        "FAILED", error_message=sink.error_message(summary), duration_s=time.monotonic() - started, **flags
    )


RunBody = Callable[[dict[str, Any], LineSink], Awaitable[Result]]


async def guarded_run(job: Job, emit: Emit, secret_handler: secrets.Handler, body: RunBody) -> Result:
    """Run ``body(handled secrets, sink)`` and turn every expected failure into a FAILED result.

    The sink masks the job's secrets (as given and as handled) in every line and in the error message.
    """
    sink = LineSink(emit, secrets.Masker(job.secrets))
    started = time.monotonic()
    try:
        handled = await secrets.apply(secret_handler, job.secrets)
        sink.masker = secrets.Masker(job.secrets, handled)
        return await body(handled, sink)
    except Exited as exc:  # the container's own last words say why (its stderr, else its output)
        summary = with_cause(exc.message, sink.fallback_cause())
        return failed(sink, summary, started, exit_code=exc.exit_code)
    except Stopped as exc:
        return failed(sink, exc.message, started, timed_out=exc.timed_out, cancelled=not exc.timed_out)
    except errors.ExecutionError as exc:
        return failed(sink, exc.message, started)
    except OSError as exc:  # the job directory or a tool file could not be written or read
        return failed(sink, f"agent file error: {exc.strerror} ({exc.filename})", started)
