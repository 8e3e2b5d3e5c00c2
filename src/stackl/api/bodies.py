"""Request bodies: JSON or YAML, size-limited, with parse errors that say line and column.

STACKL 0.5 users write YAML; the API takes it as readily as JSON (api.md §0.1). What a hostile body could do
to the server is bounded here, in this order:

- **size**: the ASGI layer (``api.limits``) refuses a body beyond ``server.max_body_bytes`` before anything
  reads it; ``read_bytes`` only collects what that layer let through.
- **time**: YAML is parsed by libyaml (``yaml.CSafeLoader``; the pure-Python loader only when PyYAML was built
  without it) on a small thread pool of its own, never on the event loop, and only once per request: the
  access check and the route share the parse (``request.state``), which happens after authentication.
- **expansion**: anchors may be reused, but a body that expands into more than ``MAX_NODES`` values (a "billion
  laughs" alias bomb) is refused; the count is linear in the distinct nodes, so the bomb is never expanded.
- **numbers**: an integer literal longer than ``MAX_INT_DIGITS`` digits (Python cannot even print it) and a
  float that overflows to infinity are refused naming the field, in JSON and YAML alike.

The loader is the safe one minus implicit timestamps (documents are JSON values).
"""

import asyncio
import json
import math
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import yaml
from fastapi import Request

from stackl import errors

JSON_TYPES = {"", "application/json", "application/merge-patch+json"}
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
MAX_NODES = 1_000_000  # a 10 MiB body cannot legitimately hold more values than this
MAX_INT_DIGITS = 4300  # Python's own limit for int <-> text (sys.get_int_max_str_digits): beyond, a 500
MAX_INT_BITS = int(MAX_INT_DIGITS * math.log2(10))  # the same bound for hex, octal and base-60 integers
YAML_THREADS = 2  # YAML parses run at most this many at once, off the event loop
HAS_LIBYAML: bool = bool(getattr(yaml, "__with_libyaml__", False)) and hasattr(yaml, "CSafeLoader")
_BaseLoader: type[yaml.SafeLoader] = yaml.CSafeLoader if HAS_LIBYAML else yaml.SafeLoader  # type: ignore[assignment]


class HugeInt:
    """Stands in for an integer literal too long to convert: found and named after the parse."""

    __slots__ = ("digits",)

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _int_or_marker(text: str) -> int | HugeInt:
    digits = len(text.lstrip("+-").replace("_", ""))
    return HugeInt(digits) if digits > MAX_INT_DIGITS else int(text)


class _Loader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader (libyaml's when available) that keeps dates as strings and refuses huge integers."""

    def construct_yaml_int(self, node: yaml.ScalarNode) -> Any:
        digits = str(node.value).lstrip("+-").replace("_", "")
        if len(digits) > MAX_INT_DIGITS and digits.isdigit() and not digits.startswith("0"):
            return HugeInt(len(digits))  # decimal: int() of it would raise ValueError
        result = super().construct_yaml_int(node)  # hex, octal and base 60 convert without that limit
        if isinstance(result, int) and result.bit_length() > MAX_INT_BITS:
            return HugeInt(MAX_INT_DIGITS + 1)
        return result


_Loader.add_constructor("tag:yaml.org,2002:int", _Loader.construct_yaml_int)
_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _yaml_executor() -> ThreadPoolExecutor:
    """The YAML parsing threads, created at first use (nothing is built at import time)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=YAML_THREADS, thread_name_prefix="stackl-yaml")
        return _executor


def _children(node: Any) -> Iterator[tuple[Any, Any]]:
    if isinstance(node, dict):
        yield from node.items()
    elif isinstance(node, list):
        yield from enumerate(node)


def expanded_nodes(value: Any) -> int:
    """How many nodes ``value`` has once YAML aliases are expanded (shared sub-trees counted each time).

    Linear in the distinct nodes (each container is visited once) and iterative (libyaml allows 1,000 levels
    of nesting, more than Python's recursion limit).
    """
    memo: dict[int, int] = {}
    stack: list[tuple[Any, bool]] = [(value, False)]
    while stack:
        node, done = stack.pop()
        if not isinstance(node, dict | list):
            continue
        key = id(node)
        if done:
            memo[key] = 1 + sum(memo.get(id(c), 1) for _, c in _children(node))
        elif key not in memo:
            memo[key] = 1  # a self-referencing anchor counts once instead of looping forever
            stack.append((node, True))
            stack.extend((child, False) for _, child in _children(node))
    return memo.get(id(value), 1)


def _bad_value(value: Any) -> tuple[list[Any], str] | None:
    """The location and problem of the first value JSON cannot hold (huge integer, infinite float)."""
    seen: set[int] = set()
    stack: list[tuple[Any, list[Any]]] = [(value, [])]
    while stack:
        node, path = stack.pop()
        if isinstance(node, HugeInt):
            return path, f"integer with {node.digits} digits: at most {MAX_INT_DIGITS} are allowed"
        if isinstance(node, float) and not math.isfinite(node):
            return path, "number out of range (not a finite number)"
        if isinstance(node, dict | list) and id(node) not in seen:
            seen.add(id(node))
            stack.extend((child, [*path, key]) for key, child in reversed(list(_children(node))))
    return None


def _check_values(value: Any) -> None:
    found = _bad_value(value)
    if found is not None:
        path, msg = found
        where = ".".join(str(p) for p in path) or "body"
        raise errors.Malformed(
            f"{where}: {msg}", errors=[{"loc": ["body", *path], "msg": msg, "type": "number_too_large"}]
        )


def media_type(request: Request) -> str:
    """The request's content type without parameters, lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def declared_length(value: str) -> int | None:
    """A ``Content-Length`` value as a number, or None when it is not one (never a 5,000-digit int())."""
    text = value.strip()
    if not (text.isascii() and text.isdigit()):
        return None
    return int(text) if len(text) <= 19 else 2**63


async def read_bytes(request: Request, *, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them all.

    The ASGI layer (``api.limits``) has already refused bodies beyond ``server.max_body_bytes``, the same
    setting every caller passes as ``limit``; the check here keeps a smaller per-route limit honest.

    Raises:
        PayloadTooLarge: beyond ``limit``.
    """
    declared = declared_length(request.headers.get("content-length", ""))
    if declared is not None and declared > limit:
        raise errors.PayloadTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise errors.PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _malformed(msg: str) -> errors.Malformed:
    return errors.Malformed(
        f"request body does not parse: {msg}", errors=[{"loc": ["body"], "msg": msg, "type": "malformed"}]
    )


def parse_json(raw: bytes) -> Any:
    """Parse JSON text.

    Raises:
        Malformed: with line and column, or naming the field of a number too large.
    """
    try:
        value = json.loads(raw.decode("utf-8"), parse_int=_int_or_marker)
    except UnicodeDecodeError as exc:
        raise _malformed(f"not UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise _malformed(f"line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except (RecursionError, ValueError) as exc:
        raise _malformed("nested too deeply" if isinstance(exc, RecursionError) else str(exc)) from exc
    _check_values(value)
    return value


def _yaml_documents(raw: bytes) -> list[Any]:
    """Every document of a YAML stream (empty ones as None), checked for size and numbers.

    Raises:
        Malformed: with line and column; PayloadTooLarge: an alias bomb.
    """
    try:
        documents = list(yaml.load_all(raw.decode("utf-8"), Loader=_Loader))
    except UnicodeDecodeError as exc:
        raise _malformed(f"not UTF-8 at byte {exc.start}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise _malformed(f"{where}{exc.problem or exc.context}") from exc
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise _malformed(str(exc) or "invalid YAML") from exc
    if expanded_nodes(documents) > MAX_NODES:
        raise errors.PayloadTooLarge(f"the YAML expands to more than {MAX_NODES} values (aliases)")
    _check_values(documents if len(documents) != 1 else documents[0])
    return documents


def _select(documents: list[Any], *, many: bool) -> Any:
    """All non-empty documents (``many``), else the one document of the stream (None when empty)."""
    if many:
        return [doc for doc in documents if doc is not None]
    if len(documents) > 1:
        raise _malformed(f"expected one YAML document, found {len(documents)}")
    return documents[0] if documents else None


def parse_yaml(raw: bytes, *, many: bool = False) -> Any:
    """Parse YAML text (one document, or a list of them with ``many``) in the calling thread.

    Raises:
        Malformed: with line and column; PayloadTooLarge: an alias bomb.
    """
    return _select(_yaml_documents(raw), many=many)


_PARSED = "stackl_yaml_documents"  # request.state: (the bytes parsed, their documents or the error)


async def parse_yaml_body(request: Request, raw: bytes, *, many: bool = False) -> Any:
    """Parse a request's YAML body off the event loop, once: the access check and the route share it.

    Raises:
        Malformed: with line and column; PayloadTooLarge: an alias bomb.
    """
    cached = getattr(request.state, _PARSED, None)
    if cached is None or (cached[0] is not raw and cached[0] != raw):
        loop = asyncio.get_running_loop()
        try:
            outcome: list[Any] | errors.StacklError = await loop.run_in_executor(
                _yaml_executor(), _yaml_documents, raw
            )
        except errors.StacklError as exc:
            outcome = exc
        cached = (raw, outcome)
        setattr(request.state, _PARSED, cached)
    if isinstance(cached[1], errors.StacklError):
        raise cached[1]
    return _select(cached[1], many=many)


async def read_document(request: Request, *, limit: int, many: bool = False, optional: bool = False) -> Any:
    """Read and parse a JSON or YAML request body.

    Args:
        request: the request.
        limit: maximum body size in bytes.
        many: YAML may hold several documents (bulk apply): always returns a list then.
        optional: an empty body is allowed and gives None.

    Raises:
        PayloadTooLarge, UnsupportedMediaType, Malformed.
    """
    kind = media_type(request)
    if kind not in JSON_TYPES and kind not in YAML_TYPES:
        raise errors.UnsupportedMediaType(f"content type {kind!r} is not supported: send JSON or YAML")
    raw = await read_bytes(request, limit=limit)
    if not raw.strip():
        if optional:
            return None
        raise _malformed("the body is empty")
    value = await parse_yaml_body(request, raw, many=many) if kind in YAML_TYPES else parse_json(raw)
    check_json_value(value)
    if many and kind not in YAML_TYPES and isinstance(value, dict):
        return [value]
    return value


def check_json_value(value: Any) -> None:
    """Refuse what JSON cannot store: NaN and infinities (Python's json accepts them), YAML bytes and sets.

    Raises:
        Malformed: the body holds such a value.
    """
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise _malformed(f"the body is not a JSON value ({exc})") from None


def check_document_size(doc: Any, *, limit: int) -> None:
    """Refuse one document larger than ``limit`` bytes of JSON.

    Raises:
        PayloadTooLarge: it is.
    """
    try:
        size = len(json.dumps(doc, ensure_ascii=False).encode())
    except (ValueError, RecursionError) as exc:  # circular YAML anchors
        raise _malformed("the document is not a JSON value") from exc
    if size > limit:
        raise errors.PayloadTooLarge(f"one document may hold at most {limit} bytes of JSON")
