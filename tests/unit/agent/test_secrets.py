"""Secret handlers and the masker (agents.md §3, §8)."""

import base64
import json

import pytest

from stackl import errors
from stackl.agent import secrets

SECRET = "s3cr3t/value+é"


def test_plain_handler_passes_values() -> None:
    assert secrets.handle("plain", {"a": "x", "n": 3}) == {"a": "x", "n": 3}


def test_base64_handler_decodes_strings_and_adds_padding() -> None:
    encoded = base64.b64encode(b"token").decode()
    assert encoded.endswith("=")
    decoded = secrets.handle("base64", {"a": encoded, "b": encoded.rstrip("="), "n": 3, "m": {"k": "v"}})
    assert decoded == {"a": "token", "b": "token", "n": 3, "m": {"k": "v"}}


def test_base64_handler_names_the_key_of_an_invalid_value() -> None:
    with pytest.raises(errors.ExecutionError) as caught:
        secrets.handle("base64", {"db_password": "not base64 at all!"})
    assert caught.value.message == "secret db_password is not valid base64"


def test_unknown_handler_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown secret handler 'conjur'"):
        secrets.handle("conjur", {})


def test_masker_replaces_every_form() -> None:
    masker = secrets.Masker({"token": SECRET})
    raw = SECRET.encode()
    forms = [
        SECRET,
        json.dumps(SECRET)[1:-1],
        base64.b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode(),
    ]
    for form in forms:
        assert masker.mask(f"before {form} after") in ("before ******** after", "before ********= after")


def test_masker_masks_multi_line_secrets_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nAAAABBBBCCCC\n-----END KEY-----"
    masker = secrets.Masker({"stackl_private_key": key})
    assert masker.mask("line AAAABBBBCCCC here") == "line ******** here"
    assert masker.mask(key) == "********"


def test_masker_masks_non_string_values_as_json() -> None:
    masker = secrets.Masker({"pin": 123456, "conf": {"user": "admin"}})
    assert masker.mask("pin is 123456") == "pin is ********"
    assert masker.mask('conf {"user":"admin"}') == "conf ********"
    assert masker.mask_value({"port": 123456}) == ({"port": "********"}, True)


def test_short_secrets_are_not_masked_but_named() -> None:
    masker = secrets.Masker({"pin": "123", "token": "long enough"})
    assert masker.short_keys == ["pin"]
    assert masker.mask("123 and long enough") == "123 and ********"


def test_longer_secret_wins_over_a_contained_one() -> None:
    masker = secrets.Masker({"a": "abcd", "b": "abcdefgh"})
    assert masker.mask("xabcdefghx") == "x********x"


def test_mask_value_walks_json() -> None:
    masker = secrets.Masker({"token": SECRET})
    value, changed = masker.mask_value({"list": [f"a {SECRET}", 1, None], SECRET: True, "ok": "fine"})
    assert changed
    assert value == {"list": ["a ********", 1, None], "********": True, "ok": "fine"}
    assert masker.mask_value({"ok": "fine"}) == ({"ok": "fine"}, False)


def test_no_secrets_means_no_masking() -> None:
    masker = secrets.Masker({})
    assert masker.mask("anything") == "anything"
    assert masker.longest == 0
