"""SecretBox: the secret values of documents encrypted at rest.

The key is the server's secret key (``secrets.key``, else the generated ``<data_dir>/secret.key``, mode 0600;
``bootstrap.hash_key``). It is never used directly: HKDF-SHA256 derives one subkey per purpose, so the
encryption key is independent from the key of the input-hash HMAC (``info`` differs).

Each value of a secrets map (the places ``domain.documents.mask_secrets`` masks: environment/location/zone/
FR/service ``secrets``, stack instance ``instance_secrets``, ``service_secrets[alias]`` and each replica's
``secrets``, and the same inside a snapshot's copy) is stored as the string ``stackl:enc:v1:<base64url>`` of
``nonce (12 bytes) || AES-256-GCM(JSON of the value)``. Keys stay readable (the API shows them, masked), values
do not. A value at a secret place that is not in this form (written before encryption existed) reads as it is
and is encrypted at the next write.
"""

import base64
import binascii
import json
import os
from collections.abc import Callable
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from stackl import errors
from stackl.domain import documents
from stackl.domain.secrets import MASK

PREFIX = "stackl:enc:v1:"
NONCE_BYTES = 12
_AAD = b"stackl secret value v1"
_INFO = b"stackl/secrets-at-rest/aes-256-gcm/v1"
# Only these types carry secrets maps (documents.md §2.5); any other body is passed through untouched.
SECRET_TYPES = frozenset(
    {"environment", "location", "zone", "functional_requirement", "service", "stack_instance", "snapshot"}
)


def derive_key(master: bytes, info: bytes) -> bytes:
    """A 32-byte subkey of ``master`` for one purpose (HKDF-SHA256, no salt: the master is random)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


class SecretBox:
    """Encrypts and decrypts secret values, and the secret values inside document bodies."""

    def __init__(self, master_key: bytes) -> None:
        if not master_key:
            raise ValueError("the secret key is empty")
        self._aead = AESGCM(derive_key(master_key, _INFO))

    # --- one value ----------------------------------------------------------------------------------------
    def encrypt(self, value: Any) -> str:
        """The stored form of one JSON value."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(value, separators=(",", ":")).encode(), _AAD)
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode().rstrip("=")

    def decrypt(self, stored: Any) -> Any:
        """The JSON value of a stored form; anything not in the stored form is returned as it is.

        Raises:
            StoreUnavailable: the value was encrypted with another key, or is damaged.
        """
        if not is_encrypted(stored):
            return stored
        text = stored[len(PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], _AAD)
        except (InvalidTag, binascii.Error, ValueError) as exc:
            raise errors.StoreUnavailable(
                "a stored secret cannot be decrypted: the server's secret key (secrets.key or "
                "<data_dir>/secret.key) is not the one it was written with"
            ) from exc
        return json.loads(plain)

    # --- document bodies ----------------------------------------------------------------------------------
    def seal(self, body: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``body`` whose secret values are encrypted (the body itself when it holds none)."""
        return _map_secrets(body, lambda v: v if is_encrypted(v) else self.encrypt(v))

    def unseal(self, body: dict[str, Any]) -> dict[str, Any]:
        """A copy of ``body`` whose encrypted secret values are decrypted (the body itself when none are)."""
        return _map_secrets(body, self.decrypt)


def is_encrypted(value: Any) -> bool:
    """Whether a stored value is in the encrypted form."""
    return isinstance(value, str) and value.startswith(PREFIX)


def _map_secrets(body: dict[str, Any], fn: Callable[[Any], Any]) -> dict[str, Any]:
    """``body`` with ``fn`` applied to each secret value, found where ``mask_secrets`` puts the mask.

    ``mask_secrets`` is the one definition of where secrets are; walking its result next to the body finds
    each masked value without a second list of paths. A value equal to the mask is no secret and stays.
    """
    if not isinstance(body, dict) or body.get("type") not in SECRET_TYPES:
        return body
    masked = documents.mask_secrets(body)
    changed, result = _walk(body, masked, fn)
    return result if changed else body


def _walk(value: Any, masked: Any, fn: Callable[[Any], Any]) -> tuple[bool, Any]:
    if isinstance(value, dict) and isinstance(masked, dict):
        out: dict[str, Any] = {}
        changed = False
        for key, item in value.items():
            shown = masked.get(key)
            if shown == MASK and item != MASK:
                new = fn(item)
                changed = changed or new is not item
                out[key] = new
            else:
                sub_changed, out[key] = _walk(item, shown, fn)
                changed = changed or sub_changed
        return changed, (out if changed else value)
    if isinstance(value, list) and isinstance(masked, list) and len(value) == len(masked):
        items = [_walk(v, m, fn) for v, m in zip(value, masked, strict=True)]
        if any(c for c, _ in items):
            return True, [v for _, v in items]
        return False, value
    return False, value
