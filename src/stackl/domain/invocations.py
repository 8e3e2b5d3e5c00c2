"""The invocation of a functional requirement: which tool runs it, and how (documents.md §4.1).

A functional requirement maps each cloud provider to one `Invocation`. The model carries the 0.5 fields (the
ansible options are accepted on every tool, because the 0.5 view always sends them back), the extension
fields of this release (`command`, `working_directory`, `timeout`, `retries`) and the `mock_*` fields that
script the mock executor (agents.md §6.6). The mock fields default to *absent*, not to a value: an absent
field lets a provisioning parameter of the same name decide, so the canonical body leaves them out.
"""

from typing import Annotated, Any, Literal, Self, get_args

from pydantic import AfterValidator, Field, model_validator

from stackl.domain import fields

Tool = Literal["ansible", "packer", "shell", "terraform", "tofu"]
TOOLS: tuple[str, ...] = get_args(Tool)
MOCK_RESULTS = ("fail", "lost", "ready", "timeout")
ACTIONS = ("create", "delete", "update")
MOCK_FIELDS = ("mock_result", "mock_duration", "mock_outputs", "mock_error", "mock_fail_attempts", "mock_log")
EXTENSION_FIELDS = ("command", "working_directory", "timeout", "retries", *MOCK_FIELDS)
"""Invocation fields absent from the 0.5 view (documents.md §2.9)."""

TIMEOUT_MAX_S = 86400
RETRIES_MAX = 10


def escapes_directory(path: str) -> bool:
    """Whether `path` climbs out of the directory it is relative to (``..``, ``a/../..``, ``/..``).

    An absolute path is taken relative to the root of its own tree (an image), so only its ``..`` parts count.
    """
    depth = 0
    for part in path.replace("\\", "/").split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _check_working_directory(path: str) -> str:
    if escapes_directory(path):
        raise fields.failure("path", "must not escape the automation directory with '..'")
    return path


def _check_mock_result(value: Any) -> Any:
    results = ", ".join(MOCK_RESULTS)
    if isinstance(value, dict):
        problems = [
            ((action,), "enum", f"must be one of {results}", result)
            for action, result in value.items()
            if not isinstance(result, str) or result not in MOCK_RESULTS
        ]
        problems += [
            ((action,), "enum", f"unknown action; actions: {', '.join(ACTIONS)}", value[action])
            for action in value
            if action not in ACTIONS
        ]
        if problems:
            raise fields.failures("mock_result", problems)
    elif not isinstance(value, str) or value not in MOCK_RESULTS:
        raise fields.failure("enum", f"must be one of {results}, or an object action → result")
    return value


def _check_duration(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise fields.failure("range", "must be a number of seconds, at least 0")
    return value


class Invocation(fields.DocumentPart):
    """How one functional requirement runs on targets of one cloud provider."""

    tool: Tool
    image: str = ""
    description: str = ""
    before_command: str = ""
    command: str = ""
    working_directory: Annotated[str, AfterValidator(_check_working_directory)] = ""
    playbook_path: str = ""
    ansible_role: str = ""
    gather_facts: bool = True
    serial: Annotated[int, Field(ge=1)] = 10
    connection: str = "ssh"
    become: bool = False
    wait_for_connection: bool = False
    timeout: Annotated[int, Field(ge=1, le=TIMEOUT_MAX_S)] = 3600
    retries: Annotated[int, Field(ge=0, le=RETRIES_MAX)] = 0
    mock_result: Annotated[Any, AfterValidator(_check_mock_result)] = None
    mock_duration: Annotated[Any, AfterValidator(_check_duration)] = None
    mock_outputs: dict[str, Any] | None = None
    mock_error: str | None = None
    mock_fail_attempts: Annotated[int, Field(ge=0)] | None = None
    mock_log: list[str] | None = None

    @model_validator(mode="after")
    def _check_command(self) -> Self:
        # Runs once every field is valid, so `tool` is known here.
        if self.tool == "shell" and not self.command:
            raise fields.failures("Invocation", [(("command",), "missing", "required for tool shell", "")])
        if self.tool != "shell" and self.command:
            message = "only allowed with tool shell"
            raise fields.failures("Invocation", [(("command",), "not_allowed", message, self.command)])
        return self

    def canonical(self) -> dict[str, Any]:
        """The invocation as stored: every field, but the mock fields only when they are set."""
        body = self.model_dump()
        for name in MOCK_FIELDS:
            if body[name] is None:
                del body[name]
        return body
