"""The policy example the README and docs/ point users at really works, in the engine STACKL runs.

``examples/policies/my_policy.rego`` (a STACKL 0.5-style v0 SIT policy) compiles as the template
``my_policy`` and, on ``examples/policies/input.json``, reports the one image that is not from an approved
registry; with that image fixed it reports nothing.
"""

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from stackl.policy.base import Policy
from stackl.policy.rego import RegoPolicyEngine

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "policies"


@pytest.fixture
def engine() -> Iterator[RegoPolicyEngine]:
    rego = RegoPolicyEngine(max_workers=1)
    yield rego
    rego.close()


@pytest.fixture
def policy() -> Policy:
    return Policy(
        name="my_policy", revision=1, source=(EXAMPLES / "my_policy.rego").read_text(encoding="utf-8")
    )


@pytest.fixture
def example_input() -> dict[str, Any]:
    value: dict[str, Any] = json.loads((EXAMPLES / "input.json").read_text(encoding="utf-8"))
    return value


def test_the_example_compiles_as_a_sit_policy_template(engine: RegoPolicyEngine, policy: Policy) -> None:
    info = engine.check(policy.name, policy.source)
    assert info.package == "my_policy"
    assert "infringement" in info.rules


def test_the_example_input_has_one_infringement(
    engine: RegoPolicyEngine, policy: Policy, example_input: dict[str, Any]
) -> None:
    decision = engine.evaluate(policy, "infringement", example_input)
    assert decision.defined
    assert decision.value == [
        {
            "msg": "functional requirement nginx uses image docker.io/someone/nginx-role:latest, "
            "which is not from an approved registry"
        }
    ]


def test_approved_images_pass(
    engine: RegoPolicyEngine, policy: Policy, example_input: dict[str, Any]
) -> None:
    fixed = copy.deepcopy(example_input)
    nginx = fixed["services"]["web"]["functional_requirements"]["nginx"]["generic"]
    nginx["image"] = "registry.example.com/automation/nginx-role:2.0"
    decision = engine.evaluate(policy, "infringement", fixed)
    assert decision.defined
    assert decision.value == []
