"""The text layer under both Rego engines: a scanner of Rego modules, the static checks, position mapping.

STACKL 0.5 ran its users' policies on OPA 0.x, in Rego v0; both engines need the source adapted before they
compile it (``regopy_rewrite`` works around regopy's differences, ``v1`` converts v0 to v1 for OPA), always with
every line kept where it was. This module holds what they share: a scan of a module (package, imports, rules,
functions, v0 partial set heads) on a copy whose strings and comments are blanked out, so that ``all`` in a string
or ``all_services`` never matches; a :class:`Rewrite` that maps an engine position back to the user's source; the
static checks of a policy template write (package, imports, builtins, entry rules); regopy's error texts; and the
normalisation of results. Everything here is pure text work: no engine is imported.
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
HELPERS = {
    "all": f"{HELPER_ALL}(xs) = r {{ r := count([x | x := xs[_]; x != true]) == 0 }}\n",
    "any": f"{HELPER_ANY}(xs) = r {{ r := count([x | x := xs[_]; x == true]) > 0 }}\n",
    "set_diff": "__stackl_set_diff(a, b) = r { r := a - b }\n",
}
# OPA 0.x's deprecated builtins the engine lacks: the call is renamed (to a helper above, or a builtin).
RENAMED = {"all": HELPER_ALL, "any": HELPER_ANY, "set_diff": "__stackl_set_diff", "re_match": "regex.match"}

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
REF = rf"{IDENT}(?:\.{IDENT})*"
_KEYWORDS = frozenset(
    {"package", "import", "default", "else", "not", "some", "every", "with", "as", "in", "if", "contains"}
)
_HEAD = re.compile(rf"(?:default\s+)?({IDENT})")
# A call: a reference then `(` on the same line (a line break ends an expression in Rego).
CALL = re.compile(rf"(?<![A-Za-z0-9_.\]\)])({REF})[ \t]*\(")
# Names followed by `(` that are not function calls: `set()` is the empty set.
CONSTRUCTORS = frozenset({"set"})
_ERROR = re.compile(r"\(error \d+:[^|\n]*\|(\d+)\|\d+")
_ERRORMSG = re.compile(r"\(errormsg (\d+):")
OPENERS, CLOSERS = "([{", ")]}"


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


def matching(masked: str, start: int) -> int:
    """Offset of the bracket closing the one at ``start``, or -1."""
    depth = 0
    for i in range(start, len(masked)):
        if masked[i] in OPENERS:
            depth += 1
        elif masked[i] in CLOSERS:
            depth -= 1
            if depth == 0:
                return i
    return -1


def statements(masked: str) -> Iterator[int]:
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
            if ch in OPENERS:
                depth += 1
            elif ch in CLOSERS:
                depth = max(0, depth - 1)


def skip_space(masked: str, i: int) -> int:
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
    for start in statements(masked):
        keyword = re.match(rf"(package|import)\s+({REF})", masked[start:])
        if keyword:
            if keyword.group(1) == "package" and package is None:
                package, package_offset = keyword.group(2), start
            elif keyword.group(1) == "import":
                imports.append((keyword.group(2), start))
            continue
        head = _HEAD.match(masked, start)
        if head is None or head.group(1) in _KEYWORDS:
            continue
        name, after = head.group(1), skip_space(masked, head.end())
        nxt = masked[after : after + 1]
        if nxt == "(":
            functions.add(name)
            continue
        rules.add(name)
        if re.match(r"contains\b", masked[after:]):
            set_rules.add(name)
        elif nxt == "[":
            close = matching(masked, after)
            if close < 0:
                continue
            body = skip_space(masked, close + 1)
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


def calls(module: Module) -> Iterator[tuple[str, int]]:
    """Every call in the module's code (name, offset), strings and comments excluded."""
    for match in CALL.finditer(module.masked):
        yield match.group(1), match.start(1)


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
        if call in module.functions or call in _KEYWORDS or call in CONSTRUCTORS or call.startswith("data."):
            continue
        if call in reported:
            continue
        if (
            call in refused
            or (refused_prefixes and call.startswith(refused_prefixes))
            or (module.v1 and call in HELPERS)
        ):
            found.append(Problem(offset, f"builtin {call} is not available in this engine"))
        elif call in RENAMED or call in EXTRA_CALLABLES or is_builtin is None or is_builtin(call):
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
        if ch in OPENERS:
            depth += 1
        elif ch in CLOSERS:
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
