"""The mock executor: runs nothing, for tests, demos and CI (agents.md §6.6).

The outcome comes from the invocation's `mock_*` fields; a provisioning parameter of the same name overrides
the field, so one instance can be made to fail without editing functional requirement documents. It emits
`system` lines describing what a real executor would run (tool, files, never values), then the `mock_log`
lines (masked like real output), waits `mock_duration` seconds (cancellable) and reports. Outputs go through
the same outputs spec as real ones.
"""

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from stackl import errors
from stackl.agent import outputs, secrets
from stackl.agent.executors.base import Emit, Executor, Job, LineSink, Result

RESULTS = ("ready", "fail", "timeout", "lost")
DEFAULT_DURATION_S = 0.5
DEFAULT_ERROR = "mock failure"
ALL_TOOLS = ["ansible", "packer", "shell", "terraform", "tofu"]


def setting(job: Job, name: str) -> Any:
    """A mock field: the parameter of that name, else the invocation's field (None when neither is set)."""
    if name in job.provisioning_parameters:
        return job.provisioning_parameters[name]
    return getattr(job.invocation, name)


def planned_result(job: Job) -> str:
    """What the mock will do for this job and attempt: ``ready``, ``fail``, ``timeout`` or ``lost``.

    Raises:
        ExecutionError: `mock_result` is not one of the results (or a map of them per action).
    """
    try:
        fail_attempts = int(setting(job, "mock_fail_attempts") or 0)
    except (TypeError, ValueError):
        fail_attempts = 0
    if job.attempt <= fail_attempts:
        return "fail"
    result = setting(job, "mock_result")
    if isinstance(result, Mapping):
        result = result.get(job.action, "ready")
    result = result or "ready"
    if result not in RESULTS:
        raise errors.ExecutionError(f"mock_result {result} is not one of {', '.join(RESULTS)}")
    return str(result)


def describe(job: Job) -> list[str]:
    """System lines naming what a real executor would run for `job` (commands and files, no values)."""
    invocation = job.invocation
    state = "absent" if job.action == "delete" else "present"
    var_files = "-var-file=variables.json -var-file=secrets.json"
    lines = [
        f"mock: {job.tool} {job.action} of {job.stack_instance}/{job.service}/{job.replica}; nothing runs",
        f"mock: code directory {invocation.working_directory or job.functional_requirement}",
    ]
    if invocation.before_command:
        lines.append(f"mock: would run: sh -c {invocation.before_command!r}")
    if job.tool == "ansible":
        playbook = invocation.playbook_path or (
            f"playbook-role.yml (role {invocation.ansible_role or job.functional_requirement})"
        )
        lines.append(
            f"mock: would run: ansible-playbook {playbook} -i inventory.yml "
            f"-e @variables.json -e @secrets.json -e state={state}"
        )
    elif job.tool in ("terraform", "tofu"):
        steps = (
            ["init", f"destroy {var_files}"]
            if job.action == "delete"
            else ["init", f"apply {var_files}", "output -json"]
        )
        lines += [f"mock: would run: {job.tool} {step}" for step in steps]
    elif job.tool == "packer":
        if job.action == "delete":
            lines.append("mock: packer: delete keeps built artifacts")
        else:
            lines.append(f"mock: would run: packer build -force {var_files} packer.json")
    elif job.tool == "shell":
        lines.append(f"mock: would run: sh -c {invocation.command!r} with STACKL_ACTION={job.action}")
    return lines


class MockExecutor(Executor):
    """Scripted outcomes from `mock_*` fields; see the module docstring.

    Args:
        secret_handler: `plain` (default: mock jobs often carry readable test secrets), `base64` or a store
            handler such as `vault`.
    """

    name = "mock"

    def __init__(self, *, secret_handler: secrets.Handler = "plain") -> None:  # noqa: S107 - a handler name
        secrets.check(secret_handler)
        self.secret_handler = secret_handler

    def tools(self) -> list[str]:
        return list(ALL_TOOLS)  # a mock agent advertises every tool

    async def run(self, job: Job, *, emit: Emit, cancel: asyncio.Event) -> Result:
        sink = LineSink(emit, secrets.Masker(job.secrets))
        started = time.monotonic()
        try:
            handled = await secrets.apply(self.secret_handler, job.secrets)
            sink.masker = secrets.Masker(job.secrets, handled)
            outcome = planned_result(job)
        except errors.ExecutionError as exc:
            return Result("FAILED", error_message=sink.error_message(exc.message), duration_s=0.0)
        for line in describe(job):
            await sink.system(line)
        log = setting(job, "mock_log") or []
        for line in [log] if isinstance(log, str) else log:
            await sink.line("stdout", str(line))
        if outcome == "timeout":
            timeout_s = job.invocation.timeout
            if await _wait(cancel, timeout_s):
                return self._cancelled(sink, started)
            message = sink.error_message(f"timed out after {timeout_s:g} s")
            return Result(
                "FAILED", error_message=message, duration_s=time.monotonic() - started, timed_out=True
            )
        if await _wait(cancel, _duration(setting(job, "mock_duration"))):
            return self._cancelled(sink, started)
        duration_s = time.monotonic() - started
        if outcome == "lost":
            await sink.system("mock: job lost; it will not be reported")
            return Result("FAILED", error_message="mock: job lost", duration_s=duration_s, lost=True)
        if outcome == "fail":
            error = setting(job, "mock_error")
            summary = str(error) if error else DEFAULT_ERROR
            return Result(
                "FAILED", error_message=sink.error_message(summary), duration_s=duration_s, exit_code=1
            )
        if job.action == "delete":
            return Result("READY", duration_s=duration_s, exit_code=0)
        document = setting(job, "mock_outputs")
        document = document if isinstance(document, dict) else {}
        try:
            collected = outputs.apply(
                outputs.OutputDocument(document=document, default=document),
                job.invocation.outputs,
                sink.masker,
            )
        except errors.ExecutionError as exc:
            return Result("FAILED", error_message=sink.error_message(exc.message), duration_s=duration_s)
        for note in collected.notes:
            await sink.system(note)
        return Result(
            "READY", outputs=collected.values, hosts=collected.hosts, duration_s=duration_s, exit_code=0
        )

    @staticmethod
    def _cancelled(sink: LineSink, started: float) -> Result:
        message = sink.error_message("cancelled")
        return Result("FAILED", error_message=message, duration_s=time.monotonic() - started, cancelled=True)


def _duration(value: Any) -> float:
    try:
        return max(float(value), 0.0) if value is not None else DEFAULT_DURATION_S
    except (TypeError, ValueError):
        return DEFAULT_DURATION_S


async def _wait(cancel: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds`; True when `cancel` was set first."""
    try:
        async with asyncio.timeout(seconds):
            await cancel.wait()
    except TimeoutError:
        return cancel.is_set()
    return True
