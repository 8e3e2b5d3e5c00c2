"""The native checks, the policy result readers and the service-policy intersection (lifecycle.md §3.2-3.9)."""

from typing import Any

import pytest

from stackl import errors
from stackl.placement import rules
from stackl.placement.index import TargetIndex
from stackl.policy.base import PolicyDecision


def _line(key: str, needed: Any, offered: Any) -> tuple[bool, str]:
    parse = TargetIndex.build({}).parse
    return rules.resource_line(key, parse(key, needed), None if offered is None else parse(key, offered))


@pytest.mark.parametrize(
    ("key", "needed", "offered", "ok", "line"),
    [
        ("memory", "16GiB", "128GiB", True, "memory: needs 16GiB (17179869184), has 128GiB (137438953472)"),
        ("memory", "4GiB", "4GB", False, "memory: needs 4GiB (4294967296), has 4GB (4000000000)"),
        ("memory", "512Mi", "0.5G", False, "memory: needs 512Mi (536870912), has 0.5G (500000000)"),
        ("memory", "512m", "1G", True, "memory: needs 512m (512000000), has 1G (1000000000)"),
        ("cpu", "500m", "1", True, "cpu: needs 500m (0.5), has 1"),
        ("cpu", "2", "4000m", True, "cpu: needs 2, has 4000m (4)"),
        ("cpu", "2.5", "2", False, "cpu: needs 2.5, has 2"),
        ("cpu", "2", 32, True, "cpu: needs 2, has 32"),
        ("disk", "1TB", None, True, "disk: not declared, assumed sufficient"),
        ("memory", "1gb", "1000 MB", True, "memory: needs 1gb (1000000000), has 1000 MB (1000000000)"),
        ("memory", "ten", "1G", True, "unparsable, assumed sufficient"),
        ("memory", "1G", "5 XB", True, "unparsable, assumed sufficient"),
        ("memory", "1G", True, True, "unparsable, assumed sufficient"),
        ("cpu", 0.5, ".5", True, "cpu: needs 0.5, has .5 (0.5)"),
    ],
)
def test_resource_lines_follow_the_units_table(
    key: str, needed: Any, offered: Any, ok: bool, line: str
) -> None:
    assert _line(key, needed, offered) == (ok, line)


def test_a_failing_resources_check_lists_only_the_failed_requirements() -> None:
    ok, entry = rules.resources_check([(True, "cpu: needs 2, has 64"), (False, "memory: x")])
    assert not ok
    assert entry == {"check": "resources", "result": "fail", "details": ["memory: x"]}
    assert rules.resources_check([]) == (
        True,
        {"check": "resources", "result": "pass", "details": ["no resource requirements"]},
    )


@pytest.mark.parametrize(
    ("required", "offered", "ok"),
    [
        ([("region", "eu-west")], ["eu-west"], True),
        ([("region", "eu-west")], ["us-east"], False),
        ([("region", "all")], ["us-east"], True),
        ([("region", "eu-west")], [None], True),
        ([("size", "3")], [rules.as_text(3)], True),
        ([("gpu", rules.as_text(True))], ["true"], True),
        ([("gpu", "True")], [rules.as_text(True)], False),
    ],
)
def test_tags_compare_as_strings_with_the_all_wildcard(
    required: list[tuple[str, str]], offered: list[str | None], ok: bool
) -> None:
    assert rules.check_tags(required, offered)[0] is ok


def test_tag_details() -> None:
    assert rules.check_tags([], [])[1]["details"] == ["no required tags"]
    assert rules.check_tags([("tier", "gold")], ["silver"])[1] == {
        "check": "tags",
        "result": "fail",
        "details": ["tier: needs gold, has silver"],
    }
    assert rules.as_text(1.5) == "1.5"
    assert rules.as_text(False) == "false"


def test_packages() -> None:
    assert rules.check_packages(["postgres_vm"], ["postgres_vm", "nginx"]) == (
        True,
        {"check": "packages", "result": "pass", "details": ["postgres_vm offered"]},
    )
    assert rules.check_packages(["postgres_vm"], ["nginx"]) == (
        False,
        {"check": "packages", "result": "fail", "details": ["packages: postgres_vm not offered by target"]},
    )
    assert rules.check_packages(["postgres_vm"], [])[0] is True


def _decision(value: Any, defined: bool = True) -> PolicyDecision:
    return PolicyDecision(defined=defined, value=value, duration_ms=0.0)


def test_solutions_mix_names_and_objects_and_honour_declared_outputs() -> None:
    value = {"fulfilled": True, "targets": [{"target": "a", "stackl_hostname": "h", "x": 1}, "b"]}
    assert rules.read_solutions("naming", _decision(value)) == [
        ("a", {"stackl_hostname": "h", "x": 1}),
        ("b", {}),
    ]
    assert rules.read_solutions("naming", _decision(value), ["stackl_hostname", "absent"]) == [
        ("a", {"stackl_hostname": "h"}),
        ("b", {}),
    ]


@pytest.mark.parametrize(
    ("decision", "reason"),
    [
        (_decision(None, defined=False), "solutions is undefined"),
        (_decision(["a"]), "expected an object with fulfilled"),
        (_decision({"targets": []}), "fulfilled is missing or not a boolean"),
        (_decision({"fulfilled": "yes", "targets": []}), "fulfilled is missing or not a boolean"),
        (_decision({"fulfilled": True, "targets": "a"}), "targets is not a list"),
        (_decision({"fulfilled": True, "targets": ["a", {"name": "b"}]}), "targets[1] has no target"),
    ],
)
def test_invalid_solutions(decision: PolicyDecision, reason: str) -> None:
    with pytest.raises(errors.PolicyError) as caught:
        rules.read_solutions("naming", decision)
    assert caught.value.message == f"policy naming returned an invalid result: {reason}"
    assert caught.value.policy == "naming"


def test_unfulfilled_solutions_fail_placement_with_the_message_verbatim() -> None:
    with pytest.raises(errors.PlacementFailed) as caught:
        rules.read_solutions("naming", _decision({"fulfilled": False, "msg": "no zone left in eu-west"}))
    assert caught.value.message == "no zone left in eu-west"


def test_infringements() -> None:
    assert rules.read_infringements("p", _decision(None, defined=False)) == []
    assert rules.read_infringements("p", _decision([])) == []
    assert rules.read_infringements("p", _decision([{"msg": "a"}, "b"])) == ["a", "b"]
    with pytest.raises(errors.PolicyError, match="policy p returned an invalid result"):
        rules.read_infringements("p", _decision({"msg": "a"}))
    with pytest.raises(errors.PolicyError, match="neither a string"):
        rules.read_infringements("p", _decision([1]))


def test_service_filter_intersects_in_declared_order() -> None:
    run, skipped, notes = rules.service_filter(
        ["vm", "os", "app"], {"only_vm_app": ["app", "vm", "typo"], "no_os": ["vm", "app"], "vm": ["vm"]}
    )
    assert run == ["vm"]
    assert skipped == {"os": ["only_vm_app", "no_os", "vm"], "app": ["vm"]}
    assert notes == ["policy only_vm_app: typo is not a functional requirement of the service, ignored"]
    assert rules.service_filter(["vm"], {}) == (["vm"], {}, [])
    with pytest.raises(errors.PolicyError, match="filter is undefined"):
        rules.service_filter(["vm"], {"p": None})
    with pytest.raises(errors.PolicyError, match="invalid result"):
        rules.service_filter(["vm"], {"p": "vm"})
