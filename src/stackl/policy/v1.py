"""Rego v0 → v1 text conversion for real OPA (the ``opa`` engine), on the compat layer's scanner.

STACKL 0.5 users wrote Rego v0 for OPA 0.x. The embedded OPA 1.x library parses v1 only (``import rego.v0`` is
refused), so a v0 module is converted as ``opa fmt --v0-v1`` would, with every line kept where it is so that
OPA's ``file:line`` errors point at the user's line:

- each rule body gets ``if`` (``p { … }`` → ``p if { … }``, ``f(x) = y { … }`` → ``f(x) = y if { … }``,
  ``else = v { … }`` → ``else = v if { … }``);
- a partial set ``p[x] { … }`` becomes ``p contains x if { … }``;
- the builtins OPA 1.x removed are provided with their OPA 0.x meaning: ``any``/``all`` (only ``true`` counts;
  helpers appended after the last line, like compat's), ``re_match`` (``regex.match``), ``set_diff`` (``a - b``).

A module with ``import rego.v1`` is already v1 and is left as it is.
"""

import re

from stackl.policy import compat

_IDENT_END = re.compile(r"[A-Za-z0-9_]")
_HELPERS = {
    "all": f"{compat.HELPER_ALL}(xs) := count([x | some x in xs; x != true]) == 0\n",
    "any": f"{compat.HELPER_ANY}(xs) := count([x | some x in xs; x == true]) > 0\n",
    "set_diff": "__stackl_set_diff(a, b) := a - b\n",
}
_RENAMES = {
    "all": compat.HELPER_ALL,
    "any": compat.HELPER_ANY,
    "re_match": "regex.match",
    "set_diff": "__stackl_set_diff",
}


def _previous_word(masked: str, i: int) -> tuple[str, int]:
    """The token that ends right before offset ``i`` (skipping blanks) and where it ends."""
    j = i
    while j > 0 and masked[j - 1] in " \t\r\n":
        j -= 1
    if j == 0:
        return "", 0
    if _IDENT_END.match(masked[j - 1]):
        k = j
        while k > 0 and _IDENT_END.match(masked[k - 1]):
            k -= 1
        return masked[k:j], j
    return masked[j - 1], j


def _body_openings(masked: str) -> list[int]:
    """Offsets of the ``{`` that open a rule body (top level), as opposed to object or set values.

    A body chained to the previous one (``p { a } { b }``) keeps no ``if`` of its own: v1 writes it
    ``p if { a } { b }``.
    """
    found, depth, body_ends = [], 0, set()
    for i, ch in enumerate(masked):
        if ch == "{" and depth == 0:
            word, end = _previous_word(masked, i)
            # A body follows a head (`]`, `)`, a name, a value, `else`); a value follows `=`, `:=`, `,`, `(`.
            if word and word not in ("=", "if", ",", "(", "[", "|", ":", "contains", "default"):
                if end - 1 in body_ends:
                    body_ends.add(_closing(masked, i))
                    continue
                found.append(i)
                body_ends.add(_closing(masked, i))
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
    return found


def _closing(masked: str, start: int) -> int:
    depth = 0
    for i in range(start, len(masked)):
        if masked[i] in "([{":
            depth += 1
        elif masked[i] in ")]}":
            depth -= 1
            if depth == 0:
                return i
    return -1


def convert(source: str) -> compat.Rewrite:
    """The v1 text OPA 1.x compiles for a v0 ``source``; offsets map back through the returned Rewrite."""
    module = compat.scan(source)
    if module.v1:
        return compat.Rewrite(source, source, ())
    masked = module.masked
    edits: list[tuple[int, int, str]] = []
    partial_bodies = set()
    for head in module.partial_sets:
        edits.append((head.open_bracket, head.open_bracket + 1, " contains "))
        edits.append((head.close_bracket, head.close_bracket + 1, " "))
        if not head.has_if:
            edits.append((head.body, head.body, "if "))
        partial_bodies.add(head.body)
    for opening in _body_openings(masked):
        if opening not in partial_bodies:
            edits.append((opening, opening, "if "))
    helpers: list[str] = []
    for name, offset in compat.calls(module):
        if name in _RENAMES and name not in module.functions:
            edits.append((offset, offset + len(name), _RENAMES[name]))
            helper = _HELPERS.get(name)
            if helper is not None and helper not in helpers:
                helpers.append(helper)
    if helpers:
        tail = "" if source.endswith("\n") else "\n"
        edits.append((len(source), len(source), tail + "".join(helpers)))
    return compat.apply(source, edits)
