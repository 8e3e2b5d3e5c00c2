"""The rules of each configuration document type (documents.md §3 to §8)."""

from typing import Any

import pytest
from tests import factories

from stackl import errors
from stackl.domain import documents, names


def invalid(body: object, doc_type: str | None = None) -> list[dict[str, Any]]:
    with pytest.raises(errors.InvalidDocument) as caught:
        documents.validate(body, doc_type=doc_type)
    return caught.value.errors


def locs(body: object) -> list[list[str | int]]:
    return [p["loc"] for p in invalid(body)]


# --- environment, location, zone ---------------------------------------------------------------------------
@pytest.mark.parametrize("doc_type", documents.INFRASTRUCTURE_BASE_TYPES)
def test_infrastructure_names_have_no_dots(doc_type: str) -> None:
    problems = invalid(factories.document(doc_type, name="prod.eu"))
    assert problems == [
        {
            "loc": ["name"],
            "msg": f"must match {names.RULES[names.NameKind.INFRASTRUCTURE].text}",
            "type": "name",
        }
    ]
    assert "no dots" in problems[0]["msg"]


def test_infrastructure_field_order() -> None:
    assert list(documents.validate(factories.environment())) == [
        "name", "type", "category", "description", "cloud_provider", "params", "secrets", "resources", "tags",
        "packages", "policies", "agent", "outputs",
    ]  # fmt: skip


def test_resources_are_quantities_named_in_the_error() -> None:
    problems = invalid(factories.zone(resources={"memory": "64GiB", "cpu": "-1", "disk": "1e3", "gpu": True}))
    assert [p["loc"] for p in problems] == [["resources", "cpu"], ["resources", "disk"], ["resources", "gpu"]]
    assert {p["type"] for p in problems} == {"quantity"}


def test_resources_accept_numbers_and_strings() -> None:
    resources = {"memory": "64GiB", "cpu": 16, "ratio": 0.5, "cores": "500m", "disk": " 1 TB "}
    assert documents.validate(factories.zone(resources=resources))["resources"] == resources


def test_tags_accept_scalars_and_keep_their_type() -> None:
    tags = {"environment": "production", "tier": 1, "ssd": True, "weight": 0.5}
    assert documents.validate(factories.zone(tags=tags))["tags"] == tags


@pytest.mark.parametrize("value", [None, [], {}, ["a"]])
def test_tags_reject_non_scalars(value: object) -> None:
    assert invalid(factories.zone(tags={"t": value})) == [
        {"loc": ["tags", "t"], "msg": "must be a string, number or boolean", "type": "type"}
    ]


def test_packages_are_unique() -> None:
    assert invalid(factories.zone(packages=["vm", "nginx", "vm"])) == [
        {"loc": ["packages", 2], "msg": "duplicate entry 'vm'", "type": "duplicate"}
    ]


def test_policies_keys_are_template_names_and_values_objects() -> None:
    problems = invalid(
        factories.environment(policies={"allowed-registries": {}, "ok": [1], "fine": {"a": [1]}})
    )
    assert [p["loc"] for p in problems] == [["policies", "allowed-registries"], ["policies", "ok"]]
    assert problems[0]["type"] == "name"
    assert problems[1]["msg"] == "must be an object"


@pytest.mark.parametrize(
    ("value", "ok"), [("", True), ("vmw", True), ("aws-eu_1", True), ("v.m", False), (" ", False)]
)
def test_cloud_provider_is_empty_or_a_key(value: str, ok: bool) -> None:
    body = factories.zone(cloud_provider=value)
    if ok:
        assert documents.validate(body)["cloud_provider"] == value
    else:
        assert locs(body) == [["cloud_provider"]]


@pytest.mark.parametrize(("value", "ok"), [("", True), ("bru-agent", True), ("agent.1", True), ("-x", False)])
def test_agent_is_empty_or_an_agent_name(value: str, ok: bool) -> None:
    body = factories.location(agent=value)
    if ok:
        assert documents.validate(body)["agent"] == value
    else:
        assert locs(body) == [["agent"]]


# --- functional requirement --------------------------------------------------------------------------------
def test_functional_requirement_needs_an_invocation() -> None:
    assert invalid(factories.functional_requirement(invocation={})) == [
        {"loc": ["invocation"], "msg": "must have at least 1 entry", "type": "too_short"}
    ]
    body = {k: v for k, v in factories.functional_requirement().items() if k != "invocation"}
    assert invalid(body) == [{"loc": ["invocation"], "msg": "field required", "type": "missing"}]


def test_invocation_keys_follow_the_key_rule() -> None:
    invocation = factories.invocation()
    problems = invalid(
        factories.functional_requirement(invocation={"generic": invocation, "v.mw": invocation})
    )
    assert problems == [
        {
            "loc": ["invocation", "v.mw"],
            "msg": f"must match {names.RULES[names.NameKind.CLOUD_PROVIDER].text}",
            "type": "name",
        }
    ]


def test_functional_requirement_defaults() -> None:
    canonical = documents.validate(
        {"name": "vm", "type": "functional_requirement", "invocation": {"generic": {"tool": "ansible"}}}
    )
    assert canonical == {
        "name": "vm",
        "type": "functional_requirement",
        "category": "configs",
        "description": "",
        "invocation": {
            "generic": {
                "tool": "ansible",
                "image": "",
                "description": "",
                "before_command": "",
                "command": "",
                "working_directory": "",
                "playbook_path": "",
                "ansible_role": "",
                "gather_facts": True,
                "serial": 10,
                "connection": "ssh",
                "become": False,
                "wait_for_connection": False,
                "timeout": 3600,
                "retries": 0,
            }
        },
        "params": {},
        "secrets": {},
        "outputs": {},
        "outputs_format": "json",
        "as_group": False,
    }


def test_outputs_are_dot_separated_paths() -> None:
    good = {"ip": "ip_address", "host": "hosts.0", "db": "values.outputs.db.value"}
    assert documents.validate(factories.functional_requirement(outputs=good))["outputs"] == good
    problems = invalid(factories.functional_requirement(outputs={"a": "", "b": "x..y", "c": 3}))
    assert [p["loc"] for p in problems] == [["outputs", "a"], ["outputs", "b"], ["outputs", "c"]]


def test_legacy_outputs_format_and_as_group() -> None:
    canonical = documents.validate(factories.functional_requirement(outputs_format="yaml", as_group=True))
    assert (canonical["outputs_format"], canonical["as_group"]) == ("yaml", True)


# --- service -----------------------------------------------------------------------------------------------
def test_service_functional_requirements() -> None:
    assert documents.validate(factories.service(functional_requirements=[]))["functional_requirements"] == []
    assert invalid(factories.service(functional_requirements=["vm", "nginx", "vm"])) == [
        {"loc": ["functional_requirements", 2], "msg": "duplicate entry 'vm'", "type": "duplicate"}
    ]
    assert locs(factories.service(functional_requirements=["vm", "bad name"])) == [
        ["functional_requirements", 1]
    ]
    body = {k: v for k, v in factories.service().items() if k != "functional_requirements"}
    assert locs(body) == [["functional_requirements"]]


def test_service_resource_requirements_are_quantities() -> None:
    assert invalid(factories.service(resource_requirements={"memory": "2 XB"}))[0]["loc"] == [
        "resource_requirements",
        "memory",
    ]


def test_service_policies() -> None:
    policies = [
        {"name": "skip_on_provider", "inputs": {"provider": "aws", "limit": 2, "list": [1]}},
        {"name": "plain"},
    ]
    canonical = documents.validate(factories.service(service_policies=policies))
    assert canonical["service_policies"] == [policies[0], {"name": "plain", "inputs": {}}]
    problems = invalid(
        factories.service(service_policies=[{"name": "skip-on"}, {"inputs": {}}, {"name": "a", "x": 1}])
    )
    assert [p["loc"] for p in problems] == [
        ["service_policies", 0, "name"],
        ["service_policies", 1, "name"],
        ["service_policies", 2, "x"],
    ]


# --- stack application template ----------------------------------------------------------------------------
def test_sat_legacy_services_list() -> None:
    canonical = documents.validate(factories.stack_application_template(services=["web", "db"]))
    assert canonical["services"] == [{"name": "web", "service": "web"}, {"name": "db", "service": "db"}]


def test_sat_needs_a_service_with_unique_aliases() -> None:
    assert invalid(factories.stack_application_template(services=[])) == [
        {"loc": ["services"], "msg": "must have at least 1 entry", "type": "too_short"}
    ]
    services = [{"name": "web", "service": "nginx"}, {"name": "web", "service": "apache"}]
    assert invalid(factories.stack_application_template(services=services)) == [
        {"loc": ["services", 1, "name"], "msg": "duplicate alias 'web'", "type": "duplicate"}
    ]


def test_one_service_may_appear_under_several_aliases() -> None:
    services = [{"name": "web1", "service": "nginx"}, {"name": "web2", "service": "nginx"}]
    assert documents.validate(factories.stack_application_template(services=services))["services"] == services


def test_sat_policies_name_aliases_of_the_sat() -> None:
    policies = {
        "has_params": [{"service": "web", "params": ["dns_domain"]}, {"service": "db"}, {"params": []}],
        "replicas": [{"service": "web", "replicas": 2}],
    }
    problems = invalid(factories.stack_application_template(policies=policies))
    assert problems == [
        {
            "loc": ["policies", "has_params", 1, "service"],
            "msg": "must be an alias of this template (web)",
            "type": "reference",
        },
        {"loc": ["policies", "has_params", 2, "service"], "msg": "field required", "type": "missing"},
    ]


def test_sat_policy_items_are_objects_and_order_is_kept() -> None:
    policies = {"zeta": [{"service": "web"}], "alpha": [{"service": "web"}]}
    assert list(documents.validate(factories.stack_application_template(policies=policies))["policies"]) == [
        "zeta",
        "alpha",
    ]
    assert locs(factories.stack_application_template(policies={"p": ["web"]})) == [["policies", "p", 0]]


def test_sat_stages() -> None:
    services = [{"name": n, "service": n} for n in ("db", "cache", "web")]
    good = [{"name": "data", "services": ["db", "cache"]}, {"name": "frontend", "services": ["web"]}]
    assert (
        documents.validate(factories.stack_application_template(services=services, stages=good))["stages"]
        == good
    )
    bad = [
        {"name": "data", "services": ["db", "db"]},
        {"name": "data", "services": ["cache", "nope"]},
        {"name": "late", "services": ["db"]},
    ]
    problems = invalid(factories.stack_application_template(services=services, stages=bad))
    assert problems == [
        {
            "loc": ["stages", 0, "services", 1],
            "msg": "alias 'db' is already in stage 'data'",
            "type": "duplicate",
        },
        {"loc": ["stages", 1, "name"], "msg": "duplicate stage 'data'", "type": "duplicate"},
        {
            "loc": ["stages", 1, "services", 1],
            "msg": "must be an alias of this template (db, cache, web)",
            "type": "reference",
        },
        {
            "loc": ["stages", 2, "services", 0],
            "msg": "alias 'db' is already in stage 'data'",
            "type": "duplicate",
        },
    ]


def test_sat_aliases_and_stage_names_follow_the_key_rule() -> None:
    body = factories.stack_application_template(
        services=[{"name": "web.1", "service": "webserver"}], stages=[{"name": "a b", "services": []}]
    )
    assert [p["loc"] for p in invalid(body)][:2] == [["services", 0, "name"], ["stages", 0, "name"]]


# --- stack infrastructure template -------------------------------------------------------------------------
def test_sit_needs_targets_without_duplicates() -> None:
    assert locs(factories.stack_infrastructure_template(infrastructure_targets=[])) == [
        ["infrastructure_targets"]
    ]
    target = {"environment": "production", "location": "brussels", "zone": "dmz"}
    other = {**target, "zone": "internal"}
    assert invalid(
        factories.stack_infrastructure_template(infrastructure_targets=[target, other, target])
    ) == [
        {
            "loc": ["infrastructure_targets", 2],
            "msg": "duplicate target production.brussels.dmz",
            "type": "duplicate",
        }
    ]


def test_sit_target_parts_are_required_infrastructure_names() -> None:
    targets = [{"environment": "prod.eu", "location": "brussels"}]
    assert locs(factories.stack_infrastructure_template(infrastructure_targets=targets)) == [
        ["infrastructure_targets", 0, "environment"],
        ["infrastructure_targets", 0, "zone"],
    ]


def test_sit_capabilities_on_write_are_ignored() -> None:
    body = factories.stack_infrastructure_template(infrastructure_capabilities={"x.y.z": {"anything": 1}})
    canonical = documents.validate(body)
    assert "infrastructure_capabilities" not in canonical
    assert canonical == documents.validate(factories.stack_infrastructure_template())


# --- policy template ---------------------------------------------------------------------------------------
def test_policy_template_name_is_a_rego_identifier() -> None:
    problems = invalid(factories.policy_template(name="allowed-registries"))
    assert problems[0] == {
        "loc": ["name"],
        "msg": f"must match {names.RULES[names.NameKind.POLICY_TEMPLATE].text}",
        "type": "name",
    }


def test_policy_must_declare_its_package() -> None:
    assert invalid(factories.policy_template(policy="allow := true\n")) == [
        {"loc": ["policy"], "msg": 'must declare "package allowed_registries"', "type": "policy"}
    ]
    assert invalid(factories.policy_template(policy="package other\nallow := true\n")) == [
        {
            "loc": ["policy"],
            "msg": 'declares package other; must be "package allowed_registries"',
            "type": "policy",
        }
    ]
    commented = "# package allowed_registries\npackage allowed_registries\nallow := true\n"
    assert documents.validate(factories.policy_template(policy=commented))["policy"] == commented


@pytest.mark.parametrize(
    "rule",
    [
        'solutions = {"fulfilled": true, "targets": []}',
        'infringement[{"msg": msg}] {\n  msg := "x"\n}',
        "filter[fr] {\n  fr := input.functional_requirements[_]\n}",
        "default allow = false",
        "allow if true",
    ],
)
def test_policy_defines_one_of_the_evaluated_rules(rule: str) -> None:
    policy = f"package allowed_registries\n\n{rule}\n"
    assert documents.validate(factories.policy_template(policy=policy))["policy"] == policy


def test_policy_without_an_evaluated_rule() -> None:
    assert invalid(factories.policy_template(policy="package allowed_registries\n\nallowed := true\n")) == [
        {
            "loc": ["policy"],
            "msg": "must define at least one of the rules solutions, infringement, filter, allow",
            "type": "policy",
        }
    ]


def test_policy_template_defaults_and_required_policy() -> None:
    canonical = documents.validate(factories.policy_template(inputs=None))
    assert (canonical["inputs"], canonical["outputs"]) == ([], [])
    body = {k: v for k, v in factories.policy_template().items() if k != "policy"}
    assert invalid(body) == [{"loc": ["policy"], "msg": "field required", "type": "missing"}]
