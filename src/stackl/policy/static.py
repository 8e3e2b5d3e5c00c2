"""StaticPolicyEngine: the PolicyEngine fake for unit tests, built from Python functions.

Placement and use-case tests need policy verdicts, not Rego: each policy is a function ``(rule, input) → value``
(return :data:`UNDEFINED` for an undefined rule; raise ``PolicyError`` to simulate a failing policy). ``check``
applies the cheap text rules of the real engine (package name, an entry rule), and every call is recorded so
a test can assert what placement asked for.
"""

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from stackl.errors import PolicyError
from stackl.policy.base import (
    DEFAULT_TIMEOUT_S,
    ENTRY_RULES,
    Policy,
    PolicyDecision,
    PolicyEngine,
    PolicyInfo,
)

UNDEFINED: Final = object()  # what a policy function returns for an undefined rule

PolicyFunction = Callable[[str, Mapping[str, Any]], Any]

_PACKAGE = re.compile(r"^[ \t]*package[ \t]+([A-Za-z_][A-Za-z0-9_.]*)", re.MULTILINE)
_RULE = re.compile(r"^[ \t]*(?:default[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class Call:
    """One recorded ``evaluate`` or ``query`` call."""

    policy: str
    revision: int
    rule: str  # the rule name, or the query text for ``query``
    input: Mapping[str, Any]
    data: Mapping[str, Any] | None


class StaticPolicyEngine(PolicyEngine):
    """Answers from ``{policy_name: function(rule, input) -> value | UNDEFINED}``.

    A policy with no function is undefined for every rule; ``query`` hands the query text as ``rule``.
    """

    def __init__(self, policies: Mapping[str, PolicyFunction] | None = None) -> None:
        self.policies: dict[str, PolicyFunction] = dict(policies or {})
        self.calls: list[Call] = []
        self.checked: list[str] = []

    def check(self, name: str, source: str) -> PolicyInfo:
        self.checked.append(name)
        package = _PACKAGE.search(source)
        if package is None:
            raise _error(name, "the policy declares no package")
        if package.group(1) != name:
            raise _error(name, f"package {package.group(1)} must be the template name {name}")
        rules = frozenset(m.group(1) for m in _RULE.finditer(source)) - {"package", "import", "else"}
        if not rules.intersection(ENTRY_RULES):
            raise _error(name, "the policy defines none of " + ", ".join(ENTRY_RULES))
        return PolicyInfo(package=name, rules=rules)

    def evaluate(
        self,
        policy: Policy,
        rule: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._call(policy, rule, input_doc, data)

    def query(
        self,
        policy: Policy,
        query: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._call(policy, query, input_doc, data)

    def _call(
        self, policy: Policy, rule: str, input_doc: Mapping[str, Any], data: Mapping[str, Any] | None
    ) -> PolicyDecision:
        start = time.perf_counter()
        self.calls.append(Call(policy.name, policy.revision, rule, input_doc, data))
        function = self.policies.get(policy.name)
        value = UNDEFINED if function is None else function(rule, input_doc)
        duration_ms = (time.perf_counter() - start) * 1000
        if value is UNDEFINED:
            return PolicyDecision(defined=False, value=None, duration_ms=duration_ms)
        return PolicyDecision(defined=True, value=value, duration_ms=duration_ms)


def _error(name: str, message: str) -> PolicyError:
    return PolicyError(
        message, policy=name, errors=[{"loc": ["body", "policy"], "msg": message, "type": "policy_error"}]
    )
