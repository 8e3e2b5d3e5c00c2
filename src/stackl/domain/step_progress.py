"""Step progress: what a running task changes in a stack instance per step, stored apart from its revisions.

Why: a task changes a step's status entry several times (dispatched, then READY or FAILED) and each of those
used to be a new revision holding a full copy of the instance, so a task of N steps on an instance of N
services stored O(N²) bytes (a 1,000-service instance: 1.07 GB for 170 steps). Now each change is one small
*progress row* per step (``datastore`` table ``step_progress``: document, step key, ``seq``, the entry); a
read of the instance applies the live rows to the stored body with ``apply_progress``, and the next revision
of the instance (the task's end, a new request, posted outputs) holds them and drops them.

A row applies only to the revision it was written against (``ProgressRow.revision``): the store deletes the
rows a write folded into its new revision, so a row that outlived a revision was written by a task that no
longer owns the instance, and is ignored. (A check on the status entry's ``task_id`` would not do: a step a
task takes over at run time, such as an ``unchanged`` step whose inputs changed, still carries the id of the
task that last ran it.)

An entry is a JSON object:

- ``task_id``: the task that wrote it;
- ``status``: fields set on the step's status entry (status, error_message, job_id, attempt, times, ...);
- ``removed``: True when the step's entry (and its step record) leave the instance (a READY delete);
- ``step_id`` and ``record``: the step record ``steps[step_id]`` (outputs, input hash) of a READY step;
- ``outputs`` with ``alias`` and ``index``: outputs merged as the STACKL 0.5 merge does (``domain.outputs``;
  ``index`` None for an ``as_group`` step). Displayed parameters are refreshed when the task ends.

Pure: bodies change in place, nothing is read or written.
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from stackl.domain.outputs import merge_outputs
from stackl.domain.step_status import entry_key


@dataclass(frozen=True, slots=True)
class ProgressRow:
    """One live progress row of a document: the step it is about, its order, and what it changes."""

    key: str  # ``<alias>/<replica>/<functional requirement>`` (``progress_key``)
    seq: int  # grows with every row written, across all documents
    revision: int  # the document revision the row was written against
    time: datetime
    entry: dict[str, Any]


def progress_key(step_key: tuple[str, int, str]) -> str:
    """The row key of a step key (service alias, replica, functional requirement)."""
    alias, replica, fr = step_key
    return f"{alias}/{replica}/{fr}"


def index_entries(body: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The body's status entries by progress key (the entries themselves, not copies)."""
    return {progress_key(entry_key(e)): e for e in body.get("status") or []}


def apply_entry(
    body: dict[str, Any], key: str, entry: Mapping[str, Any], index: dict[str, dict[str, Any]] | None = None
) -> None:
    """Apply one progress entry to an instance body, in place; ``index`` (``index_entries``) is kept current.

    Raises:
        InvalidInput: the entry's outputs hold an invalid ``stackl_hosts`` (``merge_outputs``); the task
            runner applies each entry to its own copy before storing it, so a stored entry never raises.
    """
    entries = index if index is not None else index_entries(body)
    if _apply(body, entries, key, entry):
        body["status"] = [e for e in body.get("status") or [] if progress_key(entry_key(e)) != key]


def _apply(
    body: dict[str, Any], index: dict[str, dict[str, Any]], key: str, entry: Mapping[str, Any]
) -> bool:
    """Apply ``entry`` with ``index``; True when the step's status entry must leave the status list."""
    if entry.get("removed"):
        if entry.get("step_id") is not None:
            (body.get("steps") or {}).pop(str(entry["step_id"]), None)
        return index.pop(key, None) is not None
    found = index.get(key)
    if found is not None:
        found.update(entry.get("status") or {})
        if entry.get("record") is not None and entry.get("step_id") is not None:
            body.setdefault("steps", {})[str(entry["step_id"])] = dict(entry["record"])
    outputs = entry.get("outputs")
    if outputs:
        index_ = entry.get("index")
        merge_outputs(body, str(entry["alias"]), None if index_ is None else int(index_), outputs)
    return False


def apply_progress(body: dict[str, Any], rows: Iterable[ProgressRow], revision: int) -> int:
    """Apply the rows written against ``revision`` to ``body`` in ``seq`` order; the highest ``seq`` applied.

    0 when none applied. (A write based on this read deletes every row it read, applied or not: a row of an
    older revision never will apply.) Linear in the rows plus the body's status entries.
    """
    index = index_entries(body)
    removed: set[str] = set()
    highest = 0
    for row in sorted(rows, key=lambda r: r.seq):
        if row.revision == revision:
            if _apply(body, index, row.key, row.entry):
                removed.add(row.key)
            highest = row.seq
    if removed:
        body["status"] = [e for e in body.get("status") or [] if progress_key(entry_key(e)) not in removed]
    return highest
