"""The one-line cause that leads a failed job's error message (operator experience, item 1).

The real tools are run in ``tests/integration/agent``; these pin the shapes a cause is read from.
"""

import json
from pathlib import Path

from stackl.agent.executors.base import LineSink, one_line, with_cause
from stackl.agent.secrets import Masker
from stackl.agent.tools.ansible import RUNNER_DIR, RUNNER_IDENT, AnsibleTool
from stackl.agent.tools.terraform import diagnostic_cause


def test_terraform_diagnostics_framed_or_not_give_summary_address_and_position() -> None:
    framed = [
        "╷",
        "│ Error: creating EC2 Instance: InvalidAMIID.NotFound",
        "│ ",
        "│   with aws_instance.web,",
        '│   on main.tf line 12, in resource "aws_instance" "web":',
        '│   12: resource "aws_instance" "web" {',
        "╵",
        "│ Error: a second one",
    ]
    assert diagnostic_cause(framed) == (
        "Error: creating EC2 Instance: InvalidAMIID.NotFound (with aws_instance.web, on main.tf line 12)"
    )
    assert diagnostic_cause(["Warning: deprecated", "Error: Invalid value", "", "Warning: x"]) == (
        "Error: Invalid value"
    )
    assert diagnostic_cause(["plain noise"]) == ""


async def test_the_fallback_is_the_last_stderr_lines_else_the_last_output() -> None:
    async def ignore(_line: object) -> None:
        return None

    sink = LineSink(ignore, Masker({"pw": "hunter22"}))
    await sink.line("stdout", "building")
    await sink.line("stderr", "warning: slow")
    await sink.line("stderr", "   ")
    await sink.line("stderr", "fatal: no space left, password hunter22")
    assert sink.fallback_cause() == "warning: slow / fatal: no space left, password ********"

    quiet = LineSink(ignore, Masker({}))
    await quiet.line("stdout", "only stdout here")
    assert quiet.fallback_cause() == "only stdout here"


def test_a_cause_is_one_short_line() -> None:
    assert one_line("a\n  b\tc") == "a b c"
    cut = one_line("x" * 500)
    assert len(cut) == 300
    assert cut.endswith("…")
    assert with_cause("tool exited with code 1", "") == "tool exited with code 1"
    assert with_cause("tool exited with code 1", "why") == "tool exited with code 1: why"


def write_events(root: Path, events: list[dict[str, object]]) -> None:
    directory = root / RUNNER_DIR / "artifacts" / RUNNER_IDENT / "job_events"
    directory.mkdir(parents=True)
    for event in events:
        name = f"{event['counter']}-{event['event']}.json"
        (directory / name).write_text(json.dumps(event))


class _Workdir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, name: str) -> Path:
        return self.root / name


class _Ctx:
    def __init__(self, root: Path) -> None:
        self.workdir = _Workdir(root)


def test_ansible_names_the_first_fatal_failure_in_event_order(tmp_path: Path) -> None:
    write_events(
        tmp_path,
        [
            {
                "counter": 12,
                "event": "runner_on_failed",
                "event_data": {"task": "later", "host": "db_0", "res": {"msg": "after"}},
            },
            {
                "counter": 3,
                "event": "runner_on_failed",
                "event_data": {
                    "task": "tolerated",
                    "host": "db_0",
                    "ignore_errors": True,
                    "res": {"msg": "x"},
                },
            },
            {
                "counter": 9,
                "event": "runner_on_unreachable",
                "event_data": {"host": "web_1", "res": {"msg": "Failed to connect to the host via ssh"}},
            },
        ],
    )
    cause = AnsibleTool().failure_cause(_Ctx(tmp_path), [])  # type: ignore[arg-type]
    assert cause == "host web_1 unreachable: Failed to connect to the host via ssh"


def test_ansible_without_events_leaves_the_cause_to_the_executor(tmp_path: Path) -> None:
    assert AnsibleTool().failure_cause(_Ctx(tmp_path), ["ERROR! the playbook could not be found"]) == ""  # type: ignore[arg-type]
