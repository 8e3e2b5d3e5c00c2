"""Host templating (lifecycle.md §4.7): ``stackl_hostname`` → the replica's host names, and inventory groups.

Tokens: ``{hi}`` the host index in the replica and ``{ri}`` the replica index, both 1-based with at least two
digits; ``{counter(NAME, START)}`` a persistent counter, global across instances: its first use gives START,
each later use one more, never reused. All occurrences of one NAME inside one host name share a value.

Host names are identities: an update keeps the existing names, appends names for new indexes and drops
trailing ones; a changed template renames nothing. Counters are read and advanced by the caller inside the
transaction that writes the instance (`Counters` is the in-memory view of the values it read), so a rejected
request consumes nothing and a plan can show the next values without consuming them. Pure: no I/O.
"""

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stackl import errors

_COUNTER = r"counter\(\s*([^,(){}]+?)\s*,\s*(-?\d+)\s*\)"
TOKEN = re.compile(r"\{(hi|ri|" + _COUNTER + r")\}")
COUNTER = re.compile(r"\{" + _COUNTER + r"\}")


def counters_in(template: str) -> dict[str, int]:
    """The counters a template uses: NAME → START (the first START written for a NAME wins)."""
    found: dict[str, int] = {}
    for match in COUNTER.finditer(template):
        found.setdefault(match.group(1), int(match.group(2)))
    return found


@dataclass
class Counters:
    """Counter values as read from the store (NAME → next value); ``take`` advances them here only."""

    next_values: dict[str, int] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def take(self, name: str, start: int) -> int:
        value = self.next_values.get(name, start)
        self.next_values[name] = value + 1
        self.used.add(name)
        return value

    def changed(self) -> dict[str, int]:
        """The new next values of the counters used since reading."""
        return {name: self.next_values[name] for name in sorted(self.used)}


def render(template: str, *, replica: int, host: int, counters: Counters) -> str:
    """One host name: host ``host`` (1-based) of replica ``replica`` (0-based)."""
    values = {name: counters.take(name, start) for name, start in counters_in(template).items()}

    def token(match: re.Match[str]) -> str:
        if match.group(1) == "hi":
            return f"{host:02d}"
        if match.group(1) == "ri":
            return f"{replica + 1:02d}"
        return str(values[match.group(2)])

    return TOKEN.sub(token, template)


def instances_count(params: Mapping[str, Any]) -> int:
    """The ``instances`` parameter: hosts per replica (default 1).

    Raises:
        InvalidInput: not an integer of at least 0.
    """
    count = params.get("instances", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise errors.InvalidInput(
            "the parameter instances must be an integer of at least 0",
            errors=[{"loc": ["params", "instances"], "msg": "must be an integer >= 0", "type": "value"}],
        )
    return count


def host_names(
    template: str, *, replica: int, count: int, existing: Sequence[str] = (), counters: Counters
) -> list[str]:
    """The replica's host names: the ``existing`` ones kept (up to ``count``), new indexes templated."""
    names = list(existing[:count])
    for host in range(len(names) + 1, count + 1):
        names.append(render(template, replica=replica, host=host, counters=counters))
    return names


def inventory_groups(
    params: Mapping[str, Any], hosts: Sequence[tuple[str, str]]
) -> dict[str, list[dict[str, str]]]:
    """Groups from ``stackl_inventory_groups`` (STACKL 0.5): each item takes the next ``count`` hosts.

    Every host taken by an item joins one group per tag of the item; hosts left over go to the group named
    by ``default_inventory_group`` when set. ``hosts`` are (host, target) pairs in replica order.

    Raises:
        InvalidInput: the items are not a list of ``{tags: [..], count: int}``.
    """
    items = params.get("stackl_inventory_groups")
    if items is None:
        return {}
    loc: list[str | int] = ["params", "stackl_inventory_groups"]
    if not isinstance(items, list):
        raise errors.InvalidInput(
            "stackl_inventory_groups must be a list", errors=[{"loc": loc, "msg": "list", "type": "type"}]
        )
    groups: dict[str, list[dict[str, str]]] = {}
    position = 0
    for index, item in enumerate(items):
        tags = item.get("tags") if isinstance(item, Mapping) else None
        count = item.get("count") if isinstance(item, Mapping) else None
        if (
            not isinstance(tags, list)
            or not all(isinstance(t, str) for t in tags)
            or isinstance(count, bool)
            or not isinstance(count, int)
            or count < 0
        ):
            raise errors.InvalidInput(
                "each stackl_inventory_groups item needs tags (a list of names) and count (an integer)",
                errors=[{"loc": [*loc, index], "msg": "needs tags and count", "type": "value"}],
            )
        for host, target in hosts[position : position + count]:
            for tag in tags:
                groups.setdefault(tag, []).append({"host": host, "target": target})
        position += count
    default = params.get("default_inventory_group")
    if isinstance(default, str) and default:
        for host, target in hosts[position:]:
            groups.setdefault(default, []).append({"host": host, "target": target})
    return groups
