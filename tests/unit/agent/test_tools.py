"""What each tool would run and write, without running it (agents.md §6.2)."""

from pathlib import Path
from typing import Any

from stackl.agent.executors.base import Job
from stackl.agent.tools import ansible, packer, terraform
from stackl.agent.tools.ansible import AnsibleTool
from stackl.agent.tools.base import ToolContext
from stackl.agent.tools.packer import PackerTool
from stackl.agent.tools.shell import ShellTool
from stackl.agent.tools.terraform import TerraformTool
from stackl.agent.workdir import WorkDir

JOB_DIR = Path("/data/jobs/j-1")
CODE = Path("/automation/fr")


def context(
    tool: str, *, action: str = "create", secrets: dict[str, Any] | None = None, **fields: Any
) -> ToolContext:
    invocation = fields.pop("invocation", {})
    job = Job.model_validate(
        {
            "job_id": "j",
            "action": action,
            "stack_instance": "si",
            "service": "web",
            "replica": 1,
            "infrastructure_target": "prod.bru.a",
            "functional_requirement": "fr",
            "tool": tool,
            "invocation": invocation,
            "secrets": secrets or {},
            **fields,
        }
    )
    return ToolContext(
        job=job, workdir=WorkDir(JOB_DIR), code_dir=CODE, data_dir=Path("/data"), secrets=job.secrets
    )


def test_ansible_inventory_without_hosts_is_the_agent_machine() -> None:
    document = ansible.inventory(context("ansible", groups={"db": ["db1"]}))
    assert document == {
        "all": {
            "children": {
                "db": {"hosts": {"db1": {}}},
                "web": {
                    "hosts": {
                        "web_1": {
                            "ansible_host": "localhost",
                            "ansible_connection": "local",
                            "ansible_python_interpreter": "{{ ansible_playbook_python }}",
                        }
                    },
                    "vars": {"infrastructure_target": "prod.bru.a"},
                },
            }
        }
    }


def test_ansible_private_key_secret_points_the_inventory_at_a_file() -> None:
    ctx = context("ansible", hosts=["h1", "h2"], secrets={"stackl_private_key": "KEY"})
    document = ansible.inventory(ctx)
    assert document["all"]["vars"] == {"ansible_ssh_private_key_file": str(JOB_DIR / "private.key")}
    assert document["all"]["children"]["web"]["hosts"] == {"h1": {}, "h2": {}}
    assert JOB_DIR / "private.key" in AnsibleTool().secret_paths(ctx)


def test_ansible_role_mode_play() -> None:
    ctx = context(
        "ansible",
        hosts=["h1", "h2"],
        invocation={"ansible_role": "nginx", "serial": 2, "wait_for_connection": True, "gather_facts": False},
    )
    values = ansible.role_vars(ctx)
    assert values["pattern"] == "h1,h2"
    [play] = ansible.role_playbook(values)
    assert play["hosts"] == "h1,h2"
    assert play["serial"] == 2
    assert play["gather_facts"] is False
    assert play["pre_tasks"] == [{"name": "Wait for the host", "ansible.builtin.wait_for_connection": {}}]
    assert play["tasks"][0]["ansible.builtin.include_role"] == {"name": "nginx"}


def test_ansible_steps_pass_variables_as_files_and_state() -> None:
    [step] = AnsibleTool(python="/venv/bin/python").steps(
        context("ansible", action="delete", secrets={"pw": "hunter22"})
    )
    assert step.name == "ansible-playbook"
    assert step.argv[:4] == ["/venv/bin/python", "-m", "ansible_runner", "run"]
    cmdline = step.argv[step.argv.index("--cmdline") + 1]
    assert f"-e @{JOB_DIR}/variables.json -e @{JOB_DIR}/secrets.json" in cmdline
    assert cmdline.endswith("-e state=absent")
    assert "hunter22" not in " ".join(step.argv)
    playbook = step.argv[step.argv.index("--playbook") + 1]
    assert playbook == str(JOB_DIR / "playbook-role.yml")


def test_ansible_playbook_mode_uses_the_code_directory() -> None:
    [step] = AnsibleTool().steps(context("ansible", invocation={"playbook_path": "site.yml"}))
    assert step.argv[step.argv.index("--playbook") + 1] == str(CODE / "site.yml")
    assert "role-vars.json" not in " ".join(step.argv)


def test_terraform_steps_per_action() -> None:
    create = TerraformTool().steps(context("terraform"))
    assert [step.name for step in create] == ["terraform init", "terraform apply", "terraform output"]
    assert create[2].stdout_file == JOB_DIR / terraform.OUTPUT_FILE  # never streamed
    assert f"-var-file={JOB_DIR}/secrets.json" in create[1].argv
    delete = TerraformTool("tofu").steps(context("tofu", action="delete"))
    assert [step.argv[:2] for step in delete] == [["tofu", "init"], ["tofu", "destroy"]]


def test_terraform_state_lives_under_the_data_dir() -> None:
    assert terraform.state_dir(context("terraform")) == Path("/data/state/si/web/1/fr")


def test_terraform_backend_template_is_rendered() -> None:
    ctx = context("terraform", provisioning_parameters={"bucket": "b1"})
    template = {
        "terraform": {
            "backend": {"s3": {"bucket": "{{ bucket }}", "key": "{{ stack_instance }}/{{ service }}"}}
        }
    }
    assert '"key": "si/web"' in terraform.render_backend(template, ctx)


def test_packer_stringifies_variables_and_skips_delete() -> None:
    tool = PackerTool()
    assert tool.encode_variables({"s": "x", "n": 2, "m": {"a": True}}) == {
        "s": "x",
        "n": "2",
        "m": '{"a":true}',
    }
    assert tool.steps(context("packer", action="delete")) == []
    [build] = tool.steps(context("packer"))
    assert build.argv[-1] == "packer.json"
    assert f"manifest_path={JOB_DIR}/packer-manifest.json" in build.argv


def test_packer_last_build_of_the_last_run() -> None:
    manifest = {
        "builds": [
            {"artifact_id": "old", "packer_run_uuid": "r1"},
            {"artifact_id": "new", "packer_run_uuid": "r2"},
            {"artifact_id": "older", "packer_run_uuid": "r1"},
        ],
        "last_run_uuid": "r2",
    }
    assert packer.last_build(manifest)["artifact_id"] == "new"


def test_shell_environment_has_scalar_variables_and_secrets_only_when_allowed() -> None:
    ctx = context("shell", provisioning_parameters={"a": 1, "b": [1], "c-d": "x"}, secrets={"pw": "hunter22"})
    assert ShellTool().environment(ctx) == {"STACKL_VAR_a": "1"}
    allowed = ToolContext(**{**ctx.__dict__, "secrets_in_env": True})
    assert ShellTool().environment(allowed) == {"STACKL_VAR_a": "1", "STACKL_SECRET_pw": "hunter22"}
