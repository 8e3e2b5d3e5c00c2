"""The packer tool on the local executor: Debian's Packer 1.6.6, a null builder, shell-local and a manifest."""

import json
import shutil
from pathlib import Path

import pytest
from tests.integration.agent.conftest import Runner, make_job

from stackl.agent.executors.base import Job

pytestmark = pytest.mark.skipif(
    shutil.which("packer") is None, reason="packer is not installed: run scripts/install --test"
)

SECRET = "packer-s3cr3t"

TEMPLATE = {
    "variables": {"image_name": "", "replicas": "", "db_password": "", "manifest_path": "manifest.json"},
    "builders": [{"type": "null", "communicator": "none"}],
    "provisioners": [
        {
            "type": "shell-local",
            "inline": [
                "echo building {{user `image_name`}} x{{user `replicas`}} with {{user `db_password`}}"
            ],
        }
    ],
    "post-processors": [
        {
            "type": "manifest",
            "output": "{{user `manifest_path`}}",
            "custom_data": {"image": "{{user `image_name`}}", "replicas": "{{user `replicas`}}"},
        }
    ],
}


def packer_job(action: str = "create", **invocation: object) -> Job:
    return make_job(
        "packer",
        "image",
        action=action,
        invocation=invocation,
        provisioning_parameters={"image_name": "web", "replicas": 2, "extra": {"nested": True}},
        secrets={"db_password": SECRET},
    )


async def test_build_reports_the_manifest(run_job: Runner, automation_dir: Path) -> None:
    (automation_dir / "image").mkdir()
    (automation_dir / "image" / "packer.json").write_text(json.dumps(TEMPLATE))
    run = await run_job(packer_job())
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {"artifact_id": "Null", "image": "web", "replicas": "2"}
    assert "building web x2 with ********" in run.text("stdout")
    assert SECRET not in run.text()

    spec = {"builder": "builds.0.builder_type", "image": "builds.0.custom_data.image"}
    run = await run_job(packer_job(outputs=spec))
    assert run.result.outputs == {"builder": "null", "image": "web"}


async def test_delete_runs_nothing(run_job: Runner, automation_dir: Path) -> None:
    (automation_dir / "image").mkdir()
    (automation_dir / "image" / "packer.json").write_text("not even a template")
    run = await run_job(packer_job("delete"))
    assert run.result.status == "READY", run.result.error_message
    assert "packer: delete keeps built artifacts" in run.text("system")
    assert run.text("stdout") == ""
