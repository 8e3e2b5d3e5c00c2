"""OpaPolicyEngine: the PolicyEngine port over real OPA (``opa-golib-python-bindings``, OPA 1.20.2 in-process).

STACKL 0.5 ran its users' policies in an OPA server; this adapter runs the same engine in the process, so a 0.5
or Gatekeeper-style policy gives OPA's own answer. The library's traits shape the module:

- it parses Rego v1 only: v0 sources go through :mod:`stackl.policy.v1` first (same lines, so OPA's
  ``file:line`` errors are mapped back to the user's line);
- a compile error only shows at the first evaluation: ``check`` evaluates once (``true``) to surface it at
  template write;
- calls on one engine are serialised: every policy thread holds its **own** engines (one per policy revision and
  data document, least recently used dropped), so threads never wait on each other;
- a call cannot be interrupted: the shared :class:`BoundedRunner` bounds each caller's wait and the number of
  threads a runaway policy can hold;
- builtin errors are strict (OPA 0.x left the expression undefined): such an evaluation fails with a 422 naming
  the builtin and line, instead of silently dropping a result.
"""

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from opa_bindings import OpaEngine, OpaError, OpaUndefinedError

from stackl.errors import PolicyError
from stackl.policy import compat, v1
from stackl.policy.base import DEFAULT_TIMEOUT_S, Policy, PolicyDecision, PolicyEngine, PolicyInfo
from stackl.policy.runner import BoundedRunner

_LOC = ["body", "policy"]
# Builtins OPA has but a server must not offer to its users' policies: network access and the environment.
REFUSED_BUILTINS = frozenset({"http.send", "opa.runtime", "net.lookup_ip_addr", "providers.aws.sign_req"})
# `<file>:<line>: <kind>: <message>` in OPA's error texts, with a caret line under parse errors.
_OPA_ERROR = re.compile(r"(?:^|\s)[\w./-]+\.rego:(\d+): (?:rego_\w+|eval_\w+): ([^\n]*)")
_PREFIXES = ("bundle activation failed: ", "1 error occurred: ")


@dataclass(frozen=True, slots=True)
class _Compiled:
    """One policy revision as converted to v1 (its Rewrite maps OPA's error positions back)."""

    name: str
    rewrite: compat.Rewrite


def _policy_error(message: str, policy: str) -> PolicyError:
    return PolicyError(
        message, policy=policy, errors=[{"loc": list(_LOC), "msg": message, "type": "policy_error"}]
    )


def describe_error(exc: OpaError, rewrite: compat.Rewrite | None) -> str:
    """OPA's error text as ``line L[:C]: <message>`` against the user's source (several errors: joined)."""
    text = exc.message
    found = list(_OPA_ERROR.finditer(text))
    if not found or rewrite is None:
        for prefix in _PREFIXES:
            text = text.replace(prefix, "")
        return " ".join(text.split())[:500] or exc.code
    messages = []
    for match in found:
        line = int(match.group(1))
        column = _caret_column(text, match.end())
        where = f"line {line}"
        if column is not None:
            lines = rewrite.text.split("\n")
            text_line = lines[line - 1] if line <= len(lines) else ""
            chars = len(
                text_line.encode("utf-8")[: column - 1].decode("utf-8", errors="ignore")
            )  # OPA counts bytes
            offset = sum(len(x) + 1 for x in lines[: line - 1]) + chars
            line, col = compat.line_col(rewrite.original, rewrite.to_original(offset))
            where = f"line {line}:{col}"
        messages.append(f"{where}: {match.group(2).strip()}")
    return "; ".join(messages)


def _caret_column(text: str, end: int) -> int | None:
    """The 1-based column of the ``^`` OPA prints two lines under a parse error, if any."""
    rest = text[end:].split("\n")
    if len(rest) >= 3 and rest[2].strip() == "^":
        return rest[2].replace("\t", "", 1).index("^") + 1
    return None


class OpaPolicyEngine(PolicyEngine):
    """Evaluates Rego policies in-process with OPA; see the module docstring for the threading model.

    Args:
        max_workers: threads that run policies (each with its own OPA engines).
        cache_size: engines kept per thread (least recently used are closed).
        name: prefix of the thread names (an engine per purpose: ``stackl-opa``, ``stackl-opa-authz``).
    """

    def __init__(self, *, max_workers: int = 4, cache_size: int = 64, name: str = "stackl-opa") -> None:
        self._cache_size = cache_size
        self._runner = BoundedRunner(max_workers, name)
        self._local = threading.local()
        self.compilations = 0  # engines compiled so far
        self._lock = threading.Lock()

    # --- port ------------------------------------------------------------------------------------------
    def check(self, name: str, source: str) -> PolicyInfo:
        return self._runner.run(lambda: self._check(name, source), name=name, timeout_s=DEFAULT_TIMEOUT_S)

    def evaluate(
        self,
        policy: Policy,
        rule: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._runner.run(
            lambda: self._evaluate(policy, rule, None, input_doc, data), name=policy.name, timeout_s=timeout_s
        )

    def query(
        self,
        policy: Policy,
        query: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._runner.run(
            lambda: self._evaluate(policy, None, query, input_doc, data),
            name=policy.name,
            timeout_s=timeout_s,
        )

    def close(self) -> None:
        self._runner.close()

    # --- compile ---------------------------------------------------------------------------------------
    def _check(self, name: str, source: str) -> PolicyInfo:
        module = compat.scan(source)
        rewrite = v1.convert(source)
        engine = OpaEngine()
        try:
            engine.add_policy(f"{name}.rego", rewrite.text)  # syntax errors first, as OPA reports them
            found = compat.problems(module, name=name, refused=REFUSED_BUILTINS, refused_prefixes=())
            if found:
                raise _policy_error("; ".join(compat.describe(source, p) for p in found), name)
            engine.eval_query("true")  # OPA compiles (type checks, safety) at the first evaluation
        except OpaError as exc:
            raise _policy_error(describe_error(exc, rewrite), name) from None
        finally:
            engine.close()
        return PolicyInfo(package=module.package or name, rules=module.rules)

    def _engine(self, policy: Policy, data: Mapping[str, Any] | None) -> tuple[OpaEngine, _Compiled]:
        """This thread's engine for (policy revision, data), compiled on first use."""
        cache: OrderedDict[tuple[str, int, str], tuple[OpaEngine, _Compiled]] | None = getattr(
            self._local, "engines", None
        )
        if cache is None:
            cache = self._local.engines = OrderedDict()
        data_json = json.dumps(dict(data or {}), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(policy.source.encode() + b"\0" + data_json.encode()).hexdigest()
        key = (policy.name, policy.revision, digest)
        found = cache.get(key)
        if found is not None:
            cache.move_to_end(key)
            return found
        module = compat.scan(policy.source)
        problems = compat.problems(
            module, refused=REFUSED_BUILTINS, refused_prefixes=(), require_entry_rule=False
        )
        if problems:
            message = "; ".join(compat.describe(policy.source, p) for p in problems)
            raise _policy_error(f"policy {policy.name} does not compile: {message}", policy.name)
        compiled = _Compiled(policy.name, v1.convert(policy.source))
        engine = OpaEngine()
        try:
            engine.add_policy(f"{policy.name}.rego", compiled.rewrite.text)
            if data:
                engine.add_data(dict(data))
            engine.eval_query("true")
        except OpaError as exc:
            engine.close()
            message = describe_error(exc, compiled.rewrite)
            raise _policy_error(f"policy {policy.name} does not compile: {message}", policy.name) from None
        with self._lock:
            self.compilations += 1
        cache[key] = (engine, compiled)
        while len(cache) > self._cache_size:
            _key, (old, _compiled) = cache.popitem(last=False)
            old.close()
        return engine, compiled

    # --- evaluate --------------------------------------------------------------------------------------
    def _evaluate(
        self,
        policy: Policy,
        rule: str | None,
        query: str | None,
        input_doc: Mapping[str, Any],
        data: Mapping[str, Any] | None,
    ) -> PolicyDecision:
        start = time.perf_counter()
        engine, compiled = self._engine(policy, data)
        name = policy.name
        try:
            if rule is not None:
                defined, value = _document(engine, f"{name}.{rule}", input_doc)
            else:
                assert query is not None  # noqa: S101 - one of the two is given
                defined, value = _query(engine, query, input_doc)
        except OpaError as exc:
            raise PolicyError(
                f"policy {name} failed: {describe_error(exc, compiled.rewrite)}", policy=name
            ) from None
        duration_ms = (time.perf_counter() - start) * 1000
        return PolicyDecision(defined=defined, value=value, duration_ms=duration_ms)


def _document(engine: OpaEngine, path: str, input_doc: Mapping[str, Any]) -> tuple[bool, Any]:
    try:
        return True, engine.eval_document(path, dict(input_doc))
    except OpaUndefinedError:
        return False, None


def _query(engine: OpaEngine, query: str, input_doc: Mapping[str, Any]) -> tuple[bool, Any]:
    """(defined, value) of an ad-hoc query: one expression's value, or the list of several; one per result.

    ``eval_query`` returns bindings only, so the library's own low-level call (with the same arguments and
    lock as ``eval_query``) gives the expression values: the package is pinned (requirements/opa.lock).
    """
    with engine._eval_lock:
        envelope = engine._call(
            engine._lib.OpaEvalQuery, query.encode("utf-8"), json.dumps(dict(input_doc)).encode("utf-8"), 0, 0
        )
    results = envelope.get("result") or []
    expressions = compat.count_expressions(query)
    values = []
    for result in results:
        found = [e.get("value") for e in result.get("expressions") or []]
        if found:
            values.append(found[0] if expressions == 1 else found[:expressions])
    if not values:
        return False, None
    return True, values[0] if len(values) == 1 else values
