import pytest

from stackl.domain import names
from stackl.domain.names import NameKind


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (NameKind.DOCUMENT, "web"),
        (NameKind.DOCUMENT, "Web.Shop_v2-1"),
        (NameKind.DOCUMENT, "0day"),
        (NameKind.DOCUMENT, "a" * 128),
        (NameKind.AGENT, "bru-agent.1"),
        (NameKind.INFRASTRUCTURE, "zone-a_1"),
        (NameKind.ALIAS, "db"),
        (NameKind.ALIAS, "a" * 64),
        (NameKind.STAGE, "front-end"),
        (NameKind.CLOUD_PROVIDER, "vmw"),
        (NameKind.POLICY_TEMPLATE, "_allowed_registries2"),
        (NameKind.POLICY_TEMPLATE, "A" * 128),
        (NameKind.TARGET, "production.brussels.zone-a"),
    ],
)
def test_valid_names(kind: NameKind, value: str) -> None:
    assert names.check_name(kind, value) is None
    assert names.is_valid_name(kind, value)


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (NameKind.DOCUMENT, ""),
        (NameKind.DOCUMENT, "-web"),
        (NameKind.DOCUMENT, ".web"),
        (NameKind.DOCUMENT, "web shop"),
        (NameKind.DOCUMENT, "web/shop"),
        (NameKind.DOCUMENT, "a" * 129),
        (NameKind.DOCUMENT, "web\n"),
        (NameKind.DOCUMENT, "wéb"),
        (NameKind.INFRASTRUCTURE, "prod.eu"),
        (NameKind.ALIAS, "a" * 65),
        (NameKind.ALIAS, "web.1"),
        (NameKind.STAGE, "data stage"),
        (NameKind.CLOUD_PROVIDER, ""),
        (NameKind.POLICY_TEMPLATE, "allowed-registries"),
        (NameKind.POLICY_TEMPLATE, "1policy"),
        (NameKind.POLICY_TEMPLATE, "a.b"),
        (NameKind.TARGET, "production.brussels"),
        (NameKind.TARGET, "a.b.c.d"),
        (NameKind.TARGET, "a..c"),
    ],
)
def test_invalid_names_quote_the_rule(kind: NameKind, value: str) -> None:
    message = names.check_name(kind, value)
    assert message is not None
    assert names.RULES[kind].pattern.pattern in message
    assert not names.is_valid_name(kind, value)


def test_infrastructure_rule_explains_the_dot() -> None:
    message = names.check_name("infrastructure", "prod.eu")
    assert message is not None
    assert "no dots" in message


def test_names_are_case_sensitive_and_never_lowered() -> None:
    assert names.check_name(NameKind.DOCUMENT, "Web") is None
    assert names.check_name(NameKind.DOCUMENT, "web") is None


@pytest.mark.parametrize(
    ("doc_type", "kind"),
    [
        ("environment", NameKind.INFRASTRUCTURE),
        ("location", NameKind.INFRASTRUCTURE),
        ("zone", NameKind.INFRASTRUCTURE),
        ("policy_template", NameKind.POLICY_TEMPLATE),
        ("service", NameKind.DOCUMENT),
        ("stack_instance", NameKind.DOCUMENT),
    ],
)
def test_kind_for_type(doc_type: str, kind: NameKind) -> None:
    assert names.kind_for_type(doc_type) is kind


def test_split_target() -> None:
    assert names.split_target("production.brussels.zone-a") == ("production", "brussels", "zone-a")
    assert names.split_target("production.brussels") is None
    assert names.split_target("a.b.c.d") is None
