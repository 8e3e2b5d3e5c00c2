"""RegoPolicyEngine: the PolicyEngine port over the embedded regopy (rego-cpp) engine.

The engine's snags shape this module (see PLATFORM.md): an interpreter shared by two threads crashes the process,
a module cannot be replaced in an interpreter, errors come back as text, and the library prints to stdout unless
told not to. So:

- each policy revision (and data document) is compiled **once**, in a throwaway interpreter, into a *bundle* that
  holds the compiled plans and the data; bundles are immutable and shared by every thread;
- every thread of the engine's own bounded pool holds **one** interpreter that only runs bundles, so no
  interpreter is ever touched by two threads;
- a caller waits at most ``timeout_s``; a call that overruns is abandoned (the engine cannot interrupt it) and
  keeps its thread until it ends, and when every thread is held by such calls the engine reports itself
  unavailable instead of queueing forever;
- sources go through ``compat`` first (0.5 partial sets, ``all``/``any``) and results come back as plain JSON.
"""

import hashlib
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import regopy
from regopy import rego_shared

from stackl.errors import PolicyError
from stackl.policy import compat, regopy_rewrite
from stackl.policy.base import DEFAULT_TIMEOUT_S, Policy, PolicyDecision, PolicyEngine, PolicyInfo
from stackl.policy.runner import BoundedRunner

T = TypeVar("T")
_LOC = ["body", "policy"]
_QUERY_CACHE = 64  # compiled ad-hoc queries kept per policy revision


def _new_interpreter() -> Any:
    interp = regopy.Interpreter()
    interp.log_level = regopy.LogLevel.NONE  # else the C++ library prints error blocks to stdout
    return interp


def _compile_error(message: str, policy: str) -> PolicyError:
    return PolicyError(
        message, policy=policy, errors=[{"loc": list(_LOC), "msg": message, "type": "policy_error"}]
    )


@dataclass(slots=True)
class _Compiled:
    """One compiled (policy revision, data) pair: bundles per entry rule and per ad-hoc query."""

    policy: Policy
    data_json: str
    module: compat.Module | None = None
    rewrite: compat.Rewrite | None = None
    error: PolicyError | None = None
    bundles: dict[str, Any] = field(default_factory=dict)  # rule → bundle (several rules share one)
    queries: OrderedDict[str, Any] = field(default_factory=OrderedDict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def path(self) -> str:
        return self.policy.name.replace(".", "/")


class RegoPolicyEngine(PolicyEngine):
    """Evaluates Rego policies in-process with regopy; see the module docstring for the threading model.

    Args:
        max_workers: threads that run policies (each with its own interpreter).
        cache_size: compiled policy revisions kept (least recently used are dropped).
        name: prefix of the thread names (an engine per purpose: ``stackl-rego``, ``stackl-rego-authz``).
    """

    def __init__(self, *, max_workers: int = 4, cache_size: int = 256, name: str = "stackl-rego") -> None:
        self._cache_size = cache_size
        self._runner_pool = BoundedRunner(max_workers, name)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[str, int, str], _Compiled] = OrderedDict()
        self.compilations = 0  # modules compiled so far (a test checks "once per revision")

    # --- port ------------------------------------------------------------------------------------------
    def check(self, name: str, source: str) -> PolicyInfo:
        return self._run(lambda: self._check(name, source), name=name, timeout_s=DEFAULT_TIMEOUT_S)

    def evaluate(
        self,
        policy: Policy,
        rule: str,
        input_doc: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> PolicyDecision:
        return self._run(
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
        return self._run(
            lambda: self._evaluate(policy, None, query, input_doc, data),
            name=policy.name,
            timeout_s=timeout_s,
        )

    def close(self) -> None:
        with self._lock:
            self._cache.clear()
        self._runner_pool.close()

    def _run(self, fn: Callable[[], T], *, name: str, timeout_s: float) -> T:
        return self._runner_pool.run(fn, name=name, timeout_s=timeout_s)

    def _runner(self) -> Any:
        """This thread's interpreter; it only ever runs bundles."""
        interp = getattr(self._local, "interp", None)
        if interp is None:
            interp = self._local.interp = _new_interpreter()
        return interp

    # --- compile -----------------------------------------------------------------------------------------
    def _check(self, name: str, source: str) -> PolicyInfo:
        interp = _new_interpreter()
        module = compat.scan(source)
        rewritten = regopy_rewrite.rewrite(module)
        try:
            interp.add_module(name, rewritten.text)
        except regopy.RegoError as exc:
            raise _compile_error(compat.engine_error(str(exc), rewritten), name) from None
        found = compat.problems(module, name=name, is_builtin=interp.is_builtin)
        if found:
            message = "; ".join(compat.describe(source, p) for p in found)
            raise _compile_error(message, name)
        # Some errors (a default on a partial set, an unsupported construct) only show when plans are built.
        bundle = interp.build(None, [f"{name.replace('.', '/')}/{rule}" for rule in sorted(module.rules)])
        if not bundle.ok():
            raise _compile_error(_node_messages(bundle.node()), name)
        return PolicyInfo(package=module.package or name, rules=module.rules)

    def _compiled(self, policy: Policy, data: Mapping[str, Any] | None) -> _Compiled:
        data_json = json.dumps(dict(data or {}), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(policy.source.encode() + b"\0" + data_json.encode()).hexdigest()
        key = (policy.name, policy.revision, digest)
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                entry = self._cache[key] = _Compiled(policy=policy, data_json=data_json)
                while len(self._cache) > self._cache_size:
                    self._cache.popitem(last=False)
            else:
                self._cache.move_to_end(key)
        with entry.lock:
            if entry.module is None and entry.error is None:
                self._compile(entry)
        if entry.error is not None:
            raise entry.error
        return entry

    def _compile(self, entry: _Compiled) -> None:
        """Check and compile a revision: one bundle with every rule the module defines as an entry point."""
        policy = entry.policy
        module = compat.scan(policy.source)
        rewritten = regopy_rewrite.rewrite(module)
        interp = self._compiler(entry, rewritten)
        if entry.error is not None:
            return
        found = compat.problems(
            module, name=policy.name, is_builtin=interp.is_builtin, require_entry_rule=False
        )
        if found:
            message = "; ".join(compat.describe(policy.source, p) for p in found)
            entry.error = _compile_error(f"policy {policy.name} does not compile: {message}", policy.name)
            return
        entry.module, entry.rewrite = module, rewritten
        rules = sorted(module.rules)
        if rules:
            bundle = self._build(entry, interp, None, [f"{entry.path}/{r}" for r in rules])
            entry.bundles.update(dict.fromkeys(rules, bundle))

    def _compiler(self, entry: _Compiled, rewritten: compat.Rewrite) -> Any:
        interp = _new_interpreter()
        try:
            interp.add_module(entry.policy.name, rewritten.text)
            if entry.data_json != "{}":
                interp.add_data_json(entry.data_json)
        except regopy.RegoError as exc:
            message = compat.engine_error(str(exc), rewritten)
            name = entry.policy.name
            entry.error = _compile_error(f"policy {name} does not compile: {message}", name)
        with self._lock:
            self.compilations += 1
        return interp

    def _build(self, entry: _Compiled, interp: Any, query: str | None, entrypoints: list[str]) -> Any:
        name = entry.policy.name
        what = (
            f"policy {name} failed: the query does not compile"
            if query
            else f"policy {name} does not compile"
        )
        try:
            bundle = interp.build(query, entrypoints)
        except regopy.RegoError as exc:
            assert entry.rewrite is not None  # noqa: S101 - set before any build
            text = str(exc)
            message = compat.runtime_error(text) if query else compat.engine_error(text, entry.rewrite)
            raise _compile_error(f"{what}: {message or 'syntax error'}", name) from None
        if not bundle.ok():
            raise _compile_error(f"{what}: {_node_messages(bundle.node())}", name)
        return bundle

    def _bundle_for(self, entry: _Compiled, rule: str | None, query: str | None) -> Any:
        """The bundle that runs ``rule`` or ``query``, built on first use (a rule the scan missed, a query)."""
        assert entry.rewrite is not None  # noqa: S101 - compiled before use
        with entry.lock:
            if rule is not None:
                if rule not in entry.bundles:
                    interp = self._compiler(entry, entry.rewrite)
                    entry.bundles[rule] = self._build(entry, interp, None, [f"{entry.path}/{rule}"])
                return entry.bundles[rule]
            assert query is not None  # noqa: S101 - one of the two is given
            bundle = entry.queries.get(query)
            if bundle is None:
                interp = self._compiler(entry, entry.rewrite)
                bundle = self._build(entry, interp, query, [])
                entry.queries[query] = bundle
                while len(entry.queries) > _QUERY_CACHE:
                    entry.queries.popitem(last=False)
            else:
                entry.queries.move_to_end(query)
            return bundle

    # --- evaluate ----------------------------------------------------------------------------------------
    def _evaluate(
        self,
        policy: Policy,
        rule: str | None,
        query: str | None,
        input_doc: Mapping[str, Any],
        data: Mapping[str, Any] | None,
    ) -> PolicyDecision:
        start = time.perf_counter()
        entry = self._compiled(policy, data)
        bundle = self._bundle_for(entry, rule, query)
        runner = self._runner()
        name = policy.name
        try:
            _set_input(runner, input_doc)
        except Exception as exc:  # any library failure on odd or huge input is a policy error
            raise PolicyError(
                f"policy {name} failed: the engine could not read the input ({type(exc).__name__})",
                policy=name,
            ) from None
        text, error = _execute(runner, bundle, f"{entry.path}/{rule}" if rule is not None else None)
        if error is not None:
            raise PolicyError(f"policy {name} failed: {error}", policy=name)
        expressions = 1 if query is None else compat.count_expressions(query)
        defined, value = _value(text, expressions=expressions, name=name)
        assert entry.module is not None  # noqa: S101 - compiled
        if defined and rule is not None:
            value = compat.normalise(value, partial_set=rule in entry.module.set_rules)
        duration_ms = (time.perf_counter() - start) * 1000
        return PolicyDecision(defined=defined, value=value, duration_ms=duration_ms)


def _set_input(runner: Any, value: Mapping[str, Any]) -> None:
    """Hand ``value`` to the interpreter as its input document.

    Same C calls as ``regopy.Input``, without its per-value wrappers: about twice as fast, which matters because
    building the input is most of a call's cost (about 0.1 s per 1,000 targets in the §3.5 shape).
    """
    lib = rego_shared.rego
    push_str, push_int, push_float = lib.regoInputString, lib.regoInputInt, lib.regoInputFloat
    push_bool, push_null, push_item = lib.regoInputBoolean, lib.regoInputNull, lib.regoInputObjectItem
    push_object, push_array = lib.regoInputObject, lib.regoInputArray
    handle = rego_shared.rego_new_input()
    failed = 0

    def push(item: Any) -> None:
        nonlocal failed
        kind = type(item)
        if kind is str:
            failed |= push_str(handle, item.encode("utf-8"))
        elif kind is bool:
            failed |= push_bool(handle, item)
        elif kind is int:
            failed |= push_int(handle, item) if -(2**63) <= item < 2**63 else push_float(handle, float(item))
        elif kind is float:
            failed |= push_float(handle, item)
        elif item is None:
            failed |= push_null(handle)
        elif isinstance(item, Mapping):
            for key, member in item.items():
                failed |= push_str(handle, (key if type(key) is str else str(key)).encode("utf-8"))
                push(member)
                failed |= push_item(handle)
            failed |= push_object(handle, len(item))
        elif isinstance(item, list | tuple | set | frozenset):
            for member in item:
                push(member)
            failed |= push_array(handle, len(item))
        else:
            raise TypeError(f"cannot pass a {kind.__name__} to the engine")

    try:
        push(value)
        if failed:
            raise PolicyError("the engine rejected the input")
        rego_shared.rego_set_input(runner._impl, handle)  # the interpreter copies it
    finally:
        rego_shared.rego_free_input(handle)


def _execute(runner: Any, bundle: Any, entrypoint: str | None) -> tuple[str, str | None]:
    """Run a bundle; return the output text and, on failure, the engine's message.

    The low-level calls are used because ``regopy.Output`` parses the text in its constructor and raises a bare
    ``JSONDecodeError`` when the engine answers with an error text instead of JSON.
    """
    try:
        if entrypoint is None:
            impl = rego_shared.rego_bundle_query(runner._impl, bundle._impl)
        else:
            impl = rego_shared.rego_bundle_query_entrypoint(runner._impl, bundle._impl, entrypoint)
    except Exception as exc:  # the library failed: never a crash or a 500
        return "", f"the engine failed ({' '.join(str(exc).split())[:300] or type(exc).__name__})"
    try:
        text = rego_shared.rego_output_string(impl)
        if not rego_shared.rego_output_ok(impl):
            return text, _node_messages(regopy.Node(rego_shared.rego_output_node(impl)))
        if text.startswith("("):
            return text, compat.runtime_error(text) or "the engine failed"
        return text, None
    except Exception as exc:
        return "", f"the engine failed ({type(exc).__name__})"
    finally:
        rego_shared.rego_free_output(impl)


def _node_messages(node: Any) -> str:
    """The error messages of an error output, found among the node's children."""
    messages: list[str] = []
    stack = [node]
    while stack:
        current = stack.pop()
        if current.kind == rego_shared.NodeKind.ErrorMessage:
            message = rego_shared.rego_node_value(current._impl)
            if message and message not in messages:
                messages.append(message)
            continue
        if current.kind in (rego_shared.NodeKind.ErrorSeq, rego_shared.NodeKind.Error):
            stack.extend(current.at(i) for i in reversed(range(rego_shared.rego_node_size(current._impl))))
    return "; ".join(messages) or "the engine failed without a message (the input may be too large)"


def _value(text: str, *, expressions: int, name: str) -> tuple[bool, Any]:
    """(defined, value) from the engine's output text: one result, or a list of per-result values.

    A result's value is its first expression, or the list of its first ``expressions`` ones (the engine may add
    more, such as the collection a ``x[_]`` iterated).
    """
    if text == "undefined":
        return False, None
    try:
        parsed = json.loads(text)
    except ValueError:
        raise PolicyError(
            f"policy {name} failed: the engine returned an unreadable result", policy=name
        ) from None
    results = parsed if isinstance(parsed, list) else [parsed]
    values = []
    for result in results:
        found = result.get("expressions", []) if isinstance(result, dict) else []
        if not found:
            continue
        values.append(found[0] if expressions == 1 else found[:expressions])
    if not values:
        return False, None
    return True, values[0] if len(values) == 1 else values
