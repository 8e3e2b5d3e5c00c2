"""A corpus of real-world Rego v0 policies with the results OPA 0.x gives (issue 13).

Three groups: STACKL 0.5's own policies (``stackl05``), templates of the OPA Gatekeeper library
(``gatekeeper``, the Rego of each stored unchanged under ``gatekeeper/`` with its source and licence), and OPA 0.x
language features (``language``). Every expected value was derived by reading the policy and OPA's documented
semantics (OPA 0.x: ``any``/``all`` count only ``true``, sets come back as JSON arrays, ``sprintf`` formats
composite values as Rego text), not by recording what an engine answers.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

UNDEFINED = object()  # the expected value of a rule that has no value


@dataclass(frozen=True)
class Case:
    """One evaluation: ``data.<package>.<rule>`` of ``source`` for ``input`` must be ``expected``.

    ``as_set``: the value is a set (or a partial set rule): order does not matter. ``values_as_sets``: the value
    is an object whose values are sets.
    """

    group: str
    name: str
    package: str
    source: str
    rule: str
    input: dict[str, Any]
    expected: Any
    data: dict[str, Any] = field(default_factory=dict)
    as_set: bool = False
    values_as_sets: bool = False

    @property
    def id(self) -> str:
        return f"{self.group}/{self.name}"


def _sorted(value: Any) -> Any:
    return sorted(value, key=lambda v: json.dumps(v, sort_keys=True)) if isinstance(value, list) else value


def canonical(case: Case, value: Any) -> Any:
    """A value comparable across engines: set members sorted by their JSON text."""
    if case.as_set:
        return _sorted(value)
    if case.values_as_sets and isinstance(value, dict):
        return {k: _sorted(v) for k, v in value.items()}
    return value


def gatekeeper_source(name: str) -> str:
    return (Path(__file__).parent / "gatekeeper" / f"{name}.rego").read_text("utf-8")
