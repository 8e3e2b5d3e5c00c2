"""A secret is masked in the encodings a tool or a script commonly prints it in (issue 15, defect 9).

Step logs hid a secret in clear and base64, but not hex-encoded, URL-encoded or JSON-escaped twice.
"""

import base64
import binascii
import json
import urllib.parse

import pytest

from stackl.domain.secrets import MASK, SecretMask, secret_forms

SECRET = 'p@ss w/rd+"é"-2024'
ENCODINGS = {
    "clear": SECRET,
    "hex": SECRET.encode().hex(),
    "HEX": SECRET.encode().hex().upper(),
    "hexdump -p style": binascii.hexlify(SECRET.encode()).decode(),
    "url": urllib.parse.quote(SECRET, safe=""),
    "url, lower-case escapes": urllib.parse.quote(SECRET, safe="").lower(),  # the secret has no capitals
    "url, + for spaces": urllib.parse.quote_plus(SECRET),
    "json": json.dumps(SECRET),
    "json, not ascii": json.dumps(SECRET, ensure_ascii=False),
    "json in json": json.dumps(json.dumps(SECRET)),
    "base64": base64.b64encode(SECRET.encode()).decode(),
    "base64url": base64.urlsafe_b64encode(SECRET.encode()).decode(),
    "base64 of user:secret (Basic auth)": base64.b64encode(b"user:" + SECRET.encode()).decode(),
    "base64 of u:secret:more": base64.b64encode(b"u:" + SECRET.encode() + b":more").decode(),
}


@pytest.mark.parametrize("encoded", list(ENCODINGS.values()), ids=list(ENCODINGS))
def test_every_common_encoding_of_a_secret_is_masked(encoded: str) -> None:
    mask = SecretMask({"db_password": SECRET})
    line = f"connecting with {encoded} now"
    masked = mask.text(line)
    assert MASK in masked
    for form in (SECRET, SECRET.encode().hex(), urllib.parse.quote(SECRET, safe="")):
        assert form not in masked


def test_ordinary_text_is_left_alone() -> None:
    mask = SecretMask({"token": SECRET})
    text = "deployed 3 replicas to production.brussels.dmz in 12.5 s"
    assert mask.text(text) == text


def test_forms_are_never_shorter_than_the_minimum() -> None:
    assert all(len(form) >= 4 for form in secret_forms("abcd"))
    assert SecretMask({"pin": "12"}).text("12 items") == "12 items"
