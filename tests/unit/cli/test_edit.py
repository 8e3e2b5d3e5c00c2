import stat
from pathlib import Path

import pytest
from tests import factories
from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer


def editor(tmp_path: Path, *rounds: str) -> dict[str, str]:
    """VISUAL running `rounds[i]` (shell editing "$1") on its i-th call; each file it saw is kept."""
    script = tmp_path / "editor.sh"
    cases = "\n".join(f"  {i}) {body} ;;" for i, body in enumerate(rounds))
    script.write_text(
        "#!/bin/sh\n"
        f"n=$(cat {tmp_path}/count 2>/dev/null || echo 0)\n"
        f'cp "$1" {tmp_path}/seen-$n.yaml\n'
        f"echo $((n + 1)) > {tmp_path}/count\n"
        f"case $n in\n{cases}\n  *) exit 0 ;;\nesac\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return {"VISUAL": str(script)}


def seen(tmp_path: Path, round_: int) -> str:
    return (tmp_path / f"seen-{round_}.yaml").read_text()


def puts(server: FakeServer) -> list[str | None]:
    return [r.headers.get("if-match") for r in server.requests if r.method == "PUT"]


def test_a_change_is_saved_with_if_match(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    env = editor(tmp_path, "sed -i 's/dmz-vlan-20/dmz-vlan-30/' \"$1\"")
    result = cli("edit", "zone", "dmz", env=env)
    assert result.exit_code == 0, result.output
    assert result.stdout == "edited zone dmz (revision 2)\n"
    assert puts(server) == ['"1"']
    assert server.stored("zone", "dmz")["params"] == {"network": "dmz-vlan-30"}
    assert "metadata" not in seen(tmp_path, 0)
    assert "name: dmz\n" in seen(tmp_path, 0)


def test_saving_unchanged_changes_nothing(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    result = cli("edit", "sat", "web_shop", env=editor(tmp_path, "true"))
    assert result.exit_code == 0
    assert "No changes, document not modified" in result.stderr
    assert puts(server) == []


def test_editor_falls_back_on_editor_variable(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    env = editor(tmp_path, "sed -i 's/dmz-vlan-20/x/' \"$1\"")
    result = cli("edit", "zone", "dmz", env={"EDITOR": env["VISUAL"], "VISUAL": ""})
    assert result.exit_code == 0, result.output
    assert puts(server) == ['"1"']


def test_invalid_document_reopens_with_errors_as_comments(
    cli: Invoke, server: FakeServer, tmp_path: Path
) -> None:
    env = editor(
        tmp_path,
        "echo 'colour: blue' >> \"$1\"",
        "sed -i '/^colour: blue$/d' \"$1\" && sed -i 's/dmz-vlan-20/dmz-vlan-30/' \"$1\"",
    )
    result = cli("edit", "zone", "dmz", env=env)
    assert result.exit_code == 0, result.output
    second = seen(tmp_path, 1)
    assert second.startswith("# The document was not saved:\n")
    assert "#     colour: unknown field\n" in second
    assert "colour: blue\n" in second  # the user's edits are kept
    assert server.stored("zone", "dmz")["params"] == {"network": "dmz-vlan-30"}
    assert "colour" not in server.stored("zone", "dmz")


def test_invalid_yaml_reopens_too(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    env = editor(tmp_path, "echo 'params: [' >> \"$1\"", "sed -i '$d' \"$1\"")
    result = cli("edit", "zone", "dmz", env=env)
    assert result.exit_code == 0, result.output
    assert "invalid YAML" in seen(tmp_path, 1)
    assert "No changes, document not modified" in result.stderr


def test_saving_an_error_again_unfixed_aborts(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    result = cli("edit", "zone", "dmz", env=editor(tmp_path, "echo 'colour: blue' >> \"$1\"", "true"))
    assert result.exit_code == 3
    assert "saved again without fixing it" in result.stderr
    assert "colour: unknown field" in result.stderr
    assert len(puts(server)) == 1


def test_saving_empty_aborts(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    result = cli("edit", "zone", "dmz", env=editor(tmp_path, ': > "$1"'))
    assert result.exit_code == 3
    assert "cancelled: the file was saved empty" in result.stderr
    assert puts(server) == []


def test_a_concurrent_change_exits_5_with_a_diff_hint(
    cli: Invoke, server: FakeServer, tmp_path: Path
) -> None:
    server.concurrent_writes.append(factories.zone(description="changed by bob"))
    result = cli("edit", "zone", "dmz", env=editor(tmp_path, "sed -i 's/dmz-vlan-20/x/' \"$1\""))
    assert result.exit_code == 5
    assert "is at revision 2" in result.stderr
    assert (
        "hint: zone dmz changed since revision 1: see what changed with `stackl diff zone dmz 1`"
        in result.stderr
    )
    assert server.stored("zone", "dmz")["description"] == "changed by bob"


def test_a_failing_editor_changes_nothing(cli: Invoke, server: FakeServer, tmp_path: Path) -> None:
    result = cli("edit", "zone", "dmz", env=editor(tmp_path, "exit 3"))
    assert result.exit_code == 2
    assert "the editor exited with status 3" in result.stderr
    assert puts(server) == []


@pytest.mark.parametrize("kind", ["instance", "snapshot", "gadget"])
def test_only_configuration_kinds_are_edited(cli: Invoke, server: FakeServer, kind: str) -> None:
    assert cli("edit", kind, "x").exit_code == 2
    assert server.requests == []
