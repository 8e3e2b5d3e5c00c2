"""The packer tool: `packer build` of `src/packer.json` (the STACKL 0.5 layout), JSON templates, Packer 1.6.6.

Packer JSON templates take only string variables, so every parameter and secret is stringified (agents.md
§6.2). The template that wants outputs writes a `manifest` post-processor to the `manifest_path` variable; the
outputs are then the manifest, by default the last build's `artifact_id` and `custom_data`. A delete runs
nothing: built artifacts are kept.
"""

import json
from collections.abc import Mapping
from typing import Any

from stackl.agent.outputs import OutputDocument
from stackl.agent.tools.base import Step, Tool, ToolContext, json_text

TEMPLATE = "packer.json"
MANIFEST_FILE = "packer-manifest.json"
DELETE_NOTE = "packer: delete keeps built artifacts"


def last_build(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The last build of the manifest's last run (the last build of all when runs are not marked)."""
    builds = [build for build in manifest.get("builds") or [] if isinstance(build, dict)]
    run = manifest.get("last_run_uuid")
    of_run = [build for build in builds if build.get("packer_run_uuid") == run]
    chosen = of_run or builds
    return chosen[-1] if chosen else {}


class PackerTool(Tool):
    """Builds images with `packer build`; `binary` overrides the executable."""

    name = "packer"
    copies_code = True

    def __init__(self, *, binary: str | None = None) -> None:
        self.binary = binary or "packer"

    def encode_variables(self, values: Mapping[str, Any]) -> dict[str, Any]:
        return {key: json_text(value) for key, value in values.items()}

    def prepare(self, ctx: ToolContext) -> list[str]:
        return [DELETE_NOTE] if ctx.job.action == "delete" else []

    def environment(self, ctx: ToolContext) -> dict[str, str]:
        return {"CHECKPOINT_DISABLE": "1", "PACKER_NO_COLOR": "1"}

    def steps(self, ctx: ToolContext) -> list[Step]:
        if ctx.job.action == "delete":
            return []
        argv = [
            self.binary,
            "build",
            "-force",
            "-color=false",
            f"-var-file={ctx.workdir.variables_file}",
            f"-var-file={ctx.workdir.secrets_file}",
            "-var",
            f"manifest_path={ctx.workdir.path(MANIFEST_FILE)}",
            TEMPLATE,
        ]
        return [Step("packer build", argv, ctx.code_dir)]

    def collect_outputs(self, ctx: ToolContext) -> OutputDocument:
        path = ctx.workdir.path(MANIFEST_FILE)
        try:
            manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        except ValueError:
            manifest = {}
        if not isinstance(manifest, dict):
            manifest = {}
        build = last_build(manifest)
        default: dict[str, Any] = {}
        if "artifact_id" in build:
            default["artifact_id"] = build["artifact_id"]
        custom = build.get("custom_data")
        if isinstance(custom, dict):
            default |= custom
        return OutputDocument(document=manifest, default=default)
