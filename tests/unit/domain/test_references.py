"""References between documents (documents.md §2.7, "Referrers counted")."""

from tests import factories

from stackl.domain import documents


def test_service_references_its_functional_requirements_and_policies() -> None:
    body = documents.validate(
        factories.service(
            functional_requirements=["vm", "nginx"],
            service_policies=[{"name": "skip_on_provider", "inputs": {}}],
        )
    )
    assert documents.references(body) == [
        ("functional_requirement", "vm", "functional_requirements[0]"),
        ("functional_requirement", "nginx", "functional_requirements[1]"),
        ("policy_template", "skip_on_provider", "service_policies[0].name"),
    ]


def test_sat_references_services_and_policy_templates() -> None:
    body = documents.validate(
        factories.stack_application_template(
            services=[{"name": "db", "service": "database"}, {"name": "web", "service": "webserver"}],
            policies={"has_params": [{"service": "web"}], "replicas": [{"service": "db"}]},
            stages=[{"name": "data", "services": ["db"]}],
        )
    )
    assert documents.references(body) == [
        ("service", "database", "services[0].service"),
        ("service", "webserver", "services[1].service"),
        ("policy_template", "has_params", "policies.has_params"),
        ("policy_template", "replicas", "policies.replicas"),
    ]


def test_sit_references_every_level_of_every_target() -> None:
    body = documents.validate(
        factories.stack_infrastructure_template(
            infrastructure_targets=[
                {"environment": "production", "location": "brussels", "zone": "dmz"},
                {"environment": "production", "location": "brussels", "zone": "internal"},
            ]
        )
    )
    assert documents.references(body) == [
        ("environment", "production", "infrastructure_targets[0].environment"),
        ("location", "brussels", "infrastructure_targets[0].location"),
        ("zone", "dmz", "infrastructure_targets[0].zone"),
        ("environment", "production", "infrastructure_targets[1].environment"),
        ("location", "brussels", "infrastructure_targets[1].location"),
        ("zone", "internal", "infrastructure_targets[1].zone"),
    ]


def test_infrastructure_documents_reference_their_policies() -> None:
    for doc_type in documents.INFRASTRUCTURE_BASE_TYPES:
        body = documents.validate(factories.document(doc_type, policies={"allowed_registries": {}}))
        assert documents.references(body) == [
            ("policy_template", "allowed_registries", "policies.allowed_registries")
        ]


def test_stack_instance_references_templates_and_replica_services() -> None:
    body = documents.validate(
        factories.stack_instance(
            services={
                "web": [factories.replica(), factories.replica(infrastructure_target="p.b.internal")],
                "db": [factories.replica(service="database")],
            }
        )
    )
    assert documents.references(body) == [
        ("stack_infrastructure_template", "main", "stack_infrastructure_template"),
        ("stack_application_template", "web_shop", "stack_application_template"),
        ("service", "webserver", "services.web[0].service"),
        ("service", "webserver", "services.web[1].service"),
        ("service", "database", "services.db[0].service"),
    ]


def test_documents_without_references() -> None:
    for doc_type in ("functional_requirement", "policy_template", "snapshot"):
        assert documents.references(documents.validate(factories.document(doc_type))) == []
    assert documents.references(documents.validate(factories.zone())) == []


def test_references_tolerate_malformed_bodies() -> None:
    assert documents.references({}) == []
    assert (
        documents.references({"type": "service", "functional_requirements": "vm", "service_policies": [1]})
        == []
    )
    assert documents.references({"type": "stack_instance", "services": {"web": "x"}}) == []
