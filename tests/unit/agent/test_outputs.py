"""The outputs spec (agents.md §7)."""

import pytest

from stackl import errors
from stackl.agent import outputs
from stackl.agent.outputs import OutputDocument
from stackl.agent.secrets import Masker

NO_SECRETS = Masker({})


def test_resolve_walks_keys_and_list_indexes() -> None:
    document = {"db": {"hosts": ["a", "b"]}, "n": 1}
    assert outputs.resolve(document, "db.hosts.1") == "b"
    assert outputs.resolve(document, "db.hosts.2") is None
    assert outputs.resolve(document, "db.missing") is None
    assert outputs.resolve(document, "n.x") is None
    assert outputs.resolve(document, "db") == {"hosts": ["a", "b"]}


def test_without_spec_the_default_applies() -> None:
    doc = OutputDocument(document={"a": {"value": 1}}, default={"a": 1})
    assert outputs.apply(doc, {}, NO_SECRETS).values == {"a": 1}


def test_spec_names_exactly_the_outputs() -> None:
    doc = OutputDocument(document={"a": {"value": 1}, "b": {"value": 2}}, default={"a": 1, "b": 2})
    result = outputs.apply(doc, {"first": "a.value", "none": "c.value"}, NO_SECRETS)
    assert result.values == {"first": 1, "none": None}


def test_sensitive_outputs_become_null_with_a_note() -> None:
    doc = OutputDocument(
        document={"pw": {"value": "x", "sensitive": True}, "url": {"value": "u"}},
        default={"url": "u"},
        sensitive=frozenset({"pw"}),
        legacy_prefix="values.outputs.",
    )
    result = outputs.apply(
        doc, {"pw": "values.outputs.pw.value", "url": "values.outputs.url.value"}, NO_SECRETS
    )
    assert result.values == {"pw": None, "url": "u"}
    assert result.notes == ("output pw: pw is sensitive and is not reported",)


def test_secret_values_are_masked_with_a_note() -> None:
    doc = OutputDocument(document={}, default={"conn": "postgres://u:hunter22@db", "ok": "fine"})
    result = outputs.apply(doc, {}, Masker({"pw": "hunter22"}))
    assert result.values == {"conn": "postgres://u:********@db", "ok": "fine"}
    assert result.notes == ("output conn contained a secret value of the job and was masked",)
    assert "hunter22" not in " ".join(result.notes)


def test_stackl_hosts_replaces_the_hosts() -> None:
    doc = OutputDocument(default={"stackl_hosts": ["a", "b"]})
    assert outputs.apply(doc, {}, NO_SECRETS).hosts == ["a", "b"]
    bad = outputs.apply(OutputDocument(default={"stackl_hosts": "a"}), {}, NO_SECRETS)
    assert bad.hosts is None
    assert bad.notes


def test_outputs_over_one_mebibyte_fail() -> None:
    doc = OutputDocument(default={"big": "x" * (1024 * 1024)})
    with pytest.raises(errors.ExecutionError, match="outputs exceed 1 MiB"):
        outputs.apply(doc, {}, NO_SECRETS)


@pytest.mark.parametrize("text", ["[1]", "3", '"s"', "{not json", "null"])
def test_parse_object_refuses_anything_but_an_object(text: str) -> None:
    with pytest.raises(errors.ExecutionError, match="outputs file is not a JSON object"):
        outputs.parse_object(text)


def test_parse_object_empty_means_none() -> None:
    assert outputs.parse_object("  \n") == {}
    assert outputs.parse_object('{"a": 1}') == {"a": 1}
