"""Targets indexed for the native checks, so placement stays fast at tens of thousands of targets.

Checking every service against every target costs services x targets checks, each parsing quantities and
formatting detail lines. Real SITs repeat themselves: thousands of targets come from a few zone profiles, and
an instance's services from a few requirement profiles. So the index works in three steps:

1. Targets with the same (resources, tags, packages), compared type-exactly, form one *group*; quantities are
   parsed and tag values turned into text once per group (and once per distinct value).
2. Services with the same (resource requirements, FRs) form one *profile*.
3. `screen` checks a profile once per group, and caches each check on the values it reads: the resources check
   on the target's values for the required keys only, the tags check on the required tags only (one cache for
   the request), the packages check on the package list. Identical check entries are shared objects.

The result per profile is the list of passing targets in candidate order and, per group, the check entries the
explanation shows, so listing every candidate costs a dict copy rather than new entries.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from itertools import compress
from typing import Any

from stackl.domain.quantities import parse_quantity
from stackl.placement import rules
from stackl.placement.rules import Check, Quantity


@dataclass(frozen=True, slots=True)
class Group:
    """Targets that offer the same resources, tags and packages."""

    resources: dict[str, Quantity]
    tags: dict[str, str]
    packages: tuple[str, ...]


class _Parser:
    """Parse each distinct (key, value) once: values repeat across groups even when groups do not."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, type, Any], Quantity] = {}

    def __call__(self, key: str, value: Any) -> Quantity:
        try:
            cache_key = (key, type(value), value)
            cached = self._cache.get(cache_key)
        except TypeError:  # an unhashable value (imported data): parse without caching
            return _quantity(key, value)
        if cached is None:
            cached = self._cache[cache_key] = _quantity(key, value)
        return cached


def _quantity(key: str, value: Any) -> Quantity:
    try:
        number: Fraction | None = parse_quantity(key, value)
    except ValueError:
        number = None
    return Quantity(rules.as_text(value), number)


def _signature(capability: Mapping[str, Any]) -> Any:
    resources = capability.get("resources") or {}
    tags = capability.get("tags") or {}
    packages = capability.get("packages") or ()
    try:
        key = (
            tuple(resources.items()),
            tuple(map(type, resources.values())),  # 1, 1.0, True and "1" must not share a group
            tuple(tags.items()),
            tuple(map(type, tags.values())),
            tuple(packages),
        )
        hash(key)
    except (TypeError, AttributeError):
        return repr((resources, tags, packages))
    return key


@dataclass(slots=True)
class TargetIndex:
    """The targets of one placement, in candidate order, grouped by what the native checks read."""

    names: list[str]
    group_of: list[int]  # group number per target position
    groups: list[Group]
    position: dict[str, int] = field(default_factory=dict)
    parse: "_Parser" = field(
        default_factory=lambda: _Parser()
    )  # interns quantities: equal values, one object

    @classmethod
    def build(cls, targets: Mapping[str, Mapping[str, Any]]) -> "TargetIndex":
        """Index `targets` (name → capability, in SIT order)."""
        names = list(targets)
        numbers: dict[Any, int] = {}
        group_of: list[int] = []
        firsts: list[Mapping[str, Any]] = []
        for capability in targets.values():
            signature = _signature(capability)
            number = numbers.get(signature)
            if number is None:
                number = numbers[signature] = len(firsts)
                firsts.append(capability)
            group_of.append(number)
        parse = _Parser()
        groups = [_group(capability, parse) for capability in firsts]
        return cls(names, group_of, groups, {name: i for i, name in enumerate(names)}, parse)


def _group(capability: Mapping[str, Any], parse: _Parser) -> Group:
    resources = capability.get("resources") or {}
    tags = capability.get("tags") or {}
    packages = capability.get("packages") or ()
    return Group(
        resources={str(k): parse(str(k), v) for k, v in resources.items()},
        tags={str(k): rules.as_text(v) for k, v in tags.items()},
        packages=tuple(str(p) for p in packages),
    )


@dataclass(frozen=True, slots=True)
class Profile:
    """What the native checks read from a service: its requirements (parsed) and its FRs.

    Quantities are interned by the index's parser, so two services with equal requirements make equal profiles.
    """

    needed: tuple[tuple[str, Quantity], ...]
    frs: tuple[str, ...]

    @classmethod
    def of(
        cls, index: TargetIndex, resource_requirements: Mapping[str, Any], frs: Sequence[str]
    ) -> "Profile":
        return cls(
            needed=tuple((str(k), index.parse(str(k), v)) for k, v in resource_requirements.items()),
            frs=tuple(frs),
        )


@dataclass(frozen=True, slots=True)
class Screening:
    """The native verdict of one profile: per group whether it passes and its checks; passing targets in order.

    ``group_of`` maps a target position to its group here (the index's grouping for native screening; an
    ``orchestration`` override makes its own two groups, pass and fail).
    """

    group_of: Sequence[int]
    passed: list[bool]
    checks: list[list[Check]]
    candidates: list[str]


class Screener:
    """Screens profiles against an index; the tags cache is shared by every profile of the request."""

    def __init__(self, index: TargetIndex, required_tags: Mapping[str, Any]) -> None:
        self.index = index
        self.required = [(str(t), rules.as_text(v)) for t, v in required_tags.items()]
        self._tags: dict[tuple[str | None, ...], tuple[bool, Check]] = {}
        self._profiles: dict[Profile, Screening] = {}

    def screen(self, profile: Profile) -> Screening:
        """The native checks of `profile` on every target (cached per profile)."""
        cached = self._profiles.get(profile)
        if cached is None:
            cached = self._profiles[profile] = self._screen(profile)
        return cached

    def _tags_check(self, group: Group) -> tuple[bool, Check]:
        values = tuple(group.tags.get(tag) for tag, _ in self.required)
        cached = self._tags.get(values)
        if cached is None:
            cached = self._tags[values] = rules.check_tags(self.required, values)
        return cached

    def _screen(self, profile: Profile) -> Screening:
        keys = [key for key, _ in profile.needed]
        # One cache per requirement (capacity → line) and one per combination of capacities (→ check):
        # values repeat across groups far more often than whole signatures do.
        lines: list[dict[Quantity | None, tuple[bool, str]]] = [{} for _ in keys]
        resources: dict[tuple[Quantity | None, ...], tuple[bool, Check]] = {}
        # Checks with the same details are one object, and groups with the same checks share one list,
        # so the explanation shares their entries too (a failing check lists only the failed lines).
        by_details: dict[tuple[bool, tuple[str, ...]], tuple[bool, Check]] = {}
        lists: dict[tuple[int, ...], list[Check]] = {}
        packages: dict[tuple[str, ...], tuple[bool, Check]] = {}
        passed: list[bool] = []
        checks: list[list[Check]] = []
        for group in self.index.groups:
            offered = tuple(map(group.resources.get, keys))
            verdict = resources.get(offered)
            if verdict is None:
                found_lines = []
                for (key, needed), cache, capacity in zip(profile.needed, lines, offered, strict=True):
                    line = cache.get(capacity)
                    if line is None:
                        line = cache[capacity] = rules.resource_line(key, needed, capacity)
                    found_lines.append(line)
                ok = all(line[0] for line in found_lines)
                details = (ok, tuple(text for good, text in found_lines if ok or not good))
                verdict = by_details.get(details) or by_details.setdefault(
                    details, rules.resources_check(found_lines)
                )
                resources[offered] = verdict
            found = [verdict[1]]
            if verdict[0]:
                verdict = self._tags_check(group)
                found.append(verdict[1])
            if verdict[0]:
                verdict = packages.get(group.packages) or packages.setdefault(
                    group.packages, rules.check_packages(profile.frs, group.packages)
                )
                found.append(verdict[1])
            passed.append(verdict[0])
            checks.append(lists.setdefault(tuple(map(id, found)), found))
        group_of = self.index.group_of
        candidates = list(compress(self.index.names, map(passed.__getitem__, group_of)))
        return Screening(group_of, passed, checks, candidates)
