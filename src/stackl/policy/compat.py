"""The STACKL 0.5 compatibility layer over the embedded Rego engine (spec/lifecycle.md §3.12).

STACKL 0.5 ran its policies on OPA 0.x, in Rego v0. The embedded engine (regopy) parses v0 but differs in two
ways that change results: a v0 partial set rule ``name[term] { body }`` comes back as an object keyed by each
element's JSON text, and the builtins ``all``/``any`` do not exist. This module fixes both in the *source*, before
compilation, and keeps every line where it was so that an error still points at the user's line; the columns
of rewritten lines shift, so a :class:`Rewrite` maps an engine offset back to the user's original source.

It also holds the static checks of a policy template write (package, imports, builtins, entry rules), done on a
copy of the source whose strings and comments are blanked out, so that ``all`` in a string or ``all_services``
never matches. Everything here is pure text work: the engine adapter (``rego.py``) is the only module that
imports regopy, and it passes ``is_builtin`` in when it wants unknown calls detected.
"""

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

ENTRY_RULES = ("solutions", "infringement", "filter", "allow")
ALLOWED_IMPORT = re.compile(r"^(rego\.v1|future\.keywords(\.[A-Za-z_][A-Za-z0-9_]*)?)$")

# Builtins the engine lacks, or has but must not offer (``opa.runtime`` hands out the server's environment).
MISSING_BUILTINS = frozenset(
    {
        "http.send",
        "trace",
        "template.string",
        "json.match_schema",
        "json.verify_schema",
        "rego.metadata.rule",
        "rego.metadata.chain",
        "opa.runtime",
        "net.lookup_ip_addr",
        "providers.aws.sign_req",
        "strings.render_template",
    }
)
MISSING_PREFIXES = ("net.cidr_",)
# Calls the engine runs although ``is_builtin`` says otherwise.
EXTRA_CALLABLES = frozenset({"print"})

HELPER_ALL = "__stackl_all"
HELPER_ANY = "__stackl_any"
# Rego v0 helpers with OPA 0.x semantics: every/some element equals ``true``; an empty collection gives
# true/false. Appended after the user's last line, so no user line moves.
_HELPERS = {
    "all": f"{HELPER_ALL}(xs) = r {{ r := count([x | x := xs[_]; x != true]) == 0 }}\n",
    "any": f"{HELPER_ANY}(xs) = r {{ r := count([x | x := xs[_]; x == true]) > 0 }}\n",
    "set_diff": "__stackl_set_diff(a, b) = r { r := a - b }\n",
}
# OPA 0.x's deprecated builtins the engine lacks: the call is renamed (to a helper above, or a builtin).
_RENAMED = {"all": HELPER_ALL, "any": HELPER_ANY, "set_diff": "__stackl_set_diff", "re_match": "regex.match"}

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_REF = rf"{_IDENT}(?:\.{_IDENT})*"
_KEYWORDS = frozenset(
    {"package", "import", "default", "else", "not", "some", "every", "with", "as", "in", "if", "contains"}
)
_HEAD = re.compile(rf"(?:default\s+)?({_IDENT})")
# A call: a reference then `(` on the same line (a line break ends an expression in Rego).
_CALL = re.compile(rf"(?<![A-Za-z0-9_.\]\)])({_REF})[ \t]*\(")
# Names followed by `(` that are not function calls: `set()` is the empty set.
_CONSTRUCTORS = frozenset({"set"})
# `v =` or `v :=` ending the text before a call: the call is the value of an assignment statement.
_ASSIGNED = re.compile(rf"(?:^|(?<=[{{;\n|]))[ \t]*({_IDENT})[ \t]*(:?=)[ \t]*$")
HEAD_VALUE = "__stackl_h"
# A whole call argument that is a reference iterating with `_` (``input.prefixes[_]``, ``xs[_].name``).
_WILDCARD_ARG = re.compile(rf"\s*({_IDENT}(?:\.{_IDENT}|\[[^\[\]]*\])*\[_\](?:\.{_IDENT}|\[[^\[\]]*\])*)\s*")
HOISTED = "__stackl_w"
_ERROR = re.compile(r"\(error \d+:[^|\n]*\|(\d+)\|\d+")
_ERRORMSG = re.compile(r"\(errormsg (\d+):")
_OPENERS, _CLOSERS = "([{", ")]}"


@dataclass(frozen=True, slots=True)
class Problem:
    """A reason the source is not usable, at a character offset of the original source (None: no position)."""

    offset: int | None
    message: str


@dataclass(frozen=True, slots=True)
class _PartialSet:
    name: str
    open_bracket: int  # offset of `[`
    close_bracket: int  # offset of the matching `]`
    body: int  # offset of `{` or of `if`
    has_if: bool


@dataclass(frozen=True, slots=True)
class Module:
    """What a text scan of a Rego module found; offsets index the original source."""

    source: str
    masked: str  # the source with strings and comments blanked out, same length
    package: str | None
    package_offset: int
    imports: tuple[tuple[str, int], ...]
    rules: frozenset[str]  # rules defined (complete, partial, default, contains); functions excluded
    functions: frozenset[str]
    v1: bool  # `import rego.v1`: evaluated as written
    partial_sets: tuple[_PartialSet, ...] = ()
    set_rules: frozenset[str] = field(default_factory=frozenset)  # rules that yield a set


@dataclass(frozen=True, slots=True)
class Rewrite:
    """The source the engine compiles, and how to map its offsets back to the original."""

    original: str
    text: str
    edits: tuple[tuple[int, int, str], ...]  # (start, end, replacement) on the original, in order
    # Insertions that copy user code from elsewhere: (edit start, offset of the copy in the replacement,
    # offset of the code in the original), so that a position inside the copy maps to the user's code.
    moves: tuple[tuple[int, int, int], ...] = ()

    def to_original(self, offset: int) -> int:
        """Map a character offset of ``text`` to the original source (inside an edit: the edit's start)."""
        delta = 0
        for start, end, replacement in self.edits:
            new_start = start + delta
            if offset < new_start:
                break
            if offset < new_start + len(replacement):
                for at, copy, origin in self.moves:
                    if at == start and offset - new_start >= copy:
                        return origin + offset - new_start - copy
                return start
            delta += len(replacement) - (end - start)
        return max(0, min(len(self.original), offset - delta))

    def byte_to_original(self, byte_offset: int) -> int:
        """Map a UTF-8 byte offset of ``text`` (the engine counts bytes) to a character offset of the original."""
        chars = len(self.text.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))
        return self.to_original(chars)


def mask(source: str) -> str:
    """Blank out string literals and comments (spaces, same length), so that patterns see code only.

    Quotes stay; a newline inside a raw string becomes a space, so no statement seems to start inside it.
    """
    out = list(source)
    i, n = 0, len(source)
    while i < n:
        ch = source[i]
        if ch == "#":
            end = source.find("\n", i)
            end = n if end < 0 else end
        elif ch == '"':
            end = i + 1
            while end < n and source[end] not in '"\n':
                end += 2 if source[end] == "\\" and end + 1 < n and source[end + 1] != "\n" else 1
            i += 1  # keep the opening quote
        elif ch == "`":
            end = source.find("`", i + 1)
            end = n if end < 0 else end
            i += 1
        else:
            i += 1
            continue
        end = min(end, n)
        out[i:end] = " " * (end - i)
        i = end + 1
    return "".join(out)


def line_col(source: str, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of a character offset."""
    offset = max(0, min(len(source), offset))
    line = source.count("\n", 0, offset) + 1
    return line, offset - (source.rfind("\n", 0, offset) + 1) + 1


def _matching(masked: str, start: int) -> int:
    """Offset of the bracket closing the one at ``start``, or -1."""
    depth = 0
    for i in range(start, len(masked)):
        if masked[i] in _OPENERS:
            depth += 1
        elif masked[i] in _CLOSERS:
            depth -= 1
            if depth == 0:
                return i
    return -1


def _statements(masked: str) -> Iterator[int]:
    """Offsets of the first character of every line that starts outside any bracket (a statement start)."""
    depth, at_line_start = 0, True
    for i, ch in enumerate(masked):
        if ch == "\n":
            at_line_start = True
        elif ch in " \t\r":
            continue
        else:
            if at_line_start and depth == 0:
                yield i
            at_line_start = False
            if ch in _OPENERS:
                depth += 1
            elif ch in _CLOSERS:
                depth = max(0, depth - 1)


def _skip_space(masked: str, i: int) -> int:
    while i < len(masked) and masked[i] in " \t\r\n":
        i += 1
    return i


def scan(source: str) -> Module:
    """Find the package, imports, rules, functions and v0 partial set heads of a module."""
    masked = mask(source)
    package, package_offset = None, 0
    imports: list[tuple[str, int]] = []
    rules: set[str] = set()
    functions: set[str] = set()
    set_rules: set[str] = set()
    partial_sets: list[_PartialSet] = []
    for start in _statements(masked):
        keyword = re.match(rf"(package|import)\s+({_REF})", masked[start:])
        if keyword:
            if keyword.group(1) == "package" and package is None:
                package, package_offset = keyword.group(2), start
            elif keyword.group(1) == "import":
                imports.append((keyword.group(2), start))
            continue
        head = _HEAD.match(masked, start)
        if head is None or head.group(1) in _KEYWORDS:
            continue
        name, after = head.group(1), _skip_space(masked, head.end())
        nxt = masked[after : after + 1]
        if nxt == "(":
            functions.add(name)
            continue
        rules.add(name)
        if re.match(r"contains\b", masked[after:]):
            set_rules.add(name)
        elif nxt == "[":
            close = _matching(masked, after)
            if close < 0:
                continue
            body = _skip_space(masked, close + 1)
            has_if = re.match(r"if\b", masked[body:]) is not None
            if masked[body : body + 1] == "{" or has_if:
                set_rules.add(name)
                partial_sets.append(_PartialSet(name, after, close, body, has_if))
    v1 = any(path == "rego.v1" for path, _ in imports)
    return Module(
        source=source,
        masked=masked,
        package=package,
        package_offset=package_offset,
        imports=tuple(imports),
        rules=frozenset(rules),
        functions=frozenset(functions),
        v1=v1,
        partial_sets=tuple(partial_sets),
        set_rules=frozenset(set_rules),
    )


def _arguments(masked: str, open_paren: int, close_paren: int) -> list[tuple[int, int]]:
    """(start, end) of each top-level argument between a call's parentheses."""
    spans, depth, start = [], 0, open_paren + 1
    for i in range(open_paren + 1, close_paren):
        ch = masked[i]
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
        elif ch == "," and depth == 0:
            spans.append((start, i))
            start = i + 1
    spans.append((start, close_paren))
    return spans


def _statement_call(masked: str, start: int, close_paren: int) -> int | None:
    """Where the statement holding the call at ``start`` begins, or None.

    Only a call that is a whole statement, or the whole value of one (``v := f(…)``, ``v = f(…)``), in a rule or
    comprehension body qualifies.
    """
    after = masked[close_paren + 1 :].lstrip(" \t\r")
    if after and after[0] not in "};\n]":
        return None
    before = masked[max(0, start - 200) : start]
    assigned = _ASSIGNED.search(before)
    if assigned is not None:
        return start - len(before) + assigned.start(1)
    stripped = before.rstrip(" \t")
    if stripped and stripped[-1] not in "{;\n|":
        return None
    if re.search(r"(?:^|[\s{;|])not\s*$", before):
        return None
    return start


def _hoisted_wildcards(module: Module) -> list[tuple[int, int, str]]:
    """Edits that bind ``_`` references used as call arguments to a variable first (an engine bug).

    regopy 1.5.2 refuses ``startswith(image, input.prefixes[_])`` ("Invalid bracket argument"), which OPA
    evaluates for every element. A call that is a statement of its own or the value of an assignment (in a rule
    or a comprehension body, not negated) becomes ``__stackl_wN := input.prefixes[_]; startswith(image,
    __stackl_wN)``, as OPA itself binds it: the same meaning, on the same line. Nested calls are left as they
    are.
    """
    masked, edits, counter = module.masked, [], 0
    for match in _CALL.finditer(masked):
        start, open_paren = match.start(1), match.end() - 1
        close_paren = _matching(masked, open_paren)
        if close_paren < 0:
            continue
        statement = _statement_call(masked, start, close_paren)
        if statement is None:
            continue
        bindings = []
        for arg_start, arg_end in _arguments(masked, open_paren, close_paren):
            found = _WILDCARD_ARG.fullmatch(masked, arg_start, arg_end)
            if found is None:
                continue
            counter += 1
            variable = f"{HOISTED}{counter}"
            bindings.append(f"{variable} := {module.source[found.start(1) : found.end(1)]}; ")
            edits.append((found.start(1), found.end(1), variable))
        if bindings:
            edits.append((statement, statement, "".join(bindings)))
    return edits


@dataclass(frozen=True, slots=True)
class _Comprehension:
    open_bracket: int
    bar: int  # offset of the top-level `|`
    close_bracket: int
    rule_start: int  # where the enclosing top-level statement starts


def _comprehensions(masked: str) -> Iterator[_Comprehension]:
    """Every array, set and object comprehension (a bracket whose content has a top-level ``|``)."""
    starts = list(_statements(masked))
    for i, ch in enumerate(masked):
        if ch not in "[{":
            continue
        close = _matching(masked, i)
        if close < 0:
            continue
        depth = 0
        for j in range(i + 1, close):
            if masked[j] in _OPENERS:
                depth += 1
            elif masked[j] in _CLOSERS:
                depth -= 1
            elif masked[j] == "|" and depth == 0:
                rule_start = max((s for s in starts if s <= i), default=0)
                yield _Comprehension(i, j, close, rule_start)
                break


def _body_statements(masked: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each statement of a comprehension body, split at top-level ``;`` and line breaks."""
    depth, begin = 0, start
    for i in range(start, end + 1):
        ch = masked[i] if i < end else ";"
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth -= 1
        elif ch in ";\n" and depth == 0:
            text = masked[begin:i]
            if text.strip():
                lead = len(text) - len(text.lstrip())
                yield begin + lead, begin + len(text.rstrip())
            begin = i + 1


def _comprehension_edits(module: Module) -> tuple[list[tuple[int, int, str]], list[tuple[int, int, int]]]:
    """Edits that make comprehensions evaluate as in OPA (engine bugs of regopy 1.5.2).

    - ``v = f(…)`` with a fresh ``v`` in a comprehension body fails with "Unable to unify due to cycle": it
      becomes ``v := f(…)`` (for a fresh variable, unification and assignment mean the same).
    - A head that calls a function (``[startswith(x.image, r) | r := …]``) does not see the rule's iteration
      variables: the call moves to the end of the body, bound to ``__stackl_hN``, which the head returns.

    Returns the edits and the moves (see :class:`Rewrite`).
    """
    masked, source, counter = module.masked, module.source, 0
    edits: list[tuple[int, int, str]] = []
    moves: list[tuple[int, int, int]] = []
    names = module.rules | module.functions | {"input", "data"}
    for comp in _comprehensions(masked):
        before = masked[comp.rule_start : comp.open_bracket]
        for stmt_start, stmt_end in _body_statements(masked, comp.bar + 1, comp.close_bracket):
            found = re.match(rf"({_IDENT})[ \t]*=(?!=)[ \t]*({_REF})[ \t]*\(", masked[stmt_start:stmt_end])
            if found is None or found.group(1) in names or found.group(1) == "_":
                continue
            open_paren = stmt_start + found.end() - 1
            if _matching(masked, open_paren) != stmt_end - 1:
                continue  # the value is more than one call
            seen = before + masked[comp.bar + 1 : stmt_start]
            if re.search(rf"(?<![A-Za-z0-9_.]){found.group(1)}(?![A-Za-z0-9_])", seen):
                continue  # bound before: `=` compares
            eq = stmt_start + found.start(2) - 1
            while masked[eq] != "=":
                eq -= 1
            edits.append((eq, eq + 1, ":="))
        head = masked[comp.open_bracket + 1 : comp.bar]
        call = re.fullmatch(rf"\s*({_REF})[ \t]*\(.*?\s*", head, re.DOTALL)
        if call is None or "\n" in head or call.group(1) in _CONSTRUCTORS:
            continue
        head_start = comp.open_bracket + 1 + (len(head) - len(head.lstrip()))
        head_end = comp.bar - (len(head) - len(head.rstrip()))
        if _matching(masked, masked.index("(", head_start)) != head_end - 1:
            continue
        body_end = comp.close_bracket
        while masked[body_end - 1] in " \t\r\n":
            body_end -= 1
        counter += 1
        variable = f"{HEAD_VALUE}{counter}"
        edits.append((head_start, head_end, variable))
        prefix = f"; {variable} := "
        edits.append((body_end, body_end, prefix + source[head_start:head_end]))
        moves.append((body_end, len(prefix), head_start))
    return edits, moves


def calls(module: Module) -> Iterator[tuple[str, int]]:
    """Every call in the module's code (name, offset), strings and comments excluded."""
    for match in _CALL.finditer(module.masked):
        yield match.group(1), match.start(1)


def _line_break_edits(masked: str) -> list[tuple[int, int, str]]:
    """``;`` after a body line whose next line starts with ``(``, which the engine reads as a call.

    regopy 1.5.2 parses ``input.parameters.minimum`` followed by a line ``(a - b) >= c`` as a call of the
    reference; OPA ends the expression at the line break. The ``;`` keeps OPA's meaning on the same line.
    """
    edits: list[tuple[int, int, str]] = []
    stack: list[str] = []
    last_code = -1
    for i, ch in enumerate(masked):
        if ch in _OPENERS:
            if ch == "(" and stack and stack[-1] == "{" and last_code >= 0 and "\n" in masked[last_code:i]:
                previous = masked[last_code]
                if previous.isalnum() or previous in '_])}"':
                    edits.append((last_code + 1, last_code + 1, ";"))
            stack.append(ch)
        elif ch in _CLOSERS and stack:
            stack.pop()
        if not ch.isspace():
            last_code = i
    return edits


def rewrite(module: Module) -> Rewrite:
    """Make a v0 module evaluate as OPA 0.x did; a ``rego.v1`` module is returned unchanged.

    ``name[term] { body }`` becomes ``name contains term if { body }`` (a real set), calls of ``all``/``any``
    call helpers appended after the last line, and ``_`` references passed to a call are bound to a variable
    first (see `_hoisted_wildcards`). No newline is added or removed before the end of the source.
    """
    source = module.source
    if module.v1:
        return Rewrite(source, source, ())
    edits: list[tuple[int, int, str]] = []
    for head in module.partial_sets:
        edits.append((head.open_bracket, head.open_bracket + 1, " contains "))
        edits.append((head.close_bracket, head.close_bracket + 1, " "))
        if not head.has_if:
            edits.append((head.body, head.body, "if "))
    edits.extend(_hoisted_wildcards(module))
    comprehension_edits, moves = _comprehension_edits(module)
    edits.extend(comprehension_edits)
    edits.extend(_line_break_edits(module.masked))
    helpers: list[str] = []
    for name, offset in calls(module):
        if name in _RENAMED and name not in module.functions:
            edits.append((offset, offset + len(name), _RENAMED[name]))
            if name in _HELPERS and _HELPERS[name] not in helpers:
                helpers.append(_HELPERS[name])
    if helpers:
        tail = "" if source.endswith("\n") else "\n"
        edits.append((len(source), len(source), tail + "".join(helpers)))
    return apply(source, edits, moves)


def apply(
    source: str, edits: list[tuple[int, int, str]], moves: list[tuple[int, int, int]] | None = None
) -> Rewrite:
    """Apply non-overlapping ``(start, end, replacement)`` edits of ``source``; the Rewrite maps offsets back."""
    edits = sorted(edits, key=lambda e: (e[0], e[1]))
    parts, last = [], 0
    for start, end, replacement in edits:
        parts.append(source[last:start])
        parts.append(replacement)
        last = end
    parts.append(source[last:])
    return Rewrite(source, "".join(parts), tuple(edits), tuple(moves or ()))


def problems(
    module: Module,
    *,
    name: str | None = None,
    is_builtin: Callable[[str], bool] | None = None,
    require_entry_rule: bool = True,
    refused: frozenset[str] = MISSING_BUILTINS,
    refused_prefixes: tuple[str, ...] = MISSING_PREFIXES,
) -> list[Problem]:
    """Why a template's source is not usable, beyond syntax (which only the engine knows).

    Args:
        module: the scanned source.
        name: the template name the package must equal (None: not checked).
        is_builtin: the engine's builtin test; when given, any call of an unknown function is reported.
        require_entry_rule: whether one of ``solutions``, ``infringement``, ``filter``, ``allow`` is required.
        refused: builtins reported as not available (the engine lacks them or must not offer them).
        refused_prefixes: name prefixes of such builtins.
    """
    found: list[Problem] = []
    if module.package is None:
        found.append(Problem(0, "the policy declares no package"))
    elif name is not None and module.package != name:
        found.append(
            Problem(module.package_offset, f"package {module.package} must be the template name {name}")
        )
    for path, offset in module.imports:
        if not ALLOWED_IMPORT.match(path):
            found.append(
                Problem(offset, f"import {path} is not allowed (only rego.v1 and future.keywords[.x])")
            )
    reported: set[str] = set()
    for call, offset in calls(module):
        if call in module.functions or call in _KEYWORDS or call in _CONSTRUCTORS or call.startswith("data."):
            continue
        if call in reported:
            continue
        if (
            call in refused
            or (refused_prefixes and call.startswith(refused_prefixes))
            or (module.v1 and call in _HELPERS)
        ):
            found.append(Problem(offset, f"builtin {call} is not available in this engine"))
        elif call in _RENAMED or call in EXTRA_CALLABLES or is_builtin is None or is_builtin(call):
            continue
        else:
            found.append(Problem(offset, f"unknown function {call}"))
        reported.add(call)
    if require_entry_rule and not module.rules.intersection(ENTRY_RULES):
        found.append(Problem(None, "the policy defines none of " + ", ".join(ENTRY_RULES)))
    return found


def describe(source: str, problem: Problem) -> str:
    """``line L:C: <message>`` against the original source, or the bare message without a position."""
    if problem.offset is None:
        return problem.message
    line, col = line_col(source, problem.offset)
    return f"line {line}:{col}: {problem.message}"


def engine_error(text: str, rewritten: Rewrite) -> str:
    """Turn a compile error text of the engine into ``line L:C: <message>`` against the user's source.

    The engine reports ``(error <n>:<module>|<byte offset>|<length> (errormsg <n>:<text>) …)``, the most
    relevant error first (later ones are consequences, such as the enclosing block being unclosed).
    """
    match = _ERROR.search(text)
    if match is None:
        return runtime_error(text) or " ".join(text.split())[:500] or "the policy does not compile"
    offset = rewritten.byte_to_original(int(match.group(1)))
    line, col = line_col(rewritten.original, offset)
    msg = _ERRORMSG.search(text, match.end())
    message = error_message_at(text.encode("utf-8"), text, msg) if msg else "syntax error"
    return f"line {line}:{col}: {message}"


def count_expressions(query: str) -> int:
    """How many expressions a query has (separated by ``;`` or newlines outside brackets, strings, comments)."""
    masked, depth, count, current = mask(query), 0, 0, False
    for ch in masked:
        if ch in _OPENERS:
            depth += 1
        elif ch in _CLOSERS:
            depth = max(0, depth - 1)
        if ch in ";\n" and depth == 0:
            count, current = count + current, False
        elif not ch.isspace():
            current = True
    return max(1, count + current)


def error_message_at(raw: bytes, text: str, match: re.Match[str]) -> str:
    """The length-prefixed message text of an ``(errormsg <n>:<text>)`` match (lengths count bytes)."""
    size = int(match.group(1))
    start = len(text[: match.end()].encode("utf-8"))
    return raw[start : start + size].decode("utf-8", errors="replace")


def runtime_error(text: str) -> str | None:
    """The first message of an engine error text (``(error (errormsg <n>:<text>) …)``), or None."""
    match = _ERRORMSG.search(text)
    return error_message_at(text.encode("utf-8"), text, match) if match else None


def _decode_key(key: str) -> Any:
    try:
        return json.loads(key)
    except ValueError:
        return key


def normalise(value: Any, *, partial_set: bool = False) -> Any:
    """Undo the engine's object encoding of a partial set: ``{"<element JSON>": true, …}`` → a list.

    The rewrite already makes partial sets real sets (which come back as arrays); this is the safety net for the
    forms it leaves alone (``rego.v1`` modules). ``partial_set`` says the value is a whole partial set rule.
    """
    if partial_set and isinstance(value, dict) and all(v is True for v in value.values()):
        return [_decode_key(k) for k in value]
    return value


def normalise_package(value: Any, set_rules: frozenset[str]) -> Any:
    """:func:`normalise` each rule of a whole package document (``data.<package>``) that is a partial set."""
    if not isinstance(value, dict):
        return value
    return {k: normalise(v, partial_set=k in set_rules) for k, v in value.items()}
