"""Masking of secret values: the one mask string and the rules that keep secrets out of every read.

Secrets maps are shown as ``"********"`` everywhere but in agent job payloads. A write that sends the mask back
for a key keeps the stored value, so read-modify-write round trips never destroy secrets. ``SecretMask``
hides a job's own secret values inside the text an agent sends back (log lines, outputs, error messages).
"""

import base64
import json
import re
import urllib.parse
from collections.abc import Mapping
from typing import Any

MASK = "********"

_SECRET_KEY = re.compile(r"(^|_)(secrets?|token|password|passwd|authorization)$|_key$", re.IGNORECASE)


def is_secret_key(key: str) -> bool:
    """Whether a log or payload key names a secret (``secrets``, ``token``, ``password``, ``*_key``…)."""
    return bool(_SECRET_KEY.search(key))


def mask_map(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value of a secrets map replaced by the mask."""
    return dict.fromkeys(values, MASK)


def keep_masked(new: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """A written secrets map where values equal to the mask keep the stored value of that key."""
    return {k: (stored[k] if v == MASK and k in stored else v) for k, v in new.items()}


MIN_MASKED = 4
_PERCENT = re.compile(r"%[0-9A-F]{2}")


def _base64_fragments(raw: bytes, encode: Any) -> set[str]:
    """The base64 characters of ``raw`` that do not depend on its neighbours, at each of the 3 alignments.

    A secret inside a longer encoded text (``user:secret`` in a Basic auth header) starts at any byte offset;
    the characters made only of the secret's own bits are the same at a given offset whatever surrounds it.
    """
    fragments = {encode(raw).decode("ascii").rstrip("=")}  # the value encoded on its own
    for offset in (0, 1, 2):
        encoded = encode(b"\0" * offset + raw).decode("ascii")
        start = -(-offset * 8 // 6)  # the first character with no bit of the padding bytes
        end = (offset + len(raw)) * 8 // 6  # the last character with no bit of what follows
        fragments.add(encoded[start:end])
    return fragments


def secret_forms(text: str) -> set[str]:
    """Every form in which a secret text may show up in output, each at least ``MIN_MASKED`` characters.

    The text itself and each of its lines; JSON-escaped (ASCII and not, and escaped twice: JSON in a JSON
    string); base64 (standard and URL-safe, alone or inside a longer encoded text); hex (both cases);
    URL-encoded (``%20`` and ``+`` for spaces, both hex cases).
    """
    raw = text.encode("utf-8")
    escaped = json.dumps(text)[1:-1]
    forms = {
        text,
        escaped,
        json.dumps(text, ensure_ascii=False)[1:-1],
        json.dumps(escaped)[1:-1],
        raw.hex(),
        raw.hex().upper(),
        *_base64_fragments(raw, base64.b64encode),
        *_base64_fragments(raw, base64.urlsafe_b64encode),
        *(line for line in text.splitlines() if line.strip()),
    }
    for quoted in (urllib.parse.quote(text, safe=""), urllib.parse.quote_plus(text, safe="")):
        forms |= {quoted, _PERCENT.sub(lambda m: m.group(0).lower(), quoted)}
    return {form for form in forms if len(form) >= MIN_MASKED}


class SecretMask:
    """Replaces a job's secret values, in every form of ``secret_forms``, with ``********``.

    The agent masks before sending (agents.md §3); the server does it again before storing or serving.
    """

    def __init__(self, secrets: Mapping[str, Any]) -> None:
        forms: set[str] = set()
        for value in secrets.values():
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            if len(text) >= MIN_MASKED:
                forms |= secret_forms(text)
        ordered = sorted(forms, key=lambda f: (-len(f), f))  # longest first: a value containing another
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def text(self, value: str) -> str:
        return self._pattern.sub(MASK, value) if self._pattern is not None else value

    def value(self, value: Any) -> Any:
        """A JSON value with every string (and key) masked."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, dict):
            return {self.text(str(k)): self.value(v) for k, v in value.items()}
        return value
