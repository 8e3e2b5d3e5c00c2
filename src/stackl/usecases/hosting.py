"""Host names and inventory groups of an instance, filled in the transaction that writes it (lifecycle.md §4.7).

A create or update builds its replicas outside the write transaction (placement takes time); the host names
that use ``{counter(NAME, START)}`` depend on counters shared by every instance, so they are rendered inside
the transaction that writes the instance and advances the counters: concurrent requests never hand out one
value twice, and a request that fails writes and consumes nothing. `HostPlan` records which replicas need
names; `fill` renders them into the instance body and the replicas' parameters (``machine_names``), then
derives ``groups`` (``stackl_inventory_groups``, or a ``stackl_groups`` parameter that replaces them).
"""

from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackl.datastore.base import Transaction
from stackl.domain import hostnames, parameters
from stackl.domain.hostnames import Counters


@dataclass(frozen=True, slots=True)
class Templated:
    """One replica whose hosts come from its ``stackl_hostname`` template."""

    alias: str
    index: int
    template: str
    count: int
    existing: tuple[str, ...] = ()
    reported: bool = False  # its outputs hold stackl_hosts: those stay its hosts


@dataclass
class HostPlan:
    """The replicas of one request that need host names."""

    replicas: list[Templated] = field(default_factory=list)

    def add(
        self,
        alias: str,
        index: int,
        params: Mapping[str, Any],
        prior: Mapping[str, Any] | None = None,
    ) -> None:
        """Note replica (alias, index) if its parameters (layers 1-8) hold a ``stackl_hostname`` template.

        Raises:
            InvalidInput: ``instances`` is not a count.
        """
        template = params.get("stackl_hostname")
        if not isinstance(template, str):
            return
        previous = ((prior or {}).get("provisioning_parameters") or {}).get("machine_names")
        existing = tuple(str(h) for h in previous) if isinstance(previous, list) else ()
        reported = "stackl_hosts" in ((prior or {}).get("outputs") or {})
        self.replicas.append(
            Templated(alias, index, template, hostnames.instances_count(params), existing, reported)
        )

    def counter_names(self) -> list[str]:
        return sorted({name for r in self.replicas for name in hostnames.counters_in(r.template)})


async def fill(
    tx: Transaction | None,
    plan: HostPlan,
    body: MutableMapping[str, Any],
    base_params: MutableMapping[str, dict[str, Any]],
    *,
    consume: bool,
) -> None:
    """Render the host names into ``body`` and ``base_params``; advance the counters when ``consume``.

    ``tx`` is the writing transaction (None, or ``consume=False``: a plan, which shows the next values).
    """
    counters = Counters()
    names = plan.counter_names()
    if names and tx is not None:
        counters = Counters(dict(await tx.counters(names)))
    services: dict[str, list[dict[str, Any]]] = body.get("services", {})
    outputs = body.get("instance_outputs") or {}
    for item in plan.replicas:
        replica = services[item.alias][item.index]
        hosts = hostnames.host_names(
            item.template, replica=item.index, count=item.count, existing=item.existing, counters=counters
        )
        key = f"{item.alias}/{item.index}"
        params = parameters.with_machine_names(base_params[key], hosts)
        base_params[key] = params
        replica["provisioning_parameters"] = parameters.dispatch_params(
            params, outputs, replica.get("outputs")
        )
        if not item.reported:
            replica["hosts"] = hosts
    if consume and tx is not None and counters.changed():
        await tx.set_counters(counters.changed())
    body["groups"] = groups_of(body, base_params)


def groups_of(body: Mapping[str, Any], base_params: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """``groups``: a ``stackl_groups`` instance parameter as given, else every alias's inventory groups."""
    given = (body.get("instance_params") or {}).get("stackl_groups")
    if isinstance(given, dict):
        return given
    groups: dict[str, list[dict[str, str]]] = {}
    for alias, replicas in (body.get("services") or {}).items():
        params = base_params.get(f"{alias}/0")
        if params is None:
            continue
        pairs: Sequence[tuple[str, str]] = [
            (str(h), str(r["infrastructure_target"])) for r in replicas for h in r.get("hosts") or []
        ]
        for group, members in hostnames.inventory_groups(params, pairs).items():
            groups.setdefault(group, []).extend(members)
    return groups
