"""Name rules: which strings may name a document, an alias, a stage, a cloud provider or a target.

Every name STACKL stores is checked against one rule of documents.md §2.2, written once here so that the
document models, the request schemas and the CLI quote the same text. Names are case-preserving and
case-sensitive: nothing is ever lower-cased. A broken rule is reported with the rule itself in the message,
because "invalid name" alone does not tell a user what to change.

Environment, location and zone names may not contain dots, so that the target name
``<environment>.<location>.<zone>`` splits back into its three parts unambiguously.
"""

import re
from dataclasses import dataclass
from enum import StrEnum


class NameKind(StrEnum):
    """What a name names; each kind has exactly one rule."""

    DOCUMENT = "document"
    """Documents of every type except those below; also agent names."""
    AGENT = "agent"
    INFRASTRUCTURE = "infrastructure"
    """Environment, location and zone names: no dots."""
    ALIAS = "alias"
    """Service aliases of a SAT or an instance request."""
    STAGE = "stage"
    CLOUD_PROVIDER = "cloud_provider"
    """Invocation keys of a functional requirement and `cloud_provider` values."""
    POLICY_TEMPLATE = "policy_template"
    """Rego identifiers: the template's `package` must equal its name."""
    TARGET = "target"
    """``<environment>.<location>.<zone>``."""


@dataclass(frozen=True)
class NameRule:
    """One rule: the pattern a name must fully match and the sentence that explains it."""

    pattern: re.Pattern[str]
    explanation: str

    @property
    def text(self) -> str:
        """The rule as quoted in error messages: the regular expression, then the explanation."""
        return f"{self.pattern.pattern} ({self.explanation})"


_DOCUMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_INFRASTRUCTURE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$")
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_POLICY_TEMPLATE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_INFRASTRUCTURE_PART = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"
_TARGET = re.compile(rf"^{_INFRASTRUCTURE_PART}\.{_INFRASTRUCTURE_PART}\.{_INFRASTRUCTURE_PART}$")

_LETTERS = "a letter or digit first, then up to"
RULES: dict[NameKind, NameRule] = {
    NameKind.DOCUMENT: NameRule(_DOCUMENT, f"{_LETTERS} 127 letters, digits, '_', '.' or '-'"),
    NameKind.AGENT: NameRule(_DOCUMENT, f"{_LETTERS} 127 letters, digits, '_', '.' or '-'"),
    NameKind.INFRASTRUCTURE: NameRule(
        _INFRASTRUCTURE, f"{_LETTERS} 127 letters, digits, '_' or '-'; no dots: dots join target names"
    ),
    NameKind.ALIAS: NameRule(_KEY, f"{_LETTERS} 63 letters, digits, '_' or '-'"),
    NameKind.STAGE: NameRule(_KEY, f"{_LETTERS} 63 letters, digits, '_' or '-'"),
    NameKind.CLOUD_PROVIDER: NameRule(_KEY, f"{_LETTERS} 63 letters, digits, '_' or '-'"),
    NameKind.POLICY_TEMPLATE: NameRule(
        _POLICY_TEMPLATE,
        "a Rego identifier: a letter or '_' first, then up to 127 letters, digits or '_'",
    ),
    NameKind.TARGET: NameRule(
        _TARGET, "<environment>.<location>.<zone>, each part an environment/location/zone name"
    ),
}

_KIND_OF_TYPE = {
    "environment": NameKind.INFRASTRUCTURE,
    "location": NameKind.INFRASTRUCTURE,
    "zone": NameKind.INFRASTRUCTURE,
    "policy_template": NameKind.POLICY_TEMPLATE,
}


def kind_for_type(doc_type: str) -> NameKind:
    """The name rule that applies to the `name` of a document of `doc_type`."""
    return _KIND_OF_TYPE.get(doc_type, NameKind.DOCUMENT)


def is_valid_name(kind: NameKind | str, value: str) -> bool:
    """Whether `value` satisfies the rule of `kind`."""
    # fullmatch, not match: "$" would also accept a trailing newline.
    return RULES[NameKind(kind)].pattern.fullmatch(value) is not None


def check_name(kind: NameKind | str, value: str) -> str | None:
    """Check `value` against the rule of `kind`.

    Args:
        kind: which rule applies (a `NameKind` or its string value).
        value: the candidate name.

    Returns:
        None when the name is valid, else the error message, which quotes the rule.
    """
    if is_valid_name(kind, value):
        return None
    return f"must match {RULES[NameKind(kind)].text}"


def split_target(name: str) -> tuple[str, str, str] | None:
    """The (environment, location, zone) of a target name, or None when it is not one."""
    if not is_valid_name(NameKind.TARGET, name):
        return None
    environment, location, zone = name.split(".")
    return environment, location, zone
