"""`stackl plan` rendering and the manifest overrides it shares with `apply -c` (spec/cli.md §4.2)."""

from pathlib import Path
from typing import Any

import pytest

from stackl.cli import exits, manifests, plan
from stackl.cli.exits import UsageFailure

ANSWER: dict[str, Any] = {
    "operation": "create",
    "stack_instance": "shop",
    "feasible": True,
    "detail": "",
    "placement": {"web": {"service": "nginx", "targets": ["p.b.a"]}},
    "explanation": {
        "services": {
            "web": {
                "service": "nginx",
                "candidates": {
                    "p.b.a": {
                        "result": "chosen",
                        "replica": 0,
                        "checks": [{"check": "resources", "result": "pass"}],
                    },
                    **{
                        f"p.b.x{i:02d}": {
                            "result": "rejected",
                            "checks": [
                                {
                                    "check": "tags",
                                    "result": "fail",
                                    "details": ["tier: needs gold, has silver"],
                                }
                            ],
                        }
                        for i in range(12)
                    },
                    "p.b.z": {"result": "spare", "checks": [], "details": ["not needed for 1 replica"]},
                },
            }
        }
    },
    "changes": {"services_added": ["web"], "replicas": {"web": {"from": 0, "to": 1}}, "params_changed": []},
    "plan": [
        {
            "stage": "web",
            "steps": [
                {
                    "id": "web/0/vm",
                    "infrastructure_target": "p.b.a",
                    "action": "create",
                    "decision": "run",
                    "reason": "new replica",
                }
            ],
        }
    ],
}


def test_show_prints_placement_candidates_changes_and_steps(capsys: pytest.CaptureFixture[str]) -> None:
    plan.show(ANSWER, all_targets=False, no_color=True)
    out = capsys.readouterr().out
    assert out.startswith("Plan for create of shop: feasible")
    assert "web     nginx     1          p.b.a" in out
    assert "chosen (replica 0)" in out
    assert "tags: tier: needs gold, has silver" in out
    assert out.count("p.b.x") == plan.REJECTED_SHOWN
    assert "… 2 more rejected targets (--all-targets shows them)" in out
    assert "not needed for 1 replica" in out
    assert "services added: web" in out
    assert "replicas: web 0 -> 1" in out
    assert "web/0/vm" in out


def test_all_targets_lists_every_rejected_target(capsys: pytest.CaptureFixture[str]) -> None:
    plan.show(ANSWER, all_targets=True, no_color=True)
    assert capsys.readouterr().out.count("p.b.x") == 12


def test_manifest_and_overrides(tmp_path: Path) -> None:
    path = tmp_path / "m.yml"
    path.write_text(
        "stack_infrastructure_template: sit\nstack_application_template: sat\nparams: {a: 1, b: 2}\n"
        "service_params: {web: {x: 1, y: {z: 1}}}\nsurprise: 1\n"
    )
    manifest = manifests.read_manifest(path, quiet=True)
    assert "surprise" not in manifest
    body = manifests.instance_body(
        "shop",
        manifest,
        params=['{"b": 3}', '{"c": 4}'],
        replicas='{"web": 2}',
        service_params='{"web": {"y": {"w": 2}}}',
        services='[{"name": "cache", "service": "redis"}]',
    )
    assert body["stack_instance_name"] == "shop"
    assert body["params"] == {"a": 1, "b": 3, "c": 4}
    assert body["replicas"] == {"web": 2}
    assert body["service_params"] == {"web": {"x": 1, "y": {"z": 1, "w": 2}}}
    assert body["services"] == [{"name": "cache", "service": "redis"}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"params": ["[1]"]}, "-p/--params: must be a JSON object"),
        ({"tags": "{oops"}, "-t/--tags: invalid JSON"),
        ({"services": "{}"}, "--services: must be a JSON list"),
    ],
)
def test_bad_overrides_are_usage_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageFailure) as caught:
        manifests.instance_body("shop", {}, **kwargs)
    assert caught.value.message.startswith(message)
    assert exits.exit_code(caught.value) == 2
