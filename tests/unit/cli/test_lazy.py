"""Commands are imported when they run (cli/lazy.py): listings come from the table, which matches the commands.

Start-up time itself is measured by ``python -m bench.cli``; these tests pin what makes it fast, by the modules a
call imports (deterministic), never by a clock.
"""

import json
import subprocess
import sys

import pytest
from typer.main import get_command

from stackl.cli import root
from stackl.cli.lazy import load
from stackl.main import PROCESSES, app

ALL = {**root.COMMANDS, **PROCESSES}
HEAVY = ("httpx", "rich", "structlog", "pydantic_settings", "sqlalchemy", "fastapi", "yaml")


def imported_after(*args: str) -> list[str]:
    """The stackl and heavy modules a fresh interpreter has imported after running ``stackl ARGS``."""
    script = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from stackl.main import app\n"
        f"result = CliRunner().invoke(app, {list(args)!r})\n"
        "assert result.exit_code == 0, result.output\n"
        f"heavy = {HEAVY!r}\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('stackl') or m.split('.')[0] in heavy)))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    found: list[str] = json.loads(done.stdout)
    return found


@pytest.mark.parametrize("name", sorted(ALL))
def test_each_listed_line_is_the_commands_own_help_and_the_command_loads(name: str) -> None:
    command = load(name, ALL[name])
    assert command.name == name
    assert command.get_short_help_str(300) == ALL[name].help


def test_the_root_lists_every_command_in_the_table_order() -> None:
    group = get_command(app)
    assert group.list_commands(None) == list(ALL)  # type: ignore[attr-defined]


def test_stackl_help_imports_no_command_module_and_nothing_heavy() -> None:
    found = imported_after("--help")
    assert set(found) == {
        "stackl",
        "stackl.cli",
        "stackl.cli.lazy",
        "stackl.cli.options",
        "stackl.cli.root",
        "stackl.main",
    }, found


def test_a_command_imports_its_own_module_not_the_others() -> None:
    found = imported_after("get", "--help")
    assert "stackl.cli.get" in found
    assert not any(m.startswith("stackl.processes") for m in found), found
    assert not {"stackl.cli.apply", "stackl.cli.describe", "stackl.cli.tasks", "stackl.cli.events"} & set(
        found
    )
    assert "pydantic_settings" not in found  # the client reads its environment without the server's settings
