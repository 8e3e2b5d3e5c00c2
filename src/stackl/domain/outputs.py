"""How a step's outputs reach the instance (lifecycle.md §4.6): the STACKL 0.5 merge, then displayed parameters.

Used by the task runner when a step ends READY and by ``POST /outputs``. Pure: the instance body changes in
place, nothing is read or written.
"""

from collections.abc import Mapping
from typing import Any

from stackl import errors
from stackl.domain import parameters


def merge_outputs(body: dict[str, Any], alias: str, index: int | None, outputs: Mapping[str, Any]) -> None:
    """The STACKL 0.5 output merge (lifecycle.md §4.6 steps 1-2), in place.

    ``index`` None merges into every replica of the alias (an ``as_group`` step).

    Raises:
        InvalidInput: ``stackl_hosts`` is not a list of strings.
    """
    body["instance_outputs"] = {**body.get("instance_outputs", {}), **outputs}
    replicas = body.get("services", {}).get(alias, [])
    for i, replica in enumerate(replicas):
        if index is not None and i != index:
            continue
        merged = {**replica.get("outputs", {}), **outputs}
        replica["outputs"] = merged
        hosts = merged.get("stackl_hosts")
        if hosts is not None:
            if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
                raise errors.InvalidInput(
                    "stackl_hosts must be a list of strings",
                    errors=[
                        {"loc": ["body", "outputs", "stackl_hosts"], "msg": "list of strings", "type": "type"}
                    ],
                )
            replica["hosts"] = list(hosts)


def refresh_parameters(body: dict[str, Any], base_params: Mapping[str, Mapping[str, Any]]) -> None:
    """Every replica's displayed parameters = layers 1-9 ⊕ ``instance_outputs`` ⊕ its own ``outputs`` (§4.6)."""
    for alias, replicas in body.get("services", {}).items():
        for index, replica in enumerate(replicas):
            base = base_params.get(f"{alias}/{index}")
            if base is None:
                continue
            replica["provisioning_parameters"] = parameters.dispatch_params(
                base, body.get("instance_outputs"), replica.get("outputs")
            )
