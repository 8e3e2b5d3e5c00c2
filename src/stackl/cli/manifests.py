"""Instance manifests and their command-line overrides (spec/cli.md §4.2), shared by ``plan`` and ``apply -c``.

A manifest is the STACKL 0.5 YAML file naming the templates and the instance's parameters; options given on
the command line are merged over it the way 0.5 did (``-p`` shallow and repeatable, ``-e`` deep per alias,
``--services`` replacing). Unknown manifest keys are warnings, not errors, as the spec asks.
"""

import json
from pathlib import Path
from typing import Any

import yaml

from stackl.cli import exits, output

MANIFEST_KEYS = (
    "stack_infrastructure_template",
    "stack_application_template",
    "params",
    "secrets",
    "service_params",
    "service_secrets",
    "tags",
    "replicas",
    "services",
    "stages",
    "rollback",
)


def read_manifest(path: Path, *, quiet: bool = False) -> dict[str, Any]:
    """The manifest's known keys; unknown keys are reported on stderr."""
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise exits.UsageFailure(f"{path}: cannot read: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise exits.UsageFailure(f"{path}: invalid YAML: {exc}") from exc
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise exits.UsageFailure(f"{path}: a manifest is a YAML mapping")
    for key in loaded:
        if key not in MANIFEST_KEYS:
            output.info(f"warning: {path}: unknown manifest key {key!r} ignored", quiet=quiet)
    return {key: value for key, value in loaded.items() if key in MANIFEST_KEYS}


def json_option(value: str, *, option: str, kind: type = dict) -> Any:
    """A JSON object (or list) given on the command line."""
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as exc:
        raise exits.UsageFailure(f"{option}: invalid JSON at column {exc.colno}: {value}") from exc
    if not isinstance(parsed, kind):
        raise exits.UsageFailure(f"{option}: must be a JSON {'object' if kind is dict else 'list'}")
    return parsed


def _deep(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _deep(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def instance_body(
    name: str,
    manifest: dict[str, Any],
    *,
    params: list[str] | None = None,
    tags: str | None = None,
    replicas: str | None = None,
    secrets: str | None = None,
    service_params: str | None = None,
    service_secrets: str | None = None,
    services: str | None = None,
) -> dict[str, Any]:
    """The create/update body: the manifest with the command-line overrides merged over it."""
    body: dict[str, Any] = {"stack_instance_name": name, **manifest}
    for value in params or []:
        body["params"] = {**(body.get("params") or {}), **json_option(value, option="-p/--params")}
    if tags is not None:
        body["tags"] = {**(body.get("tags") or {}), **json_option(tags, option="-t/--tags")}
    if replicas is not None:
        body["replicas"] = {**(body.get("replicas") or {}), **json_option(replicas, option="-r/--replicas")}
    if secrets is not None:
        body["secrets"] = {**(body.get("secrets") or {}), **json_option(secrets, option="--secrets")}
    if service_params is not None:
        extra = json_option(service_params, option="-e/--service-params")
        body["service_params"] = _deep(body.get("service_params") or {}, extra)
    if service_secrets is not None:
        extra = json_option(service_secrets, option="--service-secrets")
        body["service_secrets"] = _deep(body.get("service_secrets") or {}, extra)
    if services is not None:
        body["services"] = json_option(services, option="--services", kind=list)
    return body
