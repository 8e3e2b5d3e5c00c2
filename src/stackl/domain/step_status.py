"""A plan step's status entry in a stack instance, and the error message it may hold (lifecycle.md §4.9).

A step of a task's plan (service alias, replica, functional requirement) has one entry in the instance's
``status`` list; the task runner, the rollback planner and the task views all find it by the same key. Pure.
"""

from collections.abc import Mapping
from typing import Any

from stackl.domain.records import ERROR_MESSAGE_MAX_BYTES


def step_key(step: Mapping[str, Any]) -> tuple[str, int, str]:
    """A plan step's key: (service alias, replica, functional requirement)."""
    return (str(step["service"]), int(step["replica"]), str(step["functional_requirement"]))


def entry_key(entry: Mapping[str, Any]) -> tuple[str, int, str]:
    """A status entry's key, the same as its step's (0.5 entries may lack ``replica``: 0)."""
    return (str(entry["service"]), int(entry.get("replica") or 0), str(entry["functional_requirement"]))


def find_entry(body: Mapping[str, Any], key: tuple[str, int, str]) -> dict[str, Any] | None:
    """A copy of the instance's status entry with ``key``, or None."""
    for entry in body.get("status", []):
        if entry_key(entry) == key:
            return dict(entry)
    return None


def cut_error(message: str) -> str:
    """An SI ``error_message``: at most 8 KiB, the first line kept, then the tail (lifecycle.md §4.9)."""
    raw = message.encode()
    if len(raw) <= ERROR_MESSAGE_MAX_BYTES:
        return message
    first = message.splitlines()[0].encode()[: ERROR_MESSAGE_MAX_BYTES // 4]
    marker = b"\n...\n"
    tail = raw[-(ERROR_MESSAGE_MAX_BYTES - len(first) - len(marker)) :]
    return (first + marker + tail).decode(errors="ignore")
