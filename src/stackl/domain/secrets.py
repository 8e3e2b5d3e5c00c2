"""Masking of secret values: the one mask string and the rules that keep secrets out of every read.

Secrets maps are shown as ``"********"`` everywhere but in agent job payloads. A write that sends the mask back
for a key keeps the stored value, so read-modify-write round trips never destroy secrets.
"""

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
