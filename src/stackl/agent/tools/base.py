"""The Tool port: what one automation tool runs for an action, and how its outputs are read (agents.md §6.2).

A tool knows command lines, files and output documents, never processes: it writes its files into the job
directory (`prepare`), lists the command `Step`s for the action, and reads what they left behind
(`collect_outputs`). The executor decides where the steps run (here, in a container, …), streams their output,
enforces the timeout and applies the outputs spec. Secret values never appear in a step's argv: tools pass
them through `secrets.json` (or, for `shell` on the local executor, the environment).
"""

import abc
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stackl.agent.executors.base import Job
from stackl.agent.outputs import OutputDocument
from stackl.agent.workdir import WorkDir


@dataclass(frozen=True)
class Step:
    """One command of a tool run.

    Attributes:
        name: how the error message names it (`terraform apply` → "terraform apply exited with code 1").
        argv: the command line; never holds a secret value.
        cwd: the directory it runs in.
        env: variables added to the job environment for this step.
        stdout_file: when set, stdout goes to this 0600 file and is not streamed (`terraform output -json`
            prints sensitive values in clear); stderr is streamed as usual.
    """

    name: str
    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    stdout_file: Path | None = None


@dataclass(frozen=True)
class ToolContext:
    """Everything a tool reads about one job run.

    Attributes:
        job: the payload.
        workdir: the job directory.
        code_dir: the directory the tool runs in (the copy in `src/` for terraform and packer).
        data_dir: the agent's data directory (terraform keeps local state under it).
        secrets: the secrets after the secret handler.
        secrets_in_env: whether the executor lets the tool see secrets as environment variables (shell on
            the local executor only).
    """

    job: Job
    workdir: WorkDir
    code_dir: Path
    data_dir: Path
    secrets: Mapping[str, Any]
    secrets_in_env: bool = False


def json_text(value: Any) -> str:
    """A parameter as text: strings as they are, other values as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


class Tool(abc.ABC):
    """One automation tool (ansible, terraform, tofu, packer, shell).

    Subclasses set `name` and `binary`; `copies_code` makes the executor copy the code directory into `src/`
    before `prepare`.
    """

    name: str = ""
    binary: str = ""
    copies_code: bool = False

    def encode_variables(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The content of `variables.json` / `secrets.json` for these values (as they are, by default)."""
        return dict(values)

    def prepare(self, ctx: ToolContext) -> list[str]:
        """Write the tool's own files into the job directory; return system notes to emit (no values)."""
        return []

    def environment(self, ctx: ToolContext) -> dict[str, str]:
        """Variables the tool adds to the job environment (agents.md §6.1 lists the common ones)."""
        return {}

    @abc.abstractmethod
    def steps(self, ctx: ToolContext) -> list[Step]:
        """The commands to run, in order, for `ctx.job.action`; the first non-zero exit fails the job."""

    def collect_outputs(self, ctx: ToolContext) -> OutputDocument:
        """Read what the steps left behind (never called for `delete`).

        Raises:
            ExecutionError: the output document is invalid (e.g. `outputs file is not a JSON object`).
        """
        return OutputDocument()

    def finish(self, ctx: ToolContext, *, succeeded: bool) -> None:  # noqa: B027 - optional hook, no-op by default
        """Called after the steps, success or failure, before secrets are removed (e.g. save Terraform state)."""

    def failure_cause(self, ctx: ToolContext, stderr: list[str]) -> str:
        """Why a step of this tool failed, in one short line, or "" to let the executor use the last stderr lines.

        Called after a non-zero exit, before secret files are removed; ``stderr`` holds the last stderr lines,
        already masked. The executor masks the answer again and cuts it to one line.
        """
        return ""

    def secret_paths(self, ctx: ToolContext) -> list[Path]:
        """Files and directories besides `secrets.json` that may hold secret values; removed before the result."""
        return []
