from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stackl.domain import quantities


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("memory", 2, Fraction(2)),
        ("memory", 0, Fraction(0)),
        ("memory", 0.5, Fraction(1, 2)),
        ("memory", 1e3, Fraction(1000)),
        ("memory", "2", Fraction(2)),
        ("memory", "0.5", Fraction(1, 2)),
        ("memory", ".5", Fraction(1, 2)),
        ("memory", " 2 ", Fraction(2)),
        ("memory", "5 GB", Fraction(5 * 1000**3)),
        ("memory", "16B", Fraction(16)),
        ("memory", "1K", Fraction(1000)),
        ("memory", "1k", Fraction(1000)),
        ("memory", "1KB", Fraction(1000)),
        ("memory", "1kb", Fraction(1000)),
        ("memory", "1M", Fraction(1000**2)),
        ("memory", "1MB", Fraction(1000**2)),
        ("memory", "1G", Fraction(1000**3)),
        ("memory", "1g", Fraction(1000**3)),
        ("memory", "1gb", Fraction(1000**3)),
        ("disk", "1T", Fraction(1000**4)),
        ("disk", "1t", Fraction(1000**4)),
        ("disk", "1TB", Fraction(1000**4)),
        ("disk", "1P", Fraction(1000**5)),
        ("disk", "1p", Fraction(1000**5)),
        ("disk", "1PB", Fraction(1000**5)),
        ("memory", "1Ki", Fraction(1024)),
        ("memory", "1KiB", Fraction(1024)),
        ("memory", "1kib", Fraction(1024)),
        ("memory", "1Mi", Fraction(1024**2)),
        ("memory", "1mi", Fraction(1024**2)),
        ("memory", "1MiB", Fraction(1024**2)),
        ("memory", "16GiB", Fraction(17179869184)),
        ("memory", "1Gib", Fraction(1024**3)),
        ("memory", "1GI", Fraction(1024**3)),
        ("disk", "1Ti", Fraction(1024**4)),
        ("disk", "1TiB", Fraction(1024**4)),
        ("disk", "1Pi", Fraction(1024**5)),
        ("disk", "1PiB", Fraction(1024**5)),
        ("memory", "512m", Fraction(512_000_000)),
        ("cpu", "500m", Fraction(1, 2)),
        ("CPU", "500m", Fraction(1, 2)),
        ("cpus", "250m", Fraction(1, 4)),
        ("vcpu", "1500m", Fraction(3, 2)),
        ("VCpus", "1m", Fraction(1, 1000)),
        ("cores", "4000m", Fraction(4)),
        ("cpu", "2.5", Fraction(5, 2)),
    ],
)
def test_parse(key: str, value: object, expected: Fraction) -> None:
    assert quantities.parse_quantity(key, value) == expected
    assert quantities.is_valid_quantity(key, value)
    assert quantities.check_quantity(key, value) is None


@pytest.mark.parametrize(
    "value",
    [
        "-1",
        -1,
        -0.5,
        "ten",
        "5 XB",
        True,
        False,
        "true",
        "1e3",
        "1E3",
        "",
        " ",
        "1.",
        "1..2",
        "0x10",
        "+1",
        "1 2",
        "1b",
        "1kk",
        "1GiBs",
        "1i",
        None,
        [],
        {},
        float("nan"),
        float("inf"),
        "\uff11",
        "1" * 100,
    ],
)
def test_rejects(value: object) -> None:
    assert not quantities.is_valid_quantity("memory", value)
    with pytest.raises(ValueError, match=r".+"):
        quantities.parse_quantity("memory", value)


def test_lone_m_is_mega_outside_cpu_keys() -> None:
    assert quantities.parse_quantity("memory", "1m") == quantities.parse_quantity("memory", "1M")
    assert quantities.parse_quantity("cpu", "1m") == Fraction(1, 1000)
    assert quantities.parse_quantity("cpu", "1M") == Fraction(1000**2)


@pytest.mark.parametrize(
    ("key", "requirement", "capacity", "fits"),
    [
        ("memory", "16GiB", "128GiB", True),
        ("memory", "4GiB", "4GB", False),
        ("memory", "512Mi", "0.5G", False),
        ("memory", "512m", "1G", True),
        ("cpu", "500m", "1", True),
        ("cpu", "2", "4000m", True),
        ("cpu", "2.5", "2", False),
    ],
)
def test_lifecycle_examples(key: str, requirement: str, capacity: str, fits: bool) -> None:
    need, have = quantities.parse_quantity(key, requirement), quantities.parse_quantity(key, capacity)
    assert (need <= have) is fits


def test_lifecycle_example_values() -> None:
    assert quantities.parse_quantity("memory", "16GiB") == 17179869184
    assert quantities.parse_quantity("memory", "4GiB") == 4294967296
    assert quantities.parse_quantity("memory", "4GB") == 4000000000
    assert quantities.parse_quantity("memory", "512Mi") == 536870912
    assert quantities.parse_quantity("memory", "0.5G") == 500000000
    assert quantities.parse_quantity("memory", "512m") == 512000000


def test_decimal_arithmetic_is_exact() -> None:
    total = quantities.parse_quantity("cpu", 0.1) + quantities.parse_quantity("cpu", "0.2")
    assert total == quantities.parse_quantity("cpu", "0.3")


def test_error_message_says_why() -> None:
    assert "unknown unit 'XB'" in (quantities.check_quantity("memory", "5 XB") or "")
    assert "negative" in (quantities.check_quantity("memory", -1) or "")
    assert "boolean" in (quantities.check_quantity("memory", True) or "")


@given(st.integers(min_value=0, max_value=10**12), st.sampled_from(["", "K", "Mi", "GB", "gib", "t", "PiB"]))
def test_integer_quantities_scale_by_their_unit(number: int, unit: str) -> None:
    assert quantities.parse_quantity("memory", f"{number}{unit}") == number * quantities.parse_quantity(
        "memory", f"1{unit}"
    )


@given(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)))
def test_parse_raises_only_value_error(value: object) -> None:
    try:
        result = quantities.parse_quantity("memory", value)
    except ValueError:
        return
    assert result >= 0
