"""Masking of secret values: the one mask string and the rules that keep secrets out of every read.

Secrets maps are shown as ``"********"`` everywhere but in agent job payloads. A write that sends the mask back
for a key keeps the stored value, so read-modify-write round trips never destroy secrets. ``SecretMask``
hides a job's own secret values inside the text an agent sends back (log lines, outputs, error messages).
"""

import base64
import json
import re
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


class SecretMask:
    """Replaces a job's secret values (as text, JSON-escaped, base64 and line by line) with ``********``.

    The agent masks before sending (agents.md §3); the server does it again before storing or serving.
    """

    def __init__(self, secrets: Mapping[str, Any]) -> None:
        forms: set[str] = set()
        for value in secrets.values():
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            raw = text.encode()
            forms |= {
                text,
                json.dumps(text)[1:-1],
                base64.b64encode(raw).decode().rstrip("="),
                base64.urlsafe_b64encode(raw).decode().rstrip("="),
                *(line for line in text.splitlines() if line.strip()),
            }
        ordered = sorted((f for f in forms if len(f) >= MIN_MASKED), key=lambda f: (-len(f), f))
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
