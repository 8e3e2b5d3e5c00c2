"""The shell tool on the local executor: environment, outputs, secrets, failures, timeout and cancellation."""

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest
from tests.integration.agent.conftest import Runner, make_job

from stackl.agent.executors.base import Job, LogLine

SECRET = "s3cr3t-Value-42"


def shell(command: str, *, invocation: dict[str, Any] | None = None, **fields: Any) -> Job:
    return make_job("shell", invocation={"command": command, **(invocation or {})}, **fields)


def living_members(pgid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


async def test_outputs_come_from_the_outputs_file(run_job: Runner) -> None:
    job = shell(
        """echo '{"url": "http://'$STACKL_VAR_domain'", "stackl_hosts": ["a", "b"]}' > "$STACKL_OUTPUTS" """,
        provisioning_parameters={"domain": "example.com"},
    )
    run = await run_job(job)
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {"url": "http://example.com", "stackl_hosts": ["a", "b"]}
    assert run.result.hosts == ["a", "b"]


async def test_outputs_spec_selects_paths(run_job: Runner) -> None:
    script = """echo '{"db": {"hosts": ["10.0.0.1", "10.0.0.2"]}}' > "$STACKL_OUTPUTS" """
    job = shell(script, invocation={"outputs": {"first": "db.hosts.0", "missing": "db.nope"}})
    run = await run_job(job)
    assert run.result.outputs == {"first": "10.0.0.1", "missing": None}


async def test_outputs_that_are_not_an_object_fail(run_job: Runner) -> None:
    run = await run_job(shell("""echo '[1, 2]' > "$STACKL_OUTPUTS" """))
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == "outputs file is not a JSON object"


async def test_an_empty_outputs_file_means_no_outputs(run_job: Runner) -> None:
    run = await run_job(shell("true"))
    assert run.result.status == "READY"
    assert run.result.outputs == {}


async def test_environment_is_clean_and_complete(run_job: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STACKL_AGENT__TOKEN", "agent-token-never-seen")
    monkeypatch.setenv("KEPT_FOR_TOOLS", "yes")
    monkeypatch.setenv("NOT_PASSED", "no")
    job = shell(
        "env | sort",
        provisioning_parameters={"domain": "example.com", "port": 80, "nested": {"a": 1}, "bad-key": "x"},
        secrets={"db_password": SECRET},
    )
    run = await run_job(job, pass_env=["KEPT_FOR_TOOLS"])
    assert run.result.status == "READY", run.result.error_message
    env = dict(line.split("=", 1) for line in run.text("stdout").splitlines() if "=" in line)
    assert env["STACKL_ACTION"] == "create"
    assert env["STACKL_STACK_INSTANCE"] == "si"
    assert env["STACKL_SERVICE"] == "web"
    assert env["STACKL_REPLICA"] == "0"
    assert env["STACKL_FUNCTIONAL_REQUIREMENT"] == "fr"
    assert env["STACKL_INFRASTRUCTURE_TARGET"] == "production.brussels.zone-a"
    assert env["STACKL_JOB_ID"] == "01JOB"
    assert env["STACKL_ATTEMPT"] == "1"
    assert env["HOME"] == env["STACKL_WORK_DIR"]
    assert env["STACKL_OUTPUTS"] == env["STACKL_WORK_DIR"] + "/outputs.json"
    assert env["STACKL_VAR_domain"] == "example.com"
    assert env["STACKL_VAR_port"] == "80"
    assert env["STACKL_SECRET_db_password"] == "********"  # present, and masked in the stream
    assert "STACKL_VAR_nested" not in env
    assert "STACKL_VAR_bad-key" not in env
    assert env["KEPT_FOR_TOOLS"] == "yes"
    assert "NOT_PASSED" not in env
    assert "STACKL_AGENT__TOKEN" not in env
    assert SECRET not in run.text()


async def test_secrets_are_masked_in_every_form(run_job: Runner) -> None:
    encoded = base64.b64encode(SECRET.encode()).decode()
    script = (
        'echo "plain $STACKL_SECRET_token"; '
        f"echo 'b64 {encoded}'; "
        """printf '%s\\n' "$(cat "$STACKL_SECRETS_FILE")" >&2; """
        """echo '{"echo": "'$STACKL_SECRET_token'", "ok": 1}' > "$STACKL_OUTPUTS" """
    )
    run = await run_job(shell(script, secrets={"token": SECRET}))
    assert run.result.status == "READY", run.result.error_message
    text = run.text()
    assert SECRET not in text
    assert encoded.rstrip("=") not in text
    assert "plain ********" in text
    assert run.result.outputs == {"echo": "********", "ok": 1}
    assert "output echo contained a secret value of the job and was masked" in run.text("system")


async def test_base64_handler_decodes_secrets(run_job: Runner, monkeypatch: pytest.MonkeyPatch) -> None:
    encoded = base64.b64encode(SECRET.encode()).decode().rstrip("=")  # padding is added back
    script = """test "$STACKL_SECRET_token" = "$EXPECTED" && echo decoded"""
    job = shell(script, secrets={"token": encoded})
    monkeypatch.setenv("EXPECTED", SECRET)
    assert (await run_job(job, handler="plain", pass_env=["EXPECTED"])).result.status == "FAILED"
    run = await run_job(job, handler="base64", pass_env=["EXPECTED"])
    assert run.result.status == "READY", run.result.error_message
    assert "decoded" in run.text("stdout")


async def test_invalid_base64_names_the_key_only(run_job: Runner) -> None:
    run = await run_job(shell("true", secrets={"token": "not base64!!"}), handler="base64")
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == "secret token is not valid base64"
    assert "not base64!!" not in run.result.error_message


async def test_work_dir_is_private_and_secrets_go_before_the_result(run_job: Runner, data_dir: Path) -> None:
    script = 'stat -c "%a %n" "$STACKL_WORK_DIR" "$STACKL_SECRETS_FILE" "$STACKL_VARIABLES_FILE" job.json; cat job.json'
    run = await run_job(shell(script, secrets={"token": SECRET}), keep_workdirs=True)
    assert run.result.status == "READY", run.result.error_message
    modes = {
        name: mode for mode, name in (line.split(" ", 1) for line in run.text("stdout").splitlines()[:4])
    }
    work_dir = data_dir / "jobs" / "01JOB-1"
    assert modes == {
        str(work_dir): "700",
        str(work_dir / "secrets.json"): "600",
        str(work_dir / "variables.json"): "600",
        "job.json": "600",
    }
    assert "secrets" not in json.loads((work_dir / "job.json").read_text())
    assert not (work_dir / "secrets.json").exists()  # kept for debugging, minus secrets
    run = await run_job(shell("true", secrets={"token": SECRET}))
    assert not work_dir.exists()


async def test_before_command_failure_stops_the_job(run_job: Runner) -> None:
    run = await run_job(shell("echo never", invocation={"before_command": "echo preparing; exit 3"}))
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines() == [
        "before_command exited with code 3: preparing",
        "preparing",
    ]
    assert "never" not in run.text("stdout")


async def test_a_failing_command_reports_its_code_and_last_lines(run_job: Runner) -> None:
    run = await run_job(shell("echo one; echo two >&2; exit 7"))
    assert run.result.status == "FAILED"
    assert run.result.exit_code == 7
    assert run.result.error_message.splitlines() == ["command exited with code 7: two", "one", "two"]


async def test_long_lines_are_cut(run_job: Runner) -> None:
    run = await run_job(shell("head -c 20000 /dev/zero | tr '\\0' x; echo; echo after"))
    stdout = [line.line for line in run.lines if line.stream == "stdout"]
    assert stdout[0] == "x" * 16384 + "…[truncated 3616 bytes]"
    assert stdout[1] == "after"


async def test_working_directory_must_stay_inside(run_job: Runner, automation_dir: Path) -> None:
    (automation_dir / "code").mkdir()
    (automation_dir / "code" / "marker").write_text("here")
    for outside in ("../elsewhere", "code/../../elsewhere", "/etc"):
        run = await run_job(shell("true", invocation={"working_directory": outside}))
        assert (
            run.result.error_message.splitlines()[0] == "working_directory outside the automation directories"
        )
    run = await run_job(shell("cat marker", invocation={"working_directory": "code"}))
    assert run.text("stdout") == "here"
    run = await run_job(shell("cat marker", invocation={"working_directory": str(automation_dir / "code")}))
    assert run.text("stdout") == "here"


async def test_timeout_stops_the_whole_process_tree(run_job: Runner, tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    # A grandchild that ignores SIGTERM, and a shell that waits for it: only SIGKILL ends them.
    script = f"sh -c 'trap \"\" TERM; sleep 60' & echo $$ > {pid_file}; trap '' TERM; wait"
    run = await run_job(shell(script, invocation={"timeout": 1}), grace_s=0.5)
    assert run.result.status == "FAILED"
    assert run.result.timed_out
    assert run.result.error_message.splitlines()[0] == "timed out after 1 s"
    pgid = int(pid_file.read_text())
    assert living_members(pgid) == []


async def test_cancellation_stops_the_job(run_job: Runner, tmp_path: Path) -> None:
    cancel = asyncio.Event()
    pid_file = tmp_path / "pids"

    def cancel_when_started(line: LogLine) -> None:
        if line.line == "started":
            cancel.set()

    script = f"sleep 60 & echo $$ > {pid_file}; echo started; wait"
    run = await run_job(shell(script), cancel=cancel, watch=cancel_when_started)
    assert run.result.status == "FAILED"
    assert run.result.cancelled
    assert run.result.error_message.splitlines()[0] == "cancelled"
    assert living_members(int(pid_file.read_text())) == []


async def test_unknown_tool_fails(run_job: Runner) -> None:
    run = await run_job(make_job("chef"))
    assert run.result.error_message.splitlines()[0] == "tool chef is not available on this agent"
