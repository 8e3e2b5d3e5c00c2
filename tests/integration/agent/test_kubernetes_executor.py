"""The kubernetes executor against a fake API server that runs each Job's pod on the private Docker engine.

What the fake recorded (bodies, order, delete options) stands for what a real cluster would have received
(agents.md §6.5).
"""

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.integration.agent.conftest import BUSYBOX_IMAGE, Run, make_job
from tests.integration.agent.fake_k8s import FakeKubernetes

from stackl.agent.executors.base import Job, LogLine
from stackl.agent.executors.kubernetes import KubernetesConfig, KubernetesExecutor

SECRET = "s3cr3t-Value-42"
AGENT = "k8s-agent"
INSTANCE = "01INSTANCE"
NAME = "stackl-01job-a1"

K8sRunner = Callable[..., Awaitable[Run]]


def shell(command: str, *, invocation: dict[str, Any] | None = None, **fields: Any) -> Job:
    invocation = {"image": BUSYBOX_IMAGE, "command": command, **(invocation or {})}
    return make_job("shell", invocation=invocation, agent=AGENT, **fields)


@pytest.fixture
def fake(docker_engine: str) -> Iterator[FakeKubernetes]:
    server = FakeKubernetes(docker_engine).start()
    yield server
    server.stop()


@pytest.fixture
def executor(fake: FakeKubernetes, data_dir: Path) -> Iterator[Callable[..., KubernetesExecutor]]:
    made: list[KubernetesExecutor] = []

    def make(**config: Any) -> KubernetesExecutor:
        settings: dict[str, Any] = {
            "configuration": fake.configuration(),
            "pull": "never",
            "poll_s": 0.1,
            "grace_s": 1,
            "pull_timeout_s": 0.5,
            "secret_handler": "plain",
        }
        one = KubernetesExecutor(KubernetesConfig(data_dir=data_dir, **(settings | config)))
        one.agent, one.instance_id = AGENT, INSTANCE
        made.append(one)
        return one

    yield make
    for one in made:
        one.close()


@pytest.fixture
def run_k8s(executor: Callable[..., KubernetesExecutor]) -> K8sRunner:
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


async def test_a_shell_job_completes_with_outputs_and_leaves_nothing(
    run_k8s: K8sRunner, fake: FakeKubernetes, data_dir: Path
) -> None:
    script = (
        'echo "out $STACKL_VAR_domain"; cat "$STACKL_SECRETS_FILE"; '
        """pw=$(sed -n 's/.*"token": "\\(.*\\)".*/\\1/p' "$STACKL_SECRETS_FILE"); """
        """echo '{"url": "http://'$STACKL_VAR_domain'", "pw": "'$pw'"}' > "$STACKL_OUTPUTS" """
    )
    job = shell(script, provisioning_parameters={"domain": "example.com"}, secrets={"token": SECRET})
    run = await run_k8s(job)
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {"url": "http://example.com", "pw": "********"}
    stdout = run.text("stdout")
    assert "out example.com" in stdout
    assert "::stackl-outputs::" not in run.text()
    assert SECRET not in run.text()
    assert '"token": "********"' in stdout
    # Success: the Job is deleted in the background, its ConfigMap with it; the Secret went at once.
    deletes = fake.calls("DELETE", "jobs")
    assert [(r.path.rsplit("/", 1)[1], r.query.get("propagationPolicy")) for r in deletes] == [
        (NAME, "Background")
    ]
    assert fake.names("jobs") == fake.names("configmaps") == fake.names("secrets") == []
    assert not (data_dir / "jobs" / "01JOB-1").exists()


async def test_objects_names_labels_owners_and_spec(run_k8s: K8sRunner, fake: FakeKubernetes) -> None:
    run = await run_k8s(shell("echo hello", secrets={"token": SECRET}, provisioning_parameters={"port": 80}))
    assert run.result.status == "READY", run.result.error_message
    order = [(r.method, r.path.rsplit("/", 1)[-1]) for r in fake.requests if r.method in ("POST", "PATCH")]
    assert order == [
        ("POST", "secrets"),
        ("POST", "configmaps"),
        ("POST", "jobs"),
        ("PATCH", f"{NAME}-s"),
        ("PATCH", f"{NAME}-f"),
    ]
    (secret,) = fake.created("secrets")
    (config_map,) = fake.created("configmaps")
    (job,) = fake.created("jobs")
    assert secret["metadata"]["name"] == f"{NAME}-s"
    assert config_map["metadata"]["name"] == f"{NAME}-f"
    assert job["metadata"]["name"] == NAME
    labels = {
        "app.kubernetes.io/managed-by": "stackl",
        "stackl.io/stack-instance": "si",
        "stackl.io/service": "web",
        "stackl.io/functional-requirement": "fr",
        "stackl.io/job-id": "01JOB",
        "stackl.io/attempt": "1",
        "stackl.io/agent": AGENT,
    }
    for body in (secret, config_map, job, job["spec"]["template"]):
        assert body["metadata"]["labels"] == labels
        assert body["metadata"]["annotations"] == {"stackl.io/agent-instance": INSTANCE}
    patches = fake.calls("PATCH", "")
    job_uid = patches[0].body["metadata"]["ownerReferences"][0]["uid"]
    for patch in patches:
        (owner,) = patch.body["metadata"]["ownerReferences"]
        assert owner == {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "name": NAME,
            "uid": job_uid,
            "blockOwnerDeletion": True,
        }
    spec = job["spec"]
    assert spec["backoffLimit"] == 0
    assert spec["activeDeadlineSeconds"] == 3600
    assert spec["ttlSecondsAfterFinished"] == 3600
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "default"
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"] == {"fsGroup": 1000}
    (container,) = pod["containers"]
    assert container["command"] == ["sh", "/stackl/in/run.sh"]
    assert container["imagePullPolicy"] == "Never"
    assert "env" not in container
    assert container["volumeMounts"] == [
        {"name": "work", "mountPath": "/stackl"},
        {"name": "files", "mountPath": "/stackl/in", "readOnly": True},
        {"name": "secrets", "mountPath": "/stackl/secrets", "readOnly": True},
    ]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert volumes["work"] == {"name": "work", "emptyDir": {}}
    assert volumes["files"]["configMap"]["name"] == f"{NAME}-f"
    assert volumes["secrets"]["secret"]["secretName"] == f"{NAME}-s"
    assert volumes["secrets"]["secret"]["defaultMode"] == 0o440
    assert set(secret["data"]) == {"secrets.json"}
    assert json.loads(base64.b64decode(secret["data"]["secrets.json"])) == {"token": SECRET}
    assert {"run.sh", "job.json", "variables.json"} <= set(config_map["data"])
    assert SECRET not in json.dumps(config_map)
    assert SECRET not in json.dumps(job)
    assert json.loads(config_map["data"]["variables.json"]) == {"port": 80}
    assert list(fake.mounted.values()) == [{"secrets.json": 0o440}]


async def test_settings_reach_the_job_spec(run_k8s: K8sRunner, fake: FakeKubernetes) -> None:
    run = await run_k8s(
        shell("true", invocation={"timeout": 120}),
        ttl_s=60,
        service_account="runner",
        automount_token=True,
        image_pull_secrets=["registry"],
        requests={"cpu": "100m"},
        limits={"memory": "256Mi"},
        pull="missing",
        namespace="default",
    )
    assert run.result.status == "READY", run.result.error_message
    (job,) = fake.created("jobs")
    assert job["spec"]["activeDeadlineSeconds"] == 120
    assert job["spec"]["ttlSecondsAfterFinished"] == 60
    pod = job["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "runner"
    assert pod["automountServiceAccountToken"] is True
    assert pod["imagePullSecrets"] == [{"name": "registry"}]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "100m"}, "limits": {"memory": "256Mi"}}
    assert pod["containers"][0]["imagePullPolicy"] == "IfNotPresent"


async def test_long_label_values_are_shortened_and_kept_in_annotations(
    run_k8s: K8sRunner, fake: FakeKubernetes
) -> None:
    long_name = "a-very-long-stack-instance-name-" + "x" * 60
    run = await run_k8s(shell("true", stack_instance=long_name, service="web_"))
    assert run.result.status == "READY", run.result.error_message
    (job,) = fake.created("jobs")
    labels, annotations = job["metadata"]["labels"], job["metadata"]["annotations"]
    assert len(labels["stackl.io/stack-instance"]) <= 63
    assert labels["stackl.io/stack-instance"].startswith("a-very-long-stack-instance-name-")
    assert annotations["stackl.io/stack-instance"] == long_name
    assert labels["stackl.io/service"] != "web_"
    assert annotations["stackl.io/service"] == "web_"
    assert "stackl.io/job-id" not in annotations


async def test_a_failed_container_keeps_the_job_for_inspection(
    run_k8s: K8sRunner, fake: FakeKubernetes
) -> None:
    run = await run_k8s(shell("echo one; echo two >&2; exit 7", secrets={"token": SECRET}))
    assert run.result.status == "FAILED"
    assert run.result.exit_code == 7
    summary, *tail = run.result.error_message.splitlines()
    # A pod's log is one stream: the cause is its last lines, stdout and stderr in whatever order they came.
    assert summary in ("command exited with code 7: one / two", "command exited with code 7: two / one")
    assert sorted(tail) == ["one", "two"]  # the pod log merges stdout and stderr: no order between them
    assert fake.names("jobs") == [NAME]
    assert fake.names("configmaps") == [f"{NAME}-f"]
    assert fake.names("pods")
    assert fake.names("secrets") == []  # deleted as soon as the pod terminated
    assert fake.calls("DELETE", "jobs") == []


async def test_before_command_failure_is_named(run_k8s: K8sRunner) -> None:
    run = await run_k8s(shell("echo never", invocation={"before_command": "echo preparing; exit 3"}))
    assert run.result.error_message.splitlines() == [
        "before_command exited with code 3: preparing",
        "preparing",
    ]


async def test_output_without_a_final_newline_is_still_streamed(run_k8s: K8sRunner) -> None:
    run = await run_k8s(shell("""echo '{"a": 1}' > "$STACKL_OUTPUTS"; printf 'no newline'"""))
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {"a": 1}
    assert run.text("stdout") == "no newline"


async def test_invalid_outputs_fail(run_k8s: K8sRunner) -> None:
    run = await run_k8s(shell("""echo '[1]' > "$STACKL_OUTPUTS" """))
    assert run.result.error_message.splitlines()[0] == "outputs file is not a JSON object"


async def test_deadline_exceeded_is_a_timeout_and_deletes_in_the_foreground(
    run_k8s: K8sRunner, fake: FakeKubernetes
) -> None:
    run = await run_k8s(shell("echo going; sleep 60", invocation={"timeout": 1}))
    assert run.result.status == "FAILED"
    assert run.result.timed_out
    assert run.result.error_message.splitlines()[0] == "timed out after 1 s"
    (delete,) = fake.calls("DELETE", "jobs")
    assert delete.query == {"propagationPolicy": "Foreground", "gracePeriodSeconds": "1"}
    assert fake.names("jobs") == fake.names("pods") == fake.names("configmaps") == fake.names("secrets") == []


async def test_cancel_deletes_the_job_in_the_foreground(run_k8s: K8sRunner, fake: FakeKubernetes) -> None:
    cancel = asyncio.Event()

    def watch(line: LogLine) -> None:
        if line.line == "started":
            cancel.set()

    run = await run_k8s(shell("echo started; sleep 60"), cancel=cancel, watch=watch)
    assert run.result.cancelled
    assert run.result.error_message.splitlines()[0] == "cancelled"
    (delete,) = fake.calls("DELETE", "jobs")
    assert delete.query["propagationPolicy"] == "Foreground"
    assert fake.names("jobs") == fake.names("pods") == fake.names("secrets") == []


async def test_an_image_that_cannot_be_pulled(run_k8s: K8sRunner, fake: FakeKubernetes) -> None:
    run = await run_k8s(shell("true", invocation={"image": "stackl/absent:1"}))
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == (
        'image stackl/absent:1 cannot be pulled: Failed to pull image "stackl/absent:1": pull access denied'
    )
    assert fake.names("secrets") == []


async def test_image_is_required(run_k8s: K8sRunner, fake: FakeKubernetes) -> None:
    run = await run_k8s(make_job("shell", invocation={"command": "true"}))
    assert run.result.error_message.splitlines()[0] == "invocation has no image"
    assert fake.requests == []


async def test_start_deletes_the_objects_of_the_previous_instance(
    executor: Callable[..., KubernetesExecutor], fake: FakeKubernetes
) -> None:
    for kind in ("jobs", "configmaps", "secrets"):
        for name, instance in (("old", "01PREVIOUS"), ("other", "01OTHER")):
            metadata = {
                "name": f"stackl-{name}",
                "labels": {"app.kubernetes.io/managed-by": "stackl", "stackl.io/agent": AGENT},
                "annotations": {"stackl.io/agent-instance": instance},
            }
            body: dict[str, Any] = {"metadata": metadata}
            if kind == "jobs":
                body["spec"] = {"template": {"spec": {"containers": [{"name": "shell"}]}}}
            fake.put(kind, "default", body)
    made = executor()
    await made.start(agent=AGENT, instance_id="01NEW", previous_instance_id="01PREVIOUS")
    assert made.instance_id == "01NEW"
    assert fake.names("jobs") == fake.names("configmaps") == fake.names("secrets") == ["stackl-other"]


async def test_a_cancelled_run_deletes_the_job(
    executor: Callable[..., KubernetesExecutor], fake: FakeKubernetes
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
    assert [r.query["propagationPolicy"] for r in fake.calls("DELETE", "jobs")] == ["Foreground"]
    assert fake.names("jobs") == fake.names("secrets") == []
