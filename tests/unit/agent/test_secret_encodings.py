"""The agent masks a job's secrets in hex, URL-encoded and nested JSON output too (issue 15, defect 9)."""

import json
import urllib.parse

from stackl.agent import secrets

SECRET = "s3cr3t/value+é"


def test_hex_url_and_double_json_forms_are_masked_before_a_line_is_sent() -> None:
    masker = secrets.Masker({"token": SECRET})
    for form in (
        SECRET.encode().hex(),
        SECRET.encode().hex().upper(),
        urllib.parse.quote(SECRET, safe=""),
        urllib.parse.quote_plus(SECRET),
        json.dumps(json.dumps(SECRET)[1:-1])[1:-1],  # JSON text inside a JSON string
    ):
        assert masker.mask(f"value={form};") == f"value={secrets.MASK};", form
