"""Resource quantities: ``2``, ``0.5``, ``500m``, ``16GiB``, ``1TB``, parsed to exact numbers.

Resources offered by environments, locations and zones and required by services are compared as numbers
(lifecycle.md §3.2). The comparison must be exact, so quantities parse to `fractions.Fraction`: ``0.1`` +
``0.2`` is exactly ``0.3``, and ``512Mi`` against ``0.5G`` never depends on float rounding.

Syntax: optional spaces, a non-negative decimal number (``2``, ``0.5``, ``.5``), optional spaces, an optional
unit; or a JSON number. Decimal units are powers of 1000, binary units (``Ki`` … ``PiB``) powers of 1024. A
lone lower-case ``m`` is milli (0.001) for CPU keys and mega (1000²) for any other key, as STACKL 0.5 read it.
Two- and three-letter units match in any case; one-letter units only in the cases listed. Exponents
(``1e3``), signs, booleans and unknown units are rejected, so a typo is a 422 at write time rather than a
silently failing placement later.
"""

import math
import re
from decimal import Decimal
from fractions import Fraction

CPU_KEYS = frozenset({"cpu", "cpus", "vcpu", "vcpus", "cores"})
"""Resource keys (compared case-insensitively) on which a lone ``m`` means milli."""

_KILO, _KIBI = 1000, 1024

_ONE_LETTER: dict[str, int] = {
    "": 1,
    "B": 1,
    "K": _KILO,
    "k": _KILO,
    "M": _KILO**2,
    "G": _KILO**3,
    "g": _KILO**3,
    "T": _KILO**4,
    "t": _KILO**4,
    "P": _KILO**5,
    "p": _KILO**5,
}
_PREFIX_POWER = {"k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
# Two- and three-letter units, keyed in lower case because they match in any case.
_MULTI_LETTER: dict[str, int] = {
    **{f"{p}b": _KILO**n for p, n in _PREFIX_POWER.items()},
    **{f"{p}i": _KIBI**n for p, n in _PREFIX_POWER.items()},
    **{f"{p}ib": _KIBI**n for p, n in _PREFIX_POWER.items()},
}

_SYNTAX = re.compile(r"\s*(?P<number>[0-9]+(?:\.[0-9]+)?|\.[0-9]+)\s*(?P<unit>[A-Za-z]*)\s*")
_MAX_LENGTH = 64
"""Longer strings are no quantity anyone means; refusing them early keeps parsing cheap."""

UNITS_HELP = "B, K/KB, M/MB, G/GB, T/TB, P/PB, Ki/KiB … Pi/PiB, m (milli for cpu, mega otherwise)"


def is_cpu_key(key: str) -> bool:
    """Whether `key` names a CPU resource, on which a lone ``m`` means milli."""
    return key.lower() in CPU_KEYS


def _unit_factor(unit: str, key: str) -> Fraction:
    if unit == "m":
        return Fraction(1, 1000) if is_cpu_key(key) else Fraction(_KILO**2)
    if unit in _ONE_LETTER:
        return Fraction(_ONE_LETTER[unit])
    if len(unit) in (2, 3) and unit.lower() in _MULTI_LETTER:
        return Fraction(_MULTI_LETTER[unit.lower()])
    raise ValueError(f"unknown unit {unit!r}; units: {UNITS_HELP}")


def _from_number(value: int | float) -> Fraction:
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError("must not be negative")
    # repr() is the shortest text that round-trips, so 0.1 becomes exactly 1/10.
    return Fraction(value) if isinstance(value, int) else Fraction(Decimal(repr(value)))


def parse_quantity(key: str, value: object) -> Fraction:
    """Parse the quantity `value` of the resource `key` to an exact number.

    Args:
        key: the resource name (``memory``, ``cpu``…); it decides what a lone ``m`` means.
        value: a JSON number or a string such as ``"500m"``, ``"16GiB"``, ``"0.5 G"``.

    Returns:
        The quantity in base units (bytes, cores, or whatever the key counts).

    Raises:
        ValueError: the value is not a quantity; the message says why.
    """
    if isinstance(value, bool):
        raise ValueError("must be a number or a string such as 500m or 16GiB, not a boolean")
    if isinstance(value, int | float):
        return _from_number(value)
    if not isinstance(value, str):
        raise ValueError("must be a number or a string such as 500m or 16GiB")
    match = _SYNTAX.fullmatch(value) if len(value) <= _MAX_LENGTH else None
    if match is None:
        raise ValueError(f"{value!r} is not a quantity: a non-negative decimal number and an optional unit")
    try:
        return Fraction(match["number"]) * _unit_factor(match["unit"], key)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a quantity: {exc}") from None


def is_valid_quantity(key: str, value: object) -> bool:
    """Whether `value` parses as a quantity of the resource `key`."""
    try:
        parse_quantity(key, value)
    except ValueError:
        return False
    return True


def check_quantity(key: str, value: object) -> str | None:
    """None when `value` is a valid quantity of `key`, else the reason it is not."""
    try:
        parse_quantity(key, value)
    except ValueError as exc:
        return str(exc)
    return None
