"""Secret handlers and the masker that keeps a job's secret values out of everything an agent sends back.

A job carries its secrets in clear (agents.md §2). The *handler* turns the stored values into what the tool
sees (§8: `plain` passes them, `base64` decodes them, as STACKL 0.5 did; an object such as the `vault`
handler (`vault.py`) fetches them from a secret store when the job runs). The *masker* replaces every secret
value of the job in text before anything is emitted (§3): the value itself and each line of a multi-line
value, its JSON-escaped, base64 (standard and URL-safe), hex and URL-encoded forms (``domain.secrets``).
Values shorter than `MIN_MASKED_LENGTH` characters cannot be masked without garbling ordinary output;
`short_keys` names them so the caller can warn.
"""

import base64
import binascii
import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from stackl import errors
from stackl.domain.secrets import secret_forms

MASK = "********"
MIN_MASKED_LENGTH = 4  # characters; shorter values would mask ordinary words and digits
HANDLERS = ("plain", "base64")
STORE_HANDLERS = ("vault",)  # need their own options (--vault-*): built by the agent command, not by name


class SecretHandler(Protocol):
    """A handler that reads the job's secrets from a secret store when the job runs (e.g. `vault.py`)."""

    name: str

    async def resolve(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """The secrets as the tool sees them; raises ExecutionError naming the key, never a value."""
        ...


Handler = str | SecretHandler


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return dict(values)


def _base64(values: Mapping[str, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in values.items():
        if not isinstance(value, str):
            decoded[key] = value  # non-string values pass unchanged (agents.md §8)
            continue
        text = "".join(value.split())
        try:
            raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
            decoded[key] = raw.decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise errors.ExecutionError(f"secret {key} is not valid base64") from exc
    return decoded


_HANDLERS: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {"plain": _plain, "base64": _base64}


def handle(handler: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """The secrets as the tool sees them after `handler` (``plain`` or ``base64``).

    Raises:
        ExecutionError: a value cannot be decoded; the message names the key, never the value.
        ValueError: `handler` is unknown (the agent refuses to start with it).
    """
    try:
        apply = _HANDLERS[handler]
    except KeyError:
        if handler in STORE_HANDLERS:
            raise ValueError(f"the {handler} secret handler needs its --{handler}-* options") from None
        handlers = ", ".join((*HANDLERS, *STORE_HANDLERS))
        raise ValueError(f"unknown secret handler {handler!r}; handlers: {handlers}") from None
    return apply(values)


def check(handler: Handler) -> None:
    """Refuse an unknown handler name when an executor is built (the agent then refuses to start).

    Raises:
        ValueError: `handler` is a name that is neither ``plain`` nor ``base64``.
    """
    if isinstance(handler, str):
        handle(handler, {})


async def apply(handler: Handler, values: Mapping[str, Any]) -> dict[str, Any]:
    """The secrets as the tool sees them: by name (`handle`) or through a store handler's `resolve`.

    Raises:
        ExecutionError: a value cannot be decoded or fetched; the message names the key, never the value.
    """
    if isinstance(handler, str):
        return handle(handler, values)
    return await handler.resolve(values)


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _forms(text: str) -> set[str]:
    """Every form of one secret text that may show up in output: the server's list (hex, URL, JSON, base64…)."""
    return secret_forms(text)


class Masker:
    """Replaces a job's secret values in text and in JSON values.

    Args:
        secrets: one or more secrets maps (the payload's, and the handler's result); values of every type
            count, non-strings as their compact JSON text.
    """

    def __init__(self, *secrets: Mapping[str, Any]) -> None:
        needles: set[str] = set()
        short: set[str] = set()
        for values in secrets:
            for key, value in values.items():
                text = _as_text(value)
                if len(text) < MIN_MASKED_LENGTH:
                    if text:
                        short.add(key)
                    continue
                needles |= _forms(text)
        self.short_keys = sorted(short)
        # Longest first, so a value that contains another value is replaced whole.
        ordered = sorted(needles, key=lambda needle: (-len(needle), needle))
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        self.longest = len(ordered[0]) if ordered else 0

    def mask(self, text: str) -> str:
        """`text` with every secret form replaced by ``********``."""
        if self._pattern is None:
            return text
        return self._pattern.sub(MASK, text)

    def mask_value(self, value: Any) -> tuple[Any, bool]:
        """A JSON value with secrets masked in every string (keys included), and whether anything changed."""
        if isinstance(value, str):
            masked = self.mask(value)
            return masked, masked != value
        if isinstance(value, list):
            items = [self.mask_value(item) for item in value]
            return [item for item, _ in items], any(changed for _, changed in items)
        if isinstance(value, dict):
            changed = False
            result: dict[str, Any] = {}
            for key, item in value.items():
                new_key, key_changed = self.mask_value(key) if isinstance(key, str) else (key, False)
                new_item, item_changed = self.mask_value(item)
                result[new_key] = new_item
                changed = changed or key_changed or item_changed
            return result, changed
        if isinstance(value, int | float) and not isinstance(value, bool) and self._pattern is not None:
            # A number equal to a secret (a PIN, a port kept secret) is masked as text.
            text = json.dumps(value)
            if self._pattern.fullmatch(text):
                return MASK, True
        return value, False
