"""Secrets in documents: masked on every read, kept when a write sends the mask back (documents.md §2.5)."""

from typing import Any

import pytest
from tests import factories

from stackl.domain import documents
from stackl.domain.secrets import MASK

SECRET = "s3cr3t-value"


def stack_instance_with_secrets() -> dict[str, Any]:
    return documents.validate(
        factories.stack_instance(
            instance_secrets={"api_key": SECRET},
            service_secrets={"web": {"admin_password": SECRET}},
            services={
                "web": [
                    factories.replica(secrets={"vcenter_password": SECRET}),
                    factories.replica(
                        infrastructure_target="production.brussels.internal", secrets={"t": SECRET}
                    ),
                ]
            },
        )
    )


@pytest.mark.parametrize("doc_type", ["environment", "location", "zone", "functional_requirement", "service"])
def test_secrets_field_is_masked(doc_type: str) -> None:
    body = documents.validate(
        factories.document(doc_type, secrets={"password": SECRET, "n": 3, "none": None})
    )
    masked = documents.mask_secrets(body)
    assert masked["secrets"] == {"password": MASK, "n": MASK, "none": MASK}
    assert body["secrets"]["password"] == SECRET
    assert {k: v for k, v in masked.items() if k != "secrets"} == {
        k: v for k, v in body.items() if k != "secrets"
    }


def test_stack_instance_secrets_are_masked_everywhere() -> None:
    masked = documents.mask_secrets(stack_instance_with_secrets())
    assert SECRET not in repr(masked)
    assert masked["instance_secrets"] == {"api_key": MASK}
    assert masked["service_secrets"] == {"web": {"admin_password": MASK}}
    assert [r["secrets"] for r in masked["services"]["web"]] == [{"vcenter_password": MASK}, {"t": MASK}]


def test_snapshot_copy_is_masked_by_its_own_type() -> None:
    snapshot = documents.validate(factories.snapshot(snapshot=factories.service(secrets={"k": SECRET})))
    masked = documents.mask_secrets(snapshot)
    assert masked["snapshot"]["secrets"] == {"k": MASK}
    assert snapshot["snapshot"]["secrets"] == {"k": SECRET}
    si_snapshot = documents.validate(
        factories.snapshot(
            snapshot=stack_instance_with_secrets(),
            source={"type": "stack_instance", "name": "shop", "revision": 3},
        )
    )
    assert SECRET not in repr(documents.mask_secrets(si_snapshot))


@pytest.mark.parametrize(
    "doc_type", ["stack_application_template", "stack_infrastructure_template", "policy_template"]
)
def test_types_without_secrets_are_copied_unchanged(doc_type: str) -> None:
    body = documents.validate(factories.document(doc_type))
    masked = documents.mask_secrets(body)
    assert masked == body
    assert masked is not body


def test_params_are_never_masked() -> None:
    body = documents.validate(factories.zone(params={"password": "visible"}, secrets={}))
    assert documents.mask_secrets(body)["params"] == {"password": "visible"}


def test_masked_read_sent_back_keeps_every_secret() -> None:
    """Read-modify-write round trip: the masked read, changed and written back, destroys no secret."""
    stored = documents.validate(factories.zone(secrets={"a": SECRET, "b": "other"}))
    read = documents.mask_secrets(stored)
    read["description"] = "changed"
    read["secrets"]["c"] = "new"
    written = documents.keep_masked_secrets(documents.validate(read), stored)
    assert written["secrets"] == {"a": SECRET, "b": "other", "c": "new"}
    assert written["description"] == "changed"


def test_a_sent_value_replaces_and_an_omitted_key_is_removed() -> None:
    stored = documents.validate(factories.zone(secrets={"a": SECRET, "b": "old"}))
    new = documents.validate(factories.zone(secrets={"b": "fresh"}))
    assert documents.keep_masked_secrets(new, stored)["secrets"] == {"b": "fresh"}


def test_mask_without_a_stored_value_stays_the_mask() -> None:
    new = documents.validate(factories.zone(secrets={"a": MASK}))
    assert documents.keep_masked_secrets(new, None)["secrets"] == {"a": MASK}
    stored = documents.validate(factories.zone(secrets={}))
    assert documents.keep_masked_secrets(new, stored)["secrets"] == {"a": MASK}


def test_stack_instance_round_trip_by_alias_and_replica_index() -> None:
    stored = stack_instance_with_secrets()
    read = documents.mask_secrets(stored)
    assert documents.keep_masked_secrets(read, stored) == stored
    read["services"][
        "web"
    ].reverse()  # replicas are matched by index: the masks now stand for the other replica
    kept = documents.keep_masked_secrets(read, stored)
    assert kept["services"]["web"][0]["secrets"] == {"t": MASK}
    assert kept["services"]["web"][1]["secrets"] == {"vcenter_password": MASK}


def test_snapshot_round_trip() -> None:
    stored = documents.validate(factories.snapshot(snapshot=factories.service(secrets={"k": SECRET})))
    assert documents.keep_masked_secrets(documents.mask_secrets(stored), stored) == stored


def test_keep_masked_does_not_modify_its_inputs() -> None:
    stored = stack_instance_with_secrets()
    read = documents.mask_secrets(stored)
    before = (repr(stored), repr(read))
    documents.keep_masked_secrets(read, stored)
    assert (repr(stored), repr(read)) == before
