"""Infrastructure targets: one environment, location and zone merged into one capability (lifecycle.md §1).

A SIT lists candidate targets as ``{environment, location, zone}`` triples; what a target offers is computed
from the three documents on every read and never stored, so a change to a zone is seen by every SIT and
instance operation at once. The merge is the same everywhere (placement, the SIT read views, the job payload):

- `provisioning_parameters` (from `params`), `secrets`, `tags`, `resources`, `policies`: shallow merge,
  environment < location < zone, right wins (a dict value is replaced whole);
- `packages`: union in order of first appearance, environment → location → zone;
- `agent`, `cloud_provider`: the most specific non-empty value, else ``common`` / ``generic``.

Secrets come out in clear: callers mask them for every read (only job payloads carry them).
"""

from collections.abc import Mapping
from typing import Any

DEFAULT_AGENT = "common"
DEFAULT_CLOUD_PROVIDER = "generic"
LEVELS = ("environment", "location", "zone")
CAPABILITY_FIELDS = (
    "provisioning_parameters",
    "cloud_provider",
    "secrets",
    "resources",
    "tags",
    "policies",
    "agent",
    "packages",
)
"""The fields of a capability, in the order of documents.md §7.1."""


def target_name(environment: str, location: str, zone: str) -> str:
    """The name ``<environment>.<location>.<zone>`` of a target; the parts contain no dots."""
    return f"{environment}.{location}.{zone}"


def _merged_map(levels: tuple[Mapping[str, Any], ...], field: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for level in levels:
        value = level.get(field)
        if isinstance(value, Mapping):
            merged.update(value)
    return merged


def _most_specific(levels: tuple[Mapping[str, Any], ...], field: str, default: str) -> str:
    for level in reversed(levels):
        value = level.get(field)
        if isinstance(value, str) and value:
            return value
    return default


def _union(levels: tuple[Mapping[str, Any], ...], field: str) -> list[str]:
    union: list[str] = []
    for level in levels:
        values = level.get(field)
        for value in values if isinstance(values, list) else ():
            if value not in union:
                union.append(value)
    return union


def compute_target(
    environment: Mapping[str, Any], location: Mapping[str, Any], zone: Mapping[str, Any]
) -> dict[str, Any]:
    """The capability of the target made of these three documents.

    Args:
        environment: the environment document body.
        location: the location document body.
        zone: the zone document body.

    Returns:
        The capability in the full view, keys in the order of `CAPABILITY_FIELDS`:
        `provisioning_parameters` (merged `params`), `cloud_provider`, `secrets` (in clear), `resources`,
        `tags`, `policies`, `agent`, `packages`. The target's name is not part of it: use `target_name`.
    """
    levels = (environment, location, zone)
    return {
        "provisioning_parameters": _merged_map(levels, "params"),
        "cloud_provider": _most_specific(levels, "cloud_provider", DEFAULT_CLOUD_PROVIDER),
        "secrets": _merged_map(levels, "secrets"),
        "resources": _merged_map(levels, "resources"),
        "tags": _merged_map(levels, "tags"),
        "policies": _merged_map(levels, "policies"),
        "agent": _most_specific(levels, "agent", DEFAULT_AGENT),
        "packages": _union(levels, "packages"),
    }


def capabilities(
    sit_body: Mapping[str, Any], docs: Mapping[tuple[str, str], Mapping[str, Any]]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The capabilities of every target of a SIT, from the environment, location and zone documents at hand.

    Args:
        sit_body: the SIT document body.
        docs: the available documents keyed by (type, name), e.g. ``("zone", "dmz")``; it may hold more.

    Returns:
        Target name → capability, in SIT order (a target listed twice appears once), and one warning per
        target left out because one of its documents is missing, naming every missing document.
    """
    result: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    seen: set[str] = set()
    entries = sit_body.get("infrastructure_targets")
    for entry in entries if isinstance(entries, list) else ():
        if not isinstance(entry, Mapping) or not all(isinstance(entry.get(level), str) for level in LEVELS):
            continue
        names = tuple(str(entry[level]) for level in LEVELS)
        name = target_name(*names)
        if name in seen:
            continue
        seen.add(name)
        found = [docs.get((level, doc_name)) for level, doc_name in zip(LEVELS, names, strict=True)]
        missing = [
            f"{level} {n!r}" for level, n, doc in zip(LEVELS, names, found, strict=True) if doc is None
        ]
        if missing:
            verb = "does" if len(missing) == 1 else "do"
            warnings.append(f"target {name} left out: {' and '.join(missing)} {verb} not exist")
            continue
        environment, location, zone = (doc for doc in found if doc is not None)
        result[name] = compute_target(environment, location, zone)
    return result, warnings
