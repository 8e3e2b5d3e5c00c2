"""The mock executor (agents.md §6.6): scripted outcomes, parameters override invocation fields."""

import asyncio
from typing import Any

import pytest

from stackl.agent.executors.base import Job, LogLine, Result
from stackl.agent.executors.mock import MockExecutor

FAST = 0.001  # seconds: mock jobs in these tests take no real time


def mock_job(
    *, parameters: dict[str, Any] | None = None, attempt: int = 1, action: str = "create", **invocation: Any
) -> Job:
    return Job.model_validate(
        {
            "job_id": "j",
            "attempt": attempt,
            "action": action,
            "stack_instance": "si",
            "service": "web",
            "functional_requirement": "nginx",
            "tool": "ansible",
            "invocation": {"mock_duration": FAST, **invocation},
            "provisioning_parameters": parameters or {},
            "secrets": {"token": "hunter22"},
            "unknown_future_field": 1,
        }
    )


async def run(job: Job, cancel: asyncio.Event | None = None) -> tuple[Result, list[LogLine]]:
    lines: list[LogLine] = []
    result = await MockExecutor().run(job, emit=lines.append, cancel=cancel or asyncio.Event())
    return result, lines


async def test_ready_by_default_with_outputs_and_system_lines() -> None:
    result, lines = await run(mock_job(mock_outputs={"url": "http://x", "pw": "hunter22"}))
    assert result.status == "READY"
    assert result.outputs == {"url": "http://x", "pw": "********"}
    system = [line.line for line in lines if line.stream == "system"]
    assert any("ansible-playbook playbook-role.yml (role nginx)" in line for line in system)
    assert "output pw contained a secret value of the job and was masked" in system


async def test_outputs_spec_applies() -> None:
    result, _ = await run(mock_job(mock_outputs={"db": {"host": "h"}}, outputs={"host": "db.host"}))
    assert result.outputs == {"host": "h"}


async def test_fail_uses_mock_error_and_mock_log() -> None:
    result, lines = await run(
        mock_job(mock_result="fail", mock_error="disk full", mock_log=["a", "b hunter22"])
    )
    assert result.status == "FAILED"
    assert result.error_message == "disk full\na\nb ********"
    assert [line.line for line in lines if line.stream == "stdout"] == ["a", "b ********"]


async def test_default_error_message() -> None:
    result, _ = await run(mock_job(mock_result="fail"))
    assert result.error_message == "mock failure"


@pytest.mark.parametrize(
    ("action", "status"), [("create", "READY"), ("delete", "FAILED"), ("update", "READY")]
)
async def test_result_per_action(action: str, status: str) -> None:
    result, _ = await run(mock_job(action=action, mock_result={"create": "ready", "delete": "fail"}))
    assert result.status == status


async def test_parameters_override_invocation_fields() -> None:
    job = mock_job(mock_result="ready", parameters={"mock_result": "fail", "mock_error": "from parameter"})
    result, _ = await run(job)
    assert result.error_message == "from parameter"


@pytest.mark.parametrize(("attempt", "status"), [(1, "FAILED"), (2, "FAILED"), (3, "READY")])
async def test_first_attempts_fail(attempt: int, status: str) -> None:
    result, _ = await run(mock_job(attempt=attempt, mock_fail_attempts=2))
    assert result.status == status


async def test_timeout_runs_until_the_invocation_timeout() -> None:
    result, _ = await run(mock_job(mock_result="timeout", timeout=0.01))
    assert result.status == "FAILED"
    assert result.timed_out
    assert result.error_message == "timed out after 0.01 s"


async def test_lost_is_flagged_for_the_runner() -> None:
    result, _ = await run(mock_job(mock_result="lost"))
    assert result.lost


async def test_cancellation_ends_a_long_job() -> None:
    cancel = asyncio.Event()
    cancel.set()
    result, _ = await run(mock_job(mock_duration=60), cancel)
    assert result.cancelled
    assert result.error_message == "cancelled"


async def test_delete_reports_no_outputs() -> None:
    result, _ = await run(mock_job(action="delete", mock_outputs={"a": 1}))
    assert result.status == "READY"
    assert result.outputs == {}


async def test_invalid_mock_result_fails() -> None:
    result, _ = await run(mock_job(parameters={"mock_result": "explode"}))
    assert result.status == "FAILED"
    assert result.error_message.startswith("mock_result explode is not one of")


def test_every_tool_is_advertised() -> None:
    assert MockExecutor().tools() == ["ansible", "packer", "shell", "terraform", "tofu"]
