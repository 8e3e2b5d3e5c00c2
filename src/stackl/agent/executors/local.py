"""The local executor: tools run as child processes of the agent, as its OS user (agents.md §5, §6.3).

Each step runs in its own session (so its own process group) with a clean environment (§6.1), its stdout and
stderr streamed line by line as they come. The timeout (seconds from tool start, `before_command` included)
and cancellation stop the whole process tree: SIGTERM to the group and to every descendant found in `/proc`
(ansible-runner, for one, starts ansible-playbook in a session of its own), a grace period, then SIGKILL.
Secrets reach tools through the 0600 `secrets.json`, or the environment for the shell tool, and are masked in
every line and output.

Every process of a job carries `STACKL_WORK_DIR=<its job directory>` in its environment, which finds it when
parent links no longer do (an orphan reparented to init). Each running step's process group is recorded
under `<data-dir>/procs/` while it runs. A restarted agent (``start``, before it claims) stops what a
killed previous instance left: the recorded groups and every process whose `STACKL_WORK_DIR` lies in its
`jobs/` directory; then it removes the stale job directories.
"""

import asyncio
import os
import posixpath
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from stackl import errors
from stackl.agent import outputs, proctree, secrets
from stackl.agent.executors.base import (
    Emit,
    Executor,
    Job,
    LineSink,
    LineSplitter,
    Result,
    Stream,
    one_line,
    with_cause,
)
from stackl.agent.tools.ansible import AnsibleTool
from stackl.agent.tools.base import Step, Tool, ToolContext
from stackl.agent.tools.packer import PackerTool
from stackl.agent.tools.shell import ShellTool
from stackl.agent.tools.terraform import TerraformTool
from stackl.agent.workdir import WorkDir, open_private, remove_stale

GRACE_S = 30.0  # SIGTERM → SIGKILL (agents.md §5)
DRAIN_S = 2.0  # after a step exits, how long a background child holding its pipes may keep them
READ_CHUNK = 64 * 1024
OUTSIDE = "working_directory outside the automation directories"
PROCS_DIR = "procs"  # <data-dir>/procs/<pid>.json: the process groups of running steps
WORK_DIR_VAR = "STACKL_WORK_DIR"
LEFTOVER_GRACE_S = 5.0  # SIGTERM → SIGKILL for what a killed previous instance left running

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class LocalConfig:
    """How the local executor runs tools.

    Attributes:
        data_dir: the agent's data directory (`jobs/`, `state/`).
        automation_dirs: where code directories are looked up, in order (`--automation-dir`).
        environ: the agent's environment; only `PATH`, `LANG` and the `pass_env` names reach tools.
        pass_env: names of agent variables tools also get (`--pass-env`).
        secret_handler: `plain`, `base64` or a store handler such as `vault` (`--secret-handler`).
        binaries: tool executables by name: `ansible-playbook`, `terraform`, `tofu`, `packer`.
        grace_s: SIGTERM → SIGKILL delay when stopping a process tree.
        keep_workdirs: keep job directories, minus secrets, for debugging (`--keep-workdirs`).
    """

    data_dir: Path
    automation_dirs: Sequence[Path]
    environ: Mapping[str, str]
    pass_env: Sequence[str] = ()
    secret_handler: secrets.Handler = "base64"  # noqa: S105 - a handler name, not a secret
    binaries: Mapping[str, str] = field(default_factory=dict)
    grace_s: float = GRACE_S
    keep_workdirs: bool = False


def default_tools(binaries: Mapping[str, str]) -> dict[str, Tool]:
    """Every tool the local executor knows, with executables overridden from `binaries`."""
    return {
        "ansible": AnsibleTool(playbook_binary=binaries.get("ansible-playbook")),
        "terraform": TerraformTool("terraform", binary=binaries.get("terraform")),
        "tofu": TerraformTool("tofu", binary=binaries.get("tofu")),
        "packer": PackerTool(binary=binaries.get("packer")),
        "shell": ShellTool(),
    }


def resolve_code_dir(working_directory: str, default: str, automation_dirs: Sequence[Path]) -> Path:
    """The code directory: `working_directory` (or `default`) under the first automation dir that has it.

    Raises:
        ExecutionError: the path escapes the automation directories, or none of them has it.
    """
    # Lexical checks (no symlink resolution): `..` may not climb out, absolute paths must lie inside.
    roots = [Path(posixpath.normpath(root)) for root in automation_dirs]
    path = working_directory or default
    if posixpath.isabs(path):
        candidate = Path(posixpath.normpath(path))
        if not any(candidate.is_relative_to(root) for root in roots):
            raise errors.ExecutionError(OUTSIDE)
        if not candidate.is_dir():
            raise errors.ExecutionError(f"code directory {path} does not exist")
        return candidate
    relative = posixpath.normpath(path)
    if relative == ".." or relative.startswith("../"):
        raise errors.ExecutionError(OUTSIDE)
    for root in roots:
        if (candidate := root / relative).is_dir():
            return candidate
    raise errors.ExecutionError(f"code directory {path} is in none of the automation directories")


class _StepFailed(errors.ToolFailed):
    def __init__(self, name: str, exit_code: int, cause: str = "") -> None:
        super().__init__(with_cause(f"{name} exited with code {exit_code}", cause))
        self.name = name
        self.exit_code = exit_code


class _Stopped(errors.ExecutionError):
    def __init__(self, message: str, *, timed_out: bool) -> None:
        super().__init__(message)
        self.timed_out = timed_out


class LocalExecutor(Executor):
    """Runs tools on the agent's machine; see the module docstring."""

    name = "local"

    def __init__(self, config: LocalConfig, *, tools: Mapping[str, Tool] | None = None) -> None:
        secrets.check(config.secret_handler)  # an unknown handler refuses to start (agents.md §8)
        self.config = config
        self._tools = dict(tools if tools is not None else default_tools(config.binaries))

    def tools(self) -> list[str]:
        """The tools whose executables are found on the tools' `PATH` (only those are advertised)."""
        path = self._path()
        return sorted(name for name, tool in self._tools.items() if shutil.which(tool.binary, path=path))

    async def start(self, *, agent: str, instance_id: str, previous_instance_id: str | None) -> None:
        """Before the first claim: stop the processes a killed previous instance left, remove its job dirs."""
        data_dir = self.config.data_dir
        groups = await asyncio.to_thread(proctree.recorded_groups, data_dir / PROCS_DIR)
        marker = f"{WORK_DIR_VAR}={data_dir.resolve() / 'jobs'}/"
        stopped = await proctree.stop_marked(
            marker, pgids=groups, grace_s=min(self.config.grace_s, LEFTOVER_GRACE_S)
        )
        removed = await asyncio.to_thread(remove_stale, data_dir)
        if stopped or removed:
            log.info("local_leftovers_removed", agent=agent, processes=len(stopped), job_dirs=len(removed))

    def _path(self) -> str:
        # The agent's interpreter directory first: ansible-runner starts ansible-playbook from PATH.
        own = str(Path(sys.executable).parent)
        rest = self.config.environ.get("PATH", os.defpath)
        return own if not rest else f"{own}:{rest}"

    def environment(self, job: Job, workdir: WorkDir) -> dict[str, str]:
        """The clean environment every process of the job starts with (agents.md §6.1)."""
        env = {
            "PATH": self._path(),
            "HOME": str(workdir.root),
            "LANG": self.config.environ.get("LANG", "C.UTF-8"),
        }
        env |= {
            name: self.config.environ[name] for name in self.config.pass_env if name in self.config.environ
        }
        env |= {
            "STACKL_ACTION": job.action,
            "STACKL_STACK_INSTANCE": job.stack_instance,
            "STACKL_SERVICE": job.service,
            "STACKL_REPLICA": str(job.replica),
            "STACKL_FUNCTIONAL_REQUIREMENT": job.functional_requirement,
            "STACKL_INFRASTRUCTURE_TARGET": job.infrastructure_target,
            "STACKL_JOB_ID": job.job_id,
            "STACKL_ATTEMPT": str(job.attempt),
            "STACKL_WORK_DIR": str(workdir.root),
            "STACKL_VARIABLES_FILE": str(workdir.variables_file),
            "STACKL_SECRETS_FILE": str(workdir.secrets_file),
            "STACKL_OUTPUTS": str(workdir.outputs_file),
        }
        return env

    async def run(self, job: Job, *, emit: Emit, cancel: asyncio.Event) -> Result:
        masker = secrets.Masker(job.secrets)
        sink = LineSink(emit, masker)
        started = time.monotonic()
        try:
            handled = await secrets.apply(self.config.secret_handler, job.secrets)
            sink.masker = masker = secrets.Masker(job.secrets, handled)
            return await self._run(job, handled, sink, cancel)
        except _StepFailed as exc:
            return self._failed(sink, exc.message, started, exit_code=exc.exit_code)
        except _Stopped as exc:
            return self._failed(
                sink, exc.message, started, timed_out=exc.timed_out, cancelled=not exc.timed_out
            )
        except errors.ExecutionError as exc:
            return self._failed(sink, exc.message, started)
        except OSError as exc:  # the job directory or a tool file could not be written or read
            return self._failed(sink, f"agent file error: {exc.strerror} ({exc.filename})", started)

    @staticmethod
    def _failed(sink: LineSink, summary: str, started: float, **flags: Any) -> Result:
        message = sink.error_message(summary)
        return Result("FAILED", error_message=message, duration_s=time.monotonic() - started, **flags)

    async def _run(self, job: Job, handled: dict[str, Any], sink: LineSink, cancel: asyncio.Event) -> Result:
        tool = self._tools.get(job.tool)
        if tool is None:
            raise errors.ExecutionError(f"tool {job.tool} is not available on this agent")
        invocation = job.invocation
        code_dir: Path | None = None
        if job.tool != "shell" or invocation.working_directory:
            code_dir = resolve_code_dir(
                invocation.working_directory, job.functional_requirement, self.config.automation_dirs
            )
        variables = tool.encode_variables(job.provisioning_parameters)
        workdir = await asyncio.to_thread(
            WorkDir.create,
            self.config.data_dir,
            job,
            variables=variables,
            secrets=tool.encode_variables(handled),
        )
        await sink.system(f"{tool.name}: job directory {workdir.root}")
        if code_dir is not None and tool.copies_code:
            code_dir = await asyncio.to_thread(workdir.copy_code, code_dir)
            await sink.system(f"{tool.name}: code copied into {code_dir}")
        ctx = ToolContext(
            job=job,
            workdir=workdir,
            code_dir=code_dir or workdir.root,
            data_dir=self.config.data_dir,
            secrets=handled,
            secrets_in_env=tool.name == "shell",
        )
        succeeded = False
        try:
            for note in await asyncio.to_thread(tool.prepare, ctx):
                await sink.system(note)
            env = self.environment(job, workdir) | tool.environment(ctx)
            deadline = time.monotonic() + invocation.timeout
            started = time.monotonic()  # duration_s is the tool run time
            try:
                if invocation.before_command:
                    step = Step("before_command", ["sh", "-c", invocation.before_command], ctx.code_dir)
                    await self._step(step, env, sink, cancel, deadline, invocation.timeout)
                for step in tool.steps(ctx):
                    await self._step(step, env | step.env, sink, cancel, deadline, invocation.timeout)
            except _StepFailed as exc:  # say why, while the tool's records are still there
                own = (
                    ""
                    if exc.name == "before_command"
                    else await asyncio.to_thread(tool.failure_cause, ctx, sink.stderr_tail())
                )
                cause = one_line(sink.masker.mask(own)) if own else sink.fallback_cause()
                raise _StepFailed(exc.name, exc.exit_code, cause) from None
            result = Result("READY", duration_s=time.monotonic() - started, exit_code=0)
            if job.action != "delete":
                document = await asyncio.to_thread(tool.collect_outputs, ctx)
                collected = outputs.apply(document, invocation.outputs, sink.masker)
                for note in collected.notes:
                    await sink.system(note)
                result = Result(
                    "READY",
                    outputs=collected.values,
                    hosts=collected.hosts,
                    duration_s=result.duration_s,
                    exit_code=0,
                )
            succeeded = True
            return result
        finally:
            await asyncio.to_thread(self._clean_up, tool, ctx, succeeded)

    def _clean_up(self, tool: Tool, ctx: ToolContext, succeeded: bool) -> None:
        try:
            tool.finish(ctx, succeeded=succeeded)
        finally:
            ctx.workdir.remove_secrets(tool.secret_paths(ctx))
            if not self.config.keep_workdirs:
                ctx.workdir.remove()

    async def _step(
        self,
        step: Step,
        env: dict[str, str],
        sink: LineSink,
        cancel: asyncio.Event,
        deadline: float,
        timeout_s: float,
    ) -> None:
        """Run one step to its end; raise _StepFailed on a non-zero exit, _Stopped on timeout or cancel."""
        # Paths and argv only: tools keep secret values out of argv (agents.md §8).
        if cancel.is_set():
            raise _Stopped("cancelled", timed_out=False)
        await sink.system(f"run: {' '.join(step.argv)} (in {step.cwd})")
        stopped = await self._process(step, env, sink, cancel, deadline)
        if stopped == "timeout":
            raise _Stopped(f"timed out after {timeout_s:g} s", timed_out=True)
        if stopped == "cancel":
            raise _Stopped("cancelled", timed_out=False)

    async def _process(
        self, step: Step, env: dict[str, str], sink: LineSink, cancel: asyncio.Event, deadline: float
    ) -> str | None:
        capture = open_private(step.stdout_file) if step.stdout_file else None
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *step.argv,
                    cwd=step.cwd,
                    env=env,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    start_new_session=True,  # its own process group: a timeout stops the whole tree
                )
            except OSError as exc:
                raise errors.ExecutionError(f"{step.name} cannot start: {exc.strerror}") from exc
            assert proc.stdout is not None  # noqa: S101 - PIPE was asked for
            assert proc.stderr is not None  # noqa: S101
            recorded = proctree.record(self.config.data_dir / PROCS_DIR, proc.pid)
            marker = f"{WORK_DIR_VAR}={env[WORK_DIR_VAR]}" if WORK_DIR_VAR in env else None
            readers = [
                asyncio.create_task(self._read(proc.stdout, "stdout", sink, capture)),
                asyncio.create_task(self._read(proc.stderr, "stderr", sink, None)),
            ]
            try:
                stopped = await self._wait(proc, cancel, deadline)
                if stopped is not None:
                    await proctree.stop(proc.pid, grace_s=self.config.grace_s, wait=proc.wait, marker=marker)
                await self._drain(readers)
            finally:
                for reader in readers:
                    reader.cancel()
                if proc.returncode is None:  # cancelled from outside (the agent stops): leave nothing behind
                    await proctree.stop(proc.pid, grace_s=0, wait=proc.wait, marker=marker)
                if recorded is not None:
                    recorded.unlink(missing_ok=True)
        finally:
            if capture is not None:
                capture.close()
        if stopped is None and proc.returncode != 0:
            raise _StepFailed(step.name, proc.returncode if proc.returncode is not None else -1)
        return stopped

    @staticmethod
    async def _wait(proc: asyncio.subprocess.Process, cancel: asyncio.Event, deadline: float) -> str | None:
        """None when the process exited by itself, else "timeout" or "cancel"."""
        exited = asyncio.ensure_future(proc.wait())
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            remaining = max(deadline - time.monotonic(), 0.0)
            done, _ = await asyncio.wait(
                {exited, cancelled}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            exited.cancel()
            cancelled.cancel()
        if exited in done:
            return None
        return "cancel" if cancelled in done else "timeout"

    @staticmethod
    async def _drain(readers: list["asyncio.Task[None]"]) -> None:
        # A background child may keep the pipes open after the step ended: do not wait for it for long.
        await asyncio.wait(readers, timeout=DRAIN_S)

    @staticmethod
    async def _read(reader: asyncio.StreamReader, stream: Stream, sink: LineSink, capture: Any) -> None:
        splitter = LineSplitter(sink.keep_bytes())
        while chunk := await reader.read(READ_CHUNK):
            if capture is not None:
                capture.write(chunk)  # captured output (terraform output -json) is never streamed
                continue
            for text, dropped in splitter.feed(chunk):
                await sink.line(stream, text, dropped_bytes=dropped)
        for text, dropped in splitter.flush():
            await sink.line(stream, text, dropped_bytes=dropped)
