"""The outputs spec (agents.md §7): from a tool's output document to the outputs a result reports.

A functional requirement's `outputs` maps an output name to a dot path into the document its tool produced
(`db_host.value`, `hosts.0`); an unresolved path gives null, as in STACKL 0.5. Without a spec the tool's own
default outputs apply. Sensitive Terraform outputs are never reported; a value holding a secret of the job is
masked; `stackl_hosts` replaces the replica's hosts. Each decision that hides something yields a `system` note
naming the output (never its value). Everything here is pure, so the executors share it.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from stackl import errors
from stackl.agent.secrets import Masker

MAX_OUTPUTS_BYTES = 1024 * 1024  # 1 MiB of JSON text (agents.md §7)
HOSTS_OUTPUT = "stackl_hosts"


@dataclass(frozen=True)
class OutputDocument:
    """What a tool produced, for the outputs spec to read.

    Attributes:
        document: the document spec paths resolve against (terraform `output -json`, set_stats data, …).
        default: the outputs reported when the functional requirement has no spec.
        sensitive: top-level names of `document` that are never reported (sensitive Terraform outputs).
        legacy_prefix: a path starting with it resolves against `document` with the prefix removed (terraform:
            ``values.outputs.``, written for STACKL 0.5, which read `terraform show -json`).
    """

    document: Any = None
    default: dict[str, Any] = field(default_factory=dict)
    sensitive: frozenset[str] = frozenset()
    legacy_prefix: str = ""


@dataclass(frozen=True)
class Outputs:
    """The outputs of a result, the replica's new hosts when `stackl_hosts` was set, and system notes."""

    values: dict[str, Any]
    hosts: list[str] | None = None
    notes: tuple[str, ...] = ()


def resolve(document: Any, path: str) -> Any:
    """The value at a dot path (all-digit segments index lists), or None when the path does not resolve."""
    value = document
    for segment in path.split("."):
        if isinstance(value, Mapping) and segment in value:
            value = value[segment]
        elif isinstance(value, list) and segment.isdigit() and int(segment) < len(value):
            value = value[int(segment)]
        else:
            return None
    return value


def _select(doc: OutputDocument, spec: Mapping[str, str]) -> tuple[dict[str, Any], list[str]]:
    values: dict[str, Any] = {}
    notes: list[str] = []
    for name, path in spec.items():
        relative = path
        if doc.legacy_prefix and path.startswith(doc.legacy_prefix):
            relative = path[len(doc.legacy_prefix) :]
        if relative.split(".", 1)[0] in doc.sensitive:
            values[name] = None
            notes.append(f"output {name}: {relative.split('.', 1)[0]} is sensitive and is not reported")
            continue
        values[name] = resolve(doc.document, relative)
    return values, notes


def apply(doc: OutputDocument, spec: Mapping[str, str], masker: Masker) -> Outputs:
    """Apply the outputs spec, mask secrets, take `stackl_hosts` and check the size.

    Args:
        doc: the tool's output document.
        spec: the functional requirement's `outputs` (output name → path); empty means the tool's defaults.
        masker: the job's secret values.

    Raises:
        ExecutionError: the outputs exceed 1 MiB of JSON.
    """
    if spec:
        selected, notes = _select(doc, spec)
    else:
        selected = {k: v for k, v in doc.default.items() if k not in doc.sensitive}
        notes = []
    values: dict[str, Any] = {}
    for name, value in selected.items():
        masked, changed = masker.mask_value(value)
        if changed:
            notes.append(f"output {name} contained a secret value of the job and was masked")
        values[name] = masked
    hosts = values.get(HOSTS_OUTPUT)
    replica_hosts: list[str] | None = None
    if isinstance(hosts, list) and all(isinstance(host, str) for host in hosts):
        replica_hosts = list(hosts)
    elif HOSTS_OUTPUT in values:
        notes.append(f"output {HOSTS_OUTPUT} is not a list of strings; the replica's hosts are kept")
    if len(json.dumps(values, separators=(",", ":")).encode("utf-8")) > MAX_OUTPUTS_BYTES:
        raise errors.ExecutionError("outputs exceed 1 MiB")
    return Outputs(values=values, hosts=replica_hosts, notes=tuple(notes))


def parse_object(text: str) -> dict[str, Any]:
    """A JSON object from an outputs file; an empty file means no outputs.

    Raises:
        ExecutionError: the text is not a JSON object.
    """
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise errors.ExecutionError("outputs file is not a JSON object")
    return value
