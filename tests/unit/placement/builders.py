"""Small placement requests for the unit tests: targets from literal capabilities, services from tuples."""

from collections.abc import Mapping, Sequence
from typing import Any

from stackl.placement.engine import PlacementRequest, SatPolicyUse, ServiceSpec
from stackl.policy.base import Policy


def target(
    resources: Mapping[str, Any] | None = None,
    tags: Mapping[str, Any] | None = None,
    packages: Sequence[str] = (),
    policies: Mapping[str, Any] | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "provisioning_parameters": dict(params or {}),
        "cloud_provider": "generic",
        "secrets": {"token": "s3cr3t"},
        "resources": dict(resources or {}),
        "tags": dict(tags or {}),
        "policies": dict(policies or {}),
        "agent": "common",
        "packages": list(packages),
    }


def service(
    alias: str,
    needs: Mapping[str, Any] | None = None,
    frs: Sequence[str] = (),
    name: str | None = None,
) -> ServiceSpec:
    invocations = {fr: {"generic": {"tool": "shell", "image": f"registry.example.com/{fr}:1"}} for fr in frs}
    return ServiceSpec(alias, name or alias, dict(needs or {}), list(frs), invocations, {"owner": "team-a"})


def policy(name: str, outputs: Sequence[str] = ()) -> Policy:
    return Policy(name=name, revision=1, source=f"package {name}", outputs=tuple(outputs))


def request(
    services: Sequence[ServiceSpec],
    targets: Mapping[str, Mapping[str, Any]],
    *,
    tags: Mapping[str, Any] | None = None,
    replicas: Mapping[str, int] | None = None,
    sat: Sequence[SatPolicyUse] = (),
    policies: Sequence[Policy] = (),
    existing: Mapping[str, Sequence[str]] | None = None,
    overrides: Sequence[Policy] = (),
    user_parameters: Mapping[str, Any] | None = None,
) -> PlacementRequest:
    return PlacementRequest(
        stack_instance="shop",
        services=list(services),
        targets=dict(targets),
        required_tags=dict(tags or {}),
        replicas=dict(replicas or {}),
        sat_policies=list(sat),
        policies={p.name: p for p in policies},
        user_parameters=dict(user_parameters or {"size": "m"}),
        existing=dict(existing or {}),
        overrides={p.name: p for p in overrides},
        inputs_meta={},
        evaluated_at="2025-03-03T10:00:00Z",
    )
