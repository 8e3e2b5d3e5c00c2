"""Invocation rules (documents.md §4.1): tools, shell commands, working directories, ranges, mock fields."""

from typing import Any

import pytest
from tests import factories

from stackl import errors
from stackl.domain import documents, invocations


def validate_invocation(**fields: Any) -> dict[str, Any]:
    body = factories.functional_requirement(invocation={"generic": fields})
    result: dict[str, Any] = documents.validate(body)["invocation"]["generic"]
    return result


def invocation_errors(**fields: Any) -> list[dict[str, Any]]:
    body = factories.functional_requirement(invocation={"generic": fields})
    with pytest.raises(errors.InvalidDocument) as caught:
        documents.validate(body)
    return [{**e, "loc": e["loc"][2:]} for e in caught.value.errors]


@pytest.mark.parametrize("tool", invocations.TOOLS)
def test_every_tool_is_accepted(tool: str) -> None:
    extra = {"command": "./run.sh"} if tool == "shell" else {}
    assert validate_invocation(tool=tool, **extra)["tool"] == tool


@pytest.mark.parametrize("tool", ["Ansible", "TERRAFORM", "opentofu", "", "chef", 1])
def test_tool_is_a_lower_case_enum(tool: object) -> None:
    assert invocation_errors(tool=tool) == [
        {"loc": ["tool"], "msg": "must be one of ansible, packer, shell, terraform, tofu", "type": "enum"}
    ]


def test_tool_is_required() -> None:
    assert invocation_errors(image="x") == [{"loc": ["tool"], "msg": "field required", "type": "missing"}]


def test_shell_needs_a_command() -> None:
    assert validate_invocation(tool="shell", command="./create-vm.sh")["command"] == "./create-vm.sh"
    assert invocation_errors(tool="shell") == [
        {"loc": ["command"], "msg": "required for tool shell", "type": "missing"}
    ]


@pytest.mark.parametrize("tool", ["ansible", "terraform", "tofu", "packer"])
def test_command_is_refused_on_other_tools(tool: str) -> None:
    assert validate_invocation(tool=tool, command="")["command"] == ""
    assert invocation_errors(tool=tool, command="echo hi") == [
        {"loc": ["command"], "msg": "only allowed with tool shell", "type": "not_allowed"}
    ]


@pytest.mark.parametrize(
    "path", ["", "vm", "automation/vm", "./vm", "a/../b", "a/b/../..", "/opt/automation", "/a/../b"]
)
def test_working_directory_inside_the_automation_directory(path: str) -> None:
    assert validate_invocation(tool="terraform", working_directory=path)["working_directory"] == path


@pytest.mark.parametrize("path", ["..", "../vm", "a/../../b", "./..", "a/b/../../..", "/..", "..\\x"])
def test_working_directory_escaping_is_refused(path: str) -> None:
    assert invocation_errors(tool="terraform", working_directory=path) == [
        {
            "loc": ["working_directory"],
            "msg": "must not escape the automation directory with '..'",
            "type": "path",
        }
    ]


@pytest.mark.parametrize(("field", "value", "msg"), [
    ("timeout", 0, "must be at least 1"),
    ("timeout", 86401, "must be at most 86400"),
    ("retries", -1, "must be at least 0"),
    ("retries", 11, "must be at most 10"),
    ("serial", 0, "must be at least 1"),
    ("timeout", 1.5, "must be an integer"),
])  # fmt: skip
def test_ranges(field: str, value: object, msg: str) -> None:
    problems = invocation_errors(tool="ansible", **{field: value})
    assert [(p["loc"], p["msg"]) for p in problems] == [([field], msg)]


@pytest.mark.parametrize(
    ("field", "value"), [("timeout", 1), ("timeout", 86400), ("retries", 0), ("retries", 10), ("serial", 1)]
)
def test_range_bounds_are_inclusive(field: str, value: int) -> None:
    assert validate_invocation(tool="ansible", **{field: value})[field] == value


def test_ansible_fields_are_accepted_on_every_tool() -> None:
    fields = {
        "playbook_path": "site.yml",
        "ansible_role": "nginx",
        "gather_facts": False,
        "serial": 5,
        "connection": "local",
        "become": True,
        "wait_for_connection": True,
    }
    result = validate_invocation(tool="terraform", **fields)
    assert {k: result[k] for k in fields} == fields


def test_before_command_null_means_none() -> None:
    assert validate_invocation(tool="ansible", before_command=None)["before_command"] == ""


def test_mock_fields_are_absent_unless_given() -> None:
    result = validate_invocation(tool="ansible")
    assert not any(name.startswith("mock_") for name in result)
    mocks = {
        "mock_result": {"create": "ready", "delete": "fail"},
        "mock_duration": 0.25,
        "mock_outputs": {"ip": "10.0.0.1"},
        "mock_error": "disk full",
        "mock_fail_attempts": 2,
        "mock_log": ["one", "two"],
    }
    result = validate_invocation(tool="ansible", **mocks)
    assert {k: result[k] for k in invocations.MOCK_FIELDS} == mocks
    assert list(result)[-6:] == list(invocations.MOCK_FIELDS)


@pytest.mark.parametrize("result", ["ready", "fail", "timeout", "lost"])
def test_mock_result_values(result: str) -> None:
    assert validate_invocation(tool="ansible", mock_result=result)["mock_result"] == result


def test_mock_field_errors() -> None:
    problems = invocation_errors(
        tool="ansible",
        mock_result={"create": "READY", "destroy": "ready"},
        mock_duration=-1,
        mock_fail_attempts=-1,
        mock_log="x",
    )
    assert [p["loc"] for p in problems] == [
        ["mock_result", "create"],
        ["mock_result", "destroy"],
        ["mock_duration"],
        ["mock_fail_attempts"],
        ["mock_log"],
    ]
    assert invocation_errors(tool="ansible", mock_result="ok")[0]["type"] == "enum"
    assert invocation_errors(tool="ansible", mock_result=3)[0]["loc"] == ["mock_result"]


def test_working_directory_is_checked_even_when_other_fields_fail() -> None:
    problems = invocation_errors(tool="chef", working_directory="../x")
    assert [p["loc"] for p in problems] == [["tool"], ["working_directory"]]


def test_mock_duration_whole_seconds_and_null() -> None:
    duration = validate_invocation(tool="ansible", mock_duration=2.0)["mock_duration"]
    assert (duration, type(duration)) == (2, int)
    assert validate_invocation(tool="ansible", mock_duration=0.5)["mock_duration"] == 0.5
    assert "mock_duration" not in validate_invocation(tool="ansible", mock_duration=None)


@pytest.mark.parametrize(
    ("path", "escapes"),
    [("", False), ("a/..", False), ("a/../..", True), ("..", True), ("/../x", True), ("x/./../y", False)],
)
def test_escapes_directory(path: str, escapes: bool) -> None:
    assert invocations.escapes_directory(path) is escapes
