"""Request bodies: JSON or YAML, size-limited, with parse errors that say line and column.

STACKL 0.5 users write YAML; the API takes it as readily as JSON (api.md §0.1). The YAML loader is the safe one
minus implicit timestamps (documents are JSON values), and it refuses alias bombs: a document may reuse anchors,
but not expand into millions of nodes from a few bytes.
"""

import json
from typing import Any

import yaml
from fastapi import Request

from stackl import errors

JSON_TYPES = {"", "application/json", "application/merge-patch+json"}
YAML_TYPES = {"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"}
MAX_NODES = 1_000_000  # a 10 MiB body cannot legitimately hold more values than this


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps dates as strings (documents are JSON values)."""


def expanded_nodes(value: Any) -> int:
    """How many nodes ``value`` has once YAML aliases are expanded (shared sub-trees counted each time)."""
    memo: dict[int, int] = {}

    def count(node: Any) -> int:
        key = id(node)
        if key in memo:
            return memo[key]
        memo[key] = 1  # a self-referencing anchor counts once instead of recursing forever
        children: Any = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        total = 1 + sum(count(child) for child in children)
        memo[key] = total
        return total

    return count(value)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def media_type(request: Request) -> str:
    """The request's content type without parameters, lower case."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_bytes(request: Request, *, limit: int) -> bytes:
    """The raw body, refusing more than ``limit`` bytes without reading them all.

    Raises:
        PayloadTooLarge: beyond ``limit``.
    """
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
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
        Malformed: with line and column.
    """
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise _malformed(f"not UTF-8 at byte {exc.start}") from exc
    except json.JSONDecodeError as exc:
        raise _malformed(f"line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except RecursionError as exc:
        raise _malformed("nested too deeply") from exc


def parse_yaml(raw: bytes, *, many: bool = False) -> Any:
    """Parse YAML text (one document, or a list of them with ``many``).

    Raises:
        Malformed: with line and column.
    """
    try:
        text = raw.decode("utf-8")
        if many:
            value: Any = [doc for doc in yaml.load_all(text, Loader=_Loader) if doc is not None]
        else:
            value = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as exc:
        raise _malformed(f"not UTF-8 at byte {exc.start}") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark else ""
        raise _malformed(f"{where}{exc.problem or exc.context}") from exc
    except (yaml.YAMLError, RecursionError) as exc:
        raise _malformed(str(exc) or "invalid YAML") from exc
    if expanded_nodes(value) > MAX_NODES:
        raise errors.PayloadTooLarge(f"the YAML expands to more than {MAX_NODES} values (aliases)")
    return value


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
    value = parse_yaml(raw, many=many) if kind in YAML_TYPES else parse_json(raw)
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
