"""The PolicyEngine port: compile-check and evaluate Rego policies (spec/lifecycle.md §3.12-3.13).

Placement, the policy endpoints and (later) authorization talk to this port only. It is synchronous on purpose:
the embedded engine is CPU-bound and releases the GIL, so callers on the event loop run a whole placement in a
worker thread (``asyncio.to_thread``) and the adapter bounds each call itself (``timeout_s``).

Contract of every adapter:

- ``check`` compiles a template's source as its ``PUT`` would store it and raises ``errors.PolicyError``
  (``errors[0].loc == ["body", "policy"]``, message ``line L:C: <text>`` where a position applies) for: a syntax
  error, a ``package`` other than the template name, an import other than ``rego.v1``/``future.keywords[.x]``, a
  builtin the engine lacks (named), or none of ``solutions``, ``infringement``, ``filter``, ``allow`` defined.
- ``evaluate`` returns the value of ``data.<package>.<rule>`` for an input, with STACKL 0.5's semantics: sets come
  back as JSON arrays (partial set rules too), ``all``/``any`` work; ``defined`` is False for an undefined rule.
  A runtime error or an engine failure on a large input raises ``errors.PolicyError`` naming the policy; a call
  over ``timeout_s`` raises ``errors.PolicyError`` ``policy <name> did not finish within <s> s``; an engine
  that cannot serve at all raises ``errors.PolicyEngineUnavailable``.
- A policy is compiled once per (name, revision) and reused; callers may call from any thread.
"""

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ENTRY_RULES = ("solutions", "infringement", "filter", "allow")
DEFAULT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Policy:
    """One revision of a policy template, as the engine needs it."""

    name: str  # the template name, which is also its Rego package
    revision: int
    source: str
    outputs: tuple[str, ...] = ()  # the template's declared `outputs` (SAT policies)


@dataclass(frozen=True, slots=True)
class PolicyInfo:
    """What a successful compile check found."""

    package: str
    rules: frozenset[str] = field(default_factory=frozenset)  # names of the rules the module defines


@dataclass(frozen=True, slots=True)
class PolicyDecision:
    """The result of one evaluation: ``value`` is plain JSON (sets as lists) when ``defined``."""

    defined: bool
    value: Any
    duration_ms: float


class PolicyEngine(abc.ABC):
    """Compiles and evaluates policies; see the module docstring for the contract."""

    @abc.abstractmethod
    def check(self, name: str, source: str) -> PolicyInfo:
        """Compile ``source`` as the template ``name``; raise ``errors.PolicyError`` when it is not usable."""

    @abc.abstractmethod
    def evaluate(
        self,
        policy: Policy,
        rule: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        """The value of ``data.<policy.name>.<rule>`` for ``input_doc``."""

    @abc.abstractmethod
    def query(
        self,
        policy: Policy,
        query: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        """The value of an arbitrary Rego expression (``POST /policies/evaluate`` with ``query``).

        ``defined`` is False when the query has no result; with one expression the value is that
        expression's value, with several (``a; b``) a list of them.
        """

    def close(self) -> None:  # noqa: B027 - optional hook; most adapters hold nothing to release
        """Release interpreters and threads."""
