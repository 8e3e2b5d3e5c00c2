"""0.5-path writes keep the extension fields they cannot see (documents.md §2.9)."""

from typing import Any

from tests import factories

from stackl.domain import documents, invocations
from stackl.domain.extensions import EXTENSION_FIELDS


def stored(body: dict[str, Any]) -> dict[str, Any]:
    return documents.validate(body)


def test_extension_fields_table() -> None:
    assert EXTENSION_FIELDS["environment"] == ("packages",)
    assert EXTENSION_FIELDS["invocation"] == (
        "command", "working_directory", "timeout", "retries", *invocations.MOCK_FIELDS,
    )  # fmt: skip
    assert EXTENSION_FIELDS["stack_instance"] == (
        "tags", "placement", "state", "task", "extra_services", "steps", "posted_outputs", "rolling_back",
        "rollback_record",
    )  # fmt: skip
    assert documents.EXTENSION_FIELDS is EXTENSION_FIELDS


def test_new_document_is_taken_as_sent() -> None:
    raw = factories.zone()
    result = documents.keep_omitted_extensions(raw, None, doc_type="zone")
    assert result == raw
    assert result is not raw


def test_omitted_packages_are_kept_and_sent_packages_replace() -> None:
    current = stored(factories.zone(packages=["vm", "nginx"]))
    raw = {k: v for k, v in factories.zone(description="new").items() if k != "packages"}
    assert documents.keep_omitted_extensions(raw, current, doc_type="zone")["packages"] == ["vm", "nginx"]
    sent = factories.zone(packages=[])
    assert documents.keep_omitted_extensions(sent, current, doc_type="zone")["packages"] == []


def test_invocation_extension_fields_are_kept_per_key() -> None:
    current = stored(
        factories.functional_requirement(
            invocation={
                "generic": {"tool": "shell", "command": "./vm.sh", "working_directory": "vm", "timeout": 900},
                "vmw": {"tool": "terraform", "retries": 2, "mock_result": "fail", "mock_log": ["x"]},
            }
        )
    )
    raw = factories.functional_requirement(
        invocation={
            "generic": {"tool": "shell", "image": "new"},
            "vmw": {"tool": "terraform", "retries": 1},
            "aws": {"tool": "tofu"},
        }
    )
    result = documents.keep_omitted_extensions(raw, current, doc_type="functional_requirement")
    assert result["invocation"]["generic"] == {
        "tool": "shell",
        "image": "new",
        "command": "./vm.sh",
        "working_directory": "vm",
        "timeout": 900,
        "retries": 0,
    }
    assert result["invocation"]["vmw"] == {
        "tool": "terraform",
        "retries": 1,
        "working_directory": "",
        "timeout": 3600,
        "mock_result": "fail",
        "mock_log": ["x"],
    }
    assert result["invocation"]["aws"] == {"tool": "tofu"}
    assert documents.validate(result)["invocation"]["generic"]["command"] == "./vm.sh"


def test_shell_command_is_not_kept_when_the_tool_changed() -> None:
    current = stored(factories.functional_requirement(invocation={"generic": factories.invocation("shell")}))
    raw = factories.functional_requirement(invocation={"generic": {"tool": "ansible"}})
    result = documents.keep_omitted_extensions(raw, current, doc_type="functional_requirement")
    assert "command" not in result["invocation"]["generic"]
    assert documents.validate(result)["invocation"]["generic"]["command"] == ""


def test_an_fr_write_without_invocation_is_left_to_validation() -> None:
    current = stored(factories.functional_requirement())
    raw = {"name": "vm", "type": "functional_requirement"}
    assert documents.keep_omitted_extensions(raw, current, doc_type="functional_requirement") == raw


def test_service_policy_inputs_sent_back_as_shown_keep_their_value() -> None:
    inputs = {"provider": "aws", "limits": {"cpu": 2}, "flag": True, "count": 3, "nothing": None}
    current = stored(factories.service(service_policies=[{"name": "skip", "inputs": inputs}]))
    shown = {"provider": "aws", "limits": '{"cpu": 2}', "flag": "true", "count": "3", "nothing": "null"}
    raw = factories.service(service_policies=[{"name": "skip", "inputs": shown}])
    result = documents.keep_omitted_extensions(raw, current, doc_type="service")
    assert result["service_policies"][0]["inputs"] == inputs


def test_service_policy_inputs_changed_by_the_client_are_taken() -> None:
    current = stored(factories.service(service_policies=[{"name": "skip", "inputs": {"count": 3, "s": "x"}}]))
    raw = factories.service(service_policies=[{"name": "skip", "inputs": {"count": "4", "s": "y"}}])
    result = documents.keep_omitted_extensions(raw, current, doc_type="service")
    assert result["service_policies"][0]["inputs"] == {"count": "4", "s": "y"}


def test_service_policies_are_matched_by_name() -> None:
    current = stored(
        factories.service(
            service_policies=[{"name": "a", "inputs": {"n": 1}}, {"name": "b", "inputs": {"n": 2}}]
        )
    )
    raw = factories.service(
        service_policies=[{"name": "b", "inputs": {"n": "2"}}, {"name": "c", "inputs": {"n": "1"}}]
    )
    result = documents.keep_omitted_extensions(raw, current, doc_type="service")
    assert [p["inputs"] for p in result["service_policies"]] == [{"n": 2}, {"n": "1"}]


def test_stack_instance_extensions_are_kept() -> None:
    current = stored(
        factories.stack_instance(
            tags={"environment": "production"},
            placement={"evaluated_at": "2025-05-01T10:15:30.870Z"},
            status=[factories.status_entry(replica=0, action="create", attempt=2, task_id="01J")],
        )
    )
    raw = factories.stack_instance(status=[factories.status_entry(status="FAILED")])
    result = documents.keep_omitted_extensions(raw, current, doc_type="stack_instance")
    assert result["tags"] == {"environment": "production"}
    assert result["placement"] == {"evaluated_at": "2025-05-01T10:15:30.870Z"}
    entry = result["status"][0]
    assert (entry["status"], entry["replica"], entry["action"], entry["attempt"], entry["task_id"]) == (
        "FAILED", 0, "create", 2, "01J",
    )  # fmt: skip


def test_snapshot_source_is_kept() -> None:
    current = stored(factories.snapshot())
    raw = {k: v for k, v in factories.snapshot().items() if k != "source"}
    assert documents.keep_omitted_extensions(raw, current, doc_type="snapshot")["source"] == current["source"]


def test_kept_values_are_copies() -> None:
    current = stored(factories.zone(packages=["vm"]))
    raw = {k: v for k, v in factories.zone().items() if k != "packages"}
    result = documents.keep_omitted_extensions(raw, current, doc_type="zone")
    result["packages"].append("x")
    assert current["packages"] == ["vm"]


def test_other_types_are_returned_as_sent() -> None:
    for doc_type in ("stack_application_template", "stack_infrastructure_template", "policy_template"):
        raw = factories.document(doc_type)
        assert documents.keep_omitted_extensions(raw, stored(raw), doc_type=doc_type) == raw
