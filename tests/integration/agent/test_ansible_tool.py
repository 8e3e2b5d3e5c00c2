"""The ansible tool on the local executor: real ansible-playbook (through ansible-runner) against this machine."""

import asyncio
import secrets
from pathlib import Path

from tests.integration.agent.conftest import Runner, make_job

from stackl.agent.executors.base import Job, LogLine

SECRET = "ansible-s3cr3t-value"

TASKS = """
- name: Show what the role received
  ansible.builtin.debug:
    msg: "domain={{ domain }} state={{ state }} password={{ db_password }}"
- name: Record the outputs
  ansible.builtin.set_stats:
    data:
      url: "http://{{ domain }}/{{ state }}"
      host: "{{ inventory_hostname }}"
      target: "{{ infrastructure_target }}"
      leaked: "{{ db_password }}"
    per_host: false
- name: Fail on request
  ansible.builtin.fail:
    msg: asked to fail
  when: fail | default(false) | bool
"""


def write_playbook(automation_dir: Path) -> None:
    code = automation_dir / "nginx"
    code.mkdir()
    (code / "site.yml").write_text(f"- hosts: web\n  gather_facts: false\n  tasks:\n{indent(TASKS, 4)}")


def write_role(automation_dir: Path) -> None:
    tasks = automation_dir / "nginx" / "roles" / "nginx" / "tasks"
    tasks.mkdir(parents=True)
    (tasks / "main.yml").write_text(TASKS)


def indent(text: str, spaces: int) -> str:
    return "".join(" " * spaces + line + "\n" for line in text.strip("\n").splitlines())


def ansible_job(action: str = "create", **invocation: object) -> Job:
    return make_job(
        "ansible",
        "nginx",
        action=action,
        invocation={"gather_facts": False, "connection": "local", **invocation},
        provisioning_parameters={"domain": "example.com"},
        secrets={"db_password": SECRET},
    )


async def test_playbook_mode_reports_set_stats(run_job: Runner, automation_dir: Path, data_dir: Path) -> None:
    write_playbook(automation_dir)
    run = await run_job(ansible_job(playbook_path="site.yml"))
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {
        "url": "http://example.com/present",
        "host": "web_0",
        "target": "production.brussels.zone-a",
        "leaked": "********",
    }
    stdout = run.text("stdout")
    assert "domain=example.com state=present password=********" in stdout
    assert SECRET not in run.text()
    assert "output leaked contained a secret value of the job and was masked" in run.text("system")
    assert not (data_dir / "jobs" / "01JOB-1").exists()


async def test_role_mode_runs_the_role_with_state_absent_on_delete(
    run_job: Runner, automation_dir: Path, data_dir: Path
) -> None:
    write_role(automation_dir)
    run = await run_job(ansible_job(), keep_workdirs=True)
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs["url"] == "http://example.com/present"
    work_dir = data_dir / "jobs" / "01JOB-1"
    assert (work_dir / "playbook-role.yml").exists()
    assert not (work_dir / "secrets.json").exists()
    assert not (work_dir / "runner").exists()  # ansible-runner's events may hold secret values

    run = await run_job(ansible_job("delete"))
    assert run.result.status == "READY", run.result.error_message
    assert run.result.outputs == {}  # not collected for delete
    assert "state=absent" in run.text("stdout")
    assert SECRET not in run.text()


async def test_a_failing_play_reports_ansible_playbook_exit(run_job: Runner, automation_dir: Path) -> None:
    write_role(automation_dir)
    job = ansible_job()
    failing = job.model_copy(update={"provisioning_parameters": {"domain": "example.com", "fail": True}})
    run = await run_job(failing)
    assert run.result.status == "FAILED"
    assert run.result.error_message.splitlines()[0] == (  # the cause, from the event records
        'ansible-playbook exited with code 2: task "Fail on request" failed on web_0: asked to fail'
    )
    assert SECRET not in run.result.error_message


async def test_an_undefined_variable_is_named_in_the_first_line(
    run_job: Runner, automation_dir: Path
) -> None:
    """Operator experience, item 1: the cause used to be only in the log ("exited with code 2")."""
    code = automation_dir / "nginx"
    code.mkdir()
    (code / "site.yml").write_text(
        "- hosts: web\n  gather_facts: false\n  tasks:\n"
        "    - name: Fine\n      ansible.builtin.debug:\n        msg: ok\n"
        "    - name: Ignored\n      ansible.builtin.fail:\n        msg: not this one\n      ignore_errors: true\n"
        "    - name: Configure the database client\n      ansible.builtin.debug:\n"
        '        msg: "{{ db_host }} {{ db_password }}"\n'
    )
    run = await run_job(ansible_job(playbook_path="site.yml"))
    assert run.result.status == "FAILED"
    first = run.result.error_message.splitlines()[0]
    assert first.startswith(
        'ansible-playbook exited with code 2: task "Configure the database client" failed on web_0: '
    ), first
    assert "'db_host' is undefined" in first
    assert len(first) < 400
    assert SECRET not in run.result.error_message


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                found.append(cmdline)
    return found


async def test_cancel_stops_ansible_playbook_in_its_own_session(
    run_job: Runner, automation_dir: Path, data_dir: Path
) -> None:
    code = automation_dir / "nginx"
    code.mkdir()
    # A duration of its own, so that another test run on the same machine is never taken for a leftover.
    sleep = f"sleep 120.{secrets.randbelow(10**9):09d}"
    long_task = (
        "- hosts: web\n  gather_facts: false\n  tasks:\n"
        f"    - name: Sleep long\n      ansible.builtin.command: {sleep}\n"
    )
    (code / "site.yml").write_text(long_task)
    cancel = asyncio.Event()

    def cancel_on_task(line: LogLine) -> None:
        if line.line.startswith("TASK [Sleep long]"):
            cancel.set()

    run = await run_job(ansible_job(playbook_path="site.yml"), cancel=cancel, watch=cancel_on_task)
    assert run.result.cancelled, run.result.error_message
    # ansible-runner starts ansible-playbook under a pseudo-terminal, in a session of its own: it is gone too,
    # and so is a module process orphaned by a worker that died first (found by its STACKL_WORK_DIR).
    # A killed process may linger for a moment until its parent (or init) reaps it.
    for _ in range(50):
        if not processes_mentioning(str(data_dir / "jobs")) and not processes_mentioning(sleep):
            break
        await asyncio.sleep(0.1)
    assert processes_mentioning(str(data_dir / "jobs")) == []
    assert processes_mentioning(sleep) == []
