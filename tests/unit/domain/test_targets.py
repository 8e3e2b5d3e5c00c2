"""Target computation: the worked example of lifecycle.md §1.2 and the merge rules of §1.1."""

from typing import Any

import yaml
from tests import factories
from tests.unit.domain.spec_examples import LIFECYCLE_CAPABILITY, LIFECYCLE_TARGET_DOCUMENTS

from stackl.domain import documents, secrets, targets


def example_documents() -> dict[tuple[str, str], dict[str, Any]]:
    docs = [documents.validate(d) for d in yaml.safe_load_all(LIFECYCLE_TARGET_DOCUMENTS)]
    return {(d["type"], d["name"]): d for d in docs}


def test_target_name() -> None:
    assert targets.target_name("production", "brussels", "zone-a") == "production.brussels.zone-a"


def test_worked_example() -> None:
    """lifecycle.md §1.2: three documents in, one target out, exactly as printed (callers mask secrets)."""
    docs = example_documents()
    capability = targets.compute_target(
        docs[("environment", "production")], docs[("location", "brussels")], docs[("zone", "zone-a")]
    )
    expected = yaml.safe_load(LIFECYCLE_CAPABILITY)
    shown = {**capability, "secrets": secrets.mask_map(capability["secrets"])}
    assert shown == expected
    assert capability["secrets"] == {"registry_token": "dG9rZW4="}
    assert list(capability["provisioning_parameters"]) == [
        "domain",
        "log_level",
        "ntp",
        "dns_servers",
        "vlan",
    ]
    assert list(capability["tags"]) == ["environment", "tier", "region"]
    assert list(capability) == list(targets.CAPABILITY_FIELDS)


def test_worked_example_through_the_sit() -> None:
    sit = {
        "infrastructure_targets": [{"environment": "production", "location": "brussels", "zone": "zone-a"}]
    }
    result, warnings = targets.capabilities(sit, example_documents())
    assert warnings == []
    assert list(result) == ["production.brussels.zone-a"]
    assert result["production.brussels.zone-a"]["agent"] == "bru-agent"


def test_defaults_when_no_level_sets_agent_or_provider() -> None:
    bare = {"name": "x"}
    capability = targets.compute_target(bare, bare, bare)
    assert capability == {
        "provisioning_parameters": {},
        "cloud_provider": "generic",
        "secrets": {},
        "resources": {},
        "tags": {},
        "policies": {},
        "agent": "common",
        "packages": [],
    }


def test_most_specific_non_empty_value_wins() -> None:
    capability = targets.compute_target(
        {"agent": "env-agent", "cloud_provider": "aws"},
        {"agent": "", "cloud_provider": "vmw"},
        {"agent": "zone-agent"},
    )
    assert (capability["agent"], capability["cloud_provider"]) == ("zone-agent", "vmw")


def test_policies_merge_by_name_and_take_the_specific_dict_whole() -> None:
    capability = targets.compute_target(
        {"policies": {"a": {"x": 1, "y": 2}, "b": {"z": 1}}}, {}, {"policies": {"a": {"x": 9}}}
    )
    assert capability["policies"] == {"a": {"x": 9}, "b": {"z": 1}}


def test_merge_does_not_touch_the_documents() -> None:
    environment = {"params": {"a": 1}, "packages": ["vm"]}
    zone = {"params": {"a": 2}, "packages": ["vm", "db"]}
    capability = targets.compute_target(environment, {}, zone)
    capability["provisioning_parameters"]["b"] = 3
    capability["packages"].append("web")
    assert environment == {"params": {"a": 1}, "packages": ["vm"]}
    assert zone == {"params": {"a": 2}, "packages": ["vm", "db"]}


def test_capabilities_in_sit_order_with_warnings_for_missing_documents() -> None:
    docs = {
        ("environment", "production"): documents.validate(factories.environment()),
        ("location", "brussels"): documents.validate(factories.location()),
        ("zone", "dmz"): documents.validate(factories.zone()),
        ("zone", "internal"): documents.validate(factories.zone(name="internal")),
    }
    sit = factories.stack_infrastructure_template(
        infrastructure_targets=[
            {"environment": "production", "location": "brussels", "zone": "internal"},
            {"environment": "production", "location": "antwerp", "zone": "edge"},
            {"environment": "production", "location": "brussels", "zone": "dmz"},
            {"environment": "production", "location": "brussels", "zone": "internal"},
        ]
    )
    result, warnings = targets.capabilities(sit, docs)
    assert list(result) == ["production.brussels.internal", "production.brussels.dmz"]
    assert warnings == [
        "target production.antwerp.edge left out: location 'antwerp' and zone 'edge' do not exist"
    ]
    assert result["production.brussels.dmz"]["resources"] == {"memory": "64GiB", "cpu": 16}
    assert result["production.brussels.dmz"]["agent"] == "bru-agent"


def test_one_missing_document_warning() -> None:
    sit = factories.stack_infrastructure_template()
    result, warnings = targets.capabilities(sit, {("environment", "production"): factories.environment()})
    assert result == {}
    assert warnings == [
        "target production.brussels.dmz left out: location 'brussels' and zone 'dmz' do not exist"
    ]
    _, warnings = targets.capabilities(
        sit,
        {
            ("environment", "production"): factories.environment(),
            ("location", "brussels"): factories.location(),
        },
    )
    assert warnings == ["target production.brussels.dmz left out: zone 'dmz' does not exist"]


def test_malformed_sit_yields_nothing() -> None:
    assert targets.capabilities({}, {}) == ({}, [])
    assert targets.capabilities({"infrastructure_targets": [1, {"environment": "x"}]}, {}) == ({}, [])
