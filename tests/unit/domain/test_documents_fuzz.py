"""Property tests: whatever JSON arrives, validation answers with InvalidDocument or a canonical body."""

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests import factories

from stackl import errors
from stackl.domain import documents
from stackl.schemas import legacy

KEYS = st.sampled_from(
    [
        "name", "type", "category", "description", "params", "secrets", "resources", "tags", "packages",
        "policies", "agent", "invocation", "tool", "command", "timeout", "services", "service", "stages",
        "functional_requirements", "infrastructure_targets", "environment", "location", "zone", "policy",
        "snapshot", "source", "status", "metadata", "deleted", "x",
    ]
) | st.text(max_size=8)  # fmt: skip
SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=5),
    max_leaves=30,
)
TYPES = st.sampled_from([*documents.DOCUMENT_TYPES, "nope"]) | st.none()


def check(body: object, doc_type: str | None) -> None:
    """Either a canonical body that validates to itself, or well-formed error items; nothing else."""
    problems: list[dict[str, Any]] = []
    canonical: dict[str, Any] | None = None
    try:
        canonical = documents.validate(body, doc_type=doc_type)
    except errors.InvalidDocument as exc:
        problems = exc.errors
    if canonical is not None:
        assert documents.validate(canonical) == canonical
        return
    assert problems
    for item in problems:
        assert set(item) == {"loc", "msg", "type"}
        assert isinstance(item["msg"], str)
        assert item["msg"]
        assert all(isinstance(part, str | int) for part in item["loc"])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(body=JSON, doc_type=TYPES)
def test_arbitrary_json_raises_only_invalid_document(body: object, doc_type: str | None) -> None:
    check(body, doc_type)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    doc_type=st.sampled_from(documents.DOCUMENT_TYPES),
    changes=st.dictionaries(KEYS, JSON, max_size=4),
)
def test_mutated_valid_documents_raise_only_invalid_document(doc_type: str, changes: dict[str, Any]) -> None:
    check({**factories.document(doc_type), **changes}, doc_type)


@settings(max_examples=100)
@given(doc_type=st.sampled_from(documents.DOCUMENT_TYPES), body=st.dictionaries(KEYS, JSON, max_size=6))
def test_helpers_never_fail_on_bodies_that_validation_refuses(doc_type: str, body: dict[str, Any]) -> None:
    typed = {**body, "type": doc_type}
    documents.references(typed)
    documents.mask_secrets(typed)
    documents.keep_masked_secrets(typed, typed)
    documents.keep_omitted_extensions(body, typed, doc_type=doc_type)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(doc_type=st.sampled_from(documents.DOCUMENT_TYPES), data=st.data())
def test_documents_changed_deep_inside_raise_only_invalid_document(
    doc_type: str, data: st.DataObject
) -> None:
    """Replace or add one value at a random depth of a valid document; whatever validates renders in 0.5."""
    doc: Any = documents.validate(factories.document(doc_type))
    node = doc
    for _ in range(data.draw(st.integers(0, 4))):
        items = node.items() if isinstance(node, dict) else enumerate(node)
        children = [key for key, value in items if isinstance(value, dict | list) and value]
        if not children:
            break
        node = node[data.draw(st.sampled_from(children))]
    if isinstance(node, dict):
        node[data.draw(KEYS)] = data.draw(JSON)
    else:
        node[data.draw(st.integers(0, len(node) - 1))] = data.draw(JSON)
    check(doc, doc_type)
    try:
        canonical = documents.validate(doc, doc_type=doc_type)
    except errors.InvalidDocument:
        return
    view = legacy.to_legacy(canonical)
    assert all(value is not None for value in view.values())
