"""Pure helpers of the container executors: run.sh, markers, labels, names, the Job manifest, mounts."""

import shlex
from pathlib import Path
from typing import Any

import pytest

from stackl.agent.executors import script
from stackl.agent.executors.base import Job
from stackl.agent.executors.docker import container_name, parse_mount
from stackl.agent.executors.kubernetes import (
    KubernetesConfig,
    file_key,
    job_manifest,
    label_value,
    metadata_labels,
    object_id,
)
from stackl.agent.tools.base import Step, ToolContext
from stackl.agent.tools.terraform import TerraformTool


def job(tool: str = "shell", **fields: Any) -> Job:
    invocation = fields.pop("invocation", {})
    return Job.model_validate(
        {
            "job_id": "01JOBID",
            "attempt": 2,
            "action": "create",
            "stack_instance": "si",
            "service": "web",
            "functional_requirement": "fr",
            "tool": tool,
            "invocation": {"image": "img:1", **invocation},
            **fields,
        }
    )


def render(payload: Job, steps: list[Step], layout: script.Layout = script.DOCKER, **kwargs: Any) -> str:
    return script.render(
        payload,
        env=kwargs.pop("env", {"STACKL_ACTION": "create"}),
        steps=steps,
        layout=layout,
        copies_code=kwargs.pop("copies_code", False),
        output_file="outputs.json",
    )


def test_quote_turns_the_code_dir_mark_into_the_shell_variable() -> None:
    assert script.quote("plain") == "plain"
    assert script.quote("it's") == shlex.quote("it's")
    assert script.quote(script.CODE_DIR_MARK) == '"$stackl_code"'
    assert script.quote(f"{script.CODE_DIR_MARK}/roles:x y") == "\"$stackl_code\"'/roles:x y'"
    assert script.quote("") == "''"


def test_run_sh_runs_the_steps_in_the_background_and_names_them() -> None:
    steps = [Step("command", ["sh", "-c", "echo 'hi'"], Path(script.CODE_DIR_MARK))]
    text = render(job(invocation={"before_command": "make", "working_directory": "/code"}), steps)
    assert text.startswith("#!/bin/sh\n")
    assert "umask 077" in text
    assert "export STACKL_ACTION=create" in text
    assert (
        "cd -- /code 2>/dev/null || stackl_report 1 'code directory /code does not exist in the image'"
        in text
    )
    assert '( cd -- "$stackl_code" && exec sh -c make ) &\nstackl_wait before_command' in text
    assert "( cd -- \"$stackl_code\" && exec sh -c 'echo '\"'\"'hi'\"'\"'' ) &\nstackl_wait command" in text
    assert "printf '%s\\n' \"$2\" > /stackl/status" in text  # docker reports into a file
    assert script.OUTPUTS_MARKER not in text
    assert text.rstrip().endswith("exit 0")


def test_run_sh_on_kubernetes_reports_on_the_log_and_prints_outputs() -> None:
    text = render(job(), [], script.KUBERNETES)
    assert f"printf '{script.STATUS_MARKER}%s\\n' \"$2\"" in text
    assert f"printf '{script.OUTPUTS_MARKER}'; tr -d '\\r\\n' < /stackl/outputs.json" in text
    assert "/stackl/secrets" in text  # named in the header comment only
    deleting = render(job(action="delete"), [], script.KUBERNETES)
    assert script.OUTPUTS_MARKER not in deleting


def test_run_sh_copies_code_then_placed_files_for_terraform() -> None:
    text = render(job("terraform"), [], script.KUBERNETES, copies_code=True)
    copy = text.index('cp -R "$stackl_code/." /stackl/src/')
    placed_in = text.index("if [ -d /stackl/in/placed ]")
    placed_secret = text.index("if [ -d /stackl/secrets/placed ]")
    assert copy < placed_in < placed_secret < text.index("stackl_code=/stackl/src")


def test_step_env_and_captured_stdout() -> None:
    step = Step(
        "terraform output", ["terraform", "output"], Path("/stackl/src"), {"A": "1"}, Path("/stackl/o.json")
    )
    text = render(job("terraform"), [step])
    assert "( cd -- /stackl/src && export A=1 && exec terraform output > /stackl/o.json ) &" in text
    assert "stackl_wait 'terraform output'" in text


def test_invalid_environment_names_are_left_out() -> None:
    text = render(job(), [], env={"GOOD_1": "x", "bad-name": "y", "1BAD": "z"})
    assert "export GOOD_1=x" in text
    assert "bad-name" not in text
    assert "1BAD" not in text


def test_container_paths_follow_the_layout() -> None:
    workdir = script.ContainerWorkDir(script.KUBERNETES, inputs=["variables.json"], secrets=["secrets.json"])
    assert workdir.variables_file == Path("/stackl/in/variables.json")
    assert workdir.secrets_file == Path("/stackl/secrets/secrets.json")
    assert workdir.outputs_file == Path("/stackl/outputs.json")
    assert workdir.path("terraform-output.json") == Path("/stackl/terraform-output.json")


def test_terraform_steps_use_container_paths() -> None:
    workdir = script.ContainerWorkDir(script.KUBERNETES, inputs=["variables.json"], secrets=["secrets.json"])
    ctx = ToolContext(
        job=job("terraform"), workdir=workdir, code_dir=Path("/stackl/src"), data_dir=Path("/d"), secrets={}
    )
    apply = script.container_steps(TerraformTool(), ctx)[1]
    assert apply.argv[-2:] == [
        "-var-file=/stackl/in/variables.json",
        "-var-file=/stackl/secrets/secrets.json",
    ]


def test_ansible_runs_ansible_playbook_in_containers() -> None:
    workdir = script.ContainerWorkDir(script.DOCKER, inputs=[], secrets=[])
    ctx = ToolContext(
        job=job("ansible", action="delete"),
        workdir=workdir,
        code_dir=Path(script.CODE_DIR_MARK),
        data_dir=Path("/d"),
        secrets={},
    )
    (step,) = script.container_steps(script.container_tools()["ansible"], ctx)
    assert step.argv == [
        "ansible-playbook",
        "/stackl/playbook-role.yml",
        "-i",
        "/stackl/inventory.yml",
        "-e",
        "@/stackl/variables.json",
        "-e",
        "@/stackl/secrets.json",
        "-e",
        "@/stackl/role-vars.json",
        "-e",
        "state=absent",
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("plain", ("plain", None, None)),
        ('::stackl-outputs::{"a":1}', (None, '{"a":1}', None)),
        ('tail::stackl-outputs::{"a":1}', ("tail", '{"a":1}', None)),
        ("::stackl-status::command exited with code 3", (None, None, "command exited with code 3")),
        ("::stackl-other", ("::stackl-other", None, None)),
    ],
)
def test_split_markers(line: str, expected: tuple[str | None, str | None, str | None]) -> None:
    assert script.split_markers(line) == expected


def test_label_values_are_shortened_to_valid_ones() -> None:
    assert label_value("web") == "web"
    assert label_value("") == ""
    long = "x" * 64
    short = label_value(long)
    assert len(short) == 63
    assert short != label_value("x" * 65)
    for value in ("web_", "web-", "-web", "a b/c", "é" * 10):
        shortened = label_value(value)
        assert shortened != value
        assert shortened[0].isalnum()
        assert shortened[-1].isalnum()
        assert len(shortened) <= 63
    labels, annotations = metadata_labels({"a": "ok", "b": "bad_"})
    assert labels["a"] == "ok"
    assert annotations == {"b": "bad_"}


def test_names() -> None:
    assert object_id(job()) == "01jobid-a2"
    assert object_id(job(job_id="A_B.c")) == "a-b-c-a2"
    assert container_name(job()) == "stackl-01JOBID-2"
    assert file_key("placed/backend.tf.json") == "placed__backend.tf.json"


def test_job_manifest_maps_files_to_their_paths() -> None:
    config = KubernetesConfig(data_dir=Path("/d"))
    manifest = job_manifest(
        job(invocation={"timeout": 90.5}),
        config,
        name="stackl-x",
        labels={"l": "v"},
        annotations={},
        inputs=["run.sh", "placed/backend.tf.json"],
        secret_files=["secrets.json"],
    )
    assert manifest["spec"]["activeDeadlineSeconds"] == 91
    volumes = {v["name"]: v for v in manifest["spec"]["template"]["spec"]["volumes"]}
    assert volumes["files"]["configMap"]["items"] == [
        {"key": "run.sh", "path": "run.sh"},
        {"key": "placed__backend.tf.json", "path": "placed/backend.tf.json"},
    ]
    assert volumes["secrets"]["secret"]["items"] == [{"key": "secrets.json", "path": "secrets.json"}]
    assert "resources" not in manifest["spec"]["template"]["spec"]["containers"][0]


def test_docker_mounts() -> None:
    assert parse_mount("/srv/keys:/keys:ro") == ("/srv/keys", {"bind": "/keys", "mode": "ro"})
    assert parse_mount("/a:/b") == ("/a", {"bind": "/b", "mode": "rw"})
    for bad in ("relative:/b", "/a", "/a:/stackl/x", "/a:/stackl"):
        with pytest.raises(ValueError, match="--docker-mount"):
            parse_mount(bad)


def test_build_executor_makes_the_container_executors(tmp_path: Path) -> None:
    from stackl.processes.agent import ContainerOptions, build_executor

    options = ContainerOptions(pull="never", network="none", mounts=["/a:/b:ro"], namespace="jobs", ttl_s=60)
    docker = build_executor(
        "docker", data_dir=tmp_path, automation_dirs=[], secret_handler="plain", options=options
    )
    assert docker.name == "docker"
    assert docker.config.pull == "never"
    assert docker.binds == {"/a": {"bind": "/b", "mode": "ro"}}
    assert docker.tools() == ["ansible", "packer", "shell", "terraform", "tofu"]
    k8s = build_executor(
        "kubernetes", data_dir=tmp_path, automation_dirs=[], secret_handler="plain", options=options
    )
    assert k8s.name == "kubernetes"
    assert k8s.namespace() == "jobs"
    assert k8s.config.ttl_s == 60
    for bad in (ContainerOptions(pull="sometimes"), ContainerOptions(mounts=["nope"])):
        with pytest.raises(ValueError, match=r"pull policy|--docker-mount"):
            build_executor(
                "docker", data_dir=tmp_path, automation_dirs=[], secret_handler="plain", options=bad
            )
    with pytest.raises(ValueError, match="unknown executor"):
        build_executor("podman", data_dir=tmp_path, automation_dirs=[], secret_handler="plain")
