"""The docker executor on a private Docker engine, in `stackl/busybox:test` (agents.md §6.4)."""

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.agent.conftest import BUSYBOX_IMAGE, Run, make_job

from stackl.agent.executors.base import Job, LogLine
from stackl.agent.executors.docker import DockerConfig, DockerExecutor

SECRET = "s3cr3t-Value-42"
AGENT = "docker-agent"
INSTANCE = "01INSTANCE"

DockerRunner = Callable[..., Awaitable[Run]]


def shell(command: str, *, invocation: dict[str, Any] | None = None, **fields: Any) -> Job:
    invocation = {"image": BUSYBOX_IMAGE, "command": command, **(invocation or {})}
    return make_job("shell", invocation=invocation, agent=AGENT, **fields)


@pytest.fixture
def api(docker_engine: str) -> Iterator[Any]:
    """A Docker Engine API client of the test's own."""
    import docker  # type: ignore[import-untyped]

    client = docker.APIClient(base_url=docker_engine, timeout=30)
    yield client
    client.close()


def our_containers(api: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = api.containers(
        all=True, filters={"label": ["app.kubernetes.io/managed-by=stackl", f"stackl.io/agent={AGENT}"]}
    )
    return found


@pytest.fixture
def executor(docker_engine: str, data_dir: Path) -> Iterator[Callable[..., DockerExecutor]]:
    made: list[DockerExecutor] = []

    def make(**config: Any) -> DockerExecutor:
        settings: dict[str, Any] = {
            "docker_host": docker_engine,
            "network": "none",
            "pull": "never",
            "grace_s": 1.0,
            "secret_handler": "plain",
        }
        one = DockerExecutor(DockerConfig(data_dir=data_dir, **(settings | config)))
        one.agent, one.instance_id = AGENT, INSTANCE
        made.append(one)
        return one

    yield make
    for one in made:
        one.close()


@pytest.fixture
def run_docker(executor: Callable[..., DockerExecutor]) -> DockerRunner:
    async def run(
        job: Job,
        *,
        cancel: asyncio.Event | None = None,
        watch: Callable[[LogLine], None] = lambda _line: None,
        **config: Any,
    ) -> Run:
        lines: list[LogLine] = []

        def emit(line: LogLine) -> None:
            lines.append(line)
            watch(line)

        result = await executor(**config).run(job, emit=emit, cancel=cancel or asyncio.Event())
        return Run(result, lines)

    return run


async def test_a_shell_job_runs_in_the_image_and_reports_outputs(run_docker: DockerRunner) -> None:
    script = (
        'echo "out $STACKL_VAR_domain"; echo "err $STACKL_ACTION" >&2; '
        "id -u; pwd; "
        """echo '{"url": "http://'$STACKL_VAR_domain'", "stackl_hosts": ["a"]}' > "$STACKL_OUTPUTS" """
    )
    run = await run_docker(shell(script, provisioning_parameters={"domain": "example.com"}))
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {"url": "http://example.com", "stackl_hosts": ["a"]}
    assert run.result.hosts == ["a"]
    assert run.text("stdout").splitlines() == ["out example.com", "0", "/"]
    assert run.text("stderr") == "err create"
    assert "shell: container stackl-01JOB-1, image stackl/busybox:test" in run.text("system")


async def test_the_job_environment_and_files_inside(run_docker: DockerRunner, data_dir: Path) -> None:
    script = 'env | sort; stat -c "%a %n" /stackl/secrets.json /stackl/variables.json; cat "$STACKL_VARIABLES_FILE"'
    run = await run_docker(shell(script, provisioning_parameters={"port": 80}, secrets={"token": SECRET}))
    assert run.result.status == "READY", run.result.error_message
    lines = run.text("stdout").splitlines()
    env = dict(line.split("=", 1) for line in lines if "=" in line)
    assert env["HOME"] == env["STACKL_WORK_DIR"] == "/stackl"
    assert env["STACKL_SECRETS_FILE"] == "/stackl/secrets.json"
    assert env["STACKL_OUTPUTS"] == "/stackl/outputs.json"
    assert env["STACKL_JOB_ID"] == "01JOB"
    assert env["STACKL_VAR_port"] == "80"
    assert not [name for name in env if name.startswith("STACKL_SECRET_")]  # local executor only
    assert "600 /stackl/secrets.json" in lines
    assert not (data_dir / "jobs" / "01JOB-1").exists()


async def test_a_failing_command_reports_its_code_and_tail(run_docker: DockerRunner) -> None:
    run = await run_docker(shell("echo one; echo two >&2; exit 7"))
    assert run.result.status == "FAILED"
    assert run.result.exit_code == 7
    # stdout and stderr are separate streams: their relative order is not kept
    summary, *tail = run.result.error_message.splitlines()
    assert summary == "command exited with code 7: two"  # the cause: its last stderr line
    assert sorted(tail) == ["one", "two"]


async def test_before_command_runs_first_and_can_fail(run_docker: DockerRunner) -> None:
    run = await run_docker(shell("echo never", invocation={"before_command": "echo preparing; exit 3"}))
    assert run.result.error_message.splitlines() == [
        "before_command exited with code 3: preparing",
        "preparing",
    ]
    run = await run_docker(
        shell(
            "cat marker",
            invocation={"before_command": "echo here > /tmp/marker", "working_directory": "/tmp"},
        )
    )
    assert run.result.status == "READY", run.result.error_message
    assert run.text("stdout") == "here"


async def test_a_missing_working_directory_is_reported(run_docker: DockerRunner) -> None:
    run = await run_docker(shell("true", invocation={"working_directory": "/nowhere"}))
    assert run.result.error_message.splitlines()[0] == "code directory /nowhere does not exist in the image"


async def test_secrets_reach_the_container_only_as_the_file(run_docker: DockerRunner, api: Any) -> None:
    seen: list[dict[str, Any]] = []

    def watch(line: LogLine) -> None:
        if line.line == "started":  # the container is running: look at it as `docker inspect` does
            seen.append(api.inspect_container("stackl-01JOB-1"))

    script = 'echo started; cat "$STACKL_SECRETS_FILE"; echo "plain $(cat /stackl/secrets.json)" >&2; sleep 1'
    run = await run_docker(shell(script, secrets={"token": SECRET}), watch=watch)
    assert run.result.status == "READY", run.result.error_message
    (inspected,) = seen
    assert SECRET not in json.dumps(inspected)
    config = inspected["Config"]
    assert not [item for item in config.get("Env") or [] if item.startswith("STACKL")]
    assert config["Entrypoint"] == ["sh"]
    assert config["Cmd"] == ["/stackl/run.sh"]
    assert config["Labels"]["stackl.io/job-id"] == "01JOB"
    assert config["Labels"]["stackl.io/agent"] == AGENT
    assert config["Labels"]["stackl.io/agent-instance"] == INSTANCE
    assert config["Labels"]["stackl.io/functional-requirement"] == "fr"
    assert config["User"] == "0:0"
    host = inspected["HostConfig"]
    assert host["NetworkMode"] == "none"
    assert [bind.split(":")[1] for bind in host["Binds"]] == ["/stackl"]
    assert SECRET not in run.text()
    assert '"token": "********"' in run.text("stdout")
    assert "plain" in run.text("stderr")


async def test_memory_and_cpus_limits(run_docker: DockerRunner, api: Any) -> None:
    seen: list[dict[str, Any]] = []

    def watch(line: LogLine) -> None:
        if line.line == "started":
            seen.append(api.inspect_container("stackl-01JOB-1")["HostConfig"])

    run = await run_docker(shell("echo started; sleep 0.5"), watch=watch, memory="64m", cpus=0.5)
    assert run.result.status == "READY", run.result.error_message
    assert seen[0]["Memory"] == 64 * 1024 * 1024
    assert seen[0]["NanoCpus"] == 500_000_000


async def test_image_is_required_and_pull_never_reports_a_missing_one(run_docker: DockerRunner) -> None:
    run = await run_docker(make_job("shell", invocation={"command": "true"}))
    assert run.result.error_message.splitlines()[0] == "invocation has no image"
    run = await run_docker(shell("true", invocation={"image": "stackl/absent:1"}))
    assert (
        run.result.error_message.splitlines()[0] == "image stackl/absent:1 is not present (pull policy never)"
    )


async def test_a_failed_pull_is_reported(run_docker: DockerRunner) -> None:
    run = await run_docker(shell("true", invocation={"image": "127.0.0.1:9/stackl/absent:1"}), pull="missing")
    assert run.result.status == "FAILED"
    assert run.result.error_message.startswith("image 127.0.0.1:9/stackl/absent:1 cannot be pulled: ")


async def test_timeout_stops_and_removes_the_container(run_docker: DockerRunner, api: Any) -> None:
    started = time.monotonic()
    run = await run_docker(shell("echo going; sleep 60", invocation={"timeout": 1}))
    assert run.result.status == "FAILED"
    assert run.result.timed_out
    assert run.result.error_message.splitlines()[:2] == ["timed out after 1 s", "going"]
    assert time.monotonic() - started < 15
    assert our_containers(api) == []


async def test_a_stop_reaches_the_tool_through_the_script(run_docker: DockerRunner, data_dir: Path) -> None:
    # The tool traps SIGTERM and says so: run.sh forwarded the container's stop signal to it.
    script = "trap 'echo got TERM; exit 5' TERM; echo waiting; while true; do sleep 0.1; done"
    run = await run_docker(shell(script, invocation={"timeout": 1}), grace_s=5)
    assert run.result.timed_out
    assert "got TERM" in run.text("stdout")


async def test_cancel_stops_the_container(run_docker: DockerRunner, api: Any) -> None:
    cancel = asyncio.Event()

    def watch(line: LogLine) -> None:
        if line.line == "started":
            cancel.set()

    run = await run_docker(shell("echo started; sleep 60"), cancel=cancel, watch=watch)
    assert run.result.status == "FAILED"
    assert run.result.cancelled
    assert run.result.error_message.splitlines()[0] == "cancelled"
    assert our_containers(api) == []


async def test_start_removes_the_containers_of_the_previous_instance(
    executor: Callable[..., DockerExecutor], api: Any
) -> None:
    client = api
    for name, instance in (("stackl-old-1", "01PREVIOUS"), ("stackl-other-1", "01OTHER")):
        labels = {
            "app.kubernetes.io/managed-by": "stackl",
            "stackl.io/agent": AGENT,
            "stackl.io/agent-instance": instance,
        }
        client.create_container(BUSYBOX_IMAGE, command=["sh", "-c", "sleep 60"], name=name, labels=labels)
        client.start(name)
    try:
        made = executor()
        await made.start(agent=AGENT, instance_id="01NEW", previous_instance_id="01PREVIOUS")
        assert made.instance_id == "01NEW"
        names = sorted(name for container in our_containers(api) for name in container["Names"])
        assert names == ["/stackl-other-1"]
    finally:
        client.remove_container("stackl-other-1", force=True)
        with contextlib.suppress(Exception):
            client.remove_container("stackl-old-1", force=True)


async def test_outputs_that_are_not_an_object_fail(run_docker: DockerRunner) -> None:
    run = await run_docker(shell("""echo '[1]' > "$STACKL_OUTPUTS" """))
    assert run.result.error_message.splitlines()[0] == "outputs file is not a JSON object"


def _block_jobs_dir(data_dir: Path) -> None:
    data_dir.mkdir()
    (data_dir / "jobs").write_text("not a directory")


async def test_an_unwritable_job_directory_is_a_failed_result(
    run_docker: DockerRunner, data_dir: Path
) -> None:
    _block_jobs_dir(data_dir)
    run = await run_docker(shell("true"))
    assert run.result.status == "FAILED"
    assert run.result.error_message.startswith("agent file error")


FAKE_TERRAFORM = """#!/bin/sh
# A stand-in for terraform: init prints, apply counts runs in the state, output prints a JSON document.
case "$1" in
  init) echo "init in $(pwd)" ;;
  apply) n=$(cat terraform.tfstate 2>/dev/null || echo 0); echo $((n + 1)) > terraform.tfstate
         echo "apply run $((n + 1)) with $(cat main.tf)"; ls backend.tf.json 2>/dev/null || true ;;
  output) printf '{"runs": {"value": %s, "sensitive": false}, "pw": {"value": "x", "sensitive": true}}\\n' \\
            "$(cat terraform.tfstate)" ;;
  destroy) echo destroyed ;;
esac
"""


def _terraform_image(api: Any) -> str:
    """busybox plus a fake `terraform` on PATH and a module in /code."""
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name in ("bin", "tmp", "code"):
            info = tarfile.TarInfo(name)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if name == "tmp" else 0o755
            tar.addfile(info)
        tar.add("/bin/busybox", arcname="bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
        for name, text, mode in (
            ("bin/terraform", FAKE_TERRAFORM, 0o755),
            ("code/main.tf", "module-v1", 0o644),
        ):
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(text.encode()), mode
            tar.addfile(info, io.BytesIO(text.encode()))
    api.import_image_from_data(data.getvalue(), repository="stackl/fake-terraform", tag="test")
    return "stackl/fake-terraform:test"


async def test_terraform_copies_the_code_and_keeps_local_state(
    run_docker: DockerRunner, api: Any, data_dir: Path
) -> None:
    image = await asyncio.to_thread(_terraform_image, api)
    job = make_job("terraform", invocation={"image": image, "working_directory": "/code"}, agent=AGENT)
    first = await run_docker(job)
    assert first.result.status == "READY", first.result.error_message
    assert first.result.outputs == {"runs": 1}  # the sensitive output is never reported
    assert "init in /stackl/src" in first.text("stdout")
    assert "apply run 1 with module-v1" in first.text("stdout")
    state = data_dir / "state" / "si" / "web" / "0" / "fr" / "terraform.tfstate"
    assert state.read_text().strip() == "1"
    second = await run_docker(job)
    assert second.result.outputs == {"runs": 2}
    backend = make_job(
        "terraform",
        invocation={"image": image, "working_directory": "/code"},
        provisioning_parameters={"terraform_backend": '{"terraform": {"backend": {"local": {}}}}'},
    )
    third = await run_docker(backend)
    assert third.result.status == "READY", third.result.error_message
    assert "backend.tf.json" in third.text("stdout")
    deleted = await run_docker(
        make_job("terraform", action="delete", invocation={"image": image, "working_directory": "/code"})
    )
    assert deleted.result.status == "READY", deleted.result.error_message
    assert "destroyed" in deleted.text("stdout")
    assert not state.exists()


async def test_a_cancelled_run_removes_the_container(
    executor: Callable[..., DockerExecutor], api: Any
) -> None:
    started = asyncio.Event()

    def emit(line: LogLine) -> None:
        if line.line == "started":
            started.set()

    run = asyncio.ensure_future(
        executor().run(shell("echo started; sleep 60"), emit=emit, cancel=asyncio.Event())
    )
    await asyncio.wait_for(started.wait(), timeout=30)
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert our_containers(api) == []
