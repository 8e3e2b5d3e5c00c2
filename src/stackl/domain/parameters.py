"""The single parameter and secret precedence order (lifecycle.md §2).

A job's parameters, the policy input and the input hash of a step must agree on which value wins, so the order
lives here once, as pure functions over plain dicts. Every layer is a shallow merge (``a ⊕ b``: keys of ``b``
win, nested values are replaced whole, a key set to ``null`` is a value and overrides). Parameters, lowest to
highest:

1-3. the target's ``provisioning_parameters`` (environment ⊕ location ⊕ zone, merged by `domain.targets`);
4. each FR's ``params`` in the service's declared FR order (a later FR wins); 5. the service's ``params``;
6. the instance ``params``; 7. ``service_params[alias]``; 8. the SAT policy outputs for (alias, target);
9. ``machine_names`` from host templating; 10. at dispatch, ``instance_outputs`` then the replica's ``outputs``.

Secrets, lowest to highest: target (environment, location, zone), FRs in declared order, service, instance
``secrets``, ``service_secrets[alias]``. The service beats its FRs for secrets too (STACKL 0.5 had it the other
way round). Secrets never enter the policy input: `service_params` (layers 4-7) is what policies see.
"""

from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def merge(*layers: Mapping[str, Any] | None) -> dict[str, Any]:
    """Shallow-merge `layers`, lowest first; a missing (None) layer contributes nothing.

    Args:
        *layers: the layers, lowest precedence first.

    Returns:
        A new dict: for every key, the value of the last layer that sets it (``None`` included).
    """
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer:
            merged.update(layer)
    return merged


def service_params(
    fr_params: Sequence[Mapping[str, Any] | None],
    service: Mapping[str, Any] | None,
    instance: Mapping[str, Any] | None,
    alias: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Layers 4-7: what the policy input shows as ``services[alias].params``.

    Args:
        fr_params: each FR's ``params``, in the service's ``functional_requirements`` order.
        service: the service's ``params``.
        instance: the instance ``params`` (``instance_params``).
        alias: ``service_params[alias]`` of the instance.

    Returns:
        The merged parameters, without target parameters, policy outputs or secrets.
    """
    return merge(*fr_params, service, instance, alias)


def replica_params(
    target: Mapping[str, Any] | None,
    fr_params: Sequence[Mapping[str, Any] | None],
    service: Mapping[str, Any] | None,
    instance: Mapping[str, Any] | None,
    alias: Mapping[str, Any] | None,
    policy_outputs: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Layers 1-8: the parameters of one replica, fixed when the instance revision is written.

    Args:
        target: the target's ``provisioning_parameters`` (layers 1-3, already merged).
        fr_params: each FR's ``params``, in declared order (layer 4).
        service: the service's ``params`` (layer 5).
        instance: the instance ``params`` (layer 6).
        alias: ``service_params[alias]`` (layer 7).
        policy_outputs: the SAT policy outputs for (alias, target), ``opa_outputs`` (layer 8).

    Returns:
        The merged parameters; host templating (layer 9) and step outputs (layer 10) come later.
    """
    return merge(target, service_params(fr_params, service, instance, alias), policy_outputs)


def with_machine_names(params: Mapping[str, Any], machine_names: Sequence[str] | None) -> dict[str, Any]:
    """Layer 9: `params` with ``machine_names`` set by host templating, when it named any hosts."""
    return merge(params, {"machine_names": list(machine_names)} if machine_names is not None else None)


def dispatch_params(
    params: Mapping[str, Any],
    instance_outputs: Mapping[str, Any] | None,
    replica_outputs: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Layer 10, added when a step is dispatched: the instance's outputs, then the replica's own outputs."""
    return merge(params, instance_outputs, replica_outputs)


def replica_secrets(
    target: Mapping[str, Any] | None,
    fr_secrets: Iterable[Mapping[str, Any] | None],
    service: Mapping[str, Any] | None,
    instance: Mapping[str, Any] | None,
    alias: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The secrets of one replica, lowest to highest.

    Args:
        target: the target's merged ``secrets`` (environment ⊕ location ⊕ zone).
        fr_secrets: each FR's ``secrets``, in the service's declared FR order.
        service: the service's ``secrets``.
        instance: the instance ``secrets``.
        alias: ``service_secrets[alias]`` of the instance.

    Returns:
        The merged secrets, in clear: callers mask them everywhere but in a job payload.
    """
    return merge(target, *fr_secrets, service, instance, alias)
