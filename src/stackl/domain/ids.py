"""ULIDs for tasks, jobs, events and requests: sortable by time, unique across processes."""

import os
from datetime import datetime

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(moment: datetime) -> str:
    """A new ULID: 48 bits of milliseconds since the epoch, then 80 random bits, in Crockford base 32."""
    value = (int(moment.timestamp() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))
