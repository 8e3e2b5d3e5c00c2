from tests.unit.cli.conftest import Invoke
from tests.unit.client.fakeserver import FakeServer


def test_delete_a_document(cli: Invoke, server: FakeServer) -> None:
    result = cli("delete", "policy-template", "allowed_registries")
    assert result.exit_code == 0, result.output
    assert result.stdout == "deleted policy-template allowed_registries\n"
    assert server.current("policy_template", "allowed_registries") is None


def test_a_referenced_document_exits_5_listing_referrers(cli: Invoke, server: FakeServer) -> None:
    result = cli("delete", "fr", "vm")
    assert result.exit_code == 5
    assert result.stderr.splitlines()[:3] == [
        "Error: functional_requirement 'vm' is referenced by 1 document(s); delete it first or use "
        "?force=true",
        "  referenced by:",
        "    service webserver (functional_requirements[0])",
    ]
    assert server.current("functional_requirement", "vm") is not None


def test_force_deletes_and_warns(cli: Invoke, server: FakeServer) -> None:
    result = cli("delete", "functional-requirements", "vm", "--force")
    assert result.exit_code == 0
    assert server.requests[0].url.params["force"] == "true"
    assert "warning: service 'webserver' now refers to a missing functional_requirement" in result.stderr
    assert server.current("functional_requirement", "vm") is None


def test_delete_a_snapshot_prints_the_0_5_result(cli: Invoke, server: FakeServer) -> None:
    cli("create", "snapshot", "zone", "dmz", "--name", "snap")
    result = cli("delete", "snapshot", "snap")
    assert result.exit_code == 0
    assert result.stdout == "deleted snapshot snap\n"


def test_unknown_document_exits_4(cli: Invoke) -> None:
    result = cli("delete", "zone", "nope")
    assert result.exit_code == 4
    assert "not found" in result.stderr


def test_instances_are_deleted_through_their_task_not_documents(cli: Invoke, server: FakeServer) -> None:
    cli("delete", "instance", "shop", "--force")
    assert [(r.method, r.url.path, r.url.query) for r in server.requests] == [
        ("DELETE", "/stack_instances/shop", b"force=true")
    ]
