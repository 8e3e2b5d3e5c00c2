"""place(): evaluation order, policies, replicas, updates, failure messages and the §3.10 explanation."""

from collections.abc import Mapping
from typing import Any

import pytest
from tests.unit.placement.builders import policy, request, service, target

from stackl import errors
from stackl.domain.targets import compute_target
from stackl.placement.engine import SatPolicyUse, place, policy_input_base
from stackl.policy.static import UNDEFINED, StaticPolicyEngine

A, B, C = "prod.bru.a", "prod.bru.b", "prod.bru.c"


def _engine(**functions: Any) -> StaticPolicyEngine:
    return StaticPolicyEngine(functions)


def test_candidate_order_is_sit_order_and_replicas_take_the_first_n() -> None:
    targets = {C: target(), A: target(), B: target()}
    placed = place(request([service("web")], targets, replicas={"web": 2}), _engine())
    assert placed.targets == {"web": [C, A]}
    candidates = placed.explanation["services"]["web"]["candidates"]
    assert list(candidates) == [C, A, B]
    assert candidates[B] == {
        "result": "spare",
        "checks": candidates[B]["checks"],
        "details": ["not needed for 2 replicas"],
    }
    assert candidates[A]["replica"] == 1


def test_first_failing_check_rejects_and_later_checks_are_not_recorded() -> None:
    targets = {A: target({"cpu": 1}, {"region": "us"}, ["x"]), B: target({"cpu": 8}, {"region": "us"}, ["x"])}
    with pytest.raises(errors.PlacementFailed) as caught:
        place(request([service("web", {"cpu": "2"}, ["nginx"])], targets, tags={"region": "eu"}), _engine())
    assert caught.value.message == 'Could not find a target for services {"web"}'
    candidates = caught.value.explanation["services"]["web"]["candidates"]
    assert [c["check"] for c in candidates[A]["checks"]] == ["resources"]
    assert [c["check"] for c in candidates[B]["checks"]] == ["resources", "tags"]


def test_could_not_find_lists_aliases_sorted() -> None:
    targets = {A: target({"cpu": 1})}
    services = [service("web", {"cpu": 4}), service("db", {"cpu": 4}), service("cache", {"cpu": 1})]
    with pytest.raises(errors.PlacementFailed) as caught:
        place(request(services, targets), _engine())
    assert caught.value.message == 'Could not find a target for services {"db", "web"}'


def test_replica_shortage_and_zero_replicas() -> None:
    targets = {A: target(), B: target()}
    with pytest.raises(errors.PlacementFailed) as caught:
        place(request([service("web"), service("db")], targets, replicas={"web": 3}), _engine())
    assert caught.value.message == 'Not enough targets for services {"web"}'
    web = caught.value.explanation["services"]["web"]
    assert web["targets"] == []
    assert web["candidates"][A]["checks"][-1] == {
        "check": "replicas",
        "result": "fail",
        "details": ["needs 3 replicas, 2 candidates left"],
    }
    placed = place(
        request([service("web"), service("db", {"cpu": 99})], targets, replicas={"db": 0}), _engine()
    )
    assert placed.targets == {"web": [A], "db": []}


def _naming(rule: str, doc: Mapping[str, Any]) -> Any:
    assert rule == "solutions"
    return {"fulfilled": True, "targets": [{"target": B, "stackl_hostname": "h-b", "extra": 1}, "nowhere", C]}


def test_sat_policy_narrows_in_candidate_order_and_records_outputs() -> None:
    targets = {A: target(), B: target(), C: target()}
    uses = [
        SatPolicyUse(policy("naming", ["stackl_hostname"]), {"service": "web", "prefix": "x"}),
        SatPolicyUse(policy("later"), {"service": "web"}),
        SatPolicyUse(policy("naming"), {"service": "ghost"}),
    ]
    engine = _engine(
        naming=_naming,
        later=lambda _r, _d: {"fulfilled": True, "targets": [C, {"target": B, "stackl_hostname": "h-2"}]},
    )
    placed = place(request([service("web")], targets, sat=uses, replicas={"web": 2}), engine)
    assert placed.targets == {"web": [B, C]}
    assert placed.outputs == {"web": {B: {"stackl_hostname": "h-2"}}}
    first = engine.calls[0].input
    assert first["parameters"] == {"service": "web", "prefix": "x"}
    assert first["candidates"] == [A, B, C]
    assert first["user_parameters"] == {"size": "m"}
    assert first["replicas"] == {"web": 2}
    assert engine.calls[1].input["candidates"] == [B, C]
    explanation = placed.explanation
    assert explanation["notes"] == ["policy naming: service ghost is not part of this instance, skipped"]
    entry = explanation["services"]["web"]["candidates"][A]
    assert entry["result"] == "rejected"
    assert entry["checks"][-1] == {
        "check": "policy:naming",
        "result": "fail",
        "details": ["not among the policy's targets"],
    }
    assert explanation["services"]["web"]["candidates"][B]["outputs"] == {"stackl_hostname": "h-2"}


def test_sat_policy_unfulfilled_and_invalid() -> None:
    targets = {A: target()}
    uses = [SatPolicyUse(policy("p"), {"service": "web"})]
    refusing = _engine(p=lambda _r, _d: {"fulfilled": False, "msg": "not here"})
    with pytest.raises(errors.PlacementFailed) as caught:
        place(request([service("web")], targets, sat=uses), refusing)
    assert caught.value.message == "not here"
    assert caught.value.explanation["services"]["web"]["candidates"][A]["result"] == "rejected"
    with pytest.raises(errors.PolicyError) as invalid:
        place(request([service("web")], targets, sat=uses), _engine(p=lambda _r, _d: UNDEFINED))
    assert invalid.value.message == "policy p returned an invalid result: solutions is undefined"
    assert invalid.value.explanation is not None
    empty = _engine(p=lambda _r, _d: {"fulfilled": True, "targets": []})
    with pytest.raises(errors.PlacementFailed) as short:
        place(request([service("web")], targets, sat=uses), empty)
    assert short.value.message == 'Not enough targets for services {"web"}'


def test_sit_policies_once_per_chosen_target_messages_deduplicated() -> None:
    repos = {"repositories": ["registry.example.com"]}
    targets = {A: target(policies={"repos": repos, "other": {}}), B: target(policies={"repos": repos})}

    def repos_rule(rule: str, doc: Mapping[str, Any]) -> Any:
        assert rule == "infringement"
        assert "secrets" not in str(doc)
        return [{"msg": "image outside registry"}, "plain"]

    engine = _engine(repos=repos_rule, other=lambda _r, _d: [])
    services = [service("web"), service("db")]
    with pytest.raises(errors.PlacementFailed) as caught:
        place(
            request(services, targets, replicas={"web": 2}, policies=[policy("repos"), policy("other")]),
            engine,
        )
    assert caught.value.message == "image outside registry\nplain"
    assert [(c.policy, c.input["target"]) for c in engine.calls] == [("repos", A), ("other", A), ("repos", B)]
    assert engine.calls[0].input["parameters"] == repos
    assert engine.calls[0].input["stack_instance_params"] == {"size": "m"}
    checks = caught.value.explanation["services"]["db"]["candidates"][A]["checks"]
    assert checks[-2:] == [
        {"check": "sit_policy:repos", "result": "fail", "details": ["image outside registry", "plain"]},
        {"check": "sit_policy:other", "result": "pass"},
    ]


def test_update_keeps_existing_replicas_or_is_impossible() -> None:
    targets = {A: target(), B: target(), C: target()}
    placed = place(request([service("web")], targets, replicas={"web": 2}, existing={"web": [C]}), _engine())
    assert placed.targets == {"web": [C, A]}
    shrunk = place(
        request([service("web")], targets, replicas={"web": 1}, existing={"web": [B, C]}), _engine()
    )
    assert shrunk.targets == {"web": [B]}
    gone = {A: target(), B: target({"cpu": 1})}
    with pytest.raises(errors.PlacementFailed) as caught:
        place(request([service("web", {"cpu": 2})], gone, existing={"web": [B]}), _engine())
    assert caught.value.message == "Update impossible. Target in service definition not in service_targets"
    assert caught.value.explanation["services"]["web"]["update_impossible"] == [{"replica": 0, "target": B}]


def test_orchestration_and_replicas_overrides() -> None:
    targets = {A: target({"cpu": 1}), B: target(), C: target()}
    orchestration = _engine(
        orchestration=lambda _r, _d: {"web": [C, A]},
        replicas=lambda _r, d: {
            "fulfilled": True,
            "services": {"web": list(reversed(d["services"]["web"]["targets"]))},
        },
    )
    req = request(
        [service("web", {"cpu": 4})], targets, overrides=[policy("orchestration")], replicas={"web": 2}
    )
    placed = place(req, orchestration)
    assert placed.targets == {"web": [A, C]}
    assert placed.explanation["services"]["web"]["candidates"][B]["checks"] == [
        {"check": "policy:orchestration", "result": "fail", "details": ["not among the policy's targets"]}
    ]
    both = request([service("web")], targets, overrides=[policy("orchestration"), policy("replicas")])
    assert place(both, orchestration).targets == {"web": [C, A]}
    assert orchestration.calls[-1].input == {
        "parameters": {"services": {"web": 1}},
        "services": {"web": {"service": "web", "targets": [A, C]}},
    }
    refusing = _engine(
        replicas=lambda _r, _d: {"fulfilled": False, "msg": "Not enough targets for services web"}
    )
    with pytest.raises(errors.PlacementFailed, match="Not enough targets for services web"):
        place(request([service("web")], targets, overrides=[policy("replicas")]), refusing)


def test_policy_input_base_has_every_target_and_no_secrets() -> None:
    targets = {A: target({"cpu": 32}, {"env": "prod"}, ["nginx"], params={"vlan": 120})}
    base = policy_input_base(
        request([service("web", {"cpu": "2"}, ["nginx"])], targets, tags={"env": "prod"})
    )
    assert base == {
        "required_tags": {"env": "prod"},
        "stack_instance": "shop",
        "services": {
            "web": {
                "service": "web",
                "functional_requirements": {
                    "nginx": {"generic": {"tool": "shell", "image": "registry.example.com/nginx:1"}}
                },
                "resource_requirements": {"cpu": "2"},
                "params": {"owner": "team-a"},
            }
        },
        "infrastructure_targets": {
            A: {
                "resources": {"cpu": 32},
                "tags": {"env": "prod"},
                "params": {"vlan": 120},
                "packages": ["nginx"],
                "cloud_provider": "generic",
                "agent": "common",
                "environment": "prod",
                "location": "bru",
                "zone": "a",
            }
        },
    }


def test_placement_is_deterministic() -> None:
    targets = {f"e.l.z{i}": target({"cpu": i % 5}, {"t": str(i % 3)}) for i in range(40)}
    services = [service(f"s{i}", {"cpu": i % 4}) for i in range(6)]
    first = place(request(services, targets, tags={"t": "1"}, replicas={"s0": 3}), _engine())
    second = place(request(services, targets, tags={"t": "1"}, replicas={"s0": 3}), _engine())
    assert first == second


# --- the worked example of §3.10 ------------------------------------------------------------------------

PRODUCTION = {
    "name": "production",
    "params": {"domain": "example.com"},
    "resources": {"cpu": 64, "memory": "256GiB", "disk": "10TB"},
    "policies": {"allowedrepositories": {"repositories": ["registry.example.com"]}},
    "packages": ["postgres_vm", "nginx"],
}
BRUSSELS = {
    "name": "brussels",
    "agent": "bru-agent",
    "cloud_provider": "vmw",
    "resources": {"memory": "128GiB"},
}
ZONE_A = {"name": "zone-a", "resources": {"cpu": 32}}
ZONE_B = {"name": "zone-b", "resources": {"memory": "8GiB"}}
ZA, ZB = "production.brussels.zone-a", "production.brussels.zone-b"


def test_the_explanation_example() -> None:
    targets = {
        ZA: compute_target(PRODUCTION, BRUSSELS, ZONE_A),
        ZB: compute_target(PRODUCTION, BRUSSELS, ZONE_B),
    }
    services = [
        service("db", {"cpu": "2", "memory": "16GiB"}, ["postgres_vm"], "postgres"),
        service("web", {}, ["nginx"], "nginx"),
    ]
    naming = SatPolicyUse(policy("naming"), {"service": "web"})
    engine = _engine(
        naming=lambda _r, _d: {
            "fulfilled": True,
            "targets": [{"target": ZA, "stackl_hostname": "bru-web{hi}"}, ZB],
        },
        allowedrepositories=lambda _r, _d: [],
    )
    req = request(services, targets, sat=[naming], policies=[policy("naming"), policy("allowedrepositories")])
    meta = {
        "stack_infrastructure_template": {"name": "prod-bru", "revision": 7},
        "stack_application_template": {"name": "shop", "revision": 3},
        "policy_templates": {"naming": 2},
    }
    placed = place(type(req)(**{**req.__dict__, "inputs_meta": meta}), engine)
    assert placed.targets == {"db": [ZA], "web": [ZA]}
    assert placed.outputs == {"web": {ZA: {"stackl_hostname": "bru-web{hi}"}}}
    sit = {"check": "sit_policy:allowedrepositories", "result": "pass"}
    tags = {"check": "tags", "result": "pass", "details": ["no required tags"]}
    assert placed.explanation == {
        "evaluated_at": "2025-03-03T10:00:00Z",
        "inputs": {**meta, "required_tags": {}, "replicas": {"db": 1, "web": 1}},
        "services": {
            "db": {
                "service": "postgres",
                "replicas": 1,
                "targets": [ZA],
                "candidates": {
                    ZA: {
                        "result": "chosen",
                        "replica": 0,
                        "checks": [
                            {
                                "check": "resources",
                                "result": "pass",
                                "details": [
                                    "cpu: needs 2, has 32",
                                    "memory: needs 16GiB (17179869184), has 128GiB (137438953472)",
                                ],
                            },
                            tags,
                            {"check": "packages", "result": "pass", "details": ["postgres_vm offered"]},
                            sit,
                        ],
                    },
                    ZB: {
                        "result": "rejected",
                        "checks": [
                            {
                                "check": "resources",
                                "result": "fail",
                                "details": ["memory: needs 16GiB (17179869184), has 8GiB (8589934592)"],
                            }
                        ],
                    },
                },
            },
            "web": {
                "service": "nginx",
                "replicas": 1,
                "targets": [ZA],
                "candidates": {
                    ZA: {
                        "result": "chosen",
                        "replica": 0,
                        "checks": [
                            {"check": "resources", "result": "pass", "details": ["no resource requirements"]},
                            tags,
                            {"check": "packages", "result": "pass", "details": ["nginx offered"]},
                            {"check": "policy:naming", "result": "pass"},
                            sit,
                        ],
                        "outputs": {"stackl_hostname": "bru-web{hi}"},
                    },
                    ZB: {
                        "result": "spare",
                        "checks": [
                            {"check": "resources", "result": "pass", "details": ["no resource requirements"]},
                            tags,
                            {"check": "packages", "result": "pass", "details": ["nginx offered"]},
                            {"check": "policy:naming", "result": "pass"},
                        ],
                        "details": ["not needed for 1 replica"],
                    },
                },
            },
        },
    }


@pytest.mark.parametrize(
    ("raised", "expected"),
    [
        ("policy p did not finish within 5 s", "policy p (solutions) did not finish within 5 s on 2 targets"),
        ("policy p failed: conflicting rules", "policy p (solutions) failed: conflicting rules"),
    ],
)
def test_engine_failures_name_the_policy_and_its_kind(raised: str, expected: str) -> None:
    def failing(_rule: str, _input: Mapping[str, Any]) -> Any:
        raise errors.PolicyError(raised, policy="p")

    uses = [SatPolicyUse(policy("p"), {"service": "web"})]
    with pytest.raises(errors.PolicyError) as caught:
        place(request([service("web")], {A: target(), B: target()}, sat=uses), _engine(p=failing))
    assert caught.value.message == expected
    assert caught.value.explanation is not None  # the explanation so far travels with the 422
