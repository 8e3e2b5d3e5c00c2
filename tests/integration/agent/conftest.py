"""Fixtures for the agent's tools on the local executor: an automation dir, a data dir, a job factory, a runner."""

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from stackl.agent.executors.base import Job, LogLine, Result
from stackl.agent.executors.local import LocalConfig, LocalExecutor


@dataclass
class Run:
    """A finished job: its result and every line it emitted."""

    result: Result
    lines: list[LogLine] = field(default_factory=list)

    def text(self, *streams: str) -> str:
        return "\n".join(line.line for line in self.lines if not streams or line.stream in streams)


@pytest.fixture
def automation_dir(tmp_path: Path) -> Path:
    path = tmp_path / "automation"
    path.mkdir()
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


def make_job(tool: str, fr: str = "fr", **fields: Any) -> Job:
    invocation = fields.pop("invocation", {})
    payload: dict[str, Any] = {
        "job_id": "01JOB",
        "attempt": 1,
        "task_id": "01TASK",
        "action": "create",
        "stack_instance": "si",
        "service": "web",
        "replica": 0,
        "infrastructure_target": "production.brussels.zone-a",
        "functional_requirement": fr,
        "tool": tool,
        "invocation": invocation,
        **fields,
    }
    return Job.model_validate(payload)


Runner = Callable[..., Awaitable[Run]]


@pytest.fixture
def run_job(data_dir: Path, automation_dir: Path) -> Runner:
    """Run a job on a local executor (1 s grace, plain secrets unless asked), collecting its lines.

    `watch` sees each line as it comes (a test cancels on a marker line).
    """

    async def run(
        job: Job,
        *,
        cancel: asyncio.Event | None = None,
        handler: str = "plain",
        watch: Callable[[LogLine], None] = lambda _line: None,
        **config: Any,
    ) -> Run:
        executor = LocalExecutor(
            LocalConfig(
                data_dir=data_dir,
                automation_dirs=[automation_dir],
                environ=dict(os.environ),
                secret_handler=handler,
                grace_s=config.pop("grace_s", 1.0),
                **config,
            )
        )
        lines: list[LogLine] = []

        def emit(line: LogLine) -> None:
            lines.append(line)
            watch(line)

        result = await executor.run(job, emit=emit, cancel=cancel or asyncio.Event())
        return Run(result, lines)

    return run
