"""The indexed native placement equals a naive services x targets reference written here."""

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.unit.placement.builders import request, service, target

from stackl import errors
from stackl.domain.quantities import parse_quantity
from stackl.placement.engine import place
from stackl.policy.static import StaticPolicyEngine

QUANTITIES = st.sampled_from([1, 2, "2", 2.0, "500m", "4GiB", "4GB", "1Ti", "x", True, 0])
TAGS = st.sampled_from(["eu", "us", "all", 1, True, "1", "true"])
PACKAGES = st.lists(st.sampled_from(["vm", "os", "app"]), max_size=3, unique=True)


def _naive(
    services: list[tuple[dict[str, Any], list[str]]], targets: dict[str, dict[str, Any]], tags: dict[str, Any]
) -> dict[str, list[str]]:
    def text(value: Any) -> str:
        return (
            value
            if isinstance(value, str)
            else ("true" if value is True else "false" if value is False else str(value))
        )

    def quantity(key: str, value: Any) -> Any:
        try:
            return parse_quantity(key, value)
        except ValueError:
            return None

    result = {}
    for i, (needs, frs) in enumerate(services):
        fits = []
        for name, cap in targets.items():
            resources_ok = all(
                key not in cap["resources"]
                or quantity(key, need) is None
                or quantity(key, cap["resources"][key]) is None
                or quantity(key, need) <= quantity(key, cap["resources"][key])
                for key, need in needs.items()
            )
            tags_ok = all(
                text(v) == "all" or t not in cap["tags"] or text(cap["tags"][t]) == text(v)
                for t, v in tags.items()
            )
            packages_ok = not cap["packages"] or all(fr in cap["packages"] for fr in frs)
            if resources_ok and tags_ok and packages_ok:
                fits.append(name)
        result[f"s{i}"] = fits
    return result


@settings(max_examples=60, deadline=None)
@given(
    services=st.lists(
        st.tuples(st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITIES), PACKAGES),
        min_size=1,
        max_size=4,
    ),
    targets=st.lists(
        st.tuples(
            st.dictionaries(st.sampled_from(["cpu", "memory"]), QUANTITIES),
            st.dictionaries(st.sampled_from(["r", "z"]), TAGS),
            PACKAGES,
        ),
        min_size=1,
        max_size=12,
    ),
    tags=st.dictionaries(st.sampled_from(["r", "z"]), TAGS, max_size=2),
)
def test_indexed_equals_naive(
    services: list[tuple[dict[str, Any], list[str]]],
    targets: list[tuple[dict[str, Any], dict[str, Any], list[str]]],
    tags: dict[str, Any],
) -> None:
    caps = {f"e.l.z{i}": target(res, tg, pk) for i, (res, tg, pk) in enumerate(targets)}
    specs = [service(f"s{i}", needs, frs) for i, (needs, frs) in enumerate(services)]
    replicas = {f"s{i}": 0 for i in range(len(specs))}  # no replica: every alias shows all its candidates
    expected = _naive(services, caps, tags)
    try:
        placed = place(request(specs, caps, tags=tags, replicas=replicas), StaticPolicyEngine())
    except errors.PlacementFailed:  # pragma: no cover - zero replicas never fail
        raise
    for alias, fits in expected.items():
        candidates = placed.explanation["services"][alias]["candidates"]
        assert list(candidates) == list(caps)
        assert [name for name, entry in candidates.items() if entry["result"] != "rejected"] == fits
    one = place(
        request(
            specs,
            caps,
            tags=tags,
            replicas={a: 1 for a in expected if expected[a]} | {a: 0 for a in expected if not expected[a]},
        ),
        StaticPolicyEngine(),
    )
    assert one.targets == {alias: fits[:1] for alias, fits in expected.items()}
