"""The placement constraints, one small function each, and the readers of policy results (lifecycle.md §3).

Each native check (resources §3.2, tags §3.3, packages §3.4) returns whether it passed and its explanation entry
``{"check", "result", "details"}``. The checks work on values prepared once by `placement.index` (quantities
parsed, tag values turned into text), so they cost a few dict look-ups; `index` decides how often they run.
The policy readers turn a `PolicyDecision` into plain data or raise the 422 the contract names: a SAT policy
(`solutions`, §3.6), a SIT policy (`infringement`, §3.8) and the service policies' intersection (`filter`, §3.9).

Check entries are shared between candidates with the same values; callers treat them as read-only.
"""

import json
from collections.abc import Mapping, Sequence
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from stackl import errors
from stackl.policy.base import PolicyDecision

Check = dict[str, Any]
"""One explanation check: ``{"check": name, "result": "pass" | "fail" | "skip", "details": [...]}``."""

UNPARSABLE = "unparsable, assumed sufficient"
NO_TAGS = "no required tags"
ALL = "all"


def check(name: str, passed: bool, details: Sequence[str] | None = None) -> Check:
    """An explanation check entry; ``details`` is left out when None."""
    entry: Check = {"check": name, "result": "pass" if passed else "fail"}
    if details is not None:
        entry["details"] = list(details)
    return entry


def as_text(value: Any) -> str:
    """A JSON value as text: strings as they are, numbers as decimal text, booleans ``true``/``false``."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, sort_keys=True)
    except (TypeError, ValueError):
        return str(value)


def format_number(value: Fraction) -> str:
    """An exact quantity as decimal text: ``17179869184``, ``0.5``."""
    if value.denominator == 1:
        return str(value.numerator)
    with localcontext() as ctx:
        ctx.prec = 40
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class Quantity:
    """A resource value as written (``text``) and as compared (``number``, None when it does not parse).

    Compared with exact integer arithmetic (a Fraction comparison costs microseconds); hashed by identity,
    because the index interns one object per distinct written value and caches checks on these objects.
    """

    __slots__ = ("_den", "_num", "_shown", "number", "text")

    def __init__(self, text: str, number: Fraction | None) -> None:
        self.text = text
        self.number = number
        self._num, self._den = (number.numerator, number.denominator) if number is not None else (0, 1)
        self._shown: str | None = None

    def __repr__(self) -> str:
        return f"Quantity({self.text!r}, {self.number!r})"

    def at_most(self, other: "Quantity") -> bool:
        """Whether this quantity is ≤ `other` (both parsed)."""
        return self._num * other._den <= other._num * self._den

    @property
    def shown(self) -> str:
        """``16GiB (17179869184)``: as written, plus the number it means when that reads differently."""
        if self._shown is None:
            plain = format_number(self.number) if self.number is not None else self.text
            self._shown = self.text if plain == self.text.strip() else f"{self.text} ({plain})"
        return self._shown


def resource_line(key: str, needed: Quantity, offered: Quantity | None) -> tuple[bool, str]:
    """Compare one requirement with one capacity (§3.2).

    Args:
        key: the resource name.
        needed: the service's requirement.
        offered: the target's capacity, None when the target does not declare `key`.

    Returns:
        Whether the target suffices, and the detail line of the explanation.
    """
    if offered is None:
        return True, f"{key}: not declared, assumed sufficient"
    if needed.number is None or offered.number is None:
        return True, UNPARSABLE
    return needed.at_most(offered), f"{key}: needs {needed.shown}, has {offered.shown}"


def resources_check(lines: Sequence[tuple[bool, str]]) -> tuple[bool, Check]:
    """The ``resources`` check from one `resource_line` per requirement, in requirement order.

    A passing check lists every line; a failing one lists only the requirements not met.
    """
    if not lines:
        return True, check("resources", True, ["no resource requirements"])
    failed = [line for ok, line in lines if not ok]
    if failed:
        return False, check("resources", False, failed)
    return True, check("resources", True, [line for _, line in lines])


def check_resources(
    needed: Sequence[tuple[str, Quantity]], offered: Sequence[Quantity | None]
) -> tuple[bool, Check]:
    """Every requirement against the target's capacity for the same key (`offered` aligned with `needed`)."""
    return resources_check(
        [
            resource_line(key, quantity, capacity)
            for (key, quantity), capacity in zip(needed, offered, strict=True)
        ]
    )


def check_tags(required: Sequence[tuple[str, str]], offered: Sequence[str | None]) -> tuple[bool, Check]:
    """Required tags against the target's tags as text (`offered` aligned with `required`, None = absent).

    A target fails only where it has the tag with another value and the requirement is not ``all`` (§3.3).
    """
    if not required:
        return True, check("tags", True, [NO_TAGS])
    lines: list[str] = []
    failed: list[str] = []
    for (tag, wanted), value in zip(required, offered, strict=True):
        if wanted == ALL:
            lines.append(f"{tag}: any value (all)")
        elif value is None:
            lines.append(f"{tag}: not set on target, assumed matching")
        elif value == wanted:
            lines.append(f"{tag}: {value}")
        else:
            failed.append(f"{tag}: needs {wanted}, has {value}")
    if failed:
        return False, check("tags", False, failed)
    return True, check("tags", True, lines)


def check_packages(frs: Sequence[str], packages: Sequence[str]) -> tuple[bool, Check]:
    """Every FR of the service must be among the target's packages, unless the target lists none (§3.4)."""
    if not packages:
        return True, check("packages", True, ["no packages declared, assumed offered"])
    if not frs:
        return True, check("packages", True, ["no functional requirements"])
    offered = set(packages)
    missing = [fr for fr in frs if fr not in offered]
    if missing:
        return False, check("packages", False, [f"packages: {', '.join(missing)} not offered by target"])
    return True, check("packages", True, [f"{', '.join(frs)} offered"])


def invalid(name: str, reason: str) -> errors.PolicyError:
    """The 422 of a policy whose result breaks its contract."""
    return errors.PolicyError(f"policy {name} returned an invalid result: {reason}", policy=name)


def read_solutions(
    name: str, decision: PolicyDecision, outputs: Sequence[str] = ()
) -> list[tuple[str, dict[str, Any]]]:
    """Read a SAT policy's ``solutions`` (§3.6).

    Args:
        name: the policy name, for messages.
        decision: the evaluation of ``solutions``.
        outputs: the template's declared outputs; when any, only these keys are recorded.

    Returns:
        (target, outputs) per element, in the policy's order; a plain name has no outputs.

    Raises:
        PlacementFailed: ``fulfilled`` is false; the detail is the policy's ``msg`` verbatim.
        PolicyError: the result breaks the contract.
    """
    if not decision.defined:
        raise invalid(name, "solutions is undefined")
    value = decision.value
    if not isinstance(value, Mapping):
        raise invalid(name, "expected an object with fulfilled")
    fulfilled = value.get("fulfilled")
    if not isinstance(fulfilled, bool):
        raise invalid(name, "fulfilled is missing or not a boolean")
    if not fulfilled:
        msg = value.get("msg")
        raise errors.PlacementFailed(msg if isinstance(msg, str) else as_text(msg))
    targets = value.get("targets")
    if not isinstance(targets, list):
        raise invalid(name, "targets is not a list")
    result: list[tuple[str, dict[str, Any]]] = []
    for position, element in enumerate(targets):
        if isinstance(element, str):
            result.append((element, {}))
        elif isinstance(element, Mapping) and isinstance(element.get("target"), str):
            keys = outputs or [k for k in element if k != "target"]
            result.append(
                (element["target"], {k: element[k] for k in keys if k in element and k != "target"})
            )
        else:
            raise invalid(name, f"targets[{position}] has no target")
    return result


def read_infringements(name: str, decision: PolicyDecision) -> list[str]:
    """Read a SIT policy's ``infringement``: messages, in order; undefined or empty means none (§3.8).

    Raises:
        PolicyError: the result is not a list of ``{"msg": text}`` objects or strings.
    """
    if not decision.defined or decision.value is None:
        return []
    value = decision.value
    if not isinstance(value, list):
        raise invalid(name, "infringement is not a set or list")
    messages: list[str] = []
    for element in value:
        if isinstance(element, str):
            messages.append(element)
        elif isinstance(element, Mapping) and "msg" in element:
            messages.append(as_text(element["msg"]))
        else:
            raise invalid(name, "an infringement is neither a string nor an object with msg")
    return messages


def service_filter(
    frs: Sequence[str], results: Mapping[str, Sequence[Any] | None]
) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """The FRs a replica runs: the intersection of its service policies' ``filter`` results (§3.9).

    Args:
        frs: the service's functional requirements, in declared order.
        results: policy name → its ``filter`` value (a list of FR names), None when undefined.

    Returns:
        The FRs to run in declared order; for every other FR, the names of the policies that excluded it
        (its ``skipped by service policy <names>`` message joins them); and explanation notes for names
        a policy returned that are not FRs of the service.

    Raises:
        PolicyError: a policy's ``filter`` is undefined or not a list of names.
    """
    declared = set(frs)
    kept: dict[str, set[str]] = {}
    notes: list[str] = []
    for name, result in results.items():
        if result is None:
            raise errors.PolicyError(
                f"policy {name} (filter) failed: filter is undefined; write default filter = …", policy=name
            )
        if not isinstance(result, list | tuple) or not all(isinstance(fr, str) for fr in result):
            raise invalid(name, "filter is not a set or list of functional requirement names")
        kept[name] = set(result)
        notes.extend(
            f"policy {name}: {fr} is not a functional requirement of the service, ignored"
            for fr in dict.fromkeys(result)
            if fr not in declared
        )
    run = [fr for fr in frs if all(fr in names for names in kept.values())]
    skipped = {fr: [name for name, names in kept.items() if fr not in names] for fr in frs if fr not in run}
    return run, skipped, notes
