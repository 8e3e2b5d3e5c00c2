import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from stackl.errors import PolicyEngineUnavailable, PolicyError
from stackl.policy.base import Policy, PolicyEngine
from stackl.policy.defaults_loader import reference_policy
from stackl.policy.opa import OpaPolicyEngine
from stackl.policy.rego import RegoPolicyEngine

# spec/lifecycle.md §3.8, verbatim
SIT_POLICY = """package allowedrepositories
infringement[{"msg": msg}] {
  inv := input.services[_].functional_requirements[fr][_]
  ok := [r | r := input.parameters.repositories[_]; startswith(inv.image, r)]
  not any(ok)
  msg := sprintf("functional requirement %v uses image %v outside %v", [fr, inv.image, input.parameters.repositories])
}
"""

# spec/documents.md §8, verbatim (the `policy` field)
REGISTRIES_POLICY = """package allowed_registries

infringement[{"msg": msg}] {
  inv := input.services[_].functional_requirements[fr][_]
  inv.image != ""
  not approved(inv.image)
  msg := sprintf("image %v of %v is not from an approved registry", [inv.image, fr])
}

approved(image) { startswith(image, input.parameters.prefixes[_]) }
"""

# spec/api.md §B.5, the example request's input
REGISTRIES_INPUT = {
    "parameters": {"prefixes": ["registry.example.com/"]},
    "services": {"web": {"functional_requirements": {"vm": {"vmw": {"image": "docker.io/x/vm:1"}}}}},
}

# spec/lifecycle.md §3.5 base input, verbatim
BASE_INPUT: dict[str, Any] = {
    "required_tags": {"region": "eu-west"},
    "stack_instance": "shop-prod",
    "services": {
        "db": {
            "service": "postgres",
            "functional_requirements": {
                "postgres_vm": {
                    "generic": {
                        "tool": "terraform",
                        "image": "registry.example.com/pg-vm:1.4",
                        "working_directory": "pg-vm",
                        "before_command": "",
                        "timeout": 3600,
                    }
                }
            },
            "resource_requirements": {"cpu": "2", "memory": "16GiB"},
            "params": {"vm_size": "medium", "pg_version": "15", "owner": "team-a"},
        }
    },
    "infrastructure_targets": {
        "production.brussels.zone-a": {
            "resources": {"cpu": 32, "memory": "128GiB", "disk": "10TB"},
            "tags": {"environment": "prod", "tier": "silver", "region": "eu-west"},
            "params": {"domain": "example.com", "log_level": "debug", "vlan": 120},
            "packages": ["postgres_vm", "nginx", "haproxy"],
            "cloud_provider": "vmw",
            "agent": "bru-agent",
            "environment": "production",
            "location": "brussels",
            "zone": "zone-a",
        }
    },
}

SAT_POLICY = """package naming
solutions = {"fulfilled": true, "targets": targets} {
  targets := [{"target": t, "stackl_hostname": "bru-web{hi}"} |
    input.infrastructure_targets[t].tags.region == input.required_tags.region]
}
"""

SERVICE_POLICY = """package only_install
filter[fr] {
  fr := input.functional_requirements[_]
  endswith(fr, "_install")
}
"""


ENGINES = ("regopy", "opa")


def make_engine(kind: str, *, max_workers: int = 4) -> PolicyEngine:
    return (
        RegoPolicyEngine(max_workers=max_workers)
        if kind == "regopy"
        else OpaPolicyEngine(max_workers=max_workers)
    )


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[Any]:
    engine = make_engine(request.param)
    yield engine
    engine.close()


def test_sit_policy_of_lifecycle_spec(engine: Any) -> None:
    engine.check("allowedrepositories", SIT_POLICY)
    policy = Policy("allowedrepositories", 1, SIT_POLICY)
    outside = {**BASE_INPUT, "parameters": {"repositories": ["docker.io/"]}}
    decision = engine.evaluate(policy, "infringement", outside)
    assert decision.defined
    assert decision.value == [
        {
            "msg": "functional requirement postgres_vm uses image registry.example.com/pg-vm:1.4 "
            'outside ["docker.io/"]'
        }
    ]
    # OPA 0.x `any` counts only elements equal to true, and `ok` holds strings: the spec's example flags an
    # approved image too. STACKL keeps OPA 0.x semantics; the example needs `ok := [true | ...]`.
    inside = {**BASE_INPUT, "parameters": {"repositories": ["registry.example.com/"]}}
    assert len(engine.evaluate(policy, "infringement", inside).value) == 1


def test_default_on_a_partial_set_is_rejected_at_check(engine: Any) -> None:
    source = "package p\ndefault filter = []\nfilter[fr] { fr := input.frs[_] }\n"
    with pytest.raises(PolicyError, match=r"Invalid rule body for set rule|line 2: conflicting rules"):
        engine.check("p", source)


def test_documents_spec_policy_with_the_api_example(engine: Any) -> None:
    info = engine.check("allowed_registries", REGISTRIES_POLICY)
    assert info.rules == {"infringement"}
    decision = engine.evaluate(
        Policy("allowed_registries", 4, REGISTRIES_POLICY), "infringement", REGISTRIES_INPUT
    )
    assert decision.value == [{"msg": "image docker.io/x/vm:1 of vm is not from an approved registry"}]
    approved = {
        **REGISTRIES_INPUT,
        "services": {
            "web": {"functional_requirements": {"vm": {"vmw": {"image": "registry.example.com/vm:1"}}}}
        },
    }
    allowed = engine.evaluate(Policy("allowed_registries", 4, REGISTRIES_POLICY), "infringement", approved)
    assert allowed.value == []  # the `_` inside startswith's argument iterates, as in OPA


def test_sat_policy_solutions(engine: Any) -> None:
    engine.check("naming", SAT_POLICY)
    decision = engine.evaluate(Policy("naming", 1, SAT_POLICY), "solutions", BASE_INPUT)
    assert decision.value == {
        "fulfilled": True,
        "targets": [{"target": "production.brussels.zone-a", "stackl_hostname": "bru-web{hi}"}],
    }


def test_service_policy_filter_is_a_list(engine: Any) -> None:
    engine.check("only_install", SERVICE_POLICY)
    policy = Policy("only_install", 1, SERVICE_POLICY)
    decision = engine.evaluate(
        policy, "filter", {"functional_requirements": ["nginx_install", "nginx_config"]}
    )
    assert decision.value == ["nginx_install"]


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("all([])", True),
        ("all([true, true])", True),
        ("all({true, false})", False),
        ("all([1])", False),
        ("any([])", False),
        ("any({false, true})", True),
        ("any([false])", False),
    ],
)
def test_all_and_any_have_opa_0_semantics(engine: Any, expression: str, expected: bool) -> None:
    source = f"package p\nallow = x {{ x := {expression} }}\n"
    assert engine.evaluate(Policy("p", 1, source), "allow", {}).value is expected


def test_v1_module_partial_set_is_normalised(engine: Any) -> None:
    source = 'package p\nimport rego.v1\ndeny contains m if { m := "a" }\nallow := {1, 2}\n'
    policy = Policy("p", 1, source)
    assert engine.evaluate(policy, "deny", {}).value == ["a"]
    assert engine.evaluate(policy, "allow", {}).value == [1, 2]


def test_undefined_rule(engine: Any) -> None:
    policy = Policy("p", 1, "package p\nallow { input.x == 1 }\n")
    assert not engine.evaluate(policy, "allow", {"x": 2}).defined
    assert not engine.evaluate(policy, "missing", {}).defined
    assert engine.evaluate(policy, "allow", {"x": 1}).value is True


def test_query(engine: Any) -> None:
    policy = Policy("allowedrepositories", 1, SIT_POLICY)
    doc = {**BASE_INPUT, "parameters": {"repositories": ["docker.io/"]}}
    assert engine.query(policy, "count(data.allowedrepositories.infringement)", doc).value == 1
    assert engine.query(policy, "x := 1; input.parameters.repositories[0]", doc).value == [True, "docker.io/"]
    assert not engine.query(policy, "input.nothing", doc).defined


def test_syntax_error_is_located_in_the_original_source(engine: Any) -> None:
    source = 'package p\n\ndeny[m] { m := all(["é"]) + }\n'
    # regopy points at the `+`, OPA at the `}` after it
    with pytest.raises(PolicyError, match=r"^line 3:(27|29): ") as caught:
        engine.check("p", source)
    assert caught.value.errors[0]["loc"] == ["body", "policy"]
    with pytest.raises(PolicyError, match=r"^policy p does not compile: line 3:(27|29): "):
        engine.evaluate(Policy("p", 1, source), "deny", {})


def test_check_rejects_package_import_builtin_and_missing_entry(engine: Any) -> None:
    with pytest.raises(PolicyError, match="package other must be the template name p"):
        engine.check("p", "package other\nallow = true\n")
    with pytest.raises(PolicyError, match=r"line 2:1: import data.lib is not allowed"):
        engine.check("p", "package p\nimport data.lib\nallow = true\n")
    with pytest.raises(PolicyError, match=r"line 2:18: builtin http.send is not available"):
        engine.check("p", 'package p\nallow = x { x := http.send({"url": "x"}) }\n')
    cidr = 'package p\nallow { net.cidr_contains("10.0.0.0/8", "10.1.1.1") }\n'
    if isinstance(engine, RegoPolicyEngine):
        with pytest.raises(PolicyError, match=r"builtin net.cidr_contains is not available"):
            engine.check("p", cidr)
    else:
        assert engine.check("p", cidr).rules == {"allow"}  # OPA has the net.cidr_* builtins
    with pytest.raises(PolicyError, match=r"unknown function nope|line 2: undefined function nope"):
        engine.check("p", "package p\nallow { nope(1) }\n")
    with pytest.raises(PolicyError, match="defines none of solutions, infringement, filter, allow"):
        engine.check("p", "package p\nx = 1\n")


def test_conflicting_complete_rule_names_the_policy(engine: Any) -> None:
    policy = Policy("conflict", 1, "package conflict\nallow = 1 { true }\nallow = 2 { true }\n")
    with pytest.raises(
        PolicyError, match=r"^policy conflict failed: (line 3: )?complete rules must not produce"
    ) as caught:
        engine.evaluate(policy, "allow", {})
    assert caught.value.policy == "conflict"


# Tens of millions of steps in little memory (a call that overruns keeps running after the caller gave up).
SLOW = Policy(
    "slow",
    1,
    "package slow\nallow { x := numbers.range(1, 500)[_]; y := numbers.range(1, 500)[_]; x + y < 0 }\n",
)


@pytest.mark.parametrize("kind", ENGINES)
def test_timeout_and_unavailable_when_every_thread_is_stuck(kind: str) -> None:
    engine = make_engine(
        kind, max_workers=1
    )  # neither engine can be interrupted: the thread count bounds them
    try:
        with pytest.raises(PolicyError, match=r"^policy slow did not finish within 0.2 s$"):
            engine.evaluate(SLOW, "allow", {}, timeout_s=0.2)
        with pytest.raises(PolicyEngineUnavailable):
            engine.evaluate(SLOW, "allow", {}, timeout_s=0.2)
    finally:
        engine.close()


def _targets(count: int) -> dict[str, Any]:
    target = BASE_INPUT["infrastructure_targets"]["production.brussels.zone-a"]
    return {f"production.brussels.zone-{i}": target for i in range(count)}


def test_reference_orchestration_policy_on_a_large_input(engine: Any) -> None:
    service = BASE_INPUT["services"]["db"]
    big = {
        **BASE_INPUT,
        "services": {f"s{i}": service for i in range(100)},
        "infrastructure_targets": _targets(1000),
    }
    if isinstance(engine, OpaPolicyEngine):  # real OPA has no statement limit: it answers
        placed = engine.evaluate(reference_policy("orchestration"), "solutions", big, timeout_s=120).value
        assert sorted(placed) == sorted(big["services"])
        return
    with pytest.raises(PolicyError) as caught:
        engine.evaluate(reference_policy("orchestration"), "solutions", big, timeout_s=1)
    assert "orchestration" in caught.value.message


def test_reference_policies(engine: Any) -> None:
    orchestration, replicas = reference_policy("orchestration"), reference_policy("replicas")
    engine.check("orchestration", orchestration.source)
    engine.check("replicas", replicas.source)
    placed = engine.evaluate(orchestration, "solutions", BASE_INPUT).value
    assert placed == {"db": ["production.brussels.zone-a"]}
    request = {
        "parameters": {"services": {"db": 1, "web": 2}},
        "services": {"db": ["a", "b"], "web": ["c", "a"]},
    }
    assert engine.evaluate(replicas, "solutions", request).value == {
        "fulfilled": True,
        "services": {"db": ["a"], "web": ["c", "a"]},
    }
    request["parameters"] = {"services": {"db": 3, "web": 2}}
    assert engine.evaluate(replicas, "solutions", request).value == {
        "fulfilled": False,
        "msg": 'Not enough targets for services {"db"}',
    }


def test_concurrent_calls_get_their_own_results(engine: Any) -> None:
    policy = Policy("allowedrepositories", 1, SIT_POLICY)
    threads: set[str] = set()

    def call(i: int) -> Any:
        threads.add(threading.current_thread().name)
        doc = {
            "parameters": {"repositories": [f"r{i}/"]},
            "services": {"s": {"functional_requirements": {"fr": {"p": {"image": f"img{i}"}}}}},
        }
        return engine.evaluate(policy, "infringement", doc).value

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(call, range(200)))
    assert results == [
        [{"msg": f'functional requirement fr uses image img{i} outside ["r{i}/"]'}] for i in range(200)
    ]
    # regopy compiles a revision once; OPA once per policy thread (each thread has its own engine)
    assert engine.compilations == 1 if isinstance(engine, RegoPolicyEngine) else engine.compilations <= 4


@pytest.mark.parametrize("kind", ENGINES)
def test_compiled_once_per_revision(kind: str) -> None:
    engine: Any = make_engine(kind, max_workers=1)  # OPA compiles once per policy thread
    first, second = Policy("p", 1, "package p\nallow = 1\n"), Policy("p", 2, "package p\nallow = 2\n")
    for _ in range(3):
        assert engine.evaluate(first, "allow", {}).value == 1
    assert engine.compilations == 1
    assert engine.evaluate(second, "allow", {}).value == 2
    assert engine.compilations == 2
    assert engine.evaluate(first, "allow", {}, data={"x": 1}).value == 1
    assert engine.compilations == 3
    engine.close()
