"""Documents read from local files for ``apply -d``, ``diff -d/-f`` and ``edit``, checked before any request.

A directory is searched recursively for ``*.yml``, ``*.yaml`` and ``*.json``, skipping names that start
with ``.`` (editor swap files, ``.git``); a YAML file may hold several documents, and a document may also be a
list of documents, so the output of ``get -o yaml|json`` applies back. Every document keeps the file (and
position) it came from, so any error, local or from the server's bulk apply, names the file at fault. YAML
timestamps stay strings: a document is JSON, and ``2025-05-01`` in a parameter is text, not a date.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stackl import errors
from stackl.cli import exits, kinds

SUFFIXES = (".yml", ".yaml", ".json")
UNSUPPORTED_TYPES = {
    "stack_instance": "stack instances are created with `stackl apply -c MANIFEST INSTANCE`",
    "snapshot": "snapshots are created with `stackl create snapshot`",
}


class _Loader(yaml.SafeLoader):
    """SafeLoader that leaves timestamps as strings."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Source:
    """Where one document came from."""

    path: Path
    position: int  # 1-based, among the documents of the file
    count: int  # documents in the file

    def label(self) -> str:
        """``zones/dmz.yml``, or ``all.yml (document 2)`` for a file of several documents."""
        return str(self.path) if self.count == 1 else f"{self.path} (document {self.position})"


def find_files(root: Path) -> list[Path]:
    """The document files under ``root`` (or ``root`` itself when it is a file), sorted, dot names skipped."""
    if root.is_file():
        return [root]
    found = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        if path.is_file() and path.suffix.lower() in SUFFIXES:
            found.append(path)
    return found


def read_text(path: Path) -> str:
    """A local file's text.

    Raises:
        exits.UsageFailure: the file cannot be read or is not UTF-8 (exit 2).
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise exits.UsageFailure(f"cannot read {path}: {exc}") from exc


def parse(text: str, *, origin: str, as_json: bool = False) -> list[Any]:
    """The documents of a YAML stream or a JSON text, lists of documents flattened; empty ones dropped.

    Raises:
        exits.UsageFailure: the text is not valid YAML or JSON (exit 2), with line and column.
    """
    try:
        values = [json.loads(text)] if as_json else list(yaml.load_all(text, Loader=_Loader))
    except json.JSONDecodeError as exc:
        raise exits.UsageFailure(
            f"{origin}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except yaml.YAMLError as exc:
        raise exits.UsageFailure(f"{origin}: invalid YAML: {exc}") from exc
    return [
        doc for value in values for doc in (value if isinstance(value, list) else [value]) if doc is not None
    ]


def load(root: Path) -> tuple[list[dict[str, Any]], list[Source]]:
    """Every document under ``root`` with its source, all checked as spec/cli.md §4.1 asks.

    Raises:
        exits.UsageFailure: no document found, or a file does not parse (exit 2).
        errors.InvalidInput: documents without a name or with an unknown or unsupported type, each named
            by file (exit 3); nothing may be applied then.
    """
    documents: list[dict[str, Any]] = []
    sources: list[Source] = []
    problems: list[errors.ErrorItem] = []
    for path in find_files(root):
        parsed = parse(read_text(path), origin=str(path), as_json=path.suffix.lower() == ".json")
        for position, doc in enumerate(parsed, start=1):
            source = Source(path, position, len(parsed))
            problems.extend({"loc": [source.label()], "msg": msg, "type": "document"} for msg in check(doc))
            if isinstance(doc, dict):
                documents.append(doc)
                sources.append(source)
    if problems:
        raise errors.InvalidInput(
            f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {root}; nothing was applied",
            errors=problems,
        )
    if not documents:
        raise exits.UsageFailure(f"no documents found in {root} (files *.yml, *.yaml, *.json)")
    return documents, sources


def check(doc: Any) -> Iterator[str]:
    """What makes a document impossible to apply: not a mapping, no name, unknown or unsupported type."""
    if not isinstance(doc, dict):
        yield f"expected a document (a mapping), found {type(doc).__name__}"
        return
    name, doc_type = doc.get("name"), doc.get("type")
    if not isinstance(name, str) or not name:
        yield "the document has no name"
    if doc_type is None:
        yield "the document has no type"
    elif doc_type in UNSUPPORTED_TYPES:
        yield f"type {doc_type!r} cannot be applied: {UNSUPPORTED_TYPES[doc_type]}"
    elif doc_type not in kinds.CONFIGURATION_TYPES:
        yield f"unknown type {doc_type!r}; expected one of {', '.join(kinds.CONFIGURATION_TYPES)}"


def relabel(exc: errors.StacklError, sources: list[Source]) -> errors.StacklError:
    """A bulk-apply error with each ``loc`` that starts with a document index rewritten to its file."""
    for item in exc.errors:
        loc = list(item.get("loc") or [])
        start = 1 if loc[:1] == ["body"] else 0
        if len(loc) > start and isinstance(loc[start], int) and 0 <= loc[start] < len(sources):
            rest = exits.format_loc(loc[start + 1 :])
            item["loc"] = [sources[loc[start]].label()]
            item["msg"] = f"{rest}: {item.get('msg', '')}" if rest else item.get("msg", "")
    return exc
