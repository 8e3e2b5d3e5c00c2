"""The ansible tool: `ansible-playbook` through ansible-runner, in playbook mode or role mode (agents.md §6.2).

The agent writes `inventory.yml` (a group named after the alias with the job's hosts, or one host
`<alias>_<replica>` standing for the agent's machine with a pinned interpreter), and in role mode a generated
`playbook-role.yml` (one play, one `include_role`). Variables travel as files: `-e @variables.json -e
@secrets.json -e state=present|absent`. ansible-runner (`python -m ansible_runner run`) starts
`ansible-playbook` from `PATH`, streams Ansible's usual output and records events under `runner/artifacts/`;
the outputs are the `set_stats` data of the `playbook_on_stats` event. Those events may hold secret values,
so `runner/` goes with the secret files.
"""

import json
import shlex
import sys
from pathlib import Path
from typing import Any

import yaml

from stackl.agent import workdir
from stackl.agent.outputs import OutputDocument
from stackl.agent.tools.base import Step, Tool, ToolContext

INVENTORY_FILE = "inventory.yml"
ROLE_PLAYBOOK_FILE = "playbook-role.yml"
ROLE_VARS_FILE = "role-vars.json"
PRIVATE_KEY_FILE = "private.key"
PRIVATE_KEY_SECRET = "stackl_private_key"  # noqa: S105 - the name of the secret, not a value
RUNNER_DIR = "runner"
RUNNER_IDENT = "run"


def local_host(ctx: ToolContext) -> str:
    """The inventory name of the agent's machine when the job has no hosts: `<alias>_<replica>`."""
    return f"{ctx.job.service}_{ctx.job.replica}"


def inventory(ctx: ToolContext) -> dict[str, Any]:
    """The inventory document: the alias group, the payload's groups, the private key when there is one."""
    job = ctx.job
    hosts: dict[str, Any]
    if job.hosts:
        hosts = {host: {} for host in job.hosts}
    else:
        hosts = {
            local_host(ctx): {
                "ansible_host": "localhost",
                "ansible_connection": "local",
                "ansible_python_interpreter": "{{ ansible_playbook_python }}",  # pinned, never discovered
            }
        }
    children: dict[str, Any] = {
        group: {"hosts": {host: {} for host in members}} for group, members in job.groups.items()
    }
    alias = children.setdefault(job.service, {"hosts": {}})
    alias["hosts"] = {**alias["hosts"], **hosts}
    alias["vars"] = {"infrastructure_target": job.infrastructure_target}
    document: dict[str, Any] = {"all": {"children": children}}
    if PRIVATE_KEY_SECRET in ctx.secrets:
        document["all"]["vars"] = {"ansible_ssh_private_key_file": str(ctx.workdir.path(PRIVATE_KEY_FILE))}
    return document


def role_vars(ctx: ToolContext) -> dict[str, Any]:
    """The role-mode play options as the extra vars STACKL 0.5 passed."""
    invocation = ctx.job.invocation
    return {
        "pattern": ",".join(ctx.job.hosts) or local_host(ctx),
        "ansible_role": invocation.ansible_role or ctx.job.functional_requirement,
        "stackl_serial": invocation.serial,
        "stackl_connection": invocation.connection,
        "stackl_gather_facts": invocation.gather_facts,
        "stackl_become": invocation.become,
        "stackl_wait_for_connection": invocation.wait_for_connection,
    }


def role_playbook(values: dict[str, Any]) -> list[dict[str, Any]]:
    """The generated role-mode playbook: one play with a single `include_role`."""
    play: dict[str, Any] = {
        "name": f"STACKL role {values['ansible_role']}",
        "hosts": values["pattern"],
        "serial": values["stackl_serial"],
        "connection": values["stackl_connection"],
        "gather_facts": values["stackl_gather_facts"],
        "become": values["stackl_become"],
        "tasks": [
            {"name": "Apply the role", "ansible.builtin.include_role": {"name": values["ansible_role"]}}
        ],
    }
    if values["stackl_wait_for_connection"]:
        play["pre_tasks"] = [{"name": "Wait for the host", "ansible.builtin.wait_for_connection": {}}]
    return [play]


class AnsibleTool(Tool):
    """Runs a playbook or a role with ansible-playbook, through ansible-runner.

    Args:
        playbook_binary: the `ansible-playbook` to use (`--ansible-playbook`); by default the one on `PATH`,
            where the agent's interpreter directory comes first.
        python: the interpreter that runs ansible-runner (the agent's own).
    """

    name = "ansible"
    binary = "ansible-playbook"

    def __init__(self, *, playbook_binary: str | None = None, python: str | None = None) -> None:
        self.playbook_binary = playbook_binary
        self.python = python or sys.executable
        if playbook_binary:
            self.binary = playbook_binary

    def _playbook(self, ctx: ToolContext) -> Path:
        path = ctx.job.invocation.playbook_path
        return ctx.code_dir / path if path else ctx.workdir.path(ROLE_PLAYBOOK_FILE)

    def prepare(self, ctx: ToolContext) -> list[str]:
        notes = [f"ansible: inventory {ctx.workdir.path(INVENTORY_FILE)}"]
        workdir.write_private(
            ctx.workdir.path(INVENTORY_FILE), yaml.safe_dump(inventory(ctx), sort_keys=False)
        )
        if PRIVATE_KEY_SECRET in ctx.secrets:
            key = str(ctx.secrets[PRIVATE_KEY_SECRET])
            workdir.write_private(
                ctx.workdir.path(PRIVATE_KEY_FILE), key if key.endswith("\n") else key + "\n"
            )
            notes.append(f"ansible: private key from secret {PRIVATE_KEY_SECRET} in {PRIVATE_KEY_FILE}")
        if not ctx.job.invocation.playbook_path:
            values = role_vars(ctx)
            workdir.write_json(ctx.workdir.path(ROLE_VARS_FILE), values)
            text = yaml.safe_dump(role_playbook(values), sort_keys=False)
            workdir.write_private(ctx.workdir.path(ROLE_PLAYBOOK_FILE), text)
            notes.append(f"ansible: role mode, role {values['ansible_role']}, playbook {ROLE_PLAYBOOK_FILE}")
        else:
            notes.append(f"ansible: playbook mode, playbook {ctx.job.invocation.playbook_path}")
        return notes

    def environment(self, ctx: ToolContext) -> dict[str, str]:
        env = {
            "ANSIBLE_LOCALHOST_WARNING": "false",
            "ANSIBLE_RETRY_FILES_ENABLED": "false",
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_FORCE_COLOR": "0",
            "ANSIBLE_ROLES_PATH": f"{ctx.code_dir / 'roles'}:{ctx.code_dir}",
        }
        if "ansible_python_interpreter" not in ctx.job.provisioning_parameters:
            env["ANSIBLE_PYTHON_INTERPRETER"] = "auto_silent"  # remote hosts; the local host is pinned
        return env

    def steps(self, ctx: ToolContext) -> list[Step]:
        state = "absent" if ctx.job.action == "delete" else "present"
        extra = ["-e", f"@{ctx.workdir.variables_file}", "-e", f"@{ctx.workdir.secrets_file}"]
        if not ctx.job.invocation.playbook_path:
            extra += ["-e", f"@{ctx.workdir.path(ROLE_VARS_FILE)}"]
        extra += ["-e", f"state={state}"]
        argv = [
            self.python,
            "-m",
            "ansible_runner",
            "run",
            str(ctx.workdir.path(RUNNER_DIR)),
            "--playbook",
            str(self._playbook(ctx)),
            "--project-dir",
            str(ctx.code_dir),
            "--inventory",
            str(ctx.workdir.path(INVENTORY_FILE)),
            "--ident",
            RUNNER_IDENT,
            "--omit-env-files",
            "--cmdline",
            shlex.join(extra),
        ]
        if self.playbook_binary:
            argv += ["--binary", self.playbook_binary]
        return [Step("ansible-playbook", argv, ctx.code_dir)]

    def collect_outputs(self, ctx: ToolContext) -> OutputDocument:
        events = ctx.workdir.path(RUNNER_DIR) / "artifacts" / RUNNER_IDENT / "job_events"
        data: dict[str, Any] = {}
        for event in _events(events):
            if event.get("event") == "playbook_on_stats":
                artifact = (event.get("event_data") or {}).get("artifact_data")
                if isinstance(artifact, dict):
                    data = artifact
        return OutputDocument(document=data, default=data)

    def failure_cause(self, ctx: ToolContext, stderr: list[str]) -> str:
        """The first task that failed for good, from ansible-runner's event records (not from the text).

        ``task "<name>" failed on <host>: <message>``, or ``host <host> unreachable: <message>``; failures
        under ``ignore_errors`` and ones a later ``rescue`` handled still count as the first *fatal* one only
        when nothing else failed. "" when the run left no such event (a syntax error stops it before any).
        """
        events = ctx.workdir.path(RUNNER_DIR) / "artifacts" / RUNNER_IDENT / "job_events"
        fatal: list[str] = []
        ignored: list[str] = []
        for event in _events(events):
            data = event.get("event_data") or {}
            if not isinstance(data, dict):
                continue
            kind = event.get("event")
            if kind in ("runner_on_failed", "runner_on_unreachable"):
                cause = _describe_failure(kind, data)
                (ignored if data.get("ignore_errors") else fatal).append(cause)
        return (fatal or ignored or [""])[0]

    def secret_paths(self, ctx: ToolContext) -> list[Path]:
        return [ctx.workdir.path(PRIVATE_KEY_FILE), ctx.workdir.path(RUNNER_DIR)]


def _events(directory: Path) -> list[dict[str, Any]]:
    """ansible-runner's event records, in the order they happened (file names start with the counter)."""
    found: list[tuple[int, dict[str, Any]]] = []
    for path in directory.glob("*.json") if directory.is_dir() else []:
        try:
            event = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(event, dict):
            counter = event.get("counter")
            found.append((counter if isinstance(counter, int) else 0, event))
    return [event for _, event in sorted(found, key=lambda pair: pair[0])]


def _describe_failure(kind: object, data: dict[str, Any]) -> str:
    host = str(data.get("host") or data.get("remote_addr") or "?")
    found = data.get("res")
    res: dict[str, Any] = found if isinstance(found, dict) else {}
    message = ""
    for key in ("msg", "stderr", "reason", "module_stderr", "stdout"):
        value = res.get(key)
        if isinstance(value, str) and value.strip():
            # A message's first paragraph says what went wrong (Ansible then quotes the offending code);
            # a command's output says it in its last line.
            message = value.strip().split("\n\n")[0] if key == "msg" else value.strip().splitlines()[-1]
            break
    if kind == "runner_on_unreachable":
        return f"host {host} unreachable: {message}" if message else f"host {host} unreachable"
    task = str(data.get("task") or "?")
    return f'task "{task}" failed on {host}: {message}' if message else f'task "{task}" failed on {host}'
