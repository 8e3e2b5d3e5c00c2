"""Source rewrites that make a STACKL 0.5 (Rego v0) module evaluate in regopy as OPA 0.x did.

regopy 1.5.2 parses v0 but differs from OPA in ways that change results or refuse valid policies: partial set
rules come back as objects, ``all``/``any``/``re_match``/``set_diff`` are missing, a ``_`` reference as a call
argument is refused, ``v = f(…)`` in a comprehension body is "a cycle", a comprehension head does not see the
rule's iteration variables, and a line starting with ``(`` continues the previous line as a call. Each is fixed
in the source, on the same line, and the :class:`compat.Rewrite` maps every engine position back to the user's
source. The scanner, the static checks and the error mapping live in :mod:`stackl.policy.compat`.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass

from stackl.policy import compat
from stackl.policy.compat import IDENT, REF, Module, Rewrite

# `v =` or `v :=` ending the text before a call: the call is the value of an assignment statement.
_ASSIGNED = re.compile(rf"(?:^|(?<=[{{;\n|]))[ \t]*({IDENT})[ \t]*(:?=)[ \t]*$")
HEAD_VALUE = "__stackl_h"
# A whole call argument that is a reference iterating with `_` (``input.prefixes[_]``, ``xs[_].name``).
_WILDCARD_ARG = re.compile(rf"\s*({IDENT}(?:\.{IDENT}|\[[^\[\]]*\])*\[_\](?:\.{IDENT}|\[[^\[\]]*\])*)\s*")
HOISTED = "__stackl_w"


def _arguments(masked: str, open_paren: int, close_paren: int) -> list[tuple[int, int]]:
    """(start, end) of each top-level argument between a call's parentheses."""
    spans, depth, start = [], 0, open_paren + 1
    for i in range(open_paren + 1, close_paren):
        ch = masked[i]
        if ch in compat.OPENERS:
            depth += 1
        elif ch in compat.CLOSERS:
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
    for match in compat.CALL.finditer(masked):
        start, open_paren = match.start(1), match.end() - 1
        close_paren = compat.matching(masked, open_paren)
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
    starts = list(compat.statements(masked))
    for i, ch in enumerate(masked):
        if ch not in "[{":
            continue
        close = compat.matching(masked, i)
        if close < 0:
            continue
        depth = 0
        for j in range(i + 1, close):
            if masked[j] in compat.OPENERS:
                depth += 1
            elif masked[j] in compat.CLOSERS:
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
        if ch in compat.OPENERS:
            depth += 1
        elif ch in compat.CLOSERS:
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
            found = re.match(rf"({IDENT})[ \t]*=(?!=)[ \t]*({REF})[ \t]*\(", masked[stmt_start:stmt_end])
            if found is None or found.group(1) in names or found.group(1) == "_":
                continue
            open_paren = stmt_start + found.end() - 1
            if compat.matching(masked, open_paren) != stmt_end - 1:
                continue  # the value is more than one call
            seen = before + masked[comp.bar + 1 : stmt_start]
            if re.search(rf"(?<![A-Za-z0-9_.]){found.group(1)}(?![A-Za-z0-9_])", seen):
                continue  # bound before: `=` compares
            eq = stmt_start + found.start(2) - 1
            while masked[eq] != "=":
                eq -= 1
            edits.append((eq, eq + 1, ":="))
        head = masked[comp.open_bracket + 1 : comp.bar]
        call = re.fullmatch(rf"\s*({REF})[ \t]*\(.*?\s*", head, re.DOTALL)
        if call is None or "\n" in head or call.group(1) in compat.CONSTRUCTORS:
            continue
        head_start = comp.open_bracket + 1 + (len(head) - len(head.lstrip()))
        head_end = comp.bar - (len(head) - len(head.rstrip()))
        if compat.matching(masked, masked.index("(", head_start)) != head_end - 1:
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


def _line_break_edits(masked: str) -> list[tuple[int, int, str]]:
    """``;`` after a body line whose next line starts with ``(``, which the engine reads as a call.

    regopy 1.5.2 parses ``input.parameters.minimum`` followed by a line ``(a - b) >= c`` as a call of the
    reference; OPA ends the expression at the line break. The ``;`` keeps OPA's meaning on the same line.
    """
    edits: list[tuple[int, int, str]] = []
    stack: list[str] = []
    last_code = -1
    for i, ch in enumerate(masked):
        if ch in compat.OPENERS:
            if ch == "(" and stack and stack[-1] == "{" and last_code >= 0 and "\n" in masked[last_code:i]:
                previous = masked[last_code]
                if previous.isalnum() or previous in '_])}"':
                    edits.append((last_code + 1, last_code + 1, ";"))
            stack.append(ch)
        elif ch in compat.CLOSERS and stack:
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
    for name, offset in compat.calls(module):
        if name in compat.RENAMED and name not in module.functions:
            edits.append((offset, offset + len(name), compat.RENAMED[name]))
            if name in compat.HELPERS and compat.HELPERS[name] not in helpers:
                helpers.append(compat.HELPERS[name])
    if helpers:
        tail = "" if source.endswith("\n") else "\n"
        edits.append((len(source), len(source), tail + "".join(helpers)))
    return compat.apply(source, edits, moves)
