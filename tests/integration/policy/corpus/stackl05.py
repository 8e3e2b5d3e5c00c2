"""STACKL 0.5's own policies: the shipped ``orchestration`` and ``replicas`` and the documentation's examples.

The documentation's ``allowedrepositories`` policy comes in the three formulations users wrote (issue 13); the
``naming`` SAT policy follows the 0.5 documentation's pattern (a hostname built with ``sprintf`` per candidate).
"""

import copy
from typing import Any

from tests.integration.policy.corpus import Case

from stackl.policy.defaults_loader import reference_policy

ZONE_A: dict[str, Any] = {
    "resources": {"cpu": 32, "memory": "128GiB", "disk": "10TB"},
    "tags": {"environment": "prod", "tier": "silver", "region": "eu-west"},
    "packages": ["postgres_vm", "nginx", "haproxy"],
    "location": "brussels",
}
DB = {
    "service": "postgres",
    "functional_requirements": {
        "postgres_vm": {"generic": {"tool": "terraform", "image": "registry.example.com/pg-vm:1.4"}}
    },
    "resource_requirements": {"cpu": "2", "memory": "16GiB"},
}
PLACEMENT_INPUT = {
    "required_tags": {"region": "eu-west"},
    "services": {"db": DB},
    "infrastructure_targets": {"production.brussels.zone-a": ZONE_A},
}


def _targets() -> dict[str, Any]:
    small = {**copy.deepcopy(ZONE_A), "resources": {"memory": "8GiB"}}
    elsewhere = {**copy.deepcopy(ZONE_A), "tags": {"region": "us-east"}}
    no_package = {**copy.deepcopy(ZONE_A), "packages": ["nginx"]}
    untagged = {
        "resources": {"memory": "64GiB"},
        "tags": {},
        "packages": ["postgres_vm"],
        "location": "ghent",
    }
    return {
        "production.brussels.zone-a": ZONE_A,
        "production.brussels.zone-b": small,
        "production.brussels.zone-c": elsewhere,
        "production.brussels.zone-d": no_package,
        "production.ghent.zone-e": untagged,
    }


ALLOWED_REPOSITORIES = """package allowedrepositories
infringement[{"msg": msg}] {
  invocation := input.services[_].functional_requirements[fr][_]
  %s
  not any(satisfied)
  msg := sprintf("image %%v of %%v is not from an allowed repository", [invocation.image, fr])
}
"""
FORMULATIONS = {
    "unify": "satisfied := [good | repo = input.parameters.repositories[_]; "
    "good = startswith(invocation.image, repo)]",
    "wildcard-argument": "satisfied := [good | good := startswith(invocation.image, "
    "input.parameters.repositories[_])]",
    "assign": "satisfied := [good | repo := input.parameters.repositories[_]; "
    "good := startswith(invocation.image, repo)]",
}
# The lifecycle specification's example (§3.8), which collects strings and calls any() on them.
SPEC_SIT = """package allowedrepositories
infringement[{"msg": msg}] {
  inv := input.services[_].functional_requirements[fr][_]
  ok := [r | r := input.parameters.repositories[_]; startswith(inv.image, r)]
  not any(ok)
  msg := sprintf("functional requirement %v uses image %v outside %v", [fr, inv.image, input.parameters.repositories])
}
"""
REGISTRIES = """package allowed_registries

infringement[{"msg": msg}] {
  inv := input.services[_].functional_requirements[fr][_]
  inv.image != ""
  not approved(inv.image)
  msg := sprintf("image %v of %v is not from an approved registry", [inv.image, fr])
}

approved(image) { startswith(image, input.parameters.prefixes[_]) }
"""
NAMING = """package naming
solutions = {"fulfilled": true, "targets": targets} {
  targets := [{"target": t, "stackl_hostname": name} |
    t := input.candidates[_]
    target := input.infrastructure_targets[t]
    name := sprintf("%v-%v{hi}", [substring(target.location, 0, 3), input.parameters.prefix])]
}
"""
ONLY_INSTALL = """package only_install
filter[fr] {
  fr := input.functional_requirements[_]
  endswith(fr, "_install")
}
"""


def _image_input(image: str, key: str = "repositories") -> dict[str, Any]:
    return {
        "parameters": {key: ["registry.example.com/", "quay.io/"]},
        "services": {"web": {"functional_requirements": {"vm": {"vmw": {"image": image}}}}},
    }


def _case(name: str, package: str, source: str, rule: str, input_doc: Any, expected: Any, **kw: Any) -> Case:
    return Case("stackl05", name, package, source, rule, input_doc, expected, **kw)


_orchestration = reference_policy("orchestration").source
_replicas = reference_policy("replicas").source
CASES = [
    _case(
        "orchestration/one-target",
        "orchestration",
        _orchestration,
        "solutions",
        PLACEMENT_INPUT,
        {"db": ["production.brussels.zone-a"]},
        values_as_sets=True,
    ),
    _case(
        "orchestration/resources-tags-packages",
        "orchestration",
        _orchestration,
        "solutions",
        {**PLACEMENT_INPUT, "infrastructure_targets": _targets()},
        {"db": ["production.brussels.zone-a", "production.ghent.zone-e"]},
        values_as_sets=True,
    ),
    _case(
        "replicas/fulfilled",
        "replicas",
        _replicas,
        "solutions",
        {
            "parameters": {"services": {"db": 1, "web": 2}},
            "services": {"db": ["a", "b"], "web": {"targets": ["c", "a"]}},
        },
        {"fulfilled": True, "services": {"db": ["a"], "web": ["c", "a"]}},
    ),
    _case(
        "replicas/short",
        "replicas",
        _replicas,
        "solutions",
        {"parameters": {"services": {"db": 3, "web": 2}}, "services": {"db": ["a", "b"], "web": ["c", "a"]}},
        {"fulfilled": False, "msg": 'Not enough targets for services {"db"}'},
    ),
    *(
        _case(
            f"allowedrepositories/{name}/{where}",
            "allowedrepositories",
            ALLOWED_REPOSITORIES % line,
            "infringement",
            _image_input(image),
            expected,
            as_set=True,
        )
        for name, line in FORMULATIONS.items()
        for where, image, expected in (
            (
                "outside",
                "docker.io/shop/vm:1",
                [{"msg": "image docker.io/shop/vm:1 of vm is not from an allowed repository"}],
            ),
            ("inside", "quay.io/shop/vm:1", []),
        )
    ),
    _case(
        "allowedrepositories/specification-example-any-of-strings",
        "allowedrepositories",
        SPEC_SIT,
        "infringement",
        _image_input("quay.io/shop/vm:1"),
        [
            {
                "msg": "functional requirement vm uses image quay.io/shop/vm:1 outside "
                '["registry.example.com/", "quay.io/"]'
            }
        ],
        as_set=True,
    ),
    _case(
        "allowed_registries/outside",
        "allowed_registries",
        REGISTRIES,
        "infringement",
        _image_input("docker.io/x/vm:1", "prefixes"),
        [{"msg": "image docker.io/x/vm:1 of vm is not from an approved registry"}],
        as_set=True,
    ),
    _case(
        "allowed_registries/inside",
        "allowed_registries",
        REGISTRIES,
        "infringement",
        _image_input("registry.example.com/vm:1", "prefixes"),
        [],
        as_set=True,
    ),
    _case(
        "naming/hostnames",
        "naming",
        NAMING,
        "solutions",
        {
            "candidates": ["production.brussels.zone-a", "production.ghent.zone-e"],
            "infrastructure_targets": {
                "production.brussels.zone-a": {"location": "brussels"},
                "production.ghent.zone-e": {"location": "ghent"},
            },
            "parameters": {"prefix": "web"},
        },
        {
            "fulfilled": True,
            "targets": [
                {"target": "production.brussels.zone-a", "stackl_hostname": "bru-web{hi}"},
                {"target": "production.ghent.zone-e", "stackl_hostname": "ghe-web{hi}"},
            ],
        },
    ),
    _case(
        "only_install/filter",
        "only_install",
        ONLY_INSTALL,
        "filter",
        {"functional_requirements": ["nginx_install", "nginx_config", "haproxy_install"]},
        ["haproxy_install", "nginx_install"],
        as_set=True,
    ),
]
