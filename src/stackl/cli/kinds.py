"""The KIND words of ``get``, ``delete``, ``edit``, ``history``… and the document type each names.

STACKL 0.5 users type ``sat``, ``functional-requirement`` or ``policy-template``; API users know the type
names (``stack_application_template``); both, their plurals, and ``-``/``_`` spellings are accepted
(spec/cli.md §4), case-insensitively. One table here, so every command accepts the same words.
"""

from collections.abc import Collection

import typer

# canonical kind (as the CLI prints it) → document type (spec/documents.md §1)
KINDS: dict[str, str] = {
    "instance": "stack_instance",
    "environment": "environment",
    "location": "location",
    "zone": "zone",
    "sat": "stack_application_template",
    "sit": "stack_infrastructure_template",
    "service": "service",
    "functional-requirement": "functional_requirement",
    "policy-template": "policy_template",
    "snapshot": "snapshot",
}
_SHORT_NAMES = {"si": "instance", "stack-instance": "instance", "fr": "functional-requirement"}

# the types a configuration file may hold (apply) and that `edit` opens: no instances, no snapshots
CONFIGURATION_TYPES: tuple[str, ...] = tuple(
    t for t in KINDS.values() if t not in ("stack_instance", "snapshot")
)
ALL_TYPES: tuple[str, ...] = tuple(KINDS.values())


def _words() -> dict[str, str]:
    words: dict[str, str] = {}
    for kind, doc_type in KINDS.items():
        for word in (kind, doc_type.replace("_", "-")):
            words[word] = doc_type
            words[f"{word}s"] = doc_type
    for short, kind in _SHORT_NAMES.items():
        words[short] = words[f"{short}s"] = KINDS[kind]
    return words


WORDS = _words()  # every accepted spelling (with `-`), singular and plural → document type


def resolve(word: str, *, allowed: Collection[str] = ALL_TYPES, command: str = "this command") -> str:
    """The document type a KIND word names.

    Raises:
        typer.BadParameter: unknown word, or a kind ``command`` does not handle (exit 2, usage).
    """
    doc_type = WORDS.get(word.strip().lower().replace("_", "-"))
    if doc_type is None:
        raise typer.BadParameter(
            f"unknown kind {word!r}; use one of: {', '.join(kind_of(t) for t in allowed)}"
        )
    if doc_type not in allowed:
        choices = ", ".join(kind_of(t) for t in allowed)
        raise typer.BadParameter(f"{command} does not handle {kind_of(doc_type)}; use one of: {choices}")
    return doc_type


def kind_of(doc_type: str) -> str:
    """The CLI kind of a document type (``stack_application_template`` → ``sat``)."""
    return next((kind for kind, t in KINDS.items() if t == doc_type), doc_type)


def complete(incomplete: str) -> list[str]:
    """Shell completion of KIND: the canonical kinds starting with what was typed."""
    return [kind for kind in KINDS if kind.startswith(incomplete.lower())]
