"""The log redaction masks registered secret values in every encoding of ``secret_forms`` (issue 15: 9)."""

import base64
import urllib.parse
from typing import Any

from stackl.domain.secrets import MASK
from stackl.logs import redact, register_secret_values

SECRET = "hunter2/S3cret value"


def test_registered_values_are_masked_hex_url_and_base64_encoded() -> None:
    register_secret_values([SECRET])
    try:
        event: dict[str, Any] = {
            "event": "tool_output",
            "line": f"auth={SECRET.encode().hex()}",
            "url": f"https://db/?p={urllib.parse.quote(SECRET, safe='')}",
            "lines": [base64.b64encode(f"user:{SECRET}".encode()).decode()],
        }
        masked = redact(None, "info", event)
    finally:
        register_secret_values([])
    assert masked["line"] == f"auth={MASK}"
    assert masked["url"] == f"https://db/?p={MASK}"
    assert MASK in masked["lines"][0]
    assert SECRET.encode().hex() not in repr(masked)
